"""Retention on a real DuckDB file: raw spans expire per tenant in bounded steps, while
rollups, SLO minutes, incidents and postmortems keep what they counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from aisre.act.incidents import IncidentManager
from aisre.act.postmortem import Postmortems
from aisre.core.errors import NotFound, PermanentError
from aisre.core.model import RunQuery, SliRule
from aisre.derive.journeys import get_trace
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import load_specs
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from aisre.store.retention import load_retention_file
from tests.act.incident_data import MINUTE, S, runs_request

DAY = 86_400 * S
T0 = 1_790_000_000 * S // MINUTE * MINUTE


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _load(store: DuckDBStore, request: Any, tenant: str = "t") -> None:
    flat = flatten(request, tenant, received_ns=T0)
    store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()


def _counts(path: Path, sql: str) -> Any:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _rollups(store: DuckDBStore, tenant: str = "t") -> dict[str, Any]:
    with store._reader() as cur:
        return {
            "run_minutes": cur.execute(f"SELECT * FROM run_minutes WHERE tenant = '{tenant}' ORDER BY ALL").fetchall(),
            "slo_minutes": cur.execute(f"SELECT * FROM slo_minutes WHERE tenant = '{tenant}' ORDER BY ALL").fetchall(),
            "cost_minutes": cur.execute(f"SELECT * FROM cost_minutes WHERE tenant = '{tenant}' ORDER BY ALL").fetchall(),
        }


def test_old_spans_expire_and_rollups_and_slo_status_stay(tmp_path: Path) -> None:
    path = tmp_path / "r.duckdb"
    clock = Clock(T0 + 10 * MINUTE)
    store = DuckDBStore(str(path), retention_days=7, retention_overrides={"long": 30}, clock=clock)
    spec = tmp_path / "slos.yaml"
    spec.write_text("slos:\n  - name: ask-success\n    journey: ask\n    objective: 99\n    window: 28d\n"
                    "    sli: {kind: outcome}\n")
    engine = SloEngine(store)
    engine.apply("t", load_specs([spec]))
    old, _ = runs_request(30, T0, step_ns=2 * S, fails=lambda i: i % 3 == 0)
    _load(store, old)
    _load(store, runs_request(30, T0, step_ns=2 * S)[0], tenant="long")
    recent, recent_ids = runs_request(5, T0 + 8 * DAY, step_ns=S)
    _load(store, recent)
    before = _rollups(store)
    status_before = engine.status("t", "ask-success", T0 + 8 * DAY + MINUTE)
    metrics_before = store.metric_totals("t")  # what /metrics serves
    assert [r[3:] for r in before["slo_minutes"]] == [(20, 30), (5, 5)]
    assert status_before["error_budget"]["spent_events"] == 10

    clock.now = T0 + 8 * DAY + 10 * MINUTE  # the old runs are 8 days old; "t" keeps 7, "long" 30
    stats = store.expire()
    assert (stats.traces, stats.spans) == (30, 90)
    # A late span of an expired run must not recount its minute from what is left.
    late, _ = runs_request(1, T0 + 5 * S, step_ns=S)
    _load(store, late)
    store.flush_rollups()
    after = _rollups(store)
    assert after == {**before, "run_minutes": after["run_minutes"]}  # SLO and cost minutes unchanged
    assert after["run_minutes"] == before["run_minutes"]
    assert engine.status("t", "ask-success", T0 + 8 * DAY + MINUTE)["error_budget"] == status_before["error_budget"]
    assert store.metric_totals("t") == metrics_before
    assert {r["trace_id"] for r in store.list_runs(RunQuery("t", limit=100))} >= set(recent_ids)
    store.close()

    # Counted in the file itself: "t" keeps its recent runs (and the late one, until the
    # next pass), "long" keeps everything.
    assert _counts(path, "SELECT tenant, count(*) FROM spans GROUP BY tenant ORDER BY tenant") == [("long", 90), ("t", 18)]
    assert _counts(path, "SELECT count(*) FROM spans WHERE tenant = 't' AND start_ns < " + str(T0 + DAY)) == [(3,)]
    assert _counts(path, "SELECT count(*) FROM traces WHERE tenant = 't'") == [(6,)]


def test_expiry_runs_in_bounded_steps(tmp_path: Path) -> None:
    clock = Clock(T0)
    store = DuckDBStore(str(tmp_path / "s.duckdb"), retention_days=1, retention_step_traces=10, clock=clock)
    _load(store, runs_request(25, T0, step_ns=S, tool=False)[0])
    clock.now = T0 + 2 * DAY
    stats = store.expire()
    assert (stats.steps, stats.traces, stats.spans, stats.last_step_traces) == (3, 25, 50, 5)
    assert store.count_spans("t") == 0
    assert store.oldest_span_ns() is None
    assert store.stats()["expired_spans"] == 50
    store.close()


def test_an_incident_whose_exemplars_expired_still_renders(tmp_path: Path) -> None:
    clock = Clock(T0 + 12 * MINUTE)
    store = DuckDBStore(str(tmp_path / "i.duckdb"), retention_days=3, clock=clock)
    spec = tmp_path / "slos.yaml"
    spec.write_text("slos:\n  - name: ask-success\n    journey: ask\n    objective: 99\n    sli: {kind: outcome}\n")
    engine = SloEngine(store)
    engine.apply("t", load_specs([spec]))
    _load(store, runs_request(60, T0, step_ns=10 * S)[0])
    _load(store, runs_request(20, T0 + 10 * MINUTE, step_ns=5 * S, failed=True, chat_error=True)[0])
    manager = IncidentManager(store.incidents, engine, "t", None, public_url="http://aisre.example", clock=clock,
                              slo_minutes=store.slo_minute_arrays)
    [doc] = manager.on_slo_alerts([{
        "slo": "ask-success", "journey": "ask", "severity": "page", "state": "firing", "pending_since_ns": T0 + 11 * MINUTE,
        "started_ns": T0 + 11 * MINUTE, "ended_ns": None, "summary": "burning", "peak_burn": 20.0,
    }])
    exemplars = manager.get(doc["id"])["evidence"]["exemplars"]
    assert exemplars
    postmortems = Postmortems(manager, engine, lambda tenant, t: get_trace(store, tenant, t),
                              slo_minutes=store.slo_minute_arrays, clock=clock)
    fresh = postmortems.markdown(doc["id"], "t")
    assert f"### Trace `{exemplars[0]}`" in fresh
    impact = [line for line in fresh.splitlines() if line.startswith(("| failed runs", "| cost of failed"))]
    assert impact == ["| failed runs | 20 of 20 |", "| cost of failed runs | $0.00138 (of $0.00138) |"]  # core.display.money: 3 significant digits

    clock.now = T0 + 4 * DAY
    assert store.expire().traces == 80
    with pytest.raises(NotFound, match="expired past the tenant's retention"):
        get_trace(store, "t", exemplars[0])
    again = manager.get(doc["id"])
    assert again["evidence"]["exemplars"] == exemplars
    text = postmortems.markdown(doc["id"], "t")
    assert f"Trace `{exemplars[0]}`: trace expired" in text
    # Impact counted from the minute rollups once the period's runs expired.
    assert [line for line in text.splitlines() if line.startswith(("| failed runs", "| cost of failed"))] == impact
    assert "| distinct users affected | unknown: the period's raw spans expired" in text
    store.close()


def test_retention_overrides_api_then_file_then_default(tmp_path: Path) -> None:
    rules = tmp_path / "retention.yaml"
    rules.write_text("tenants:\n  audit: 90\n  short: 2\n")
    store = DuckDBStore(str(tmp_path / "o.duckdb"), retention_days=14, retention_overrides=load_retention_file(str(rules)))
    assert store.retention_days("other") == (14, "default")
    assert store.retention_days("short") == (2, "file")
    assert store.set_retention("short", 5)["retention_days"] == 5
    assert store.retention_days("short") == (5, "api")
    with pytest.raises(PermanentError):
        store.set_retention("short", -1)
    assert store.set_retention("audit", 0)["retention_days"] == 0  # for ever
    store.close()
    reopened = DuckDBStore(str(tmp_path / "o.duckdb"), retention_days=14, retention_overrides=load_retention_file(str(rules)))
    assert reopened.retention_days("short") == (5, "api")
    assert reopened.set_retention("short", None)["source"] == "file"
    reopened.close()
    rules.write_text("tenants:\n  audit: -1\n")
    with pytest.raises(PermanentError, match="audit"):
        load_retention_file(str(rules))


def test_sli_rules_applied_after_expiry_keep_old_minutes(tmp_path: Path) -> None:
    clock = Clock(T0)
    store = DuckDBStore(str(tmp_path / "b.duckdb"), retention_days=1, clock=clock)
    rule = SliRule(slo="ask-success", journey="ask", kind="outcome")
    store.set_sli_rules("t", [rule])
    _load(store, runs_request(10, T0, step_ns=S)[0])
    clock.now = T0 + 2 * DAY
    store.expire()
    _load(store, runs_request(4, T0 + 2 * DAY, step_ns=S)[0])
    # A changed rule is recounted only where runs are still stored.
    store.set_sli_rules("t", [SliRule(slo="ask-success", journey="ask", kind="outcome", latency_ns=10 * S)])
    with store._reader() as cur:
        rows = cur.execute("SELECT minute_ns, good, total FROM slo_minutes ORDER BY minute_ns").fetchall()
    assert rows == [(T0, 10, 10), (T0 + 2 * DAY, 4, 4)]
    store.close()
