"""Burn-rate arithmetic from the SRE Workbook, ch. 5 (pure functions; the budget engine reuses them)."""

from __future__ import annotations

from datetime import timedelta


def error_budget(objective: float) -> float:
    """Allowed bad ratio for an objective in percent: 99.9 → 0.001 (as Sloth computes it)."""
    return (100 - objective) / 100


def burn_rate(error_ratio: float, objective: float) -> float:
    """Observed error ratio over the allowed one; 1 spends the budget exactly by period end."""
    return error_ratio / error_budget(objective)


def alert_threshold(factor: float, objective: float) -> float:
    """Error ratio an alert window must exceed: factor × (100 − objective)/100, Sloth's order."""
    return factor * error_budget(objective)


def time_to_exhaustion(period: timedelta, rate: float) -> timedelta:
    """How long a full budget lasts at a constant burn rate: period / burn rate."""
    return period / rate


def budget_consumed(rate: float, window: timedelta, period: timedelta) -> float:
    """Share of the period's budget spent when an alert over ``window`` at ``rate`` fires."""
    return rate * (window / period)


def burn_rate_for_budget(budget_fraction: float, window: timedelta, period: timedelta) -> float:
    """Burn rate that spends ``budget_fraction`` of the budget within ``window``."""
    return budget_fraction * (period / window)


def detection_time(
    objective: float, error_ratio: float, window: timedelta, rate: float = 1.0
) -> timedelta:
    """Time until an alert at ``rate`` over ``window`` fires: (1 − SLO)/error ratio × window × rate."""
    return window * (error_budget(objective) / error_ratio * rate)
