"""The per-point Python commit (store/metric_fold.py, what the ClickHouse store runs and what
store/duckdb/metrics.py replaced by SQL), as the reference the DuckDB commit's results are
compared with: the same points must give the same minute rows, the same series state and
the same accepted/refused counts."""

from __future__ import annotations

from aisre.core.series import MetricPoint
from aisre.store.metric_fold import MinuteAgg, SeriesState, fold


class Reference:
    """One tenant's series and the minute rows each commit appends, in Python."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.known: dict[int, SeriesState] = {}

    def commit(self, points: list[MetricPoint]) -> tuple[int, int, dict[tuple[int, int], MinuteAgg]]:
        """(accepted, refused, {(series_id, minute_ns): the row appended})."""
        folded = fold(self.known, points, self.max_series)
        self.known.update(folded.changed)
        return folded.accepted, folded.over_limit, folded.aggs
