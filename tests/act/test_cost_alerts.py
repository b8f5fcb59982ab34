"""Budget alerts: a budget whose forecast crosses 80 % opens an alert episode in the alerts
table (pending → firing → resolved) and an incident, like an SLO alert; real DuckDB."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisre.act.alerts import AlertEvaluator
from aisre.act.cost_alerts import BudgetAlertEvaluator, budget_of, threshold_label
from aisre.act.incidents import IncidentManager
from aisre.evaluate.cost import CostEngine
from aisre.evaluate.slo import SloEngine
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from aisre.store.duckdb.cost import DuckDBCost
from tests.otlp_factory import chat_runs, journey_request

S = 10**9
HOUR = 3600 * S
# Mid-month, so the month ahead is long and the forecast is far above the spend so far.
NOW = int(dt.datetime(2026, 11, 15, 12, 30, tzinfo=dt.UTC).timestamp()) * S


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path / "b.duckdb"))
    yield s
    s.close()


def _spend_last_day(store: DuckDBStore) -> None:
    """Five ask runs at the start of each of the last 24 hours (gpt-4o-mini + an embedding)."""
    for h in range(24, 0, -1):
        request, _ = journey_request(5, start_ns=NOW // HOUR * HOUR - h * HOUR + 60 * S)
        flat = flatten(request, "t")
        store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()


def test_names() -> None:
    assert threshold_label(0.8) == "80%" and threshold_label(1.0) == "100%" and threshold_label(0.875) == "87.5%"
    assert budget_of("budget:ask@monthly@80%") == "ask@monthly"


def test_forecast_crossing_80_percent_fires_reaches_incidents_and_resolves(store: DuckDBStore) -> None:
    _spend_last_day(store)
    cost = CostEngine(DuckDBCost(store))
    cost.put_budget("t", {"name": "ask-monthly", "journey": "ask", "period": "month", "amount_usd": 1.0})
    probe = cost.budgets("t", NOW)[0]
    assert probe["spent_usd"] > 0 and probe["forecast_usd"] > 10 * probe["spent_usd"]  # two weeks still to come
    # An amount the forecast reaches 90 % of: past the 80 % threshold, short of 100 %.
    amount = probe["forecast_usd"] / 0.9
    cost.put_budget("t", {"name": "ask-monthly", "journey": "ask", "period": "month", "amount_usd": amount,
                          "thresholds": [0.8, 1.0]})
    doc = cost.budgets("t", NOW)[0]
    assert doc["spent_share"] < 0.1 and doc["forecast_share"] == pytest.approx(0.9, rel=1e-6)

    manager = IncidentManager(store.incidents, None, "t", clock=lambda: NOW)
    evaluator = BudgetAlertEvaluator(cost, store, "t", on_change=manager.on_slo_alerts)
    changed = evaluator.evaluate_once(NOW)
    assert [(r["slo"], r["severity"], r["state"]) for r in changed] == [("budget:ask-monthly@80%", "ticket", "firing")]
    stored = store.list_alerts("t")
    assert len(stored) == 1 and stored[0]["state"] == "firing" and stored[0]["journey"] == "ask"
    assert stored[0]["peak_burn"] == pytest.approx(0.9, rel=1e-6)
    assert "forecast $" in stored[0]["summary"] and "90% of" in stored[0]["summary"] and "alert at 80%" in stored[0]["summary"]

    # It reached incidents as a budget alert: its own group, a low severity.
    incidents = manager.list_incidents(None, None, None, None, 10, "t")
    assert len(incidents) == 1
    incident = incidents[0]
    assert (incident["source"], incident["severity"], incident["journey"], incident["state"]) == ("budget", "sev4", "ask", "open")
    assert "ask-monthly" in incident["title"]

    # The SLO evaluator (no SLOs here) leaves budget episodes alone, and a restarted budget
    # evaluator resumes the open one instead of opening another.
    assert AlertEvaluator(SloEngine(store), store, "t").evaluate_once(NOW + S) == []
    again = BudgetAlertEvaluator(cost, store, "t", on_change=manager.on_slo_alerts)
    assert again.evaluate_once(NOW + S)[0]["id"] == stored[0]["id"]
    assert len(store.list_alerts("t")) == 1

    # Budget raised: the forecast falls under 80 %, the episode resolves and the incident calms.
    cost.put_budget("t", {"name": "ask-monthly", "journey": "ask", "period": "month", "amount_usd": amount * 2,
                          "thresholds": [0.8, 1.0]})
    resolved = again.evaluate_once(NOW + 2 * S)
    assert [(r["slo"], r["state"], r["ended_ns"]) for r in resolved] == [("budget:ask-monthly@80%", "resolved", NOW + 2 * S)]
    assert manager.list_incidents(None, None, None, None, 10, "t")[0]["state"] == "mitigated"


def test_spend_past_the_budget_pages_and_a_deleted_budget_closes_its_episodes(store: DuckDBStore) -> None:
    _spend_last_day(store)
    cost = CostEngine(DuckDBCost(store))
    cost.put_budget("t", {"name": "all", "period": "month", "amount_usd": 1.0})
    spent = cost.budgets("t", NOW)[0]["spent_usd"]
    cost.put_budget("t", {"name": "all", "period": "month", "amount_usd": spent / 2, "thresholds": [0.5, 1.0]})
    evaluator = BudgetAlertEvaluator(cost, store, "t")
    changed = evaluator.evaluate_once(NOW)
    assert {(r["slo"], r["severity"], r["state"]) for r in changed} == {
        ("budget:all@50%", "ticket", "firing"), ("budget:all@100%", "page", "firing")}
    assert all("spent $" in r["summary"] and "whole tenant" in r["summary"] for r in changed)
    cost.delete_budget("t", "all")
    closed = evaluator.evaluate_once(NOW + S)
    assert {(r["slo"], r["state"]) for r in closed} == {("budget:all@50%", "resolved"), ("budget:all@100%", "resolved")}
    assert store.active_alerts("t") == []


def test_a_young_journey_burning_its_budget_in_hours_pages_from_its_first_40_minutes(store: DuckDBStore) -> None:
    """Two runs a minute at $0.0463 each ($5.56/h) for 40 minutes: a $50 monthly budget runs
    out ~9 h after the first run. The run-rate forecast sees it, and both thresholds fire."""
    t0 = NOW - 40 * 60 * S
    starts = list(range(t0, NOW, 30 * S))
    request = chat_runs(starts, [(12_000, 704), (18_000, 1056)] * (len(starts) // 2))
    flat = flatten(request, "t")
    store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()
    cost = CostEngine(DuckDBCost(store))
    cost.put_budget("t", {"name": "young", "journey": "ask", "period": "month", "amount_usd": 50.0})
    doc = cost.budgets("t", NOW)[0]
    assert doc["spent_usd"] == pytest.approx(80 * 0.0463) and doc["forecast_model"] == "run rate"
    exhaustion = dt.datetime.fromisoformat(doc["projected_exhaustion"].replace("Z", "+00:00")).timestamp() * S
    assert abs(exhaustion - (t0 + 9 * HOUR)) < 15 * 60 * S
    changed = BudgetAlertEvaluator(cost, store, "t").evaluate_once(NOW)
    assert {(r["slo"], r["severity"], r["state"]) for r in changed} == {
        ("budget:young@80%", "ticket", "firing"), ("budget:young@100%", "page", "firing")}
    assert all(f"projected exhaustion {doc['projected_exhaustion']}" in r["summary"] for r in changed)
    assert "(run rate; 80% band" in next(r["summary"] for r in changed if r["slo"] == "budget:young@80%")
