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
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from aisre.act.alerts import BUDGET_PREFIX, AlertStore, Condition, is_budget_alert, step

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
            what = f"spent ${spent:,.2f} already, {spent / amount:.0%} of"
        else:
            what = f"forecast ${forecast:,.2f} by period end (80% band ${doc['forecast_low_usd']:,.2f}–${doc['forecast_high_usd']:,.2f}), {forecast / amount:.0%} of"
        summary = (
            f"budget {doc['name']} ({scope}, {doc['period']}): {what} ${amount:,.2f} "
            f"(alert at {threshold_label(threshold)})"
            + (f"; projected exhaustion {exhaustion}" if exhaustion else "")
        )
        out.append(Condition(
            alert_name(doc["name"], threshold), doc.get("journey"), "page" if threshold >= 1 else "ticket",
            forecast >= line or spent >= line, forecast / amount, summary,
        ))
    return out


class BudgetAlertEvaluator:
    """Evaluates every cost budget on a timer and stores alert transitions. start/stop idempotent."""

    def __init__(
        self, budgets: Budgets, store: AlertStore, tenant: str, interval_s: float = 300.0, for_s: float = 0.0,
        on_change: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> None:
        self._budgets = budgets
        self._store = store
        self._tenant = tenant
        self._interval = interval_s
        self._for = for_s
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}

    def evaluate_once(self, now_ns: int | None = None) -> list[dict[str, Any]]:
        """One evaluation of every budget of every tenant; returns the alert rows it changed."""
        now = now_ns or time.time_ns()
        changed: list[dict[str, Any]] = []
        for tenant in sorted({self._tenant, *self._budgets.budget_tenants(), *self._active}):
            changed += self._evaluate_tenant(tenant, now)
        if changed and self._on_change is not None:
            try:
                self._on_change(changed)
            except Exception:  # the alerts are stored; what listens must not undo that
                log.exception("budget alert listener failed")
        return changed

    def _evaluate_tenant(self, tenant: str, now: int) -> list[dict[str, Any]]:
        active = self._active.get(tenant)
        if active is None:  # resume episodes that were open when the server stopped
            active = {(a["slo"], a["severity"]): a for a in self._store.active_alerts(tenant) if is_budget_alert(a["slo"])}
            self._active[tenant] = active
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
        changed = step(active, now, conds, tenant, self._for)
        self._store.save_alerts(changed)
        for row in changed:
            log.info("budget alert %s/%s %s: %s", tenant, row["slo"], row["state"], row["summary"])
        return changed

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="aisre-budget-alerts", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.evaluate_once()
            except Exception:  # one failed evaluation must not end alerting
                log.exception("budget alert evaluation failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
