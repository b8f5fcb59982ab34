"""SLOs evaluated end to end: runs in the store → per-minute SLO counts → status."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from aisre.core.errors import NotFound
from aisre.core.timefmt import rfc3339
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import load_specs
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from tests.otlp_factory import journey_request

SPEC = """
slos:
  - name: ask-success
    journey: ask
    objective: 99.5
    window: 28d
    sli: {kind: outcome, latency_ms: 4000}
    tier: 0
    owner: search-team
    runbook: https://runbooks.example/ask
  - name: ask-cost
    journey: ask
    objective: 99
    sli: {kind: cost, max_usd: 0.00001}
    diagnostic: true
  - name: ask-groundedness
    journey: ask
    objective: 95
    sli: {kind: score, score: groundedness, min: 0.7}
    diagnostic: true
"""


def _engine(tmp_path: Path) -> tuple[DuckDBStore, SloEngine]:
    path = tmp_path / "slos.yaml"
    path.write_text(SPEC)
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    engine = SloEngine(store)
    engine.apply("t", load_specs([path]))
    return store, engine


def test_status_from_runs_with_backfill_and_live_updates(tmp_path: Path) -> None:
    now = time.time_ns()
    # Runs from before the SLO existed are backfilled when it is applied.
    request, _ = journey_request(50, start_ns=now - 3600 * 10**9)
    flat = flatten(request, "t")
    path = tmp_path / "slos.yaml"
    path.write_text(SPEC)
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    store.submit_spans(flat.table, flat.resources).result(10)
    engine = SloEngine(store)
    engine.apply("t", load_specs([path]))
    status = engine.status("t", "ask-success", now, burn_down_points=12)
    assert (status["good"], status["total"], status["status"]) == (50, 50, "ok")
    assert status["error_budget"]["remaining_ratio"] == 1.0
    assert len(status["burn_down"]) == 12

    # New runs, half of them failing (root status error), arrive live.
    request, _ = journey_request(50, start_ns=now - 60 * 10**9)
    flat = flatten(request, "t")
    failing = flat.table.column("is_root")
    table = flat.table.set_column(
        flat.table.schema.get_field_index("marks_failure"),
        "marks_failure",
        pc.and_(failing, pc.greater(pc.random(flat.table.num_rows), -1.0)),
    )
    store.submit_spans(table, flat.resources).result(10)
    store.flush_rollups()
    status = engine.status("t", "ask-success", now)
    assert (status["good"], status["total"]) == (50, 100)
    assert status["status"] == "page"
    assert status["burn_rates"]["5m"] == pytest.approx(1.0 / 0.005)
    assert any(a["firing"] and a["severity"] == "page" for a in status["alerts"])
    # An hour of data in a 28-day window: the budget is 0.5 % of the events 28 days hold at
    # the observed rate, not of the 100 seen so far (which would read -9,900 %).
    data = status["data"]
    assert 60 * 60 <= data["observed_s"] <= 62 * 60 and not data["complete"] and data["events"] == 100
    projected = 100 * 28 * 86400 / data["observed_s"]
    assert data["projected_events"] == pytest.approx(projected)
    assert status["error_budget"]["remaining_ratio"] == pytest.approx(1 - 50 / (0.005 * projected))
    assert "observed" in data["note"]

    # Cost SLO: every run costs more than the bound; diagnostic, so a ticket, never a page.
    cost = engine.status("t", "ask-cost", now)
    assert cost["total"] == 100 and cost["good"] == 0
    assert cost["status"] == "ticket" and not cost["carries_budget"]
    assert {a["severity"] for a in cost["alerts"]} == {"ticket"}

    groundedness = engine.status("t", "ask-groundedness", now)
    assert groundedness["status"] == "no_data"  # counted from scores; none were sent
    with pytest.raises(NotFound):
        engine.status("t", "nope", now)
    store.close()


def test_removing_an_slo_drops_its_counts(tmp_path: Path) -> None:
    store, engine = _engine(tmp_path)
    request, _ = journey_request(5)
    flat = flatten(request, "t")
    store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()
    assert store._rows("SELECT count(DISTINCT slo) AS n FROM slo_minutes")[0]["n"] == 2
    engine.apply("t", [s for s in engine.specs("t") if s.id == "ask-cost"])
    assert store._rows("SELECT DISTINCT slo FROM slo_minutes") == [{"slo": "ask-cost"}]
    store.close()


def test_calendar_month_counts_only_this_month(tmp_path: Path) -> None:
    import datetime as dt

    spec = tmp_path / "cal.yaml"
    spec.write_text(
        "slos:\n  - name: ask-month\n    journey: ask\n    objective: 99\n"
        "    window: {calendar: month}\n    sli: {kind: outcome}\n"
    )
    store = DuckDBStore(str(tmp_path / "cal.duckdb"))
    now = int(dt.datetime(2026, 11, 3, 12, 0, tzinfo=dt.UTC).timestamp()) * 10**9
    last_month = int(dt.datetime(2026, 10, 31, 23, 58, tzinfo=dt.UTC).timestamp()) * 10**9
    this_month = int(dt.datetime(2026, 11, 1, 0, 1, tzinfo=dt.UTC).timestamp()) * 10**9
    bad, _ = journey_request(10, start_ns=last_month)
    for span in bad.resource_spans[0].scope_spans[0].spans:
        if not span.parent_span_id:
            span.status.code = 2
    good, _ = journey_request(30, start_ns=this_month)
    for request in (bad, good):
        flat = flatten(request, "t")
        store.submit_spans(flat.table, flat.resources).result(10)
    engine = SloEngine(store)
    engine.apply("t", load_specs([spec]))
    doc = engine.status("t", "ask-month", now, burn_down_points=5)
    assert doc["period_start"] == "2026-11-01T00:00:00.000000Z"
    assert (doc["good"], doc["total"]) == (30, 30)  # October's failures are not this month's
    assert doc["error_budget"]["remaining_ratio"] == 1.0
    assert doc["burn_down"][-1]["remaining_ratio"] == 1.0
    store.close()


def test_step_sli_counts_spans_of_one_operation_in_their_runs_minute(tmp_path: Path) -> None:
    spec = tmp_path / "step.yaml"
    spec.write_text(
        "slos:\n"
        "  - name: chat-fast\n    journey: ask\n    objective: 99\n    sli: {kind: step, operation: chat, latency_ms: 1}\n"
        "  - name: embed-fast\n    journey: ask\n    objective: 99\n    sli: {kind: step, operation: embeddings, latency_ms: 0.05}\n"
    )
    store = DuckDBStore(str(tmp_path / "step.duckdb"))
    engine = SloEngine(store)
    engine.apply("t", load_specs([spec]))
    now = time.time_ns()
    # Runs four hours ago too, so the alert windows are observed whole.
    for start in (now - 4 * 3600 * 10**9, now - 120 * 10**9):
        request, _ = journey_request(12, start_ns=start)
        flat = flatten(request, "t")
        store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()
    chat = engine.status("t", "chat-fast", now)
    assert (chat["good"], chat["total"], chat["diagnostic"]) == (24, 24, True)  # chat spans take 0.6 ms
    embed = engine.status("t", "embed-fast", now)
    assert (embed["good"], embed["total"]) == (0, 24)  # embeddings take 0.099 ms > 0.05 ms
    assert embed["status"] == "ticket"  # diagnostic: a burning step SLO opens a ticket, never a page
    store.close()


def test_timeslice_budgeting_through_the_engine(tmp_path: Path) -> None:
    spec = tmp_path / "ts.yaml"
    spec.write_text(
        "slos:\n  - name: ask-slices\n    journey: ask\n    objective: 99\n    window: 7d\n"
        "    budgeting: {method: timeslices, slice: 5m, slice_objective: 95}\n    sli: {kind: outcome}\n"
    )
    store = DuckDBStore(str(tmp_path / "ts.duckdb"))
    engine = SloEngine(store)
    engine.apply("t", load_specs([spec]))
    now = time.time_ns()
    slice_ns = 5 * 60 * 10**9
    base = (now // slice_ns - 4) * slice_ns  # three whole slices before the current one
    for k, failing in enumerate((0, 3, 0)):  # slice 2: 3 of 10 runs fail → a bad slice
        request, _ = journey_request(10, start_ns=base + k * slice_ns + 10**9)
        roots = [s for s in request.resource_spans[0].scope_spans[0].spans if not s.parent_span_id]
        for span in roots[:failing]:
            span.status.code = 2
        flat = flatten(request, "t")
        store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()
    doc = engine.status("t", "ask-slices", now)
    assert (doc["good"], doc["total"]) == (2, 3)
    store.close()


def test_chart_spans_the_chosen_range_with_error_rate_buckets(tmp_path: Path) -> None:
    minute = 60 * 10**9
    now = time.time_ns() // minute * minute + 30 * 10**9
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    good, _ = journey_request(50, start_ns=now - 60 * minute)
    store.submit_spans(*_flat(good, failing=False)).result(10)
    bad, _ = journey_request(50, start_ns=now - minute)
    store.submit_spans(*_flat(bad, failing=True)).result(10)
    path = tmp_path / "slos.yaml"
    path.write_text(SPEC)
    engine = SloEngine(store)
    engine.apply("t", load_specs([path]))  # backfilled from the stored runs
    store.flush_rollups()

    whole = engine.chart("t", "ask-success", 28 * 86400 * 10**9, points=120, now_ns=now)
    # From the first event, not 28 days: 61 minutes in one-minute buckets.
    assert whole["bucket_s"] == 60 and whole["objective"] == 99.5
    rows = [r for r in whole["sli_series"] if r["total"]]
    assert [(r["bad"], r["total"], r["error_ratio"]) for r in rows] == [(0, 50, 0.0), (50, 50, 1.0)]
    first_minute = rfc3339(now - 60 * minute - 30 * 10**9)
    assert whole["sli_series"][0]["time"] == first_minute
    assert whole["burn_down"][0]["time"] >= first_minute and whole["burn_down"][0]["remaining_ratio"] == 1.0
    assert whole["burn_down"][-1]["remaining_ratio"] < 1.0

    recent = engine.chart("t", "ask-success", 10 * minute, points=120, now_ns=now)
    assert [(r["bad"], r["total"]) for r in recent["sli_series"] if r["total"]] == [(50, 50)]
    assert all(p["time"] >= rfc3339(now - 11 * minute) for p in recent["burn_down"])
    assert recent["burn_down"][-1]["remaining_ratio"] == whole["burn_down"][-1]["remaining_ratio"]
    with pytest.raises(NotFound):
        engine.chart("t", "nope", minute)
    store.close()


def _flat(request: Any, failing: bool) -> tuple[Any, Any]:
    flat = flatten(request, "t")
    if not failing:
        return flat.table, flat.resources
    roots = flat.table.column("is_root")
    return flat.table.set_column(flat.table.schema.get_field_index("marks_failure"), "marks_failure", roots), flat.resources
