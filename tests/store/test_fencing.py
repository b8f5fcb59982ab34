"""Fencing tokens (store/fencing.py): the writes of an evaluation pass carry the lease term it
was admitted under, and a holder paused past its TTL (its clock simulated, standing still)
that wakes after another node took the lease over has those writes refused, none applied.
Two lease holders and two split stores (two nodes) on one real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisre.core.errors import LeaseLost
from aisre.store.factory import open_store
from aisre.store.lease import LeaseGate
from aisre.store.postgres.connections import connect
from aisre.store.postgres.lease import PostgresLease

A = "tenant-a"
MINUTE_NS = 60 * 10**9
T0 = 1_790_000_040 * 10**9


class Clock:
    """A node's monotonic clock, moved by hand (a paused node's stands still)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(postgres_server: Any, request: pytest.FixtureRequest) -> str:
    return str(postgres_server.create_database(request.node.name))


@pytest.fixture
def nodes(db: str, tmp_path: Path) -> Iterator[list[Any]]:
    stores = [open_store(f"duckdb:///{tmp_path}/n{i}.duckdb", control=db, guarded=False) for i in range(2)]
    try:
        yield stores
    finally:
        for store in stores:
            store.close()


def _alert(slo: str) -> dict[str, Any]:
    return {"tenant": A, "slo": slo, "journey": "ask", "severity": "page", "state": "firing", "pending_since_ns": T0,
            "started_ns": T0, "ended_ns": None, "peak_burn": 20.0, "updated_ns": T0, "summary": f"{slo} burning"}


def _incident(title: str) -> dict[str, Any]:
    return {"tenant": A, "group_key": f"journey:{title}", "opened_ns": T0, "title": title, "severity": "sev2",
            "state": "open", "source": "slo", "updated_ns": T0}


def _expire(db: str) -> None:
    """The holder stopped renewing more than a TTL ago, as the database's clock sees it."""
    conn = connect(db)
    try:
        conn.execute("UPDATE leases SET expires_at = clock_timestamp() - interval '1 second'")
    finally:
        conn.close()


def _minutes(store: Any, slo: str) -> list[int]:
    found = store.slo_minute_arrays(A, T0 - 10 * MINUTE_NS, T0 + 10 * MINUTE_NS, slo).get(slo)
    return [int(t) for t in found[2]] if found else []


def test_a_paused_holder_waking_after_a_takeover_has_its_writes_refused(db: str, nodes: list[Any]) -> None:
    node_a, node_b = nodes
    clock_a, clock_b = Clock(), Clock()
    lease_a = PostgresLease(db, ttl_s=30, holder="node-a", clock=clock_a)
    lease_b = PostgresLease(db, ttl_s=30, holder="node-b", clock=clock_b)
    gate_a, gate_b = LeaseGate(lease_a), LeaseGate(lease_b)
    minute = T0 // MINUTE_NS * MINUTE_NS
    try:
        assert lease_a.try_acquire() and lease_a.term == 1
        assert not lease_b.try_acquire()
        assert gate_a.admit() == (True, True)
        with gate_a.fenced():  # term 1 is current: applied
            node_a.save_alerts([_alert("before-pause")])
            node_a.put_slo_minutes(A, "prom-sli", minute, minute + MINUTE_NS, [(minute, 9, 10)])

        # Node A pauses past its TTL; its clock stands still, so on waking it still believes it holds the lease.
        _expire(db)
        assert lease_b.try_acquire() and lease_b.term == 2
        assert lease_a.held() and gate_a.admit()[0]
        with gate_a.fenced():
            with pytest.raises(LeaseLost, match=r"term 1.*term 2"):
                node_a.save_alerts([_alert("after-pause")])
            with pytest.raises(LeaseLost):
                node_a.incidents.create_incident(_incident("stale"), [], [])
            with pytest.raises(LeaseLost):
                node_a.put_slo_minutes(A, "prom-sli", minute, minute + MINUTE_NS, [(minute, 0, 10)])
        # Nothing of the stale pass was applied, on either node's view.
        assert [a["slo"] for a in node_b.list_alerts(A)] == ["before-pause"]
        assert node_b.incidents.list_incidents(A) == []
        assert _minutes(node_a, "prom-sli") == [10] and _minutes_good(node_a, "prom-sli") == [9]

        # The new holder's pass writes under term 2.
        assert gate_b.admit() == (True, True)
        with gate_b.fenced():
            node_b.save_alerts([_alert("new-holder")])
            node_b.incidents.create_incident(_incident("fresh"), [], [])
        assert sorted(a["slo"] for a in node_a.list_alerts(A)) == ["before-pause", "new-holder"]
        # Outside a pass (a person's request through the API) nothing is fenced.
        node_a.incidents.create_incident(_incident("declared"), [], [])
        assert sorted(i["title"] for i in node_b.incidents.list_incidents(A)) == ["declared", "fresh"]
    finally:
        lease_a.stop(release=False)
        lease_b.stop(release=False)


def _minutes_good(store: Any, slo: str) -> list[int]:
    found = store.slo_minute_arrays(A, T0 - 10 * MINUTE_NS, T0 + 10 * MINUTE_NS, slo).get(slo)
    return [int(g) for g in found[1]] if found else []


def test_an_expired_lease_nobody_took_refuses_the_pass_until_renewed(db: str, nodes: list[Any]) -> None:
    lease = PostgresLease(db, ttl_s=30, holder="node-a", clock=Clock())
    gate = LeaseGate(lease)
    try:
        assert lease.try_acquire() and gate.admit()[0]
        _expire(db)
        with gate.fenced(), pytest.raises(LeaseLost, match="expired"):
            nodes[0].save_alerts([_alert("late")])
        assert lease.try_acquire() and lease.term == 1  # renewed by the same holder: same term
        with gate.fenced():
            nodes[0].save_alerts([_alert("renewed")])
        assert [a["slo"] for a in nodes[1].list_alerts(A)] == ["renewed"]
    finally:
        lease.stop(release=False)


def test_a_takeover_waits_for_a_write_already_admitted(db: str, nodes: list[Any]) -> None:
    """The fence check holds the lease row until the write commits: a contender's try queues
    behind it, so a takeover can only follow the admitted write, never overlap it."""
    lease_a = PostgresLease(db, ttl_s=30, holder="node-a", clock=Clock())
    lease_b = PostgresLease(db, ttl_s=30, holder="node-b", clock=Clock())
    gate_a = LeaseGate(lease_a)
    took: list[bool] = []
    minute = T0 // MINUTE_NS * MINUTE_NS
    try:
        assert lease_a.try_acquire() and gate_a.admit()[0]
        contender = threading.Thread(target=lambda: took.append(lease_b.try_acquire()))

        def write_while_b_tries() -> None:
            contender.start()
            _wait_for_lock_wait(db)  # B's try is queued behind A's admitted write
            assert not took
            nodes[0]._data.put_slo_minutes(A, "prom-sli", minute, minute + MINUTE_NS, [(minute, 5, 5)])

        with gate_a.fenced():
            nodes[0]._control.fenced_call(write_while_b_tries)
        contender.join(60)
        assert took == [False]  # A's term was still valid when B's try ran
        assert _minutes(nodes[1], "prom-sli") == [] and _minutes(nodes[0], "prom-sli") == [5]
        _expire(db)
        assert lease_b.try_acquire() and lease_b.term == 2
    finally:
        lease_a.stop(release=False)
        lease_b.stop(release=False)


def _wait_for_lock_wait(db: str, deadline_s: float = 30.0) -> None:
    """Poll (generous deadline, no timing assertion) until a session waits on a row lock."""
    import time

    conn = connect(db)
    try:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            row = conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND datname = current_database()").fetchone()
            if row["n"]:
                return
            time.sleep(0.01)
        raise AssertionError("the contender never waited on the lease row")
    finally:
        conn.close()
