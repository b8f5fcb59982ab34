"""OTLP metric points → per-minute series rollups on ClickHouse, and the metric SLIs
counted from them.

The folding of points (cumulative → increases, resets, retried exports adding nothing,
the per-tenant series limit) is store/metric_fold.py's, point by point; DuckDB does the
same in SQL over whole batches, and a test checks they agree. Where it is kept: series state in ``metric_series`` (versioned rows, read at each commit
so no node keeps state another needs) and minutes in ``metric_minutes``, an
AggregatingMergeTree the engine folds (0006_metrics.sql).
"""

from __future__ import annotations

import hashlib
import time

import orjson
import pyarrow as pa

from aisre.core.model import SliRule
from aisre.core.schema import MINUTE_NS
from aisre.core.series import MetricPoint, MetricSelector
from aisre.store.clickhouse.client import Client
from aisre.store.duckdb.metrics import METRIC_SLI_KINDS
from aisre.store.metric_fold import MetricCommit, MinuteAgg, SeriesState, fold, ratio_minutes

__all__ = ["METRIC_SLI_KINDS", "ClickHouseMetricTables", "metric_slo_counts"]

_SERIES = ("series_id, metric, labels, kind, unit, first_ns, start_ns, last_ns, last_value, last_sum, "
           "last_bounds, last_buckets")
_MINUTES_IN = pa.schema([
    ("tenant", pa.string()), ("series_id", pa.int64()), ("minute_ns", pa.int64()), ("bounds", pa.list_(pa.float64())),
    ("value", pa.float64()), ("points", pa.int64()), ("min", pa.float64()), ("max", pa.float64()),
    ("last_ns", pa.int64()), ("last", pa.float64()), ("sum", pa.float64()),
    ("buckets", pa.list_(pa.float64())),
])
# Per (series, minute, bounds): the rows the engine may not have folded yet, folded.
_FOLDED = (
    "SELECT series_id, minute_ns, bounds, sum(value) AS value, sum(points) AS points, min(min) AS min, "
    "max(max) AS max, tupleElement(max(last_at), 1) AS last_ns, tupleElement(max(last_at), 2) AS last_value, "
    "sum(sum) AS sum, sumForEachMerge(buckets) AS buckets "
    "FROM metric_minutes WHERE tenant = {tenant:String} AND series_id IN {ids:Array(Int64)} "
    "AND minute_ns >= {start:Int64} AND minute_ns < {end:Int64} "
    "GROUP BY series_id, minute_ns, bounds ORDER BY series_id, minute_ns, bounds"
)


class ClickHouseMetricTables:
    """Series state and minute rollups in ClickHouse (writer thread only)."""

    def __init__(self, client: Client, max_series: int) -> None:
        self._client = client
        self.max_series = max_series
        self._series: dict[str, dict[int, SeriesState]] = {}
        self._unfolded: dict[str, set[int]] = {}
        self._token = ""

    def commit(self, tenant: str, points: list[MetricPoint]) -> MetricCommit:
        """Fold ``points`` into the rollups (see MetricTables.commit)."""
        digest = hashlib.sha256(tenant.encode())
        for p in sorted(points, key=lambda q: (q.series_id, q.time_ns)):
            digest.update(f"\x00{p.series_id}\x00{p.time_ns}\x00{p.start_ns}\x00{p.value!r}".encode())
        self._token = f"metrics:{digest.hexdigest()}"
        known = self.series_of(tenant)
        folded = fold(known, points, self.max_series)
        if folded.aggs or folded.moved:
            self._write(tenant, {sid: folded.changed[sid] for sid in folded.moved}, folded.aggs)
        known.update(folded.changed)
        minutes = {minute for _, minute in folded.aggs}
        self._unfolded.setdefault(tenant, set()).update(minutes)
        return MetricCommit(folded.accepted, folded.over_limit, minutes)

    def series_of(self, tenant: str) -> dict[int, SeriesState]:
        """The tenant's series as stored now (read at every commit: another ingest node may
        have moved a cumulative series on since this one last saw it)."""
        rows = self._client.query(
            f"SELECT {_SERIES} FROM metric_series FINAL WHERE tenant = {{tenant:String}}", {"tenant": tenant}
        ).to_pylist()
        known: dict[int, SeriesState] = {}
        for r in rows:
            seen = r["last_ns"] is not None
            known[int(r["series_id"])] = SeriesState(
                int(r["series_id"]), r["metric"], r["labels"], r["kind"], r["unit"], int(r["first_ns"]), r["start_ns"],
                r["last_ns"], r["last_value"], r["last_sum"],
                tuple(r["last_bounds"]) if seen else None, tuple(r["last_buckets"]) if seen else None,
            )
        self._series[tenant] = known
        return known

    def _write(self, tenant: str, changed: dict[int, SeriesState], aggs: dict[tuple[int, int], MinuteAgg]) -> None:
        # Minutes before series state: a commit cut short between the two is retried from
        # the state it started from and inserts the same minutes again, with the same token
        # (its points), which the engine drops (in the view's target too).
        if aggs:
            rows = list(aggs.items())
            table = pa.table({
                "tenant": [tenant] * len(rows),
                "series_id": [k[0] for k, _ in rows],
                "minute_ns": [k[1] for k, _ in rows],
                "bounds": [list(a.bounds) if a.bounds is not None else [] for _, a in rows],
                "value": [float(a.value) for _, a in rows],
                "points": [int(a.points) for _, a in rows],
                "min": [a.min for _, a in rows],
                "max": [a.max for _, a in rows],
                "last_ns": [a.last_ns if a.last_ns is not None else -1 for _, a in rows],
                "last": [a.last if a.last is not None else 0.0 for _, a in rows],
                "sum": [float(a.sum or 0.0) for _, a in rows],
                "buckets": [[float(n) for n in a.buckets] if a.buckets is not None else [] for _, a in rows],
            }, schema=_MINUTES_IN)
            self._client.insert_arrow("metric_minutes_in", table, {
                "insert_deduplicate": 1, "deduplicate_blocks_in_dependent_materialized_views": 1,
                "insert_deduplication_token": self._token})
        if changed:
            states = list(changed.values())
            version = time.time_ns()
            self._client.insert_arrow("metric_series", pa.table({
                "tenant": [tenant] * len(states),
                "series_id": pa.array([s.series_id for s in states], pa.int64()),
                "metric": [s.metric for s in states],
                "labels": [s.labels for s in states],
                "kind": [s.kind for s in states],
                "unit": [s.unit for s in states],
                "first_ns": pa.array([s.first_ns for s in states], pa.int64()),
                "start_ns": pa.array([s.start_ns for s in states], pa.int64()),
                "last_ns": pa.array([s.last_ns for s in states], pa.int64()),
                "last_value": pa.array([s.last_value for s in states], pa.float64()),
                "last_sum": pa.array([s.last_sum for s in states], pa.float64()),
                "last_bounds": pa.array([list(s.last_bounds or ()) for s in states], pa.list_(pa.float64())),
                "last_buckets": pa.array([[float(n) for n in s.last_buckets or ()] for s in states],
                                         pa.list_(pa.float64())),
                "version": pa.array([version] * len(states), pa.int64()),
            }))

    def compact(self, before_ns: int) -> int:
        """Have the engine fold every minute's rows now (it does so in its own merges
        anyway); returns the minutes this process wrote before ``before_ns`` since the last
        compaction."""
        due = {(t, m) for t, minutes in self._unfolded.items() for m in minutes if m < before_ns}
        if not due:
            return 0
        self._client.command("OPTIMIZE TABLE metric_minutes FINAL")
        for tenant, minutes in self._unfolded.items():
            minutes.difference_update({m for t, m in due if t == tenant})
        return len(due)

    def minutes(self, tenant: str, series_ids: list[int], start_ns: int, end_ns: int) -> list[tuple[int, int, MinuteAgg]]:
        """(series_id, minute_ns, the minute folded from every row written for it)."""
        if not series_ids:
            return []
        found = self._client.query(_FOLDED, {"tenant": tenant, "ids": [int(i) for i in series_ids],
                                             "start": int(start_ns), "end": int(end_ns)}).to_pylist()
        out: list[tuple[int, int, MinuteAgg]] = []
        for row in found:
            key = (int(row["series_id"]), int(row["minute_ns"]))
            at, last = (None, None) if row["last_ns"] < 0 else (int(row["last_ns"]), float(row["last_value"]))
            hist = len(row["buckets"]) > 0
            part = MinuteAgg(float(row["value"]), int(row["points"]), row["min"], row["max"], last, at,
                             float(row["sum"]) if hist else None)
            if out and (out[-1][0], out[-1][1]) == key:
                agg = out[-1][2]
                agg.merge(MinuteAgg(part.value, part.points, part.min, part.max, part.last, part.last_ns, part.sum))
            else:
                agg = MinuteAgg(part.value, part.points, part.min, part.max, part.last, part.last_ns, part.sum)
                out.append((key[0], key[1], agg))
            if hist:
                # Bucket counts onto the union of the minute's bounds (as store/duckdb folds them).
                agg.add_histogram(0.0, 0.0, tuple(row["bounds"]), [float(n) for n in row["buckets"]])
                agg.points -= 1
        return out

    def matching(self, tenant: str, selector: MetricSelector | None) -> list[int]:
        """Ids of the tenant's series the selector picks."""
        if selector is None:
            return []
        rows = self._client.query(
            "SELECT series_id, labels FROM metric_series FINAL WHERE tenant = {tenant:String} AND metric = {metric:String}",
            {"tenant": tenant, "metric": selector.metric}).to_pylist()
        return [int(r["series_id"]) for r in rows if selector.matches(selector.metric, orjson.loads(r["labels"]))]



def metric_slo_counts(tables: ClickHouseMetricTables, tenant: str, rule: SliRule, start: int, end: int) -> list[tuple[int, int, int]]:
    """(minute_ns, good, total) of one metric SLI over [start, end): what
    store/duckdb/metrics.py metric_slo_counts counts, over the folded minutes."""
    if rule.kind == "ratio":
        out: dict[int, list[float]] = {}
        for _, minute, a in tables.minutes(tenant, tables.matching(tenant, rule.total), start, end):
            out.setdefault(minute, [0.0, 0.0])[1] += a.value
        part = rule.good if rule.good is not None else rule.bad
        for _, minute, a in tables.minutes(tenant, tables.matching(tenant, part), start, end):
            out.setdefault(minute, [0.0, 0.0])[0] += a.value
        return ratio_minutes(out, rule.good is not None)
    folded = tables.minutes(tenant, tables.matching(tenant, rule.total), start, end)
    counts: dict[int, list[int]] = {}
    if rule.kind in ("threshold", "freshness"):
        for _, minute, a in folded:
            if a.points <= 0:
                continue
            if rule.kind == "freshness":
                # The gauge is the newest update's time (unix seconds): good when the minute's
                # end is at most max_value seconds later.
                bound = float(rule.max_value if rule.max_value is not None else 0.0)
                good = a.max is not None and (minute + MINUTE_NS) / 1e9 - a.max <= bound
            else:
                how = rule.aggregate or "avg"
                v = {"avg": a.value / a.points, "min": a.min, "max": a.max, "last": a.last}[how]
                good = v is not None and (rule.min_value is None or v >= float(rule.min_value)) and (
                    rule.max_value is None or v <= float(rule.max_value))
            c = counts.setdefault(minute, [0, 0])
            c[0] += int(good)
            c[1] += 1
        return [(m, g, t) for m, (g, t) in sorted(counts.items())]
    if rule.kind == "histogram":
        le = float(rule.le) if rule.le is not None else float("inf")
        sums: dict[int, list[float]] = {}
        for _, minute, a in folded:
            s = sums.setdefault(minute, [0.0, 0.0])
            if a.buckets is not None and a.bounds is not None:
                # Observations in buckets whose upper bound is at most le are surely under it.
                s[0] += sum(n for i, n in enumerate(a.buckets) if (i < len(a.bounds) and a.bounds[i] <= le)
                            or (le == float("inf")))
            s[1] += a.value
        return [(m, min(round(g), round(t)), round(t)) for m, (g, t) in sorted(sums.items()) if round(t) > 0]
    return []
