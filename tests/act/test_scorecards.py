"""Scorecards on a fixture history with known truth: runs (so SLO minutes and cost come from
real rollups), incidents, changes, gate verdicts, alerts and action items, every figure
checked against a value computed by hand below."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aisre.act.scorecards import (
    Entity,
    facts_export,
    load_rules,
    parse_period,
    parse_rules,
    period_containing,
    scorecards,
)
from aisre.core.slo import SpecValidationError
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import load_specs
from aisre.normalize.prices import default_catalog
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from tests.act.incident_data import runs_request

S = 10**9
MIN = 60 * S
H = 3600 * S
NOW = int(datetime(2026, 12, 5, tzinfo=UTC).timestamp()) * S
# One run: a chat call of 300 input and 40 output tokens of gpt-4o-mini ($0.15 / $0.60 per 1M).
RUN_COST = 300 * 0.15e-6 + 40 * 0.60e-6


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(2026, month, day, hour, minute, tzinfo=UTC).timestamp()) * S


SPECS = """slos:
  - name: ask-success
    journey: ask
    service: support-bot
    objective: 90
    sli: {kind: outcome}
    owner: search-team
    tier: 1
    runbook: https://runbooks.example/ask
  - name: triage-success
    journey: triage-agent
    objective: 99
    sli: {kind: outcome}
    owner: ops-team
"""


def _load(store: DuckDBStore, request: Any) -> None:
    flat = flatten(request, "t", catalog=default_catalog())
    store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()


def _incident(store: DuckDBStore, journey: str, severity: str, impact: int, alert: int, opened: int,
              acked: int | None, mitigated: int | None, resolved: int | None) -> dict[str, Any]:
    row = {"tenant": "t", "group_key": f"{journey}-{opened}", "opened_ns": opened, "title": f"{journey} broke",
           "journey": journey, "severity": severity, "state": "resolved" if resolved else "open", "source": "manual",
           "impact_start_ns": impact, "first_alert_ns": alert, "acknowledged_ns": acked, "mitigated_ns": mitigated,
           "resolved_ns": resolved, "updated_ns": opened}
    return store.incidents.create_incident(row, [], [])


def _change(store: DuckDBStore, kind: str, when: int, journeys: list[str], services: list[str] | None = None) -> int:
    row = {"tenant": "t", "kind": kind, "summary": f"{kind} at {when}", "at_ns": when, "services": services or ["support-bot"],
           "journeys": journeys, "source": "api", "created_ns": when}
    return int(store.incidents.add_change(row)["id"])


def _verdict(store: DuckDBStore, journey: str, verdict: str, when: int) -> None:
    store.save_gate_verdict({"tenant": "t", "journey": journey, "baseline": "service.version=1", "candidate": "service.version=2",
                             "verdict": verdict, "score": None, "baseline_runs": 10, "candidate_runs": 10,
                             "decided_ns": when, "document": {}})


def _alert(slo: str, journey: str, severity: str, state: str, started: int | None, pending: int) -> dict[str, Any]:
    return {"tenant": "t", "slo": slo, "journey": journey, "severity": severity, "state": state, "pending_since_ns": pending,
            "started_ns": started, "ended_ns": None, "peak_burn": 20.0, "updated_ns": pending, "summary": "burning"}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBStore, SloEngine, dict[str, int]]]:
    tmp = tmp_path_factory.mktemp("scorecards")
    store = DuckDBStore(str(tmp / "s.duckdb"))
    (tmp / "slos.yaml").write_text(SPECS)
    engine = SloEngine(store)
    engine.apply("t", load_specs([tmp / "slos.yaml"]))
    # November: 100 ask runs, every 20th fails (5 failures); October: 50 ask runs, none fail.
    november, nov_traces = runs_request(100, at(11, 10, 12), fails=lambda i: i % 20 == 0)
    _load(store, november)
    _load(store, runs_request(50, at(10, 10, 12))[0])
    _load(store, runs_request(40, at(11, 10, 14), journey="triage-agent", fails=lambda i: i % 2 == 0)[0])
    ids: dict[str, int] = {}
    # ask, November. I1: detect 300 s, ack 240 s, restore (impact → mitigated) 2760 s.
    i1 = _incident(store, "ask", "sev2", at(11, 12, 10), at(11, 12, 10, 5), at(11, 12, 10, 6),
                   at(11, 12, 10, 10), at(11, 12, 10, 46), at(11, 12, 11))
    # I2: detect 900 s, ack 1800 s, restore 7200 s.
    i2 = _incident(store, "ask", "sev3", at(11, 20, 8), at(11, 20, 8, 15), at(11, 20, 8, 15),
                   at(11, 20, 8, 45), at(11, 20, 10), at(11, 20, 12))
    # Not counted for ask: another journey's incident, and one in October.
    _incident(store, "triage-agent", "sev1", at(11, 10, 5), at(11, 10, 5), at(11, 10, 5), None, None, None)
    _incident(store, "ask", "sev1", at(10, 30, 1), at(10, 30, 1), at(10, 30, 1), None, None, None)
    ids["c_ok"] = _change(store, "deploy", at(11, 3), ["ask"])
    ids["c_incident"] = _change(store, "deploy", at(11, 12, 9, 30), ["ask"])   # I1 follows within a day
    ids["c_gate"] = _change(store, "prompt", at(11, 18, 12), ["ask"])          # a failed verdict follows
    ids["c_pass"] = _change(store, "deploy", at(11, 25, 12), ["ask"])         # a passing verdict follows
    ids["c_config"] = _change(store, "config", at(11, 10), ["ask"])           # only triage-agent's incident follows
    _change(store, "deploy", at(11, 11), ["triage-agent"], ["triage-svc"])     # another journey's change
    _change(store, "loadtest", at(11, 12, 9, 45), ["ask"])                     # a rehearsal: not a change
    _verdict(store, "ask", "fail", at(11, 18, 13))
    _verdict(store, "ask", "pass", at(11, 25, 13))
    _verdict(store, "ask", "fail", at(11, 28, 13))                             # no change before it: counts nothing
    store.save_alerts([
        _alert("ask-success", "ask", "page", "resolved", at(11, 12, 10, 5), at(11, 12, 10, 4)),
        _alert("ask-success", "ask", "ticket", "resolved", at(11, 20, 8, 15), at(11, 20, 8, 10)),
        _alert("ask-success", "ask", "page", "pending", None, at(11, 21)),            # never fired
        _alert("ask-success", "ask", "page", "resolved", at(10, 30, 1), at(10, 30, 1)),  # October
    ])
    event = {"at_ns": at(11, 13), "kind": "action_item", "actor": "alice", "message": "added"}
    store.incidents.add_action_item({"incident_id": i1["id"], "tenant": "t", "title": "add a canary", "created_ns": at(11, 13)}, event)
    done = store.incidents.add_action_item({"incident_id": i2["id"], "tenant": "t", "title": "fix prompt", "created_ns": at(11, 21)}, event)
    store.incidents.update_action_item("t", done["id"], {"status": "done", "done_ns": at(11, 22)}, event)
    # The policy engine judged five November ask runs: two broke a deny rule (one of them twice),
    # one only a warn rule; three had guardrail checks, one of those tripped twice.
    judged = [(0, [("deny", 2)], 2, 2), (1, [("deny", 1), ("warn", 1)], 1, 0), (2, [("warn", 1)], 0, 0),
              (3, [], 3, 0), (4, [], 0, 0)]
    for i, found, checks, trips in judged:
        trace, start = nov_traces[i], at(11, 10, 12) + i * S
        rows = [{"tenant": "t", "trace_id": trace, "journey": "ask", "run_start_ns": start, "policy": "p", "version": "v1",
                 "rule": f"r-{effect}", "kind": "loop", "effect": effect, "message": "m", "count": n, "span_id": "s",
                 "span_ids": ["s"], "start_ns": start} for effect, n in found]
        store.save_policy_run({"tenant": "t", "trace_id": trace, "journey": "ask", "run_start_ns": start, "bundle": "b",
                               "last_received_ns": start, "actions": 3, "guardrail_checks": checks,
                               "guardrail_trips": trips, "undetermined": []}, rows)
    yield store, engine, ids
    store.close()


def test_periods() -> None:
    p = parse_period("2026-11", NOW)
    assert (p.label, p.days, p.start_ns, p.end_ns) == ("2026-11", 30, at(11, 1), at(12, 1))
    assert parse_period("month", NOW).label == "2026-12"
    assert parse_period("2026-Q4", NOW).days == 92 and parse_period("2026-Q4", NOW).previous().label == "2026-Q3"
    w = parse_period("2026-W48", NOW)
    assert (w.start_ns, w.end_ns, w.previous().label) == (at(11, 23), at(11, 30), "2026-W47")
    assert period_containing("week", datetime(2026, 12, 5).date()).label == "2026-W49"
    with pytest.raises(Exception, match="period must be"):
        parse_period("2026-13", NOW)


def test_journey_scorecard_equals_hand_computed(history: tuple[DuckDBStore, SloEngine, dict[str, int]]) -> None:
    store, engine, ids = history
    doc = scorecards(store, "t", engine.specs("t"), load_rules(), parse_period("2026-11", NOW), NOW, name="ask")
    card = doc["scorecards"][0]
    f = card["facts"]
    slo = card["slos"][0]
    assert (slo["slo"], slo["good"], slo["total"], slo["met"]) == ("ask-success", 95, 100, True)
    assert slo["attainment"] == pytest.approx(0.95)
    assert slo["budget_remaining"] == pytest.approx(1 - 5 / (0.1 * 100))  # 0.5
    assert (f["slo_count"], f["slos_met"], f["slos_met_ratio"]) == (1, 1, 1.0)
    assert (f["alerts"], f["pages"]) == (2, 1)
    assert (f["incidents"], f["sev1"], f["sev2"], f["sev3"], f["sev4"]) == (2, 0, 1, 1, 0)
    assert f["mttd_s"] == pytest.approx((300 + 900) / 2)
    assert f["mtta_s"] == pytest.approx((240 + 1800) / 2)
    assert f["mttr_s"] == pytest.approx((2760 + 7200) / 2)
    assert (f["changes"], f["failed_changes"], f["change_failure_rate"]) == (5, 2, 0.4)
    assert sorted(card["failed_change_ids"]) == sorted([ids["c_incident"], ids["c_gate"]])
    assert (f["deployments"], f["deployments_per_day"]) == (3, pytest.approx(3 / 30))
    assert (f["runs"], f["successful_runs"]) == (100, 95)
    assert f["cost_usd"] == pytest.approx(100 * RUN_COST)
    assert f["cost_per_1k_successful_usd"] == pytest.approx(100 * RUN_COST / 95 * 1000)
    # October: 50 runs, all successful, the same cost per run.
    assert f["cost_per_1k_change"] == pytest.approx((100 / 95) - 1)
    # One item open at the period's end, created on Nov 13: 18 days old on Dec 1.
    assert (f["open_action_items"], f["oldest_action_item_age_s"]) == (1, 18 * 86400)
    # Policy: 5 runs judged, 2 with a deny violation, 2 with a warn one; 4 violation records;
    # guardrails checked on 3 runs (2 + 1 + 3 checks), 2 trips on 1 of them.
    assert (f["policy_runs_judged"], f["policy_violating_runs"], f["policy_warned_runs"], f["policy_violations"]) == (5, 2, 2, 4)
    assert f["policy_violation_rate"] == pytest.approx(2 / 5)
    assert (f["guardrail_checks"], f["guardrail_trips"], f["guardrail_trip_rate"]) == (6, 2, pytest.approx(1 / 3))
    # Telemetry: each run's chat call passes its 5 checks and its root 2 of 3 (no
    # deployment.environment.name, an improvement, not a violation): 7 of 8 checks pass.
    assert (f["telemetry_runs"], f["telemetry_violations"], f["telemetry_coverage_min"]) == (100, 0, 0.875)
    trend = card["trend"]
    assert trend["policy_violation_rate"] == [None] * 5 + [pytest.approx(0.4)]
    assert trend["periods"] == ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
    assert trend["incidents"] == [0, 0, 0, 0, 1, 2]
    assert trend["pages"] == [0, 0, 0, 0, 1, 1]
    assert trend["attainment_min"][-2:] == [1.0, pytest.approx(0.95)]
    assert trend["cost_per_1k_successful_usd"][-2] == pytest.approx(RUN_COST * 1000)
    # Default rules (DORA): a change failure rate of 40 % misses even "medium".
    assert card["level"] is None
    failed = {r["name"] for r in card["rules"] if not r["passed"]}
    assert "change-failure-rate-medium" in failed and "slos-defined" not in failed


def test_team_and_service_scopes(history: tuple[DuckDBStore, SloEngine, dict[str, int]]) -> None:
    store, engine, _ = history
    period = parse_period("2026-11", NOW)
    teams = scorecards(store, "t", engine.specs("t"), load_rules(), period, NOW, scope="team", trend=1)
    by_team = {c["name"]: c for c in teams["scorecards"]}
    assert set(by_team) == {"search-team", "ops-team"}
    assert by_team["search-team"]["journeys"] == ["ask"] and by_team["search-team"]["facts"]["incidents"] == 2
    ops = by_team["ops-team"]["facts"]
    assert (ops["incidents"], ops["sev1"], ops["runs"], ops["successful_runs"], ops["changes"]) == (1, 1, 40, 20, 1)
    services = scorecards(store, "t", engine.specs("t"), load_rules(), period, NOW, scope="service", trend=1)
    by_service = {c["name"]: c for c in services["scorecards"]}
    assert set(by_service) == {"support-bot", "triage-svc"}
    assert by_service["support-bot"]["journeys"] == ["ask"]
    assert by_service["support-bot"]["facts"]["changes"] == 5
    assert by_service["triage-svc"]["facts"]["changes"] == 1


RULES = """levels: [bronze, silver, gold]
change_failure_window: 1h
rules:
  - {name: few-pages, level: bronze, fact: pages, op: "<=", value: 1}
  - {name: cfr, level: silver, fact: change_failure_rate, op: "<=", value: 0.5}
  - {name: fast-detect, level: gold, fact: mttd_s, op: "<=", value: 300}
"""


def test_levels_follow_the_rules_file(history: tuple[DuckDBStore, SloEngine, dict[str, int]]) -> None:
    store, engine, ids = history
    rules = parse_rules(RULES, "rules.yaml")
    card = scorecards(store, "t", engine.specs("t"), rules, parse_period("2026-11", NOW), NOW, name="ask", trend=1)["scorecards"][0]
    # With a one-hour window only the deploy 36 minutes before I1 failed; the prompt's failed
    # verdict came an hour after it (the window is half-open), so 1 of 5.
    assert card["facts"]["change_failure_rate"] == pytest.approx(1 / 5)
    assert card["failed_change_ids"] == [ids["c_incident"]]
    assert card["level"] == "silver"
    assert {r["name"]: r["passed"] for r in card["rules"]} == {"few-pages": True, "cfr": True, "fast-detect": False}
    # A level is reached only when every lower one is: failing bronze leaves none.
    strict = parse_rules(RULES.replace('value: 1}', 'value: 0}'), "rules.yaml")
    card = scorecards(store, "t", engine.specs("t"), strict, parse_period("2026-11", NOW), NOW, name="ask", trend=1)["scorecards"][0]
    assert card["level"] is None


def test_facts_export(history: tuple[DuckDBStore, SloEngine, dict[str, int]]) -> None:
    store, engine, _ = history
    doc = scorecards(store, "t", engine.specs("t"), load_rules(), parse_period("2026-11", NOW), NOW, trend=1)
    export = facts_export(doc)
    refs = {e["entityRef"]: e for e in export["entities"]}
    assert set(refs) == {"system:default/ask", "system:default/triage-agent"}
    ask = refs["system:default/ask"]
    assert ask["timestamp"] == "2026-12-01T00:00:00.000000Z" and ask["facts"]["change_failure_rate"] == 0.4
    assert ask["checks"]["slos-defined"] is True


def test_rules_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "levels: [bronze, silver]\n"
        "rules:\n"
        "  - name: a\n    level: platinum\n    fact: pages\n    op: '<='\n    value: 1\n"
        "  - name: b\n    level: bronze\n    fact: nonsense\n    op: '~'\n    value: one\n"
        "  - name: a\n    level: bronze\n    fact: pages\n    op: '<'\n    value: 2\n    colour: red\n"
    )
    with pytest.raises(SpecValidationError) as caught:
        load_rules(path)
    lines = [str(e) for e in caught.value.errors]
    f = str(path)
    assert f"{f}:4: rules[0].level: unknown level 'platinum'; levels: bronze, silver" in lines
    assert any(line.startswith(f"{f}:10: rules[1].fact: unknown fact 'nonsense'") for line in lines)
    assert any(line.startswith(f"{f}:11: rules[1].op: unknown operator '~'") for line in lines)
    assert f"{f}:12: rules[1].value: must be a number (got text ('one'))" in lines
    assert f"{f}:13: rules[2].name: rule 'a' is defined twice" in lines
    assert any(line.startswith(f"{f}:18: rules[2].colour: unknown field") for line in lines)


def test_default_rules_load() -> None:
    rules = load_rules()
    assert rules.levels == ("bronze", "silver", "gold")
    assert {r.fact for r in rules.rules} >= {"change_failure_rate", "mttr_s", "deployments_per_day"}


def test_entity_dataclass_defaults() -> None:
    assert Entity("journey", "x").journeys == set()


def test_review_report_figures(history: tuple[DuckDBStore, SloEngine, dict[str, int]]) -> None:
    """The review of November over the same history: every figure by hand."""
    from aisre.act.report import review
    from aisre.present.ui.report import render_html, render_markdown

    store, engine, ids = history
    doc = review(store, "t", engine.specs("t"), load_rules(), parse_period("2026-11", NOW), NOW)
    s = doc["summary"]
    # 100 ask runs (5 failed) and 40 triage-agent runs (20 failed), all on November 10.
    assert (s["runs"], s["failed_runs"]) == (140, 25)
    assert doc["daily"]["runs"][9] == 140 and sum(doc["daily"]["runs"]) == 140 and doc["daily"]["failed_runs"][9] == 25
    assert len(doc["days"]) == 30 and doc["days"][9] == "2026-11-10"
    # Incidents opened in November: I1 (sev2), I2 (sev3) on ask and one sev1 on triage-agent, worst first.
    assert s["incidents"] == 3 and [i["severity"] for i in doc["top_incidents"]] == ["sev1", "sev2", "sev3"]
    # Both ask alerts that fired in November joined no incident: near misses; the pending one never fired.
    assert (s["alerts"], s["pages"], s["near_misses"]) == (2, 1, 2)
    assert [a["severity"] for a in doc["near_misses"]] == ["page", "ticket"]
    ask = next(x for x in doc["slos"] if x["slo"] == "ask-success")
    assert (ask["good"], ask["total"], ask["met"]) == (95, 100, True)
    # 5 bad of a budget of 10 (10 % of 100): half spent, all of it on the 10th.
    assert ask["budget_spent"] == pytest.approx(0.5)
    assert ask["budget_spent_by_day"][8] == 0 and ask["budget_spent_by_day"][9] == pytest.approx(0.5)
    triage = next(x for x in doc["slos"] if x["slo"] == "triage-success")
    assert triage["budget_spent"] == pytest.approx(20 / (0.01 * 40)) and triage["met"] is False
    assert (s["changes"], s["failed_changes"]) == (7, 2)  # the review lists the load test too (not failed)
    assert {c["id"] for c in doc["changes"] if c["failed"]} == {ids["c_incident"], ids["c_gate"]}
    assert [a["title"] for a in doc["remediation"]] == ["add a canary"] and doc["remediation"][0]["age_s"] == 18 * 86400
    # triage-agent: one deploy in 30 days (DORA medium: monthly), no failed change, its incident
    # unrestored (no MTTR yet): bronze; ask's 40 % change failure rate misses bronze.
    assert {c["name"]: c["level"] for c in doc["scorecards"]} == {"ask": None, "triage-agent": "bronze"}
    html = render_html(doc)
    assert html.count("<svg") == 3 and "chart-burn" in html and "ask-success" in html
    md = render_markdown(doc)
    assert "# Reliability review: month 2026-11" in md and "| 140 | 82.1 % |" in md
    assert "11-10  runs ████████████████████" in md
    assert "No game days in the period." in md


def test_review_lists_game_days(history: tuple[DuckDBStore, SloEngine, dict[str, int]]) -> None:
    """A drill recorded on the server joins the review with its score, not as a change."""
    from aisre.act.gameday import start_drill, stop_drill
    from aisre.act.report import review
    from aisre.present.ui.report import render_html, render_markdown

    store, engine, _ = history
    # A provider-outage drill on ask from Nov 12 09:58 to 10:30: the page that fired at 10:05
    # came 7 min in, incident I1 opened at 10:06 (8 min) and was mitigated at 10:46 (48 min);
    # I1 has no triage evidence, so the expected "model provider" was not named: failed.
    drill = start_drill(store, "t", "ask", NOW, at_ns=at(11, 12, 9, 58), scenario="provider-outage", who="bob")
    stop_drill(store, "t", NOW, journey="ask", at_ns=at(11, 12, 10, 30))
    doc = review(store, "t", engine.specs("t"), load_rules(), parse_period("2026-11", NOW), NOW)
    [g] = doc["game_days"]
    assert (g["drill_id"], g["journey"], g["scenario"], g["who"]) == (drill["id"], "ask", "provider-outage", "bob")
    assert (g["time_to_first_alert_s"], g["time_to_first_page_s"], g["page_window_s"]) == (420, 420, 3600)
    assert (g["detected_within_page_window"], g["incident_opened"], g["time_to_incident_s"]) == (True, True, 480)
    assert (g["named_layer"], g["expected_layer"], g["cause_named"], g["passed"]) == (None, "model provider", False, False)
    assert g["time_to_mitigate_s"] == 48 * 60
    s = doc["summary"]
    assert (s["game_days"], s["game_days_passed"], s["changes"]) == (1, 0, 7)  # the drill is no change
    assert all(c["kind"] != "gameday" for c in doc["changes"])
    md = render_markdown(doc)
    assert (f"| #{drill['id']} provider-outage | ask | 2026-11-12T09:58 | page after 7 min | #") in md
    assert "| — (expected model provider) | 48 min | 0 | **failed** |" in md
    html = render_html(doc)
    assert 'id="game-days"' in html and "provider-outage" in html


POLICY_RULES = """levels: [bronze, silver]
rules:
  - {name: few-violations, level: bronze, fact: policy_violation_rate, op: "<=", value: 0.5, missing: pass}
  - {name: guardrails-hold, level: bronze, fact: guardrail_trip_rate, op: "<", value: 0.6, missing: pass}
  - {name: telemetry-covered, level: silver, fact: telemetry_coverage_min, op: ">=", value: 0.9}
"""


def test_rules_read_policy_and_telemetry_facts(history: tuple[DuckDBStore, SloEngine, dict[str, int]]) -> None:
    store, engine, _ = history
    rules = parse_rules(POLICY_RULES, "rules.yaml")
    doc = scorecards(store, "t", engine.specs("t"), rules, parse_period("2026-11", NOW), NOW, trend=1)
    by = {c["name"]: c for c in doc["scorecards"]}
    # ask: 40 % violating runs and a 1/3 trip rate pass bronze; 0.875 coverage misses silver.
    assert by["ask"]["level"] == "bronze"
    assert {r["name"]: r["passed"] for r in by["ask"]["rules"]} == {
        "few-violations": True, "guardrails-hold": True, "telemetry-covered": False}
    # triage-agent: no run judged, so no policy facts (missing: pass); its 40 runs are the same
    # shape as ask's, so the same 7 of 8 checks pass.
    triage = by["triage-agent"]["facts"]
    assert (triage["policy_runs_judged"], triage["policy_violation_rate"], triage["guardrail_trip_rate"]) == (None, None, None)
    assert (triage["telemetry_runs"], triage["telemetry_coverage_min"]) == (40, 0.875)
    assert by["triage-agent"]["level"] == "bronze"
    # A stricter bronze: at most 30 % violating runs fails ask.
    strict = parse_rules(POLICY_RULES.replace("value: 0.5,", "value: 0.3,"), "rules.yaml")
    doc = scorecards(store, "t", engine.specs("t"), strict, parse_period("2026-11", NOW), NOW, name="ask", trend=1)
    assert doc["scorecards"][0]["level"] is None
