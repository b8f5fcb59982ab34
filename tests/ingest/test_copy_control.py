"""``aisre store copy --control``: a DuckDB file's control plane (keys, audit log, alert
episodes, incidents with their links, timeline, action items and notifications, changes,
gate verdicts, prices, budgets, rate limits, retention) copied into a real PostgreSQL a page
at a time, interrupted and resumed with a page sent twice; then every read the layers above
make answers the same on both sides, links and ids included, and new rows get new ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.ingest.copy import CONTROL_TABLES, CopyReport, CopyState, copy_control, verify_control
from aisre.present.cli.main import build_cli
from aisre.store.factory import open_store
from aisre.store.postgres import PostgresControl
from aisre.store.protocol import ControlExport, Store
from tests.store.contract.data import BY_NAME, MINUTE_NS, NOW_NS, ingest, later_release

A, B = "tenant-a", "tenant-b"
HOUR_NS = 3600 * 10**9
CAPTURE = "pydantic-ai"


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
        return {"alert": page["id"], "key": key, "incidents": [first["id"], second["id"]], "verdict": verdict}
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
    }
    for iid in ids["incidents"]:
        out[f"get_incident {iid}"] = lambda iid=iid: tables.get_incident(A, iid)
        out[f"events {iid}"] = lambda iid=iid: tables.events(A, iid)
        out[f"alerts {iid}"] = lambda iid=iid: tables.alerts(A, iid)
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
        counts = {t.name: exporter.control_count(t.name) for t in CONTROL_TABLES}
        assert all(counts.values()), counts  # the seed reaches every table
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
    assert set(doc["control"]) == {t.name for t in CONTROL_TABLES}
    assert all(c["source"] == c["target"] > 0 for c in doc["control"].values())
    assert control.list_keys(A)[0]["key_id"] == "k0"
