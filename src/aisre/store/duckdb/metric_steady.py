"""The steady state of metric ingest, folded in numpy instead of SQL.

Nearly every export an exporter sends after its first holds the next point of series the
store already knows: one point per series, newer than the last one kept, of the same kind,
its histogram buckets on the same bounds. For such a request the increases are a
subtraction against the series' last point, which the writer keeps in memory
(``KnownSeries``, loaded from ``metric_series`` once and kept in step by every commit), and
the commit is two statements: append the minute rows, update the last points. Anything else
(a series' first point, a retried or out-of-order point, a series twice in one request, a
histogram whose bounds moved, a NaN) goes to the SQL commit (store/duckdb/metrics.py), which
handles every case; tests/store/test_metrics_steady.py checks both give the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aisre.store.metric_fold import MetricCommit

_KINDS = {"gauge": 0, "sum": 1, "histogram": 2}
_NO_TIME = np.iinfo(np.int64).min


@dataclass
class KnownSeries:
    """One tenant's series as the writer last committed them, as arrays sorted by series id.

    ``start`` is 0 where no start time is known; ``last_ns`` is NO_TIME for a series with no
    kept cumulative point (gauges and delta series have none)."""

    ids: np.ndarray
    # Where each series' rows sat in metric_series and metric_series_buckets when read
    # (rowid; -1 for none). Updates are sent in that order: DuckDB applies an UPDATE whose
    # rows come in table order in a few ms, and in scattered order 20-60x slower.
    row: np.ndarray
    bucket_row: np.ndarray
    kind: np.ndarray
    start: np.ndarray
    last_ns: np.ndarray
    last_value: np.ndarray
    last_sum: np.ndarray
    bounds: FlatLists
    buckets: FlatLists

    @classmethod
    def load(cls, conn: duckdb.DuckDBPyConnection, tenant: str, ids: list[int] | None = None) -> KnownSeries:
        """The tenant's series (or only ``ids`` of them) as stored."""
        sql = ("SELECT s.series_id, s.rowid AS row, coalesce(b.rowid, -1) AS bucket_row, kind, start_ns, last_ns, "
               "last_value, last_sum, last_bounds, last_buckets "
               "FROM metric_series s LEFT JOIN metric_series_buckets b ON b.tenant = s.tenant AND b.series_id = s.series_id "
               "WHERE s.tenant = ?")
        params: list[Any] = [tenant]
        if ids is not None:
            sql += " AND s.series_id IN (SELECT unnest(?::BIGINT[]))"
            params.append(ids)
        t: pa.Table = conn.sql(sql + " ORDER BY s.series_id", params=params).to_arrow_table()
        return cls(
            ids=_numbers(t.column("series_id"), np.int64, 0),
            row=_numbers(t.column("row"), np.int64, -1),
            bucket_row=_numbers(t.column("bucket_row"), np.int64, -1),
            kind=np.array([_KINDS.get(k, -1) for k in t.column("kind").to_pylist()], dtype=np.int8),
            start=_numbers(t.column("start_ns"), np.int64, 0),
            last_ns=_numbers(t.column("last_ns"), np.int64, _NO_TIME),
            last_value=_numbers(t.column("last_value"), np.float64, 0.0),
            last_sum=_numbers(t.column("last_sum"), np.float64, 0.0),
            bounds=FlatLists.of(t.column("last_bounds")),
            buckets=FlatLists.of(t.column("last_buckets")),
        )

    def merge(self, other: KnownSeries) -> KnownSeries:
        """These series with ``other``'s rows in place of (or besides) their own."""
        keep = np.flatnonzero(~np.isin(self.ids, other.ids))
        order = np.argsort(np.concatenate([self.ids[keep], other.ids]), kind="stable")
        parts: dict[str, Any] = {}
        for name in ("ids", "row", "bucket_row", "kind", "start", "last_ns", "last_value", "last_sum"):
            parts[name] = np.concatenate([getattr(self, name)[keep], getattr(other, name)])[order]
        for name in ("bounds", "buckets"):
            parts[name] = FlatLists.joined(getattr(self, name).take(keep), getattr(other, name)).take(order)
        return KnownSeries(**parts)


def _numbers(column: pa.ChunkedArray, dtype: Any, null: Any) -> np.ndarray:
    return np.array(pc.fill_null(column, null).to_numpy(), dtype=dtype) if len(column) else np.empty(0, dtype)


@dataclass
class FlatLists:
    """A list of float lists per series, flat: series i holds values[starts[i]:starts[i] +
    lengths[i]], or no list when lengths[i] is -1. The steady path reads and writes them
    whole-array (a histogram keeps its number of buckets there), never list by list."""

    starts: np.ndarray
    lengths: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, column: pa.ChunkedArray | pa.Array) -> FlatLists:
        """The lists of an Arrow list column."""
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if len(arr) == 0:
            return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
        offsets = arr.offsets.to_numpy().astype(np.int64)
        lengths = np.diff(offsets)
        lengths[~np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)] = -1
        values = np.array(arr.values.to_numpy(zero_copy_only=False), dtype=np.float64)
        return cls(offsets[:-1].copy(), lengths, values)

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Flat indexes of the values of ``rows`` (which all hold a list), in order."""
        return _positions(self.starts[rows], self.lengths[rows])

    def take(self, rows: np.ndarray) -> FlatLists:
        """The lists of ``rows``, in that order, packed."""
        lengths = self.lengths[rows]
        sizes = np.maximum(lengths, 0)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if len(rows) else np.empty(0, np.int64)
        values = self.values[_positions(self.starts[rows], sizes)]
        return FlatLists(starts, lengths, values)

    @staticmethod
    def joined(a: FlatLists, b: FlatLists) -> FlatLists:
        """``a``'s lists then ``b``'s."""
        return FlatLists(np.concatenate([a.starts, b.starts + len(a.values)]),
                         np.concatenate([a.lengths, b.lengths]), np.concatenate([a.values, b.values]))

    def arrow(self, rows: np.ndarray) -> pa.Array:
        """The lists of ``rows`` as an Arrow list array (nulls where there is none)."""
        packed = self.take(rows)
        sizes = np.maximum(packed.lengths, 0)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(packed.values, pa.float64()),
                                        mask=pa.array(packed.lengths < 0))


@dataclass
class SteadyFold:
    """What the steady requests of a commit add: minute rows, last points, answers."""

    rows: list[pa.Table] = field(default_factory=list)
    slots: list[np.ndarray] = field(default_factory=list)  # series whose last point moved
    histograms: list[np.ndarray] = field(default_factory=list)  # and those of them whose buckets did
    results: list[MetricCommit] = field(default_factory=list)


def fold_steady(known: KnownSeries, tables: list[pa.Table], fold: SteadyFold) -> int:
    """Fold the leading requests of ``tables`` that are steady into ``fold``, moving
    ``known`` on in place as each would be committed; returns how many were."""
    for count, table in enumerate(tables):
        if not _fold_one(known, table, fold):
            return count
    return len(tables)


def _list_parts(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return arr.offsets.to_numpy(), arr.values.to_numpy()


def _fold_one(known: KnownSeries, t: pa.Table, fold: SteadyFold) -> bool:
    n = t.num_rows
    if n == 0:
        fold.results.append(MetricCommit())
        return True
    sid = t.column("series_id").to_numpy()
    slot = np.searchsorted(known.ids, sid)
    if (slot >= len(known.ids)).any():
        return False
    if not (known.ids[slot] == sid).all() or np.unique(sid).size != n:
        return False
    kind_col = t.column("kind")
    is_hist = np.asarray(pc.equal(kind_col, "histogram").to_numpy(zero_copy_only=False), dtype=bool)
    is_gauge = np.asarray(pc.equal(kind_col, "gauge").to_numpy(zero_copy_only=False), dtype=bool)
    code = np.where(is_hist, 2, np.where(is_gauge, 0, 1))
    if not (known.kind[slot] == code).all():
        return False
    value = t.column("value").to_numpy()
    total = t.column("sum").to_numpy()
    if np.isnan(value).any() or np.isnan(total).any():
        return False
    cumulative = ~is_gauge & np.asarray(pc.not_equal(t.column("temporality"), "delta").to_numpy(zero_copy_only=False),
                                        dtype=bool)
    time_ns = t.column("time_ns").to_numpy()
    start = t.column("start_ns").to_numpy()
    if (known.last_ns[slot[cumulative]] == _NO_TIME).any():
        return False  # a series' first cumulative point: the SQL commit knows what it adds
    # A cumulative point no newer than the kept one (a retried export, or one overtaken by a
    # later export of the same series) adds nothing and moves nothing.
    fresh = cumulative & (time_ns > known.last_ns[slot])
    stale = cumulative & ~fresh
    fs = slot[fresh]
    prev_start = known.start[fs]
    f_start = start[fresh]
    reset = (((f_start != 0) & (prev_start != 0) & (f_start != prev_start))
             | (value[fresh] < known.last_value[fs]))

    b_off, b_val = _list_parts(t.column("bounds"))
    k_off, k_val = _list_parts(t.column("buckets"))
    buckets = k_val.astype(np.float64, copy=True)
    # Histograms keep their bounds (else the SQL commit rebuckets); those not reset add
    # what each bucket gained since the kept point.
    hist = np.flatnonzero(fresh & is_hist)
    if hist.size:
        hs = slot[hist]
        b_len = b_off[hist + 1] - b_off[hist]
        k_len = k_off[hist + 1] - k_off[hist]
        if not ((known.bounds.lengths[hs] == b_len).all() and (known.buckets.lengths[hs] == k_len).all()):
            return False
        if not (known.bounds.values[known.bounds.positions(hs)] == b_val[_positions(b_off[hist], b_len)]).all():
            return False
        gained = ~reset[np.searchsorted(np.flatnonzero(fresh), hist)]
        at = _positions(k_off[hist[gained]], k_len[gained])
        buckets[at] = np.maximum(0.0, k_val[at] - known.buckets.values[known.buckets.positions(hs[gained])])

    a_value = value.copy()
    a_sum = total.copy()
    f_value = value[fresh]
    a_value[fresh] = np.where(reset, f_value, f_value - known.last_value[fs])
    a_sum[fresh] = np.where(reset, total[fresh], np.maximum(0.0, total[fresh] - known.last_sum[fs]))
    a_value[stale] = 0.0
    no_hist = ~is_hist | stale
    no_gauge = ~is_gauge
    fold.rows.append(pa.table({
        "series_id": t.column("series_id"),
        "minute_ns": t.column("minute_ns"),
        "value": pa.array(a_value),
        "points": pa.array((~stale).astype(np.int64)),
        "min": pa.array(value, mask=no_gauge),
        "max": pa.array(value, mask=no_gauge),
        "last": pa.array(value, mask=no_gauge),
        "last_ns": pa.array(time_ns, mask=no_gauge),
        "sum": pa.array(a_sum, mask=no_hist),
        "bounds": pa.ListArray.from_arrays(pa.array(b_off, pa.int32()), pa.array(b_val, pa.float64()),
                                           mask=pa.array(no_hist)),
        "buckets": pa.ListArray.from_arrays(pa.array(k_off, pa.int32()), pa.array(buckets, pa.float64()),
                                            mask=pa.array(no_hist)),
    }))

    # The kept point moves on (what the SQL commit's UPDATE of metric_series writes); its
    # bounds stay as they were (checked equal above).
    known.start[fs] = np.where(f_start != 0, f_start, prev_start)
    known.last_ns[fs] = time_ns[fresh]
    known.last_value[fs] = f_value
    known.last_sum[fs] = total[fresh]
    if hist.size:
        known.buckets.values[known.buckets.positions(slot[hist])] = k_val[_positions(k_off[hist], k_len)]
    fold.slots.append(fs)
    fold.histograms.append(slot[hist])
    fold.results.append(MetricCommit(n, 0, {int(m) for m in np.unique(t.column("minute_ns").to_numpy())}))
    return True


def _positions(offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The flat indexes of list elements: offsets[i] .. offsets[i] + lengths[i], for every i."""
    total = int(lengths.sum())
    if not total:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.repeat(offsets - (ends - lengths), lengths) + np.arange(total)


def last_points(known: KnownSeries, slots: np.ndarray) -> pa.Table:
    """The kept points of ``slots`` (scalars) as rows for the UPDATE of metric_series, in
    the table's order."""
    slots = slots[np.argsort(known.row[slots], kind="stable")]
    start = known.start[slots]
    return pa.table({
        "series_id": pa.array(known.ids[slots]),
        "start_ns": pa.array(start, mask=start == 0),
        "last_ns": pa.array(known.last_ns[slots]),
        "last_value": pa.array(known.last_value[slots]),
        "last_sum": pa.array(known.last_sum[slots]),
    })


def last_buckets(known: KnownSeries, slots: np.ndarray) -> pa.Table:
    """The kept bucket counts of histogram ``slots`` as rows for the UPDATE of
    metric_series_buckets, in the table's order."""
    slots = slots[np.argsort(known.bucket_row[slots], kind="stable")]
    return pa.table({"series_id": pa.array(known.ids[slots]), "last_buckets": known.buckets.arrow(slots)})
