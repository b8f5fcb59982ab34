"""Incidents on a real DuckDB store: state machine rules, dedup and grouping by journey,
change detection, triage evidence, MTTD/MTTA/MTTR on a known timeline, the postmortem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisre.act.incidents import IncidentManager, impact_start, summarize_times
from aisre.act.postmortem import Postmortems, render_html
from aisre.core.errors import NotFound, PermanentError
from aisre.derive.journeys import get_trace
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import load_specs
from aisre.store.duckdb import DuckDBStore
from tests.act.incident_data import (
    MINUTE,
    PROMPT_TEXT,
    TOOL_ARGS_SHOWN,
    TOOL_RESULT_SHOWN,
    S,
    load,
    runs_request,
)

T0 = 1_790_000_000 * S // MINUTE * MINUTE  # a whole minute


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def notify(self, event: str, incident: dict[str, Any]) -> None:
        self.sent.append((event, incident))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path / "i.duckdb"))
    yield s
    s.close()


def _engine(store: DuckDBStore, tmp_path: Path) -> SloEngine:
    spec = tmp_path / "slos.yaml"
    spec.write_text(
        "slos:\n  - name: ask-success\n    journey: ask\n    objective: 99\n    sli: {kind: outcome}\n"
        "    tier: 0\n    owner: search-team\n    runbook: https://runbooks.example/ask\n"
        "  - name: ask-latency\n    journey: ask\n    objective: 95\n    sli: {kind: latency, latency_ms: 500}\n"
        "  - name: triage-success\n    journey: triage-agent\n    objective: 99\n    sli: {kind: outcome}\n"
    )
    engine = SloEngine(store)
    engine.apply("t", load_specs([spec]))
    return engine


def _alert(slo: str, severity: str, state: str, at: int, journey: str = "ask", ended: int | None = None) -> dict[str, Any]:
    return {"slo": slo, "journey": journey, "severity": severity, "state": state, "pending_since_ns": at,
            "started_ns": at, "ended_ns": ended, "summary": f"{slo}: burning 20x", "peak_burn": 20.0}


def _manager(store: DuckDBStore, engine: SloEngine | None, clock: Clock, notifier: Recorder | None = None) -> IncidentManager:
    return IncidentManager(store.incidents, engine, "t", notifier, public_url="http://aisre.example", clock=clock,
                           slo_minutes=store.slo_minute_arrays)


def test_state_machine_rules(store: DuckDBStore) -> None:
    clock = Clock(T0)
    sent = Recorder()
    manager = _manager(store, None, clock, sent)
    doc = manager.declare("checkout is slow", "alice", severity="sev2")
    assert doc["state"] == "open" and doc["url"] == f"http://aisre.example/incidents/{doc['id']}"
    with pytest.raises(PermanentError, match="who did it"):
        manager.transition(doc["id"], "acknowledge", "  ")
    clock.now += 60 * S
    acked = manager.transition(doc["id"], "acknowledge", "bob")
    assert (acked["state"], acked["acknowledged_by"], acked["time_to_acknowledge_s"]) == ("acknowledged", "bob", 60.0)
    with pytest.raises(PermanentError, match="already acknowledged \\(by bob"):
        manager.transition(doc["id"], "acknowledge", "carol")
    clock.now += 60 * S
    manager.transition(doc["id"], "mitigate", "bob", note="rolled back")
    with pytest.raises(PermanentError, match="is mitigated: it cannot be acknowledged"):
        manager.transition(doc["id"], "acknowledge", "carol")
    clock.now += 60 * S
    resolved = manager.transition(doc["id"], "resolve", "bob")
    assert resolved["state"] == "resolved" and resolved["time_to_resolve_s"] == 180.0
    with pytest.raises(PermanentError, match="already resolved"):
        manager.transition(doc["id"], "resolve", "bob")
    with pytest.raises(NotFound):  # no resolve of what was never opened
        manager.transition(9999, "resolve", "bob")
    with pytest.raises(PermanentError, match="action must be"):
        manager.transition(doc["id"], "close", "bob")
    timeline = manager.get(doc["id"])["timeline"]
    assert [(e["kind"], e["actor"], e["message"]) for e in timeline] == [
        ("opened", "alice", "declared: checkout is slow"),
        ("state", "bob", "open → acknowledged"),
        ("state", "bob", "acknowledged → mitigated: rolled back"),
        ("state", "bob", "mitigated → resolved"),
    ]
    assert [e for e, _ in sent.sent] == ["opened", "acknowledged", "resolved"]


def test_alerts_deduplicate_and_group_by_journey(store: DuckDBStore, tmp_path: Path) -> None:
    engine = _engine(store, tmp_path)
    clock = Clock(T0)
    sent = Recorder()
    manager = _manager(store, engine, clock, sent)
    opened = manager.on_slo_alerts([_alert("ask-latency", "ticket", "firing", T0)])
    assert len(opened) == 1 and opened[0]["severity"] == "sev3"
    incident_id = opened[0]["id"]
    # The same episode again (the evaluator reports firing episodes every pass): nothing new.
    clock.now += 15 * S
    assert manager.on_slo_alerts([_alert("ask-latency", "ticket", "firing", T0)]) == []
    # A second alert on the same journey joins, and a page escalates the incident.
    clock.now += 15 * S
    joined = manager.on_slo_alerts([_alert("ask-success", "page", "firing", T0 + 30 * S)])
    assert [(d["id"], d["severity"]) for d in joined] == [(incident_id, "sev1")]  # tier 0 page
    assert joined[0]["owner"] == "search-team" and joined[0]["runbook"] == "https://runbooks.example/ask"
    # SLOs without a runbook say so in their status; their incidents carry the warning.
    assert "warnings" not in engine.status("t", "ask-success")
    assert engine.status("t", "ask-latency")["warnings"] == [
        "no runbook: alerts and incidents of this SLO will reach on-call without one"]
    # Another journey opens its own incident.
    other = manager.on_slo_alerts([_alert("triage-success", "page", "firing", T0 + 30 * S, journey="triage-agent")])
    assert other[0]["id"] != incident_id
    assert len(manager.list_incidents()) == 2
    assert [e for e, _ in sent.sent] == ["opened", "escalated", "opened"]
    # One alert resolves: still open. Both resolve: mitigated by aisre. A page again: open.
    clock.now += 60 * S
    manager.on_slo_alerts([_alert("ask-latency", "ticket", "resolved", T0, ended=clock.now)])
    assert manager.get(incident_id)["state"] == "open"
    manager.on_slo_alerts([_alert("ask-success", "page", "resolved", T0 + 30 * S, ended=clock.now)])
    doc = manager.get(incident_id)
    assert (doc["state"], doc["mitigated_by"]) == ("mitigated", "aisre")
    clock.now += 60 * S
    manager.on_slo_alerts([_alert("ask-success", "page", "firing", clock.now)])
    doc = manager.get(incident_id)
    assert doc["state"] == "open" and len(doc["alerts"]) == 3
    kinds = [e["kind"] for e in doc["timeline"] if e["kind"] not in ("change", "impact", "evidence")]
    assert kinds == ["opened", "alert", "severity", "alert_resolved", "alert_resolved", "state", "alert", "state"]
    # Resolved by a person, a new alert on the journey opens a new incident.
    manager.transition(incident_id, "resolve", "bob")
    fresh = manager.on_slo_alerts([_alert("ask-latency", "ticket", "firing", clock.now + S)])
    assert fresh[0]["id"] not in (incident_id, other[0]["id"])


def test_impact_start_walks_back_over_bad_minutes() -> None:
    minutes = [(T0 + i * MINUTE, 10, bad) for i, bad in enumerate([0, 0, 0, 5, 6, 0, 7, 8, 9])]
    # Minute 5 is one good minute inside the stretch: tolerated; 2 and 1 end it.
    assert impact_start(minutes, 0.01, T0 + 8 * MINUTE + 5 * S) == T0 + 3 * MINUTE
    assert impact_start(minutes, 0.01, T0 + 2 * MINUTE) is None


def test_known_timeline_gives_exact_mttd_mtta_mttr_and_evidence(store: DuckDBStore, tmp_path: Path) -> None:
    engine = _engine(store, tmp_path)
    # 30 minutes of good v3 runs, then v5 ships and every run fails from T0+30m17s.
    load(store, runs_request(180, T0, step_ns=10 * S, prompt_version="v3", tool=False)[0])
    request, bad_ids = runs_request(30, T0 + 30 * MINUTE + 17 * S, step_ns=10 * S, failed=True, prompt_version="v5")
    load(store, request)
    added = store.incidents.detect_changes("t")
    assert [(c["kind"], c["previous"], c["version"], c["at_ns"]) for c in added] == [
        ("prompt", "v3", "v5", T0 + 30 * MINUTE + 17 * S)]
    assert store.incidents.detect_changes("t") == []  # incremental: nothing new

    clock = Clock(T0 + 35 * MINUTE + 20 * S)
    manager = _manager(store, engine, clock)
    [doc] = manager.on_slo_alerts([_alert("ask-success", "page", "firing", T0 + 35 * MINUTE)])
    assert doc["impact_start"] is not None and doc["time_to_detect_s"] == 283.0
    evidence = manager.get(doc["id"])["evidence"]
    assert evidence["bad_runs"] == 30 and evidence["points_at"] == "service code"
    top = evidence["top_suspect"]
    assert (top["change_id"], top["bad_share"], top["good_share"]) == (added[0]["id"], 1.0, 0.0)
    assert set(evidence["exemplars"]) <= set(bad_ids) and len(evidence["exemplars"]) == 3

    clock.now = T0 + 40 * MINUTE + 20 * S
    manager.transition(doc["id"], "acknowledge", "bob")
    clock.now = T0 + 55 * MINUTE
    manager.transition(doc["id"], "mitigate", "bob")
    clock.now = T0 + 60 * MINUTE
    final = manager.transition(doc["id"], "resolve", "bob")
    assert (final["time_to_detect_s"], final["time_to_acknowledge_s"], final["time_to_restore_s"],
            final["time_to_resolve_s"]) == (283.0, 300.0, 1483.0, 1480.0)

    clock.now = T0 + 70 * MINUTE
    manual = manager.declare("manual", "alice")
    clock.now += 60 * S
    manager.transition(manual["id"], "acknowledge", "alice")
    clock.now += 60 * S
    manager.transition(manual["id"], "resolve", "alice")
    m = manager.metrics(T0, T0 + 2 * 3600 * S)
    assert (m["incidents"], m["mttd_s"], m["mttd_count"], m["mtta_s"], m["mttr_s"]) == (2, 283.0, 1, 180.0, (1483 + 120) / 2)
    assert m["by_state"]["resolved"] == 2

    # Action items are tracked; the postmortem reports the completion rate.
    item = manager.add_action_item(doc["id"], "bob", "Gate prompt rollouts on an eval", owner="search-team",
                                   due_ns=T0 + 7 * 86400 * S)
    manager.add_action_item(doc["id"], "bob", "Alert on validation rejects")
    manager.update_action_item(item["id"], "bob", status="done")
    assert manager.metrics(T0, T0 + 2 * 3600 * S)["action_items"]["completion_rate"] == 0.5

    postmortems = Postmortems(manager, engine, lambda tenant, t: get_trace(store, tenant, t),
                              slo_minutes=store.slo_minute_arrays, clock=clock)
    text = postmortems.markdown(doc["id"], "t")
    exemplar = evidence["exemplars"][0]
    for expected in (
        f"# Postmortem: incident #{doc['id']}", "| failed runs | 30 of 30 |",
        "prompt ask-answer v3 → v5 in ask", "carried by 100.0 % of failing runs and 0.0 % of good ones",
        f"### Trace `{exemplar}`", PROMPT_TEXT.format(version="v5"), TOOL_ARGS_SHOWN, TOOL_RESULT_SHOWN,
        "Remediation: 1 of 2 done (50 %).", "| error budget spent (ask-success, ", "Time to detect 4.7 min",
    ):
        assert expected in text, expected
    (tmp_path / "postmortem.md").write_text(text)
    html = render_html(text)
    assert "<table>" in html and "<h1>" in html and "&lt;script" not in html


def test_evidence_points_at_the_provider_when_model_calls_fail(store: DuckDBStore, tmp_path: Path) -> None:
    engine = _engine(store, tmp_path)
    load(store, runs_request(60, T0, step_ns=10 * S)[0])
    load(store, runs_request(20, T0 + 10 * MINUTE, step_ns=5 * S, failed=True, chat_error=True)[0])
    clock = Clock(T0 + 12 * MINUTE)
    manager = _manager(store, engine, clock)
    [doc] = manager.on_slo_alerts([_alert("ask-success", "page", "firing", T0 + 11 * MINUTE)])
    evidence = manager.get(doc["id"])["evidence"]
    assert evidence["points_at"] == "model provider"
    provider = evidence["layers"][0]
    assert provider["bad_error_share"] == 1.0 and provider["http_statuses"] == {"500": 20}
    assert evidence["top_suspect"] is None  # nothing changed


def test_evidence_points_at_data_when_retrieval_finds_nothing(store: DuckDBStore, tmp_path: Path) -> None:
    engine = _engine(store, tmp_path)
    load(store, runs_request(60, T0, step_ns=10 * S, retrieved=3)[0])
    load(store, runs_request(20, T0 + 10 * MINUTE, step_ns=5 * S, failed=True, retrieved=0)[0])
    manager = _manager(store, engine, Clock(T0 + 12 * MINUTE))
    [doc] = manager.on_slo_alerts([_alert("ask-success", "page", "firing", T0 + 11 * MINUTE)])
    evidence = manager.get(doc["id"])["evidence"]
    assert evidence["points_at"] == "data"
    data = next(layer for layer in evidence["layers"] if layer["layer"] == "data")
    assert (data["bad_error_share"], data["good_error_share"]) == (1.0, 0.0)
    assert data["error_types"] == {"empty retrieval result": 20}


def test_recorded_change_is_marked_observed_instead_of_detected_twice(store: DuckDBStore) -> None:
    load(store, runs_request(10, T0, prompt_version="v3")[0])
    store.incidents.detect_changes("t")
    recorded = store.incidents.add_change({
        "tenant": "t", "kind": "prompt", "summary": "ship prompt v5", "who": "alice", "at_ns": T0 + 60 * S,
        "services": [], "journeys": ["ask"], "version": "v5", "previous": "v3", "prompt_name": None, "link": None,
        "metadata": {"ticket": "CHG-1"}, "source": "api", "observed_ns": None, "created_ns": T0 + 60 * S,
    })
    load(store, runs_request(5, T0 + 90 * S, prompt_version="v5")[0])
    assert store.incidents.detect_changes("t") == []
    [change] = store.incidents.list_changes("t")
    assert (change["id"], change["observed_ns"], change["metadata"]) == (recorded["id"], T0 + 90 * S, {"ticket": "CHG-1"})


def test_summarize_times_handles_open_incidents() -> None:
    rows = [{"state": "open", "severity": "sev2", "opened_ns": 0, "impact_start_ns": None, "first_alert_ns": None}]
    out = summarize_times(rows)
    assert out["incidents"] == 1 and out["mttr_s"] is None and out["by_state"]["open"] == 1
