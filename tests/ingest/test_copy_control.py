"""``aisre store copy --control``: a DuckDB file's control plane (keys, audit log, alert
episodes, incidents with their links, timeline, action items and notifications, changes,
gate verdicts, prices, budgets, rate limits, retention, capacity warning levels, and the agent
policy sets, decision records, judged runs and violations) copied into a real PostgreSQL a page at a time,
interrupted and resumed with a page sent twice; then every read the layers above make
answers the same on both sides, links and ids included, and new rows get new ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.evaluate.policy.service import PolicyService
from aisre.ingest.copy import (
    CONTROL_TABLES,
    POLICY_TABLES,
    CopyReport,
    CopyState,
    copy_control,
    verify_control,
)
from aisre.present.cli.main import build_cli
from aisre.store.factory import open_store
from aisre.store.postgres import PostgresControl
from aisre.store.protocol import ControlExport, Store
from tests.policy_traces import agent_run, tool
from tests.store.contract.data import BY_NAME, MINUTE_NS, NOW_NS, ingest, later_release

A, B = "tenant-a", "tenant-b"
HOUR_NS = 3600 * 10**9
CAPTURE = "pydantic-ai"
TABLES = CONTROL_TABLES + POLICY_TABLES
POLICY = """
policies:
  - name: triage-guardrails
    scope: {journeys: [triage]}
    rules:
      - {name: no-shell, kind: tool_deny, tools: [shell]}
      - {name: known-tools, kind: tool_allow, tools: [search, shell]}
      - {name: few-calls, kind: budget, tool_calls: 2}
"""
NEWER_POLICY = POLICY.replace("tool_calls: 2", "tool_calls: 3")


def _decision(n: int, result: str, rules: tuple[str, ...] = (), with_input: bool = True) -> dict[str, Any]:
    return {"id": f"d{n}", "tenant": A, "at_ns": NOW_NS + n, "source": "inline", "journey": "triage",
            "trace_id": "ab" * 16, "span_id": "cd" * 8, "result": result, "bundle": "sha256:b1",
            "policies": [{"name": "triage-guardrails", "version": "sha256:v1"}], "rules": list(rules),
            "reasons": [{"rule": r, "message": f"{r} says no"} for r in rules],
            "input_digest": f"hmac-sha256:{n:032d}",
            "input": {"action": {"name": "shell", "args": {"cmd": "rm -rf /"}}} if with_input else None,
            "actor": "key-1"}


def _seed_policy(store: Any) -> list[str]:
    """Tenant A's policy rows through the real judging pass: a set applied, four agent runs
    judged (one breaking all three rules, one with a shell call, one with two, one clean),
    a newer set, and three decision records; returns the judged agent runs' trace ids."""
    service = PolicyService(store)
    service.apply(A, POLICY, "alice")
    start = NOW_NS - 3 * HOUR_NS
    runs = [
        agent_run([tool("shell", cmd="rm"), tool("pay", amount=5), tool("search", q="1")], start_ns=start),
        agent_run([tool("shell", cmd="ls")], start_ns=start + 10 * MINUTE_NS, session="s1"),
        agent_run([tool("shell", cmd="a"), tool("shell", cmd="b")], start_ns=start + 20 * MINUTE_NS, session="s1"),
        agent_run([tool("search", q="2")], start_ns=start + 70 * MINUTE_NS),
    ]
    for run in runs:
        ingest(store, A, run.request().SerializeToString())
    store.flush_rollups()
    assert service.judge_pending(A) > len(runs)  # the capture's runs are judged too (no policy covers them)
    service.apply(A, NEWER_POLICY, "bob")
    store.add_decisions([_decision(1, "allow"), _decision(2, "deny", ("no-shell", "few-calls")),
                         _decision(3, "allow", with_input=False)])
    return [run.trace_id for run in runs]


def _seed(url: str) -> dict[str, Any]:
    """A DuckDB file with tenant A's capture and a row of every control-plane kind (several of
    most), made through the store's own methods; returns the ids the test follows."""
    store = open_store(url, retention_days=0, clock=lambda: NOW_NS)
    try:
        for body in BY_NAME[CAPTURE].bodies:
            ingest(store, A, body)
        store.flush_rollups()
        for i, (tenant, role) in enumerate([(A, "admin"), (A, "read"), (B, "ingest")]):
            store.add_key({"key_id": f"k{i}", "digest": f"d{i}", "tenant": tenant, "role": role, "name": f"key {i}"}, "ops")
        store.revoke_key(A, "k1", "ops")
        store.audit(A, "ops", "slo.apply", "ask-success", None, {"objective": 99.5})
        page = {"tenant": A, "slo": "ask-success", "journey": "ask", "severity": "page", "state": "pending",
                "pending_since_ns": NOW_NS, "started_ns": None, "ended_ns": None, "peak_burn": 15.0,
                "updated_ns": NOW_NS, "summary": "burning 15x"}
        ticket = {**page, "severity": "ticket", "pending_since_ns": NOW_NS + MINUTE_NS, "peak_burn": 3.5}
        store.save_alerts([page, ticket])
        page.update(state="firing", started_ns=NOW_NS + 30 * 10**9, peak_burn=16.25)
        store.save_alerts([page])
        tables = store.incidents
        key = f"slo:{page['id']}"
        first = tables.create_incident(
            {"tenant": A, "group_key": "journey:ask", "opened_ns": NOW_NS, "title": "ask failing", "journey": "ask",
             "slo": "ask-success", "severity": "sev2", "state": "open", "source": "slo", "tier": 0,
             "first_alert_ns": NOW_NS, "impact_start_ns": NOW_NS - 5 * MINUTE_NS, "updated_ns": NOW_NS,
             "evidence": {"bad_runs": 1, "changes": [{"kind": "deploy", "version": "1.4.2"}]}},
            [{"at_ns": NOW_NS, "kind": "opened", "actor": "slo", "message": "opened", "data": {"alert": key}}],
            [{"alert_key": key, "source": "slo", "name": "ask-success page", "severity": "sev2",
              "started_ns": NOW_NS, "summary": "burning", "labels": {"journey": "ask"}}])
        tables.update_incident(A, first["id"], {"state": "acknowledged", "acknowledged_ns": NOW_NS + 10,
                                                "acknowledged_by": "erin", "updated_ns": NOW_NS + 10},
                               [{"at_ns": NOW_NS + 10, "kind": "state", "actor": "erin", "message": "acknowledged",
                                 "data": None}], expect_state="open")
        tables.add_action_item({"tenant": A, "incident_id": first["id"], "title": "add a canary", "owner": "erin",
                                "created_ns": NOW_NS + 20},
                               {"at_ns": NOW_NS + 20, "kind": "action_item", "actor": "erin", "message": "added"})
        for attempt in (1, 2):
            tables.add_notification_attempt({
                "tenant": A, "incident_id": first["id"], "receiver": "pager", "receiver_type": "pagerduty",
                "event": "opened", "message_id": "m1", "attempt": attempt, "at_ns": NOW_NS + attempt,
                "duration_ms": 12.5, "status_code": 500 if attempt == 1 else 202, "ok": attempt == 2,
                "final": attempt == 2, "error": "HTTP 500" if attempt == 1 else None})
        second = tables.create_incident(
            {"tenant": A, "group_key": "manual:1", "opened_ns": NOW_NS + 50, "title": "declared", "severity": "sev3",
             "state": "open", "source": "manual", "updated_ns": NOW_NS + 50}, [], [])
        tables.update_incident(A, second["id"], {"state": "resolved", "resolved_ns": NOW_NS + 60,
                                                 "resolved_by": "erin", "updated_ns": NOW_NS + 60})
        tables.add_change({"tenant": A, "kind": "flag", "summary": "cache on", "who": "ci", "at_ns": NOW_NS - MINUTE_NS,
                           "services": ["support-bot"], "journeys": [], "version": None, "previous": None,
                           "prompt_name": None, "link": None, "metadata": {"flag": "cache", "on": True},
                           "source": "api", "observed_ns": None, "created_ns": NOW_NS})
        assert tables.detect_changes(A) == []  # the first runs are the baseline (change_seen, change_cursor)
        for body in BY_NAME[CAPTURE].bodies:
            ingest(store, A, later_release(body, HOUR_NS, "9.9.9"))
        assert len(tables.detect_changes(A)) == 1
        verdict = store.save_gate_verdict({
            "tenant": A, "journey": "ask", "baseline": "service.version=1.4", "candidate": "service.version=1.5",
            "verdict": "fail", "score": 40.0, "baseline_runs": 40, "candidate_runs": 38, "decided_ns": NOW_NS,
            "document": {"verdict": "fail", "metrics": [{"name": "cost_usd", "classification": "High"}]}})
        store.cost.put_override({"tenant": A, "model": "gpt-4o-mini", "provider": "openai", "input": 0.2,
                                 "output": 0.8, "cached_input": 0.1, "effective_ns": NOW_NS})
        store.cost.put_budget({"tenant": A, "name": "monthly", "journey": "", "period": "month", "amount_usd": 120.0,
                               "thresholds": [0.5, 0.9, 1.0]})
        store.cost.put_rate_limit({"tenant": A, "model": "gpt-4o-mini", "requests_per_min": 600.0,
                                   "tokens_per_min": 2e5, "warn_at": 0.7})
        store.set_retention(A, 30)
        store.put_capacity_levels(A, [{"metric": "hw.gpu.utilization", "threshold": 0.8, "enabled": True},
                                      {"metric": "vllm.num_requests_waiting", "threshold": None, "enabled": False}])
        judged = _seed_policy(store)
        return {"alert": page["id"], "key": key, "incidents": [first["id"], second["id"]], "verdict": verdict,
                "judged": judged}
    finally:
        store.close()


def _reads(store: Any, ids: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """Every control-plane read the layers above make (``store``: the DuckDB store, or the
    PostgreSQL control store), over the seeded rows."""
    tables, cost = store.incidents, store.cost
    out: dict[str, Callable[[], Any]] = {
        "list_keys": lambda: store.list_keys(A) + store.list_keys(B),
        "active_keys": lambda: sorted(store.active_keys(), key=lambda k: k["key_id"]),
        "auth_latched": store.auth_latched,
        "list_audit": lambda: store.list_audit(A, limit=1000) + store.list_audit(B, limit=1000),
        "list_alerts": lambda: store.list_alerts(A),
        "active_alerts": lambda: store.active_alerts(A),
        "list_incidents": lambda: tables.list_incidents(A, with_evidence=True),
        "incidents_of_alert": lambda: tables.incidents_of_alert(A, ids["key"]),
        "incidents_for_alert_keys": lambda: tables.incidents_for_alert_keys(A, [ids["key"]]),
        "open_incident_for": lambda: tables.open_incident_for(A, "journey:ask"),
        "action_items": lambda: tables.action_items(A),
        "notification_attempts": lambda: tables.notification_attempts(A),
        "list_changes": lambda: tables.list_changes(A),
        "list_gate_verdicts": lambda: store.list_gate_verdicts(A),
        "get_gate_verdict": lambda: store.get_gate_verdict(A, ids["verdict"]),
        "list_overrides": lambda: cost.list_overrides(A),
        "list_budgets": lambda: cost.list_budgets(A),
        "list_rate_limits": lambda: cost.list_rate_limits(A),
        "capacity_levels": lambda: store.capacity_levels(A),
    }
    for iid in ids["incidents"]:
        out[f"get_incident {iid}"] = lambda iid=iid: tables.get_incident(A, iid)
        out[f"events {iid}"] = lambda iid=iid: tables.events(A, iid)
        out[f"alerts {iid}"] = lambda iid=iid: tables.alerts(A, iid)
    # The agent policy reads (violations of one run may tie on their order keys: compared as sets).
    out.update({
        "policy_sets": lambda: store.policy_sets(A),
        "policy_tenants": store.policy_tenants,
        "list_decisions": lambda: store.list_decisions(A),
        "list_decisions deny": lambda: store.list_decisions(A, rule="few-calls", result="deny"),
        "list_violations": lambda: sorted(map(repr, store.list_violations(A, limit=1000))),
        "violations no-shell": lambda: sorted(map(repr, store.list_violations(A, rule="no-shell"))),
        "policy_marks": lambda: store.policy_marks(A, ids["judged"]),
        "violation_counts": lambda: store.violation_counts(A, 0, HOUR_NS),
        "policy_totals": lambda: store.policy_totals(A, 0, 2**62),
    })
    for trace_id in ids["judged"]:
        out[f"policy_run {trace_id}"] = lambda trace_id=trace_id: store.policy_run(A, trace_id)
        out[f"violations {trace_id}"] = lambda trace_id=trace_id: sorted(
            map(repr, store.list_violations(A, trace_id=trace_id)))
    return out


@pytest.fixture
def control(postgres_server: Any, request: pytest.FixtureRequest) -> Any:
    url = postgres_server.create_database(request.node.name)
    target = PostgresControl(url)
    yield target
    target.close()


def test_the_control_plane_copies_resumably_and_reads_the_same(tmp_path: Path, control: PostgresControl) -> None:
    url = f"duckdb://{tmp_path}/src.duckdb"
    ids = _seed(url)
    source: Store = open_store(url, rollup_interval_ms=0)
    try:
        exporter: ControlExport = source  # type: ignore[assignment]
        counts = {t.name: exporter.control_count(t.name) for t in TABLES}
        # The seed reaches every table (a DuckDB file keeps no judging cursor: the split store's).
        assert counts.pop("policy_cursor") == 0 and all(counts.values()), counts
        counts["policy_cursor"] = 0
        # A run with more violations than a page holds: pages of whole runs stretch to hold it.
        sizes = [len(source.list_violations(A, trace_id=t)) for t in ids["judged"]]
        assert max(sizes) >= 3 and sizes[-1] == 0, sizes  # pages of 2 rows below
        state = CopyState(tmp_path / "state.json")
        first = copy_control(exporter, control, state, page_rows=2, max_pages=5)
        assert [t.table for t in first] == ["api_keys", "control_flags", "audit_log"] and not first[-1].done
        assert sum(t.rows for t in first) == 8  # five pages of two rows (api_keys: 2 + 1)
        assert json.loads(state.path.read_text())["control:api_keys"] == ["k2"]
        # A crash after a page was written but before its mark moved: that page comes again.
        state.after["control:audit_log"] = None
        resumed = copy_control(exporter, control, state, page_rows=2)
        assert all(t.done for t in resumed)
        again = {t.table: (t.rows, t.new) for t in resumed}
        assert again["audit_log"][0] > again["audit_log"][1]  # re-sent rows were skipped, not doubled
        # Violations (no key of their own) sent again replace their run's, never double.
        state.after["control:policy_violations"] = None
        state.after["control:policy_decisions"] = None
        resent = {t.table: (t.rows, t.new) for t in copy_control(exporter, control, state, POLICY_TABLES, page_rows=2)}
        assert resent["policy_violations"] == (counts["policy_violations"], 0)
        assert resent["policy_decisions"] == (counts["policy_decisions"], 0)
        report = verify_control(exporter, control, CopyReport())
        assert report.mismatches == []
        assert report.control == {name: {"source": n, "target": n} for name, n in counts.items()}

        theirs = _reads(control, ids)
        for name, read in _reads(source, ids).items():
            assert read() == theirs[name](), name
        # Links survive: the incident still names its alert episode, by the episode's id.
        (linked,) = control.incidents.incidents_of_alert(A, f"slo:{ids['alert']}")
        assert linked["id"] == ids["incidents"][0]
        assert [a["id"] for a in control.list_alerts(A) if a["id"] == ids["alert"]] == [ids["alert"]]
        assert control.retention_setting(A) == 30.0 and control.auth_latched()
        # New rows get ids past the copied ones (the sequences moved).
        new = control.incidents.create_incident(
            {"tenant": A, "group_key": "journey:new", "opened_ns": NOW_NS + 99, "title": "new", "severity": "sev3",
             "state": "open", "source": "manual", "updated_ns": NOW_NS + 99}, [], [])
        assert new["id"] > max(ids["incidents"])
        before = max(r["id"] for r in control.list_audit(A, limit=1000))
        control.audit(A, "ops", "slo.apply", "x", None, None)
        assert control.list_audit(A, limit=1)[0]["id"] > before
    finally:
        source.close()


def test_the_cli_copies_the_control_plane_and_reports_each_table(tmp_path: Path, control: PostgresControl) -> None:
    url = f"duckdb://{tmp_path}/src.duckdb"
    _seed(url)
    result = CliRunner().invoke(build_cli(run_server), [
        "store", "copy", "--from", url, "--to", f"duckdb://{tmp_path}/dst.duckdb", "--control", control.dsn,
        "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["verified"] is True and doc["mismatches"] == []
    assert set(doc["control"]) == {t.name for t in TABLES}
    assert doc["control"].pop("policy_cursor") == {"source": 0, "target": 0}  # a DuckDB file keeps none
    assert all(c["source"] == c["target"] > 0 for c in doc["control"].values())
    assert control.list_keys(A)[0]["key_id"] == "k0"
    # The copied runs keep their received times, so the judged marks still match them: the
    # new deployment's first judging pass finds nothing to judge again.
    split = open_store(f"duckdb://{tmp_path}/dst.duckdb", control=control.dsn, guarded=False)
    try:
        assert split.runs_to_judge(A) == []
        assert len(split.list_violations(A, limit=1000)) == control.control_count("policy_violations")
    finally:
        split.close()
