"""Game-day scoring on hand-made alerts and incidents: every figure known."""

from __future__ import annotations

from pathlib import Path

from aisre.act.gameday import page_window_s, score
from aisre.evaluate.specs import load_specs
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
