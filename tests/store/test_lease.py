"""The evaluator lease on a real PostgreSQL (store/postgres/lease.py): one holder at a time,
and when the holder dies another takes over as soon as its lease expires.

No assertion here depends on how fast the machine is: takeover is checked against the
database's own view of expiry, and "never both" against each holder's own deadline, which
only a slower machine makes safer. Waits poll with generous deadlines.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from aisre.store.lease import LeaseGate, LocalLease
from aisre.store.postgres import PostgresControl
from aisre.store.postgres.connections import connect
from aisre.store.postgres.lease import SAFETY, PostgresLease, takeover_bound_s
from tests.conftest import wait_for


@pytest.fixture
def lease_db(postgres_server: Any, request: pytest.FixtureRequest) -> str:
    url = postgres_server.create_database(request.node.name)
    PostgresControl(url).close()  # the migrations make the leases table
    return url


def test_one_holder_then_the_survivor_takes_over_once_the_lease_expires(lease_db: str) -> None:
    a = PostgresLease(lease_db, ttl_s=2.0, holder="node-a")
    b = PostgresLease(lease_db, ttl_s=2.0, holder="node-b")
    try:
        assert a.try_acquire() and a.held() and a.term == 1
        assert not b.try_acquire() and not b.held()
        assert a.try_acquire() and a.term == 1  # renewing keeps the term
        # node-a dies: it stops renewing and never releases.
        a.stop(release=False)
        assert not a.held()
        took = False
        deadline = time.monotonic() + 60
        while not took and time.monotonic() < deadline:
            row = a.holder_now()
            assert row is not None
            expired_before = row["expired"]
            took = b.try_acquire()
            if expired_before:
                assert took, "an expired lease must go to the first contender"
            if not took:
                assert b.holder_now()["holder"] == "node-a"
                time.sleep(0.1)
        assert took and b.held() and b.term == 2
        assert b.holder_now() == {"holder": "node-b", "term": 2, "expired": False}
        # The old holder, back, cannot take it while node-b renews.
        assert not a.try_acquire()
    finally:
        a.stop()
        b.stop()


def test_a_clean_stop_hands_the_lease_over_at_once(lease_db: str) -> None:
    a = PostgresLease(lease_db, ttl_s=600.0, holder="node-a")
    b = PostgresLease(lease_db, ttl_s=600.0, holder="node-b")
    try:
        assert a.try_acquire() and not b.try_acquire()
        a.stop()  # releases: no waiting for the 10-minute expiry
        assert b.try_acquire() and b.term == 2
    finally:
        a.stop()
        b.stop()


def test_never_two_holders_while_one_stalls(lease_db: str) -> None:
    """A holder that stops renewing but keeps running (a long pause) believes it holds the
    lease only until SAFETY x ttl after its last renewal was sent; the database hands the
    lease over only after ttl. So at the moment the contender wins, the old holder already
    knows it lost."""
    a = PostgresLease(lease_db, ttl_s=2.0, holder="node-a")
    b = PostgresLease(lease_db, ttl_s=2.0, holder="node-b")
    try:
        assert a.try_acquire()
        # node-a stalls (no renewals, connection kept); node-b keeps trying.
        observed_both = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            won = b.try_acquire()
            if won and a.held():
                observed_both = True
            if won:
                break
            time.sleep(0.05)
        assert b.held() and not observed_both and not a.held()
    finally:
        a.stop()
        b.stop()


def test_the_gate_runs_passes_only_while_held_and_names_a_new_term(lease_db: str) -> None:
    lease = PostgresLease(lease_db, ttl_s=600.0, holder="node-g")
    gate = LeaseGate(lease)
    try:
        assert gate.admit() == (False, False)
        assert lease.try_acquire()
        assert gate.admit() == (True, True)  # a new term: reload what the job cached
        assert gate.admit() == (True, False)
    finally:
        lease.stop()
    assert gate.admit() == (False, False)
    assert LeaseGate(LocalLease()).admit()[0] and LeaseGate().admit() == (True, False)
    assert takeover_bound_s(15) == 20 and SAFETY < 1


_NODE = """
import sys, time
from aisre.store.postgres.connections import connect
from aisre.store.postgres.lease import PostgresLease
url, name = sys.argv[1], sys.argv[2]
lease = PostgresLease(url, ttl_s=3.0, holder=name)
lease.start()
conn = connect(url)
while True:
    # What a singleton job does: work only while holding the lease.
    if lease.held():
        conn.execute("INSERT INTO lease_work VALUES (%s, %s, clock_timestamp())", [name, lease.term])
    time.sleep(0.1)
"""


def test_lease_failover_between_two_processes(lease_db: str) -> None:
    """Two node processes on one PostgreSQL: one works, the other waits; SIGKILL the worker
    and the survivor takes over; their work never overlaps in time."""
    conn = connect(lease_db)
    conn.execute("CREATE TABLE lease_work (holder TEXT, term BIGINT, at TIMESTAMPTZ)")
    procs = {name: subprocess.Popen([sys.executable, "-c", _NODE, lease_db, name]) for name in ("p1", "p2")}
    try:
        def holder() -> str | None:
            row = conn.execute("SELECT holder FROM leases WHERE name = 'evaluator'").fetchone()
            return row["holder"] if row else None

        first = wait_for(holder, 60, "a first holder")
        wait_for(lambda: conn.execute("SELECT count(*) AS n FROM lease_work").fetchone()["n"] >= 3, 60,
                 "work by the holder")
        procs[first].send_signal(signal.SIGKILL)
        procs[first].wait(10)
        survivor = "p2" if first == "p1" else "p1"
        wait_for(lambda: conn.execute("SELECT count(*) AS n FROM lease_work WHERE holder = %s", [survivor])
                 .fetchone()["n"] >= 3, 120, "the survivor to take over and work")
        rows = conn.execute("SELECT holder, term, min(at) AS since, max(at) AS until FROM lease_work "
                            "GROUP BY holder, term ORDER BY since").fetchall()
        assert [(r["holder"], r["term"]) for r in rows] == [(first, 1), (survivor, 2)]
        assert rows[0]["until"] < rows[1]["since"]  # never both at once
        lease = conn.execute("SELECT holder, term FROM leases").fetchone()
        assert (lease["holder"], lease["term"]) == (survivor, 2)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        conn.close()
