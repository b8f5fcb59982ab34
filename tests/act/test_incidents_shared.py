"""Incidents with the control plane shared by several nodes (PostgreSQL): what one node
does must not be done again by another. Two nodes are two split stores (a span store each,
one PostgreSQL control store), each with its own IncidentManager."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisre.act.incidents import IncidentManager
from aisre.store.factory import open_store

S = 10**9
T0 = 1_790_000_040 * S
A = "t"


class Recorder:
    """What a node's notifier was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def notify(self, event: str, incident: dict[str, Any]) -> None:
        self.sent.append((event, incident["id"]))


class LookupThenWait:
    """The node's incident store, whose lookup of the group's open incident waits at a barrier
    after reading: both nodes have seen "no incident open" before either creates one (the race,
    made certain)."""

    def __init__(self, incidents: Any, barrier: threading.Barrier) -> None:
        self._incidents = incidents
        self._barrier = barrier

    def open_incident_for(self, tenant: str, group_key: str) -> Any:
        found = self._incidents.open_incident_for(tenant, group_key)
        self._barrier.wait(60)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._incidents, name)


@pytest.fixture
def two_nodes(postgres_server: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Any]]:
    url = postgres_server.create_database(request.node.name)
    stores = [open_store(f"duckdb:///{tmp_path}/node{i}.duckdb", control=url) for i in range(2)]
    try:
        yield stores
    finally:
        for store in stores:
            store.close()


def _alert_row() -> dict[str, Any]:
    return {"tenant": A, "slo": "ask-success", "journey": "ask", "severity": "page", "state": "firing",
            "pending_since_ns": T0, "started_ns": T0, "ended_ns": None, "summary": "ask-success: burning 20x",
            "peak_burn": 20.0}


def test_two_nodes_opening_one_incident_at_once_send_one_opened_notification(two_nodes: list[Any]) -> None:
    barrier = threading.Barrier(2)
    recorders = [Recorder(), Recorder()]
    managers = [IncidentManager(LookupThenWait(store.incidents, barrier), None, A, recorder, clock=lambda: T0)
                for store, recorder in zip(two_nodes, recorders, strict=True)]
    results: list[Any] = [None, None]

    def run(i: int) -> None:
        try:
            results[i] = managers[i].on_slo_alerts([_alert_row()])
        except Exception as exc:  # surfaced by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not [r for r in results if isinstance(r, Exception)], results
    (incident_id,) = {doc["id"] for r in results for doc in r}
    control = two_nodes[0].incidents
    assert [i["id"] for i in control.list_incidents(A, state="active")] == [incident_id]
    # One node created it and sent "opened"; the other joined and sent nothing.
    sent = sorted(recorders[0].sent + recorders[1].sent)
    assert sent == [("opened", incident_id)]
    assert sorted(len(r.sent) for r in recorders) == [0, 1]
    # The timeline has one "opened" entry; the joining node's entry says it joined.
    kinds = sorted(e["kind"] for e in control.events(A, incident_id))
    assert kinds == ["alert", "opened"]
    assert [a["alert_key"] for a in control.alerts(A, incident_id)] == [f"slo:ask-success:page:{T0}"]
