"""Metric points folded one at a time into series state and minute rows, in Python.

The ClickHouse store commits metrics this way (its series state is read back at every
commit, so any node may take any export); the DuckDB store does the same folding in SQL
over a whole Arrow batch (store/duckdb/metrics.py), and tests/store/test_metrics_columnar.py
checks the two agree point for point.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from aisre.core.schema import MINUTE_NS
from aisre.core.series import MetricPoint


@dataclass
class MetricCommit:
    """The outcome of one commit: points accepted, refused past the series limit, and minutes touched."""

    accepted: int = 0
    over_limit: int = 0
    minutes: set[int] = field(default_factory=set)


@dataclass
class MinuteAgg:
    """What a commit adds to one (series, minute)."""

    value: float = 0.0
    points: int = 0
    min: float | None = None
    max: float | None = None
    last: float | None = None
    last_ns: int | None = None
    sum: float | None = None
    bounds: tuple[float, ...] | None = None
    buckets: list[float] | None = None

    def add_gauge(self, v: float, at: int) -> None:
        self.value += v
        self.points += 1
        self.min = v if self.min is None else min(self.min, v)
        self.max = v if self.max is None else max(self.max, v)
        if self.last_ns is None or at >= self.last_ns:
            self.last, self.last_ns = v, at

    def add_histogram(self, count: float, total: float, bounds: tuple[float, ...], buckets: Iterable[float]) -> None:
        self.value += count
        self.points += 1
        self.sum = (self.sum or 0.0) + total
        counts = list(buckets)
        if self.bounds is None or self.buckets is None:
            self.bounds, self.buckets = bounds, counts
            return
        if bounds != self.bounds:
            union = tuple(sorted(set(self.bounds) | set(bounds)))
            self.buckets = rebucket(self.bounds, self.buckets, union)
            counts = rebucket(bounds, counts, union)
            self.bounds = union
        self.buckets = [a + b for a, b in zip(self.buckets, counts, strict=True)]

    def merge(self, other: MinuteAgg) -> None:
        """Fold a stored row into this one."""
        if other.bounds is not None and other.buckets is not None:
            self.add_histogram(other.value, other.sum or 0.0, other.bounds, other.buckets)
            self.points += other.points - 1
            return
        self.value += other.value
        self.points += other.points
        for name, pick in (("min", min), ("max", max)):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None:
                setattr(self, name, theirs if mine is None else pick(mine, theirs))
        if other.last_ns is not None and (self.last_ns is None or other.last_ns > self.last_ns):
            self.last, self.last_ns = other.last, other.last_ns
        if other.sum is not None:
            self.sum = (self.sum or 0.0) + other.sum


def rebucket(bounds: tuple[float, ...], counts: list[float], target: tuple[float, ...]) -> list[float]:
    """Move bucket counts onto ``target`` bounds: each bucket goes to the first target
    bucket whose bound is at least its own (exact when ``target`` holds every bound)."""
    out = [0.0] * (len(target) + 1)
    for i, n in enumerate(counts):
        if not n:
            continue
        j = bisect.bisect_left(target, bounds[i]) if i < len(bounds) else len(target)
        out[j] += n
    return out


@dataclass
class SeriesState:
    """One series as kept between commits."""

    series_id: int
    metric: str
    labels: str
    kind: str
    unit: str
    first_ns: int
    start_ns: int | None = None
    last_ns: int | None = None
    last_value: float | None = None
    last_sum: float | None = None
    last_bounds: tuple[float, ...] | None = None
    last_buckets: tuple[float, ...] | None = None

    def copy(self) -> SeriesState:
        return SeriesState(**self.__dict__)


Added = tuple[float, float, tuple[float, ...], list[float]]


def increase(state: SeriesState, p: MetricPoint) -> Added | None:
    """What a cumulative point adds since the last one, moving ``state`` on; None for a
    point no newer than the last (a retried or reordered export adds nothing)."""
    if state.last_ns is not None and p.time_ns <= state.last_ns:
        return None
    first = state.last_ns is None
    reset = (
        first
        or (p.start_ns and state.start_ns and p.start_ns != state.start_ns)
        or p.value < (state.last_value or 0.0)
    )
    buckets = list(p.buckets)
    if reset:
        # A reset counts the new value; a first point counts only when its start says it began here.
        if first and not (p.start_ns and p.start_ns < p.time_ns):
            added: Added = (0.0, 0.0, p.bounds, [0.0] * len(buckets))
        else:
            added = (p.value, p.sum, p.bounds, buckets)
    else:
        prev = list(state.last_buckets or ())
        if state.last_bounds != p.bounds and p.kind == "histogram":
            prev = rebucket(state.last_bounds or (), prev, p.bounds)
        diff = [max(0.0, a - b) for a, b in zip(buckets, prev, strict=False)] if prev else buckets
        added = (p.value - (state.last_value or 0.0), max(0.0, p.sum - (state.last_sum or 0.0)), p.bounds, diff)
    state.start_ns = p.start_ns or state.start_ns
    state.last_ns = p.time_ns
    state.last_value = p.value
    state.last_sum = p.sum
    state.last_bounds = p.bounds
    state.last_buckets = p.buckets
    return added


@dataclass
class Folded:
    """One commit's outcome: counts, the series whose kept state moved, the minute rows."""

    accepted: int = 0
    over_limit: int = 0
    changed: dict[int, SeriesState] = field(default_factory=dict)  # every series the commit touched
    moved: set[int] = field(default_factory=set)  # new series, or a cumulative point moved them on
    aggs: dict[tuple[int, int], MinuteAgg] = field(default_factory=dict)  # (series_id, minute_ns) -> row


def fold(known: dict[int, SeriesState], points: list[MetricPoint], max_series: int) -> Folded:
    """Fold ``points`` (in time order) against the series ``known`` so far, without changing
    it: the series limit refuses points of new series past it, a series sent as another kind
    than its first is refused too, everything else is counted."""
    out = Folded()
    new = 0
    for p in sorted(points, key=lambda q: q.time_ns):
        state = out.changed.get(p.series_id)
        if state is None:
            old = known.get(p.series_id)
            if old is None:
                if len(known) + new >= max_series:
                    out.over_limit += 1
                    continue
                new += 1
                state = SeriesState(p.series_id, p.metric, p.labels, p.kind, p.unit, p.time_ns)
                out.moved.add(p.series_id)
            else:
                state = old.copy() if p.temporality == "cumulative" and p.kind != "gauge" else old
            out.changed[p.series_id] = state
        if state.kind != p.kind:
            out.over_limit += 1
            continue
        out.accepted += 1
        minute = (p.time_ns // MINUTE_NS) * MINUTE_NS
        agg = out.aggs.setdefault((p.series_id, minute), MinuteAgg())
        if p.kind == "gauge":
            agg.add_gauge(p.value, p.time_ns)
            continue
        added: Added | None
        if p.temporality == "delta":
            added = (p.value, p.sum, p.bounds, list(p.buckets))
        else:
            if state is known.get(p.series_id):  # first cumulative point of a delta-sent series
                state = out.changed[p.series_id] = state.copy()
            added = increase(state, p)
            out.moved.add(p.series_id)
        if added is None:
            continue
        if p.kind == "sum":
            agg.value += added[0]
            agg.points += 1
        else:
            agg.add_histogram(added[0], added[1], added[2], added[3])
    return out


def ratio_minutes(sums: dict[int, list[float]], counts_good: bool) -> list[tuple[int, int, int]]:
    """(minute_ns, good, total) of a ratio SLI from per-minute [good-or-bad, total] sums:
    whole events, good kept within 0..total, minutes without events left out."""
    rows = []
    for minute, (part, total) in sorted(sums.items()):
        total_n = round(total)
        good_n = round(part) if counts_good else total_n - round(part)
        if total_n > 0:
            rows.append((minute, min(max(good_n, 0), total_n), total_n))
    return rows
