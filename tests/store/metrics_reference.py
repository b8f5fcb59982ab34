"""The per-point Python commit that store/duckdb/metrics.py replaced by SQL, kept as the
reference its results are compared with (tests only): the same points must give the same
minute rows, the same series state and the same accepted/refused counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aisre.core.schema import MINUTE_NS
from aisre.core.series import MetricPoint
from aisre.store.duckdb.metrics import MinuteAgg, rebucket


@dataclass
class SeriesState:
    """One series as kept in ``metric_series``."""

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


def increase(state: SeriesState, p: MetricPoint) -> tuple[float, float, tuple[float, ...], list[float]] | None:
    """What a cumulative point adds since the last one, moving ``state`` on; None for a
    point no newer than the last."""
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
        if first and not (p.start_ns and p.start_ns < p.time_ns):
            added: tuple[float, float, tuple[float, ...], list[float]] = (0.0, 0.0, p.bounds, [0.0] * len(buckets))
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


class Reference:
    """One tenant's series and the minute rows each commit appends, in Python."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.known: dict[int, SeriesState] = {}

    def commit(self, points: list[MetricPoint]) -> tuple[int, int, dict[tuple[int, int], MinuteAgg]]:
        """(accepted, refused, {(series_id, minute_ns): the row appended})."""
        known = self.known
        changed: dict[int, SeriesState] = {}
        aggs: dict[tuple[int, int], MinuteAgg] = {}
        accepted = over = new = 0
        for p in sorted(points, key=lambda q: q.time_ns):
            state = changed.get(p.series_id)
            if state is None:
                old = known.get(p.series_id)
                if old is None:
                    if len(known) + new >= self.max_series:
                        over += 1
                        continue
                    new += 1
                    state = SeriesState(p.series_id, p.metric, p.labels, p.kind, p.unit, p.time_ns)
                else:
                    state = old.copy() if p.temporality == "cumulative" and p.kind != "gauge" else old
                changed[p.series_id] = state
            if state.kind != p.kind:
                over += 1
                continue
            accepted += 1
            minute = (p.time_ns // MINUTE_NS) * MINUTE_NS
            agg = aggs.setdefault((p.series_id, minute), MinuteAgg())
            if p.kind == "gauge":
                agg.add_gauge(p.value, p.time_ns)
                continue
            if p.temporality == "delta":
                added: Any = (p.value, p.sum, p.bounds, list(p.buckets))
            else:
                if state is known.get(p.series_id):
                    state = changed[p.series_id] = state.copy()
                added = increase(state, p)
            if added is None:
                continue
            if p.kind == "sum":
                agg.value += added[0]
                agg.points += 1
            else:
                agg.add_histogram(added[0], added[1], added[2], added[3])
        for sid, state in changed.items():
            known[sid] = state
        return accepted, over, aggs
