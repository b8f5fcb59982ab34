"""The split store (store/split.py) and the control plane on PostgreSQL (store/postgres/):
the routing table, the rules that must hold across nodes sharing one PostgreSQL (two
control stores stand for two nodes: their own connections, racing on real rows), the
composed methods, and the tenant guard around it all. The contract suite
(test_contract_control.py) holds the return shapes to the DuckDB store's."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aisre.core.auth import Forbidden, acting_for
from aisre.core.errors import Conflict, StaleState
from aisre.store import protocol, split
from aisre.store.factory import open_store
from aisre.store.guard import GUARDED_PARTS, TenantGuard
from aisre.store.postgres import PostgresControl
from tests.store.contract.data import BY_NAME, NOW_NS, ingest, later_release
from tests.store.test_tenant_checks import TENANT_CARRIERS, _public_methods

A = "tenant-a"
HOUR_NS = 3600 * 10**9


@pytest.fixture
def controls(postgres_server: Any, request: pytest.FixtureRequest) -> Iterator[tuple[PostgresControl, PostgresControl]]:
    """Two control stores on one fresh database: two nodes' views of the control plane."""
    url = postgres_server.create_database(request.node.name)
    first, second = PostgresControl(url), PostgresControl(url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at once (released together by a barrier); their results or exceptions."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


# --- routing ----------------------------------------------------------------------------


def test_every_port_method_has_one_home() -> None:
    """A method goes to the control store, the span store, or is composed: never two of these,
    and each control-side method exists on the PostgreSQL control store."""
    assert not split.CONTROL_METHODS & split.COMPOSED
    assert not split.INCIDENT_DATA_METHODS & split.COMPOSED
    control_incidents = split.methods_of(protocol.IncidentStore, protocol.TriageStore) - split.INCIDENT_DATA_METHODS
    assert control_incidents - split.COMPOSED == {
        "create_incident", "update_incident", "get_incident", "open_incident_for", "list_incidents", "events",
        "alerts", "incidents_of_alert", "incidents_for_alert_keys", "add_action_item", "update_action_item",
        "action_items", "add_change", "list_changes", "add_notification_attempt", "notification_attempts"}
    from aisre.store.postgres.store import PostgresCostSettings, PostgresIncidents

    assert all(hasattr(PostgresIncidents, n) for n in control_incidents - split.COMPOSED)
    assert all(hasattr(PostgresCostSettings, n) for n in split.COST_CONTROL_METHODS)
    assert all(hasattr(PostgresControl, n) for n in split.CONTROL_METHODS)
    # The data-plane halves stay with the span store.
    assert {"gate_population", "list_runs", "slo_minute_arrays", "add_scores"}.isdisjoint(split.CONTROL_METHODS)
    assert {"run_minutes", "impact", "first_failure", "sample_runs", "run_appearances"} <= split.INCIDENT_DATA_METHODS
    assert {"breakdown", "reprice", "priced_models"}.isdisjoint(split.COST_CONTROL_METHODS)
    # Agent policy: records in the control store, runs and their calls in the span store,
    # what needs both composed.
    assert {"put_policy_set", "add_decisions", "list_decisions", "save_policy_marks", "policy_marks",
            "list_violations", "policy_run"} <= split.CONTROL_METHODS
    assert {"policy_usage", "policy_usage_by_trace", "policy_candidate_runs", "policy_session_runs",
            "put_policy_scores", "get_trace"}.isdisjoint(split.CONTROL_METHODS)
    assert {"runs_to_judge", "save_policy_run", "expire_policy_records"} <= split.COMPOSED


def test_every_split_method_is_tenant_scoped_or_declared(postgres_url: str, tmp_path: Path) -> None:
    """The guard can check every method the split store and its parts add (as for any backend)."""
    store = open_store(str(tmp_path / "s.duckdb"), guarded=False, control=postgres_url)
    try:
        parts = [store, *(getattr(store, part) for part in GUARDED_PARTS)]
        unclassified = []
        for part in parts:
            for name, signature in _public_methods(part).items():
                params = set(signature.parameters)
                scoped = "tenant" in params or params & TENANT_CARRIERS
                if not scoped and name not in protocol.PROCESS_WIDE | protocol.OPEN_TO_EVERY_CALLER:
                    unclassified.append(f"{type(part).__name__}.{name}{signature}")
        assert unclassified == []
        assert store.backend == "duckdb+postgresql"
    finally:
        store.close()


# --- across nodes -------------------------------------------------------------------------


def test_a_concurrent_acknowledgement_is_rejected_across_nodes(controls: tuple[PostgresControl, PostgresControl]) -> None:
    first, second = controls
    new = first.incidents.create_incident(
        {"tenant": A, "group_key": "journey:ask", "opened_ns": NOW_NS, "title": "ask failing", "severity": "sev2",
         "state": "open", "source": "slo", "updated_ns": NOW_NS}, [], [])
    people = [f"person-{i}" for i in range(8)]
    results = _race([
        (lambda who=who, node=(first, second)[i % 2]: node.incidents.update_incident(
            A, new["id"], {"state": "acknowledged", "acknowledged_by": who, "acknowledged_ns": NOW_NS + 1},
            [{"at_ns": NOW_NS + 1, "kind": "state", "actor": who, "message": "acknowledged", "data": None}],
            expect_state="open"))
        for i, who in enumerate(people)
    ])
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1
    (winner,) = winners
    # Every loser is told the incident is already acknowledged, and only one timeline entry was written.
    assert all(isinstance(e, StaleState) and e.state == "acknowledged" for e in losers) and len(losers) == 7
    assert first.incidents.get_incident(A, new["id"])["acknowledged_by"] == winner["acknowledged_by"]
    assert [e["actor"] for e in second.incidents.events(A, new["id"])] == [winner["acknowledged_by"]]
    assert "version" not in winner  # the concurrency column stays inside the store


def test_the_last_admin_key_survives_two_nodes_revoking_at_once(controls: tuple[PostgresControl, PostgresControl]) -> None:
    first, second = controls
    for key_id in ("k1", "k2"):
        first.add_key({"key_id": key_id, "digest": f"d-{key_id}", "tenant": A, "role": "admin", "name": key_id}, "ops")
    results = _race([lambda: first.revoke_key(A, "k1", "alice", keep_admin=True),
                     lambda: second.revoke_key(A, "k2", "bob", keep_admin=True)])
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "dict"]
    assert sum(isinstance(r, Conflict) for r in results) == 1
    assert len([k for k in second.active_keys() if k["tenant"] == A and k["role"] == "admin"]) == 1
    assert first.auth_latched() and second.auth_latched()


def test_change_detection_records_a_change_once_when_nodes_race(controls: tuple[PostgresControl, PostgresControl]) -> None:
    """Two nodes detecting over the same runs: one change, one cursor (a per-tenant lock, and
    what was seen read from the table, not from a node's memory)."""
    first, second = controls
    start = NOW_NS - 2 * HOUR_NS
    rows = [("ask", "deploy", "1.0", None, start, "svc", start + 10),
            ("ask", "deploy", "2.0", None, start + HOUR_NS, "svc", start + HOUR_NS + 10)]
    reads: list[int] = []

    def appearances(tenant: str, since: int) -> list[tuple[Any, ...]]:
        reads.append(since)
        return [r for r in rows if r[6] > since]

    results = _race([lambda: first.incidents.detect_changes_from(A, appearances),
                     lambda: second.incidents.detect_changes_from(A, appearances)])
    added = [c for r in results for c in r]
    assert [(c["version"], c["previous"], c["at_ns"]) for c in added] == [("2.0", "1.0", start + HOUR_NS)]
    assert [c["id"] for c in first.incidents.list_changes(A)] == [added[0]["id"]]
    # The second pass read from the first one's mark (less the overlap), not from the start.
    assert sorted(reads)[0] == -(2**62) and sorted(reads)[1] == start + HOUR_NS + 10 - 30 * 10**9


# --- composed methods ------------------------------------------------------------------------


def test_detect_changes_reads_the_span_store_and_writes_the_control_store(postgres_url: str, tmp_path: Path) -> None:
    capture = BY_NAME["pydantic-ai"]
    store = open_store(f"duckdb:///{tmp_path}/a.duckdb", control=postgres_url, retention_days=0, clock=lambda: NOW_NS)
    try:
        for body in capture.bodies:
            ingest(store, "tenant-split", body)
        assert store.incidents.detect_changes("tenant-split") == []  # the journey's baseline
        for body in capture.bodies:
            ingest(store, "tenant-split", later_release(body, HOUR_NS, "7.7.7"))
        (change,) = store.incidents.detect_changes("tenant-split")
        assert (change["kind"], change["version"], change["source"]) == ("deploy", "7.7.7", "detected")
    finally:
        store.close()
    # It is in PostgreSQL: a control store opened alone sees it.
    control = PostgresControl(postgres_url)
    try:
        assert [c["version"] for c in control.incidents.list_changes("tenant-split")] == ["7.7.7"]
    finally:
        control.close()


def test_retention_is_kept_in_the_control_store_and_applied_by_every_span_store(postgres_url: str, tmp_path: Path) -> None:
    first = open_store(f"duckdb:///{tmp_path}/a.duckdb", control=postgres_url)
    try:
        assert first.set_retention("tenant-r", 30)["source"] == "api"
    finally:
        first.close()
    # Another node (its own span store) applies what the control store keeps.
    other = open_store(f"duckdb:///{tmp_path}/b.duckdb", control=postgres_url, guarded=False)
    try:
        got = other.retention("tenant-r")
        assert (got["retention_days"], got["source"]) == (30.0, "api")
        assert other._data.retention_days("tenant-r") == (30.0, "api")  # the span store expires by it
        assert other.set_retention("tenant-r", None)["source"] == "default"
    finally:
        other.close()


def test_the_guard_wraps_the_split_store(postgres_url: str, tmp_path: Path) -> None:
    store = open_store(f"duckdb:///{tmp_path}/g.duckdb", control=postgres_url)
    try:
        assert isinstance(store, TenantGuard)
        store.add_key({"key_id": "k-g", "digest": "d-g", "tenant": A, "role": "admin", "name": "g"}, "ops")
        with acting_for("tenant-b"):
            assert store.list_keys("tenant-b") == []
            for call in (lambda: store.list_keys(A), lambda: store.incidents.list_incidents(A),
                         lambda: store.cost.list_budgets(A), lambda: store.retention(A),
                         lambda: store.incidents.detect_changes(A), lambda: store.active_keys()):
                with pytest.raises(Forbidden):
                    call()
    finally:
        store.close()


def test_alerts_of_one_group_reaching_two_nodes_at_once_open_one_incident(
    controls: tuple[PostgresControl, PostgresControl],
) -> None:
    first, second = controls
    row = {"tenant": A, "group_key": "journey:pay", "opened_ns": NOW_NS, "title": "pay failing", "severity": "sev2",
           "state": "open", "source": "alertmanager", "updated_ns": NOW_NS}

    def open_on(node: PostgresControl, name: str) -> dict[str, Any]:
        return node.incidents.create_incident(
            row, [{"at_ns": NOW_NS, "kind": "opened", "actor": name, "message": f"opened by {name}", "data": None}],
            [{"alert_key": f"am:{name}", "source": "alertmanager", "name": name, "severity": "page",
              "started_ns": NOW_NS}])

    results = _race([lambda i=i: open_on((first, second)[i % 2], f"alert-{i}") for i in range(6)])
    assert not [r for r in results if isinstance(r, Exception)]
    assert len({r["id"] for r in results}) == 1 and sum(not r.get("_joined") for r in results) == 1
    (iid,) = {r["id"] for r in results}
    assert [i["id"] for i in first.incidents.list_incidents(A, state="active")] == [iid]
    assert len(second.incidents.events(A, iid)) == 6 and len(second.incidents.alerts(A, iid)) == 6
    # Once resolved, the group opens a new incident.
    first.incidents.update_incident(A, iid, {"state": "resolved", "resolved_ns": NOW_NS + 1})
    again = open_on(second, "later")
    assert again["id"] != iid and not again.get("_joined")
