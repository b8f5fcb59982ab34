"""Incidents on a real DuckDB store: state machine rules, dedup and grouping by journey,
change detection, triage evidence, MTTD/MTTA/MTTR on a known timeline, the postmortem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisre.act.alerts import AlertEvaluator
from aisre.act.incidents import IncidentManager, impact_start, summarize_times
from aisre.act.notify import pagerduty_payload, slack_payload, webhook_payload
from aisre.act.postmortem import Postmortems, render_html
from aisre.core.errors import NotFound, PermanentError
from aisre.core.timefmt import parse_time, rfc3339
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
    thirty_percent,
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


# -- impact start, suspects and titles on an outage with known truth ---------------------
#
# Three hours of healthy ask traffic (one run every 10 s) with one stray failure two hours
# before a 20-minute outage in which 30 % of runs fail (the outage's first run fails). The
# SLO allows 0.5 % errors over 28 days, as the demo's does.

HOUR = 60 * MINUTE
OUTAGE = T0 + 3 * HOUR
STRAY = OUTAGE - 2 * HOUR
TICKET = "ask-success: burning 2.0x over 3d and 2.1x over 6h (threshold 0.933x)"
PAGE = "ask-success: burning 13.6x over 1h and 58.3x over 5m (threshold 13.4x)"


def _engine_995(store: DuckDBStore, tmp_path: Path) -> SloEngine:
    spec = tmp_path / "slos.yaml"
    spec.write_text(
        "slos:\n  - name: ask-success\n    journey: ask\n    objective: 99.5\n    window: 28d\n"
        "    sli: {kind: outcome}\n    tier: 0\n    owner: search-team\n    runbook: https://runbooks.example/ask\n"
    )
    engine = SloEngine(store)
    engine.apply("t", load_specs([spec]))
    return engine


def _load_healthy_with_stray(store: DuckDBStore) -> None:
    load(store, runs_request(3 * 360, T0, step_ns=10 * S, tool=False, fails=lambda i: T0 + i * 10 * S == STRAY)[0])


def _load_outage_minute(store: DuckDBStore, k: int) -> None:
    load(store, runs_request(6, OUTAGE + k * MINUTE, step_ns=10 * S, tool=False, user_prefix=f"o{k}-",
                             fails=lambda i: thirty_percent(6 * k + i))[0])


def _slo_row(severity: str, state: str, at: int, summary: str, burn: float, ended: int | None = None) -> dict[str, Any]:
    return {"slo": "ask-success", "journey": "ask", "severity": severity, "state": state, "pending_since_ns": at,
            "started_ns": at, "ended_ns": ended, "summary": summary, "peak_burn": burn}


def test_stray_failure_before_an_outage_is_not_its_impact_start(store: DuckDBStore, tmp_path: Path) -> None:
    engine = _engine_995(store, tmp_path)
    _load_healthy_with_stray(store)
    assert store.incidents.first_failure("t", "ask", T0, OUTAGE) == STRAY  # the stray is there to mislead
    clock = Clock(OUTAGE)
    manager = _manager(store, engine, clock)
    evaluator = AlertEvaluator(engine, store, "t", on_change=manager.on_slo_alerts)
    for k in range(20):  # the real alert evaluator, once a minute as the outage's runs arrive
        _load_outage_minute(store, k)
        clock.now = OUTAGE + (k + 1) * MINUTE
        evaluator.evaluate_once(clock.now)
    [listed] = manager.list_incidents()
    doc = manager.get(listed["id"])
    assert doc["impact_start"] == rfc3339(OUTAGE)
    impact = doc["impact"]
    assert (impact["found"], impact["method"], impact["first_bad_minute"], impact["threshold"]) == (
        True, "slo", rfc3339(OUTAGE), 0.005)
    assert impact["bad_events"] >= 3 and impact["first_failure_in_minute"] is True
    assert impact["explanation"].startswith(f"first of {impact['bad_minutes']} minutes above 0.5 % errors")
    first_alert = parse_time(doc["first_alert"], 0, "first_alert")
    assert OUTAGE < first_alert <= OUTAGE + 20 * MINUTE
    assert doc["time_to_detect_s"] == (first_alert - OUTAGE) / 1e9
    assert any(a["severity"] == "sev1" for a in doc["alerts"])  # the outage paged
    impact_item = next(e for e in doc["timeline"] if e["kind"] == "impact")
    assert impact_item["time"] == rfc3339(OUTAGE) and impact_item["message"] == "impact began: " + impact["summary"]

    postmortems = Postmortems(manager, engine, lambda tenant, t: get_trace(store, tenant, t),
                              slo_minutes=store.slo_minute_arrays, clock=clock)
    text = postmortems.markdown(doc["id"], "t")
    assert f"- Impact began {rfc3339(OUTAGE).replace('T', ' ').split('.')[0]} UTC" in text
    assert "- How impact start was found: first of" in text


def test_incident_opened_by_a_stray_failure_takes_impact_start_from_the_outage(store: DuckDBStore, tmp_path: Path) -> None:
    engine = _engine_995(store, tmp_path)
    _load_healthy_with_stray(store)
    for k in range(20):
        _load_outage_minute(store, k)
    clock = Clock(STRAY + 7 * S)
    manager = _manager(store, engine, clock)
    # A ticket fires 7 s after the stray failure (a window that had seen little traffic).
    [doc] = manager.on_slo_alerts([_slo_row("ticket", "firing", STRAY + 7 * S, TICKET, 2.0)])
    assert (doc["impact_start"], doc["time_to_detect_s"]) == (None, None)  # not "7 s": one failure is no impact
    assert doc["impact"]["found"] is False and "stray" in doc["impact"]["explanation"]
    clock.now = STRAY + 30 * MINUTE
    manager.on_slo_alerts([_slo_row("ticket", "resolved", STRAY + 7 * S, TICKET, 2.0, ended=clock.now)])
    # The outage pages ten minutes in: the incident reopens and its impact is the outage's.
    clock.now = OUTAGE + 10 * MINUTE
    [doc] = manager.on_slo_alerts([_slo_row("page", "firing", OUTAGE + 10 * MINUTE, PAGE, 13.6)])
    assert (doc["state"], doc["impact_start"], doc["first_alert"], doc["time_to_detect_s"]) == (
        "open", rfc3339(OUTAGE), rfc3339(OUTAGE + 10 * MINUTE), 600.0)
    assert doc["impact"]["revised_because"] == "alert ask-success page joined"
    assert doc["opened"] == rfc3339(STRAY + 7 * S)  # when the incident opened is still true
    evidence = manager.get(doc["id"])["evidence"]
    assert evidence["window"]["impact_start"] == rfc3339(OUTAGE)  # evidence was judged again from it


def test_only_changes_before_impact_start_are_suspects(store: DuckDBStore, tmp_path: Path) -> None:
    engine = _engine_995(store, tmp_path)
    _load_healthy_with_stray(store)
    for k in range(10):
        _load_outage_minute(store, k)

    def change(kind: str, summary: str, at: int) -> dict[str, Any]:
        return store.incidents.add_change({
            "tenant": "t", "kind": kind, "summary": summary, "who": "alice", "at_ns": at, "services": [],
            "journeys": ["ask"], "version": None, "previous": None, "prompt_name": None, "link": None,
            "metadata": None, "source": "api", "observed_ns": None, "created_ns": at})

    before = change("config", "retrieval top_k 8 → 2", OUTAGE - 10 * MINUTE)
    after = change("flag", "disable answer cache", OUTAGE + 5 * MINUTE)
    clock = Clock(OUTAGE + 10 * MINUTE)
    manager = _manager(store, engine, clock)
    [doc] = manager.on_slo_alerts([_slo_row("page", "firing", OUTAGE + 10 * MINUTE, PAGE, 13.6)])
    assert doc["impact_start"] == rfc3339(OUTAGE)
    evidence = manager.get(doc["id"])["evidence"]
    assert [(s["change_id"], s["minutes_before_impact"]) for s in evidence["suspects"]] == [(before["id"], 10.0)]
    assert evidence["top_suspect"]["change_id"] == before["id"] and evidence["top_suspect"]["score"] > 0
    assert [(c["change_id"], c["minutes_after_impact"]) for c in evidence["changed_during"]] == [(after["id"], 5.0)]
    assert "score" not in evidence["changed_during"][0]  # listed, never ranked

    postmortems = Postmortems(manager, engine, lambda tenant, t: get_trace(store, tenant, t),
                              slo_minutes=store.slo_minute_arrays, clock=clock)
    text = postmortems.markdown(doc["id"], "t")
    suspects, during = text.split("### Suspected changes")[1].split("### Changed during the incident")
    assert "retrieval top_k 8 → 2" in suspects and "disable answer cache" not in suspects
    assert "| disable answer cache (flag, api) |" in during and "| 5.0 min |" in during


def test_title_and_summary_follow_the_worst_alert(store: DuckDBStore, tmp_path: Path) -> None:
    engine = _engine_995(store, tmp_path)
    clock = Clock(OUTAGE + 3 * MINUTE)
    sent = Recorder()
    manager = _manager(store, engine, clock, sent)
    [doc] = manager.on_slo_alerts([_slo_row("ticket", "firing", OUTAGE + 3 * MINUTE, TICKET, 2.0)])
    assert (doc["title"], doc["summary"], doc["severity"]) == (f"ask: {TICKET}", TICKET, "sev3")
    # The page joins at ~13x: the incident escalates and its title and summary say so.
    clock.now = OUTAGE + 12 * MINUTE
    ticket_now = TICKET.replace("2.0x over 3d", "2.4x over 3d")
    [doc] = manager.on_slo_alerts([_slo_row("page", "firing", OUTAGE + 12 * MINUTE, PAGE, 13.6),
                                   _slo_row("ticket", "firing", OUTAGE + 3 * MINUTE, ticket_now, 2.4)])
    assert (doc["title"], doc["summary"], doc["severity"]) == (f"ask: {PAGE}", PAGE, "sev1")
    event, notified = sent.sent[-1]
    assert event == "escalated" and notified["title"] == f"ask: {PAGE}" and notified["severity"] == "sev1"
    assert "13.6x over 1h" in slack_payload(event, notified)["text"]
    assert pagerduty_payload(event, notified, "k" * 32, "t")["payload"]["summary"] == f"ask: {PAGE}"
    assert webhook_payload(event, notified)["incident"]["summary"] == PAGE
    # The page burns harder: the title follows without a timeline entry or a notification.
    clock.now += MINUTE
    hotter = PAGE.replace("13.6x over 1h", "14.9x over 1h")
    assert manager.on_slo_alerts([_slo_row("page", "firing", OUTAGE + 12 * MINUTE, hotter, 14.9)]) == []
    full = manager.get(doc["id"])
    assert (full["title"], full["summary"]) == (f"ask: {hotter}", hotter)
    assert [a["summary"] for a in full["alerts"]] == [TICKET, hotter]
    assert len(sent.sent) == 2
    # The timeline keeps each alert's own numbers.
    messages = [e["message"] for e in full["timeline"] if e["kind"] in ("opened", "alert", "severity")]
    assert messages == [f"opened by alert ask-success ticket: {TICKET}", f"alert ask-success page joined: {PAGE}",
                        "escalated sev3 → sev1 by alert ask-success page"]
    # A title a person wrote stays; the summary still follows the worst alert.
    manager.update(doc["id"], "alice", title="ask answers fail validation")
    manager.on_slo_alerts([_slo_row("page", "firing", OUTAGE + 12 * MINUTE, PAGE.replace("13.6x", "16.0x"), 16.0)])
    full = manager.get(doc["id"])
    assert full["title"] == "ask answers fail validation" and "16.0x over 1h" in full["summary"]


def _storm(alerts: int, journeys: int, status: str = "firing") -> dict[str, Any]:
    """An Alertmanager webhook of ``alerts`` alerts spread over ``journeys`` journeys."""
    return {"version": "4", "groupKey": "storm", "status": status, "alerts": [{
        "status": status,
        "labels": {"alertname": f"HighErrorRate{i % 7}", "journey": f"j{i % journeys}", "instance": f"pod-{i}",
                   "severity": "critical" if i == 41 else "warning"},
        "annotations": {"summary": f"errors high on pod-{i}"},
        "startsAt": rfc3339(T0 - (i % 13) * MINUTE), "endsAt": rfc3339(T0) if status == "resolved" else "",
        "fingerprint": f"{i:016x}",
    } for i in range(alerts)]}


def test_an_alert_storm_joins_in_batches_with_every_alert_kept(store: DuckDBStore) -> None:
    from aisre.receive.alertmanager import parse_alertmanager

    clock = Clock(T0)
    sent = Recorder()
    manager = _manager(store, None, clock, sent)
    docs = manager.on_alertmanager(parse_alertmanager(_storm(2000, 2)), "t")
    assert sorted(d["journey"] for d in docs) == ["j0", "j1"]
    for doc in docs:
        full = manager.get(doc["id"], "t")
        mine = [i for i in range(2000) if f"j{i % 2}" == doc["journey"]]
        # Every alert is linked, and the timeline has the opening and one entry per joining alert.
        assert sorted(a["key"] for a in full["alerts"]) == sorted(f"am:{i:016x}" for i in mine)
        kinds = [e["kind"] for e in store.incidents.events("t", doc["id"])]
        assert kinds.count("opened") == 1 and kinds.count("alert") == len(mine) - 1
        if doc["journey"] == "j1":  # pod-41 is the one critical alert: it escalates and heads j1's incident
            assert full["severity"] == "sev2" and full["summary"] == "errors high on pod-41"
            assert kinds.count("severity") == 1
        else:
            assert full["severity"] == "sev3" and "severity" not in kinds
        # The first alert opened it (no runs here, so no impact stretch moves detection).
        assert store.incidents.get_incident("t", doc["id"])["first_alert_ns"] == T0 - mine[0] % 13 * MINUTE
    assert [e for e, _ in sent.sent].count("opened") == 2 and [e for e, _ in sent.sent].count("escalated") == 1
    # Alertmanager repeats firing alerts: the same webhook again changes nothing.
    clock.now += MINUTE
    before = {d["id"]: len(store.incidents.events("t", d["id"])) for d in docs}
    assert manager.on_alertmanager(parse_alertmanager(_storm(2000, 2)), "t") == []
    assert {i: len(store.incidents.events("t", i)) for i in before} == before
    # All resolved: each incident is mitigated once every alert of it has resolved.
    resolved = manager.on_alertmanager(parse_alertmanager(_storm(2000, 2, "resolved")), "t")
    assert sorted(d["state"] for d in resolved) == ["mitigated", "mitigated"]


def test_alertmanager_webhooks_are_bounded() -> None:
    from aisre.core.errors import PayloadTooLarge
    from aisre.receive.alertmanager import parse_alertmanager

    assert len(parse_alertmanager(_storm(50, 1), max_alerts=50)) == 50
    with pytest.raises(PayloadTooLarge, match=r"carries 51 alerts; the limit is 50 \(alertmanager_max_alerts\)"):
        parse_alertmanager(_storm(51, 1), max_alerts=50)
