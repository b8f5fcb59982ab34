"""Game-day scoring on hand-made alerts and incidents: every figure known."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisre.act.gameday import (
    DRILLS,
    drills,
    page_window_s,
    score,
    score_drill,
    start_drill,
    stop_drill,
)
from aisre.core.errors import NotFound, PermanentError
from aisre.evaluate.specs import load_specs
from aisre.evaluate.triage import LAYERS
from aisre.store.duckdb import DuckDBStore

S = 10**9
T0 = 1_790_000_000 * S


def _alert(journey: str, severity: str, started: int) -> dict:
    return {"tenant": "t", "slo": f"{journey}-success", "journey": journey, "severity": severity, "state": "resolved",
            "pending_since_ns": started - 60 * S, "started_ns": started, "ended_ns": None, "peak_burn": 20.0,
            "updated_ns": started, "summary": "burning"}


def test_score(tmp_path: Path) -> None:
    (tmp_path / "slos.yaml").write_text("slos:\n  - name: ask-success\n    journey: ask\n    objective: 99\n    window: 28d\n    sli: {kind: outcome}\n")
    specs = load_specs([tmp_path / "slos.yaml"])
    store = DuckDBStore(str(tmp_path / "g.duckdb"))
    try:
        store.save_alerts([_alert("ask", "ticket", T0 + 120 * S), _alert("ask", "page", T0 + 300 * S),
                           _alert("triage-agent", "ticket", T0 + 400 * S), _alert("ask", "page", T0 - 3600 * S)])
        store.incidents.create_incident(
            {"tenant": "t", "group_key": "journey:ask", "opened_ns": T0 + 310 * S, "title": "ask burning", "journey": "ask",
             "severity": "sev1", "state": "mitigated", "source": "slo", "mitigated_ns": T0 + 1500 * S, "updated_ns": T0,
             "evidence": {"points_at": "retrieval"}}, [], [])
        doc = score(store, "t", "ask", T0, T0 + 900 * S, specs, expected_layer="retrieval")
    finally:
        store.close()
    assert (doc["time_to_first_alert_s"], doc["time_to_first_page_s"], doc["alerts"], doc["pages"]) == (120, 300, 2, 1)
    assert doc["page_window_s"] == 3600 and doc["detected_within_page_window"] is True
    assert (doc["incident_opened"], doc["time_to_incident_s"], doc["time_to_mitigate_s"]) == (True, 310, 1500)
    assert (doc["named_layer"], doc["cause_named"]) == ("retrieval", True)
    assert [(a["journey"], a["severity"]) for a in doc["should_not_have_fired"]] == [("triage-agent", "ticket")]
    assert page_window_s(specs, "checkout") is None


def _violation(trace: str, start: int, rule: str = "no-loops") -> dict:
    return {"tenant": "t", "trace_id": trace, "journey": "triage-agent", "run_start_ns": start, "policy": "p", "version": "v",
            "rule": rule, "kind": "loop", "effect": "deny", "message": "m", "count": 8.0, "span_id": "s", "span_ids": ["s"],
            "start_ns": start + 2 * S}


def test_drills_are_recorded_on_the_server_and_scored(tmp_path: Path) -> None:
    (tmp_path / "slos.yaml").write_text("slos:\n  - name: triage-success\n    journey: triage-agent\n    objective: 99\n"
                                        "    window: 28d\n    sli: {kind: outcome}\n")
    specs = load_specs([tmp_path / "slos.yaml"])
    store = DuckDBStore(str(tmp_path / "d.duckdb"))
    try:
        drill = start_drill(store, "t", "triage-agent", T0 + 5 * S, at_ns=T0, scenario="runaway-agent", who="alice")
        assert (drill["journey"], drill["scenario"], drill["expect"], drill["end_ns"]) == ("triage-agent", "runaway-agent", None, None)
        with pytest.raises(PermanentError, match="already running on triage-agent"):
            start_drill(store, "t", "triage-agent", T0 + 6 * S)
        # The agent loops in two runs, 60 s and 90 s in; a third run before the drill is not counted.
        for trace, start in (("a", T0 + 60 * S), ("b", T0 + 90 * S), ("old", T0 - 600 * S)):
            store.save_policy_run({"tenant": "t", "trace_id": trace, "journey": "triage-agent", "run_start_ns": start,
                                   "bundle": "b", "last_received_ns": start, "actions": 9, "guardrail_checks": 0,
                                   "guardrail_trips": 0, "undetermined": []}, [_violation(trace, start)])
        # Stopped "from another machine": nothing but the store knows the drill.
        stopped = stop_drill(store, "t", T0 + 700 * S, journey="triage-agent", at_ns=T0 + 600 * S)
        assert (stopped["id"], stopped["start_ns"], stopped["end_ns"]) == (drill["id"], T0, T0 + 600 * S)
        with pytest.raises(NotFound, match="no game day running on triage-agent"):
            stop_drill(store, "t", T0 + 800 * S, journey="triage-agent")
        [recorded] = drills(store, "t")
        assert (recorded["id"], recorded["who"], recorded["end_ns"]) == (drill["id"], "alice", T0 + 600 * S)
        assert drills(store, "t", since_ns=T0 + S) == []
        doc = score_drill(store, "t", recorded, specs, T0 + 900 * S)
        # A runaway agent fails no run: detection is the policy engine flagging it (no page needed).
        assert (doc["detect"], doc["policy_violations"], doc["violating_runs"]) == ("policy", 2, 2)
        assert doc["time_to_first_violation_s"] == 62
        assert (doc["passed"], doc["incident_opened"], doc["drill_id"], doc["running"]) == (True, False, drill["id"], False)
        # The drill's changes are rehearsals: listed as game days, not as changes that can fail.
        kinds = [c["kind"] for c in store.incidents.list_changes("t")]
        assert kinds == ["gameday", "gameday"]
    finally:
        store.close()


def test_drill_table_maps_each_demo_fault_to_a_layer() -> None:
    from aisre.demo.scenarios import SCENARIOS

    for drill in DRILLS.values():
        assert drill.scenario in SCENARIOS
        assert drill.expected_layer in (None, *LAYERS)
    assert DRILLS["retrieval-empty"].expected_layer == "data"
    assert DRILLS["latency-spike"].expected_layer == "model provider"
    assert DRILLS["rate-limit-storm"].expected_layer == "model provider"
    assert (DRILLS["runaway-agent"].scenario, DRILLS["runaway-agent"].detect) == ("agent-loop", "policy")
