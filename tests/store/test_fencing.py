"""Fencing tokens (store/fencing.py): the writes of an evaluation pass carry the lease term it
was admitted under, and a holder paused past its TTL (its clock simulated, standing still)
that wakes after another node took the lease over has those writes refused, none applied.
Two lease holders and two split stores (two nodes) on one real PostgreSQL. The policy judging
pass is fenced the same way: its cursor, violations and judged marks (PostgreSQL) and its
policy scores (the span store)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisre.core.errors import LeaseLost
from aisre.evaluate.policy.service import PolicyService
from aisre.store.factory import open_store
from aisre.store.lease import LeaseGate
from aisre.store.postgres.connections import connect
from aisre.store.postgres.lease import PostgresLease
from tests.policy_traces import Run, agent_run, tool
from tests.store.contract.data import ingest

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


POLICY = """
policies:
  - name: triage-guardrails
    scope: {journeys: [triage]}
    rules:
      - {name: no-shell, kind: tool_deny, tools: [shell]}
"""


def _judging(node: Any, lease: PostgresLease) -> PolicyService:
    """A node's policy service, its background pass run by hand (``run_pass``)."""
    service = PolicyService(node, tenants=lambda: [A], interval_s=0)
    service.gate = LeaseGate(lease)
    return service


def _shell_run(nodes: list[Any], cmd: str, received_ns: int) -> Run:
    """An agent run calling the denied tool, received by both nodes' span stores."""
    run = agent_run([tool("shell", cmd=cmd)], start_ns=received_ns - 3600 * 10**9)
    for node in nodes:
        ingest(node, A, run.request().SerializeToString(), received_ns=received_ns)
    return run


def _policy_scores(node: Any, run: Run) -> list[float]:
    """The run's policy_violation scores in this node's span store."""
    scores = node.export_traces(A, "", 1000).scores.to_pylist()
    return [s["value"] for s in scores if s["trace_id"] == run.trace_id and s["name"] == "policy_violation"]


def test_a_paused_holders_policy_judging_is_refused_and_the_new_holder_judges(db: str, nodes: list[Any]) -> None:
    node_a, node_b = nodes
    lease_a = PostgresLease(db, ttl_s=30, holder="node-a", clock=Clock())
    lease_b = PostgresLease(db, ttl_s=30, holder="node-b", clock=Clock())
    judge_a, judge_b = _judging(node_a, lease_a), _judging(node_b, lease_b)
    now = time.time_ns()
    try:
        judge_a.apply(A, POLICY, "alice")  # through the API: no fence
        first = _shell_run(nodes, "ls", now - 120 * 10**9)
        assert lease_a.try_acquire() and lease_a.term == 1
        assert judge_a.run_pass() == 1  # term 1 is current: judged, marked, scored
        assert [v["trace_id"] for v in node_b.list_violations(A)] == [first.trace_id]
        assert _policy_scores(node_a, first) == [1.0]
        cursor = node_a._control.policy_cursor(A)
        assert cursor == now - 120 * 10**9

        # Node A pauses past its TTL (its clock stands still) while B takes the lease over.
        second = _shell_run(nodes, "rm", now - 60 * 10**9)
        _expire(db)
        assert lease_b.try_acquire() and lease_b.term == 2
        assert lease_a.held()
        # The stale pass: its first write (moving the judging cursor) is refused.
        with pytest.raises(LeaseLost, match=r"term 1.*term 2"):
            judge_a.run_pass()
        assert node_b._control.policy_cursor(A) == cursor
        # Judging the run directly in a stale pass: neither its scores nor its marks are applied.
        with judge_a.gate.fenced(), pytest.raises(LeaseLost):
            judge_a.judge_trace(A, second.trace_id)
        assert node_b.policy_run(A, second.trace_id) is None
        assert [v["trace_id"] for v in node_b.list_violations(A)] == [first.trace_id]
        assert _policy_scores(node_a, second) == []
        # Nor is the expiry step of a stale pass.
        with judge_a.gate.fenced(), pytest.raises(LeaseLost):
            node_a.expire_policy_records(now, 10)
        assert node_b.policy_run(A, first.trace_id) is not None

        # The new holder's pass judges the run (the first stays judged as it was).
        assert judge_b.run_pass() == 1
        assert sorted(v["trace_id"] for v in node_a.list_violations(A)) == sorted([first.trace_id, second.trace_id])
        assert node_a.policy_run(A, second.trace_id)["violations"] == 1  # type: ignore[index]
        assert _policy_scores(node_b, second) == [1.0] and _policy_scores(node_a, second) == []
        assert node_a._control.policy_cursor(A) == now - 60 * 10**9
        # A's lease is gone for good once it renews (another holder): its loop is no longer admitted.
        assert not lease_a.try_acquire() and judge_a.run_pass() == 0
    finally:
        lease_a.stop(release=False)
        lease_b.stop(release=False)


def test_a_takeover_waits_for_an_admitted_policy_write(db: str, nodes: list[Any]) -> None:
    """A run's scores and marks are written while the lease row is held (the marks' own fence
    check is a second share lock, granted while a contender's try is queued): the takeover
    follows the whole judged run, never splits it."""
    lease_a = PostgresLease(db, ttl_s=30, holder="node-a", clock=Clock())
    lease_b = PostgresLease(db, ttl_s=30, holder="node-b", clock=Clock())
    judge_a = _judging(nodes[0], lease_a)
    took: list[bool] = []
    try:
        judge_a.apply(A, POLICY, "alice")
        run = _shell_run(nodes[:1], "ls", time.time_ns() - 60 * 10**9)
        assert lease_a.try_acquire() and judge_a.gate.admit()[0]
        contender = threading.Thread(target=lambda: took.append(lease_b.try_acquire()))

        def judge_while_b_tries() -> None:
            contender.start()
            _wait_for_lock_wait(db)  # B's try is queued behind A's admitted pass
            assert not took
            judge_a.judge_trace(A, run.trace_id)

        with judge_a.gate.fenced():
            nodes[0]._control.fenced_call(judge_while_b_tries)
        contender.join(60)
        assert took == [False]
        assert [v["trace_id"] for v in nodes[1].list_violations(A)] == [run.trace_id]
        assert _policy_scores(nodes[0], run) == [1.0]
    finally:
        lease_a.stop(release=False)
        lease_b.stop(release=False)


def _wait_for_lock_wait(db: str, deadline_s: float = 30.0) -> None:
    """Poll (generous deadline, no timing assertion) until a session waits on a row lock."""
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
