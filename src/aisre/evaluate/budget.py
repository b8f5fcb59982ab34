"""Error budgets, burn rates and multi-window multi-burn-rate alerts over minute counts.

Everything here is a pure function of per-minute good/total counts (what the store's
rollups hold), so the live evaluator and "would this have alerted?" replays are the
same code. Windows are prefix-sum differences: evaluating any window at any minute
costs O(1) after one O(minutes) pass, whatever the span count behind the counts.

Young data. A window that reaches back before the SLO's first minute with events has only
part of its length observed. Its burn rate is the budget it spent: the unobserved part counts
as traffic at the observed rate with no failures, i.e. the observed error ratio times the
observed share of the window. The error budget is measured the same way, against the events
the whole budget span will hold at the observed rate. Once a window is fully observed this is
exactly the Workbook's (and Sloth's) arithmetic; before, one early failure no longer reads as
a burn over three days. Each pair also needs a minimum of events and of bad events in its
long window (:class:`aisre.core.slo.AlertGuard`). docs/alerting.md explains both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import numpy.typing as npt

from aisre.core.schema import MINUTE_NS
from aisre.core.slo import AlertWindow, AlertWindows
from aisre.evaluate.burn import error_budget

MINUTE = timedelta(minutes=1)

Counts = npt.NDArray[np.int64]


@dataclass(frozen=True)
class MinuteSeries:
    """Good and total events per minute, minute ``i`` starting at ``start_ns + i minutes``."""

    start_ns: int
    good: Counts
    total: Counts
    # Start of the SLO's first minute with events, when known (it may precede start_ns);
    # otherwise the first minute with events in this series.
    first_ns: int | None = None

    def __post_init__(self) -> None:
        if self.good.shape != self.total.shape:
            raise ValueError("good and total must have one count per minute each")

    @classmethod
    def from_lists(cls, start_ns: int, good: list[int], total: list[int]) -> MinuteSeries:
        """Build from plain lists (tests, small replays)."""
        return cls(start_ns, np.asarray(good, dtype=np.int64), np.asarray(total, dtype=np.int64))

    @property
    def minutes(self) -> int:
        return int(self.total.shape[0])


def timeslices(series: MinuteSeries, slice_minutes: int, slice_objective: float, ratio: bool = False) -> MinuteSeries:
    """Occurrences → time slices: each slice of ``slice_minutes`` with traffic is one event,
    good when its good ratio reaches ``slice_objective`` percent. The slice counts sit in
    the slice's last minute, so windows over the result count whole slices.

    With ``ratio`` (OpenSLO RatioTimeslices) a slice counts its good ratio, not 0 or 1;
    the counts are then scaled by 1,000,000 to stay integers.
    """
    n = max(1, slice_minutes)
    usable = series.minutes - series.minutes % n
    good = series.good[:usable].reshape(-1, n).sum(axis=1)
    total = series.total[:usable].reshape(-1, n).sum(axis=1)
    has = total > 0
    share = np.divide(good, total, out=np.zeros(good.shape, dtype=np.float64), where=has)
    scale = 1_000_000 if ratio else 1
    slice_good = np.where(has, np.round(share * scale) if ratio else (share * 100 >= slice_objective) * 1, 0)
    slice_total = has * scale
    out_good = np.zeros(series.minutes, dtype=np.int64)
    out_total = np.zeros(series.minutes, dtype=np.int64)
    out_good[n - 1 : usable : n] = slice_good.astype(np.int64)
    out_total[n - 1 : usable : n] = slice_total.astype(np.int64)
    return MinuteSeries(series.start_ns, out_good, out_total, series.first_ns)


class _Windows:
    """Prefix sums of bad and total events, for O(1) window sums at any minute."""

    def __init__(self, series: MinuteSeries) -> None:
        bad = series.total - series.good
        self.bad = np.concatenate(([0], np.cumsum(bad, dtype=np.int64)))
        self.total = np.concatenate(([0], np.cumsum(series.total, dtype=np.int64)))
        # Index of the first minute with events (the series length when there are none);
        # negative when the SLO's data began before the series.
        has = np.flatnonzero(series.total > 0)
        self.first = int(has[0]) if has.size else series.minutes
        if series.first_ns is not None:
            self.first = min(self.first, (series.first_ns - series.start_ns) // MINUTE_NS)

    def observed(self, end: npt.NDArray[np.int64] | int, minutes: int) -> npt.NDArray[np.int64]:
        """Minutes of the window ending before ``end`` that lie after the first event."""
        return np.clip(np.asarray(end) - self.first, 0, minutes)

    def burn_ratio(self, end: npt.NDArray[np.int64] | int, minutes: int) -> npt.NDArray[np.float64]:
        """The window's error ratio with its unobserved part counted as healthy traffic at
        the observed rate: the observed ratio times the observed share of the window."""
        return self.error_ratio(end, minutes) * (self.observed(end, minutes) / minutes)

    def sums(self, end: npt.NDArray[np.int64] | int, minutes: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(bad, total) over the ``minutes`` minutes ending before index ``end`` (exclusive)."""
        stop = np.asarray(end)
        start = np.maximum(stop - minutes, 0)
        return (
            (self.bad[stop] - self.bad[start]).astype(np.float64),
            (self.total[stop] - self.total[start]).astype(np.float64),
        )

    def error_ratio(self, end: npt.NDArray[np.int64] | int, minutes: int) -> npt.NDArray[np.float64]:
        """Bad over total in the window; 0 where there was no traffic (no traffic burns nothing)."""
        bad, total = self.sums(end, minutes)
        return np.divide(bad, total, out=np.zeros_like(bad), where=total > 0)


def _minutes(window: timedelta) -> int:
    return max(1, round(window / MINUTE))


@dataclass(frozen=True)
class BurnCondition:
    """One alert pair evaluated at a moment: both windows must burn faster than ``factor``
    and the long window must hold the guard's minimum of events and bad events."""

    name: str
    severity: str
    factor: float
    short_window: timedelta
    long_window: timedelta
    short_burn: float
    long_burn: float
    long_events: int = 0
    long_bad_events: int = 0
    long_observed: timedelta = timedelta(0)
    min_events: int = 0
    min_bad_events: int = 0

    @property
    def burning(self) -> bool:
        """Both windows burn faster than the factor (Sloth's condition)."""
        return self.short_burn > self.factor and self.long_burn > self.factor

    @property
    def enough_data(self) -> bool:
        """The long window holds the guard's minimum of events and of bad events."""
        return self.long_events >= self.min_events and self.long_bad_events >= self.min_bad_events

    @property
    def firing(self) -> bool:
        return self.burning and self.enough_data


@dataclass(frozen=True)
class DataBasis:
    """How much data an SLO's figures stand on at one moment."""

    first_ns: int | None  # start of the first minute with events in the evaluated range
    observed: timedelta  # of the budget span, the part after the first event
    span: timedelta  # the budget span: the period, or a calendar period so far
    events: int
    projected_events: float  # events the whole span holds at the observed rate

    @property
    def complete(self) -> bool:
        """The whole budget span has been observed: nothing is projected."""
        return self.observed >= self.span


@dataclass(frozen=True)
class BudgetStatus:
    """An SLO's state at one moment."""

    objective: float
    period: timedelta
    good: int
    total: int
    sli: float | None
    budget_events: float
    spent_events: int
    remaining_ratio: float
    burn_rates: dict[str, float]
    conditions: list[BurnCondition]
    time_to_exhaustion: timedelta | None
    burn_down: list[tuple[int, float]] = field(default_factory=list)
    data: DataBasis | None = None

    @property
    def page(self) -> bool:
        return any(c.firing for c in self.conditions if c.severity == "page")

    @property
    def ticket(self) -> bool:
        return any(c.firing for c in self.conditions if c.severity == "ticket")


# Windows reported as burn rates beside the alert pairs (Sloth's and Pyrra's usual set).
REPORTED_WINDOWS = (
    timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2),
    timedelta(hours=6), timedelta(days=1), timedelta(days=3),
)

_SEVERITY = {"page_quick": "page", "page_slow": "page", "ticket_quick": "ticket", "ticket_slow": "ticket"}


def evaluate(
    series: MinuteSeries,
    objective: float,
    period: timedelta,
    windows: AlertWindows,
    *,
    at_minute: int | None = None,
    burn_down_points: int = 0,
    budget_minutes: int | None = None,
    guard: tuple[int, int] = (0, 0),
) -> BudgetStatus:
    """Budget, burn rates and alert pairs at the end of minute ``at_minute`` (default: last).

    ``budget_minutes`` counts the budget over that many minutes instead of the period
    (a calendar window: the minutes since it began); alert windows stay rolling.
    ``guard`` is (min_events, min_bad_events) each pair's long window needs to fire.
    """
    if not 0 < objective < 100:
        raise ValueError(f"objective must be > 0 and < 100 (got {objective})")
    end = series.minutes if at_minute is None else at_minute + 1
    w = _Windows(series)
    period_min = budget_minutes if budget_minutes is not None else _minutes(period)
    bad, total = (float(x) for x in w.sums(end, period_min))
    observed = int(w.observed(end, period_min))
    projected = total * period_min / observed if observed else 0.0
    allowed = error_budget(objective)
    budget_events = allowed * projected
    remaining = 1.0 - (bad / budget_events) if budget_events > 0 else (1.0 if bad == 0 else float("-inf"))
    burn = {_label(win): float(w.burn_ratio(end, _minutes(win))) / allowed for win in (*REPORTED_WINDOWS, period)}
    conditions = [
        _condition(name, pair, windows, period, w, end, allowed, guard) for name, pair in windows.pairs().items()
    ]
    hour_burn = burn[_label(timedelta(hours=1))]
    exhaustion = None
    if hour_burn > 0 and remaining > 0:
        exhaustion = period * remaining / hour_burn
    basis = DataBasis(
        first_ns=series.start_ns + w.first * MINUTE_NS if w.first < end else None,
        observed=observed * MINUTE, span=period_min * MINUTE, events=int(total), projected_events=projected,
    )
    return BudgetStatus(
        objective=objective,
        period=period,
        good=int(total - bad),
        total=int(total),
        sli=(total - bad) / total if total else None,
        budget_events=budget_events,
        spent_events=int(bad),
        remaining_ratio=remaining,
        burn_rates=burn,
        conditions=conditions,
        time_to_exhaustion=exhaustion,
        burn_down=burn_down(series, objective, period, end, burn_down_points, budget_minutes, w) if burn_down_points else [],
        data=basis,
    )


def _condition(
    name: str, pair: AlertWindow, windows: AlertWindows, period: timedelta, w: _Windows, end: int, allowed: float,
    guard: tuple[int, int],
) -> BurnCondition:
    long_min = _minutes(pair.long)
    long_bad, long_total = w.sums(end, long_min)
    return BurnCondition(
        name=name,
        severity=_SEVERITY[name],
        factor=windows.burn_factor(pair, period),
        short_window=pair.short,
        long_window=pair.long,
        short_burn=float(w.burn_ratio(end, _minutes(pair.short))) / allowed,
        long_burn=float(w.burn_ratio(end, long_min)) / allowed,
        long_events=int(long_total),
        long_bad_events=int(long_bad),
        long_observed=int(w.observed(end, long_min)) * MINUTE,
        min_events=guard[0],
        min_bad_events=guard[1],
    )


def burn_down(
    series: MinuteSeries,
    objective: float,
    period: timedelta,
    end: int,
    points: int,
    budget_minutes: int | None = None,
    windows: _Windows | None = None,
    since: int = 0,
) -> list[tuple[int, float]]:
    """Remaining budget ratio at ``points`` evenly spaced moments of the period ending at ``end``
    (from the SLO's first minute with events, when that is later).

    Each point is the budget as it stood then: over the rolling window for a rolling SLO,
    from the calendar period's start for a calendar one. (minute start ns, ratio).
    ``since`` (a minute index) starts the points no earlier than that minute: a chart's range.
    """
    w = windows if windows is not None else _Windows(series)
    if budget_minutes is None:
        period_min = _minutes(period)
        # From the SLO's first minute with events: a young SLO's chart spans its data.
        first = max(1, end - period_min, min(end, w.first + 1), min(end, since))
        moments = np.unique(np.linspace(first, end, num=max(2, points)).round().astype(np.int64))
        bad, total = w.sums(moments, period_min)
    else:
        # Calendar: what was spent since the period began, at each moment.
        begin = max(0, end - budget_minutes)
        first = max(begin + 1, min(end, w.first + 1), min(end, since))
        moments = np.unique(np.linspace(first, end, num=max(2, points)).round().astype(np.int64))
        bad = (w.bad[moments] - w.bad[begin]).astype(np.float64)
        total = (w.total[moments] - w.total[begin]).astype(np.float64)
    span = budget_minutes if budget_minutes is not None else _minutes(period)
    observed = w.observed(moments, span)
    projected = np.divide(total * span, observed, out=np.zeros_like(total), where=observed > 0)
    budget = error_budget(objective) * projected
    ratio = np.where(budget > 0, 1.0 - np.divide(bad, budget, out=np.zeros_like(bad), where=budget > 0), 1.0)
    return [(series.start_ns + int(m) * MINUTE_NS, float(r)) for m, r in zip(moments, ratio, strict=True)]


def error_ratio_series(series: MinuteSeries, since: int, end: int, bucket: int) -> list[tuple[int, int, int]]:
    """Bad and total events per bucket of ``bucket`` minutes over minutes [since, end) of the
    series, buckets aligned to multiples of their length: (bucket start ns, bad, total)."""
    w = _Windows(series)
    since = min(max(0, since), end)
    aligned = since - (series.start_ns // MINUTE_NS + since) % bucket
    inner = np.arange(aligned + bucket, end, bucket, dtype=np.int64)
    edges = np.concatenate(([since], inner, [end])).astype(np.int64)
    bad = np.diff(w.bad[edges])
    total = np.diff(w.total[edges])
    return [(series.start_ns + int(a) * MINUTE_NS, int(b), int(t)) for a, b, t in zip(edges[:-1], bad, total, strict=True)]


@dataclass(frozen=True)
class AlertInterval:
    """When an alert severity fired during a replay: [start_ns, end_ns); end None if still firing."""

    severity: str
    start_ns: int
    end_ns: int | None
    peak_burn: float


def replay(
    series: MinuteSeries, objective: float, period: timedelta, windows: AlertWindows, guard: tuple[int, int] = (0, 0)
) -> list[AlertInterval]:
    """Evaluate every alert pair at the end of every minute: when would page and ticket have fired?"""
    w = _Windows(series)
    allowed = error_budget(objective)
    ends = np.arange(1, series.minutes + 1, dtype=np.int64)
    firing: dict[str, npt.NDArray[np.bool_]] = {}
    peak: dict[str, npt.NDArray[np.float64]] = {}
    min_events, min_bad = guard
    for name, pair in windows.pairs().items():
        factor = windows.burn_factor(pair, period)
        long_min = _minutes(pair.long)
        short = w.burn_ratio(ends, _minutes(pair.short)) / allowed
        long = w.burn_ratio(ends, long_min) / allowed
        long_bad, long_total = w.sums(ends, long_min)
        on = (short > factor) & (long > factor) & (long_total >= min_events) & (long_bad >= min_bad)
        severity = _SEVERITY[name]
        firing[severity] = firing.get(severity, np.zeros_like(on)) | on
        peak[severity] = np.maximum(peak.get(severity, np.zeros_like(long)), np.where(on, long, 0.0))
    intervals: list[AlertInterval] = []
    for severity, on in firing.items():
        intervals.extend(_intervals(severity, on, peak[severity], series.start_ns))
    return sorted(intervals, key=lambda a: (a.start_ns, a.severity))


def _intervals(severity: str, on: npt.NDArray[np.bool_], peak: npt.NDArray[np.float64], start_ns: int) -> list[AlertInterval]:
    # A condition evaluated at the end of minute i holds from (i + 1) minutes on.
    edges = np.diff(np.concatenate(([0], on.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    out = []
    for begin, stop in zip(starts, stops, strict=True):
        end_ns = None if stop == on.shape[0] else start_ns + int(stop + 1) * MINUTE_NS
        out.append(AlertInterval(severity, start_ns + int(begin + 1) * MINUTE_NS, end_ns, float(peak[begin:stop].max())))
    return out


def _label(window: timedelta) -> str:
    minutes = _minutes(window)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"
