"""Cost-budget alerts: each budget threshold that the forecast spend at period end (or
the spend so far) reaches becomes an alert episode in the same table, with the same
pending → firing → resolved life, as the SLO alerts (act/alerts.py), so it shows in
``/api/alerts`` and reaches incidents the same way.

One episode per (budget, threshold), named ``budget:NAME@80%``. A threshold below 100 %
raises a ticket; 100 % or more a page (the budget will run out before the period ends).
Forecasts take a statsforecast fit per budget, so this runs on its own, slower loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from aisre.act.alerts import BUDGET_PREFIX, AlertStore, Condition, EpisodeEvaluator, is_budget_alert
from aisre.core.display import money

log = logging.getLogger(__name__)


class Budgets(Protocol):
    """What the evaluator needs of the cost engine (evaluate/cost CostEngine)."""

    def budgets(self, tenant: str, now_ns: int | None = None) -> list[dict[str, Any]]: ...

    def budget_tenants(self) -> list[str]: ...


def threshold_label(share: float) -> str:
    """0.8 → '80%', 1.25 → '125%', 0.875 → '87.5%'."""
    return f"{share * 100:.4g}%"


def alert_name(budget: str, threshold: float) -> str:
    return f"{BUDGET_PREFIX}{budget}@{threshold_label(threshold)}"


def budget_of(alert: str) -> str:
    """The budget an alert name belongs to: 'budget:ask-monthly@80%' → 'ask-monthly'."""
    return alert[len(BUDGET_PREFIX):].rsplit("@", 1)[0]


def budget_conditions(doc: dict[str, Any]) -> list[Condition]:
    """One condition per threshold of a budget status document (CostEngine.budget_status)."""
    amount = float(doc["amount_usd"])
    forecast, spent = float(doc["forecast_usd"]), float(doc["spent_usd"])
    scope = f"journey {doc['journey']}" if doc.get("journey") else "whole tenant"
    exhaustion = doc.get("projected_exhaustion")
    out = []
    for threshold in doc["thresholds"]:
        line = threshold * amount
        if spent >= line:
            what = f"spent {money(spent)} already, {spent / amount:.0%} of"
        else:
            what = (f"forecast {money(forecast)} by period end ({doc.get('forecast_model', 'forecast')}; 80% band "
                    f"{money(doc['forecast_low_usd'])}–{money(doc['forecast_high_usd'])}), {forecast / amount:.0%} of")
        summary = (
            f"budget {doc['name']} ({scope}, {doc['period']}): {what} {money(amount)} "
            f"(alert at {threshold_label(threshold)})"
            + (f"; projected exhaustion {exhaustion}" if exhaustion else "")
        )
        out.append(Condition(
            alert_name(doc["name"], threshold), doc.get("journey"), "page" if threshold >= 1 else "ticket",
            forecast >= line or spent >= line, forecast / amount, summary,
        ))
    return out


class BudgetAlertEvaluator(EpisodeEvaluator):
    """Budget alert episodes: one per threshold the forecast (or the spend) reaches."""

    thread_name = "aisre-budget-alerts"

    def __init__(
        self, budgets: Budgets, store: AlertStore, tenant: str, interval_s: float = 300.0, for_s: float = 0.0,
        on_change: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> None:
        super().__init__(store, tenant, interval_s, for_s, on_change)
        self._budgets = budgets

    def _tenants(self) -> set[str]:
        return {*self._budgets.budget_tenants(), *self._active}

    def _owns(self, name: str) -> bool:
        return is_budget_alert(name)

    def _conditions(self, tenant: str, now: int, active: dict[tuple[str, str], dict[str, Any]]) -> list[Condition]:
        conds: list[Condition] = []
        unknown: set[str] = set()  # budgets whose forecast failed: their episodes stay as they are
        for doc in self._budgets.budgets(tenant, now):
            try:
                conds += budget_conditions(doc)
            except (KeyError, TypeError, ValueError):
                log.exception("budget %s/%s could not be evaluated", tenant, doc.get("name"))
                unknown.add(str(doc.get("name")))
        known = {c.slo for c in conds}
        for (name, severity), episode in list(active.items()):
            if name not in known and budget_of(name) not in unknown:
                conds.append(Condition(name, episode.get("journey"), severity, False, 0.0,
                                       f"{name}: budget or threshold removed"))
        return conds
