"""OTLP metric points → per-minute series rollups, on the writer thread.

Cumulative sums and histograms become increases against the last point kept per series
(``metric_series``): a point whose value went down, or whose start time moved on, is a
reset, and its whole value is the increase (never a negative rate). A point no newer
than the last one seen (a retried export) adds nothing. Delta points add as they are.
The increase of a cumulative point is put in the minute of its timestamp.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from aisre.core.model import SliRule
from aisre.core.schema import MINUTE_NS
from aisre.core.series import MetricPoint, MetricSelector


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


def increase(state: SeriesState, p: MetricPoint) -> tuple[float, float, tuple[float, ...], list[float]] | None:
    """What a cumulative point adds since the last one (value, sum, bounds, buckets) and
    moves ``state`` on; None for a point no newer than the last (nothing to add)."""
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
        # A series first seen counts from its start time: the SDK's first export holds
        # everything since the process started. Without a start time nothing is known.
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


@dataclass
class MetricCommit:
    """The outcome of one commit: points accepted, refused past the series limit, and minutes touched."""

    accepted: int = 0
    over_limit: int = 0
    minutes: set[int] = field(default_factory=set)


class MetricTables:
    """Series state and minute rollups for one DuckDB connection (writer thread only)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, max_series: int) -> None:
        self._conn = conn
        self.max_series = max_series
        self._series: dict[str, dict[int, SeriesState]] = {}
        # Minutes that got rows since they were last compacted (see compact()).
        self._unfolded: dict[str, set[int]] = {}

    def series_of(self, tenant: str) -> dict[int, SeriesState]:
        """The tenant's series (loaded once, then kept in step by commits)."""
        known = self._series.get(tenant)
        if known is None:
            rows = self._conn.execute(
                "SELECT series_id, metric, labels, kind, unit, first_ns, start_ns, last_ns, last_value, last_sum, "
                "last_bounds, last_buckets FROM metric_series WHERE tenant = ?", [tenant]
            ).fetchall()
            known = {}
            for r in rows:
                known[int(r[0])] = SeriesState(
                    int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6], r[7], r[8], r[9],
                    tuple(r[10]) if r[10] is not None else None, tuple(r[11]) if r[11] is not None else None,
                )
            self._series[tenant] = known
        return known

    def commit(self, tenant: str, points: list[MetricPoint]) -> MetricCommit:
        """Fold ``points`` into the rollups in one transaction; the series limit refuses
        points of new series past it (counted), everything else is kept."""
        known = self.series_of(tenant)
        changed: dict[int, SeriesState] = {}
        aggs: dict[tuple[int, int], MinuteAgg] = {}
        result = MetricCommit()
        moved: set[int] = set()  # series whose kept state changed (new, or a cumulative point)
        new = 0
        for p in sorted(points, key=lambda q: q.time_ns):
            state = changed.get(p.series_id)
            if state is None:
                old = known.get(p.series_id)
                if old is None:
                    if len(known) + new >= self.max_series:
                        result.over_limit += 1
                        continue
                    new += 1
                    state = SeriesState(p.series_id, p.metric, p.labels, p.kind, p.unit, p.time_ns)
                    moved.add(p.series_id)
                else:
                    state = old.copy() if p.temporality == "cumulative" and p.kind != "gauge" else old
                changed[p.series_id] = state
            if state.kind != p.kind:
                # The same name and labels sent as another kind: keep the first, refuse the rest.
                result.over_limit += 1
                continue
            result.accepted += 1
            minute = (p.time_ns // MINUTE_NS) * MINUTE_NS
            agg = aggs.setdefault((p.series_id, minute), MinuteAgg())
            if p.kind == "gauge":
                agg.add_gauge(p.value, p.time_ns)
                continue
            if p.temporality == "delta":
                added: tuple[float, float, tuple[float, ...], list[float]] | None = (p.value, p.sum, p.bounds, list(p.buckets))
            else:
                if state is known.get(p.series_id):  # first cumulative point of a delta-sent series
                    state = changed[p.series_id] = state.copy()
                added = increase(state, p)
                moved.add(p.series_id)
            if added is None:
                continue
            if p.kind == "sum":
                agg.value += added[0]
                agg.points += 1
            else:
                agg.add_histogram(added[0], added[1], added[2], added[3])
        if aggs or moved:
            self._write(tenant, {sid: changed[sid] for sid in moved}, aggs)
        for sid, state in changed.items():
            known[sid] = state
        result.minutes = {minute for _, minute in aggs}
        self._unfolded.setdefault(tenant, set()).update(result.minutes)
        return result

    def compact(self, before_ns: int) -> int:
        """Fold the rows each commit appended to a minute into one, for minutes before
        ``before_ns`` (closed: exporters have moved on); returns minutes compacted. A
        histogram minute whose rows have different bounds is left as it is (reads fold it)."""
        done = 0
        for tenant, minutes in list(self._unfolded.items()):
            due = sorted(m for m in minutes if m < before_ns)
            if not due:
                continue
            conn = self._conn
            conn.execute("BEGIN TRANSACTION")
            try:
                conn.execute("CREATE OR REPLACE TEMP TABLE due_minutes AS SELECT unnest(?::BIGINT[]) AS minute_ns", [due])
                conn.execute(_COMPACT, [tenant])
                conn.execute(
                    "DELETE FROM metric_minutes m WHERE tenant = ? AND EXISTS (SELECT 1 FROM compacted c "
                    "WHERE c.series_id = m.series_id AND c.minute_ns = m.minute_ns)", [tenant]
                )
                conn.execute("INSERT INTO metric_minutes SELECT * FROM compacted")
                conn.execute("DROP TABLE compacted")
                conn.execute("DROP TABLE due_minutes")
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            minutes.difference_update(due)
            done += len(due)
        return done

    def _write(self, tenant: str, changed: dict[int, SeriesState], aggs: dict[tuple[int, int], MinuteAgg]) -> None:
        # Minute rows are appended, one per commit that touched the minute, and folded
        # together when read: a commit never reads or rewrites what is stored.
        known = self._series.get(tenant, {})
        conn = self._conn
        conn.execute("BEGIN TRANSACTION")
        try:
            if aggs:
                rows = list(aggs.items())
                table = pa.table({
                    "tenant": pa.array([tenant] * len(rows), pa.string()),
                    "series_id": pa.array([k[0] for k, _ in rows], pa.int64()),
                    "minute_ns": pa.array([k[1] for k, _ in rows], pa.int64()),
                    "value": pa.array([a.value for _, a in rows], pa.float64()),
                    "points": pa.array([a.points for _, a in rows], pa.int64()),
                    "min": pa.array([a.min for _, a in rows], pa.float64()),
                    "max": pa.array([a.max for _, a in rows], pa.float64()),
                    "last": pa.array([a.last for _, a in rows], pa.float64()),
                    "last_ns": pa.array([a.last_ns for _, a in rows], pa.int64()),
                    "sum": pa.array([a.sum for _, a in rows], pa.float64()),
                    "bounds": pa.array([list(a.bounds) if a.bounds is not None else None for _, a in rows],
                                       pa.list_(pa.float64())),
                    "buckets": pa.array([a.buckets for _, a in rows], pa.list_(pa.float64())),
                })
                conn.register("new_metric_minutes", table)
                try:
                    conn.execute("INSERT INTO metric_minutes SELECT * FROM new_metric_minutes")
                finally:
                    conn.unregister("new_metric_minutes")
            states = list(changed.values())
            if states:
                conn.register("new_metric_series", _series_table(tenant, states, known))
                try:
                    if any(s.series_id in known for s in states):
                        conn.execute(
                            "UPDATE metric_series s SET start_ns = n.start_ns, last_ns = n.last_ns, "
                            "last_value = n.last_value, last_sum = n.last_sum, last_bounds = n.last_bounds, "
                            "last_buckets = n.last_buckets FROM new_metric_series n "
                            "WHERE s.tenant = n.tenant AND s.series_id = n.series_id AND n.known"
                        )
                    if any(s.series_id not in known for s in states):
                        conn.execute(
                            "INSERT INTO metric_series SELECT * EXCLUDE (known) FROM new_metric_series WHERE NOT known"
                        )
                finally:
                    conn.unregister("new_metric_series")
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise


def _series_table(tenant: str, states: list[SeriesState], known: dict[int, SeriesState] | None = None) -> pa.Table:
    return pa.table({
        "tenant": pa.array([tenant] * len(states), pa.string()),
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
        "last_bounds": pa.array([list(s.last_bounds) if s.last_bounds is not None else None for s in states],
                                pa.list_(pa.float64())),
        "last_buckets": pa.array([list(s.last_buckets) if s.last_buckets is not None else None for s in states],
                                 pa.list_(pa.float64())),
        "known": pa.array([known is not None and s.series_id in known for s in states], pa.bool_()),
    })


# Per (series, minute) with several rows and one set of bounds: the rows folded into one.
_COMPACT = """
CREATE OR REPLACE TEMP TABLE compacted AS
WITH due AS (
    SELECT m.* FROM metric_minutes m SEMI JOIN due_minutes d ON m.minute_ns = d.minute_ns WHERE m.tenant = ?
), keys AS (
    SELECT series_id, minute_ns FROM due GROUP BY ALL HAVING count(*) > 1 AND count(DISTINCT bounds) <= 1
), rows AS (
    SELECT d.* FROM due d SEMI JOIN keys k ON d.series_id = k.series_id AND d.minute_ns = k.minute_ns
), buckets AS (
    SELECT series_id, minute_ns, list(n ORDER BY i) AS buckets FROM (
        SELECT series_id, minute_ns, i, sum(n) AS n FROM (
            SELECT series_id, minute_ns, unnest(buckets) AS n, generate_subscripts(buckets, 1) AS i
            FROM rows WHERE buckets IS NOT NULL
        ) GROUP BY ALL
    ) GROUP BY ALL
)
SELECT any_value(r.tenant) AS tenant, r.series_id, r.minute_ns, sum(value) AS value, sum(points)::BIGINT AS points,
    min(min) AS min, max(max) AS max, arg_max(last, last_ns) AS last, max(last_ns) AS last_ns, sum(sum) AS sum,
    any_value(bounds) AS bounds, any_value(b.buckets) AS buckets
FROM rows r LEFT JOIN buckets b ON r.series_id = b.series_id AND r.minute_ns = b.minute_ns
GROUP BY r.series_id, r.minute_ns
"""


# -- metric SLIs ------------------------------------------------------------------------

METRIC_SLI_KINDS = frozenset({"ratio", "threshold", "histogram", "freshness"})


def _ids(conn: duckdb.DuckDBPyConnection, ids: list[int]) -> None:
    conn.register("wanted_series", pa.table({"series_id": pa.array(ids, pa.int64())}))


FOLDED = (
    "SELECT m.series_id, minute_ns, sum(value) AS value, sum(points) AS points, min(min) AS min, max(max) AS max, "
    "arg_max(last, last_ns) AS last, sum(sum) AS sum, list(bounds) AS bounds, list(buckets) AS buckets "
    "FROM metric_minutes m SEMI JOIN wanted_series w ON m.series_id = w.series_id "
    "WHERE tenant = ? AND minute_ns >= ? AND minute_ns < ? GROUP BY m.series_id, minute_ns"
)


def folded_minutes(
    conn: duckdb.DuckDBPyConnection, tenant: str, ids: list[int], start: int, end: int
) -> list[tuple[int, int, MinuteAgg]]:
    """(series_id, minute_ns, the minute folded from every row written for it)."""
    if not ids:
        return []
    # The ids go in as a parameter, not a registered view: a pooled reader cursor may still
    # hold another caller's unfinished result, and register() refuses to run on it.
    sql = FOLDED.replace("SEMI JOIN wanted_series w ON m.series_id = w.series_id ",
                         "SEMI JOIN (SELECT unnest(?::BIGINT[]) AS series_id) w ON m.series_id = w.series_id ")
    rows = conn.execute(sql + " ORDER BY m.series_id, minute_ns", [ids, tenant, start, end]).fetchall()
    out = []
    for sid, minute, value, points, lo, hi, last, total, bounds, buckets in rows:
        agg = MinuteAgg(float(value), int(points), lo, hi, last, None, total)
        for b, n in zip(bounds, buckets, strict=True):
            if b is not None and n is not None:
                agg.add_histogram(0.0, 0.0, tuple(b), n)
                agg.points -= 1
        if agg.sum is not None and total is None:
            agg.sum = None
        out.append((int(sid), int(minute), agg))
    return out


def _matching(conn: duckdb.DuckDBPyConnection, tenant: str, selector: MetricSelector | None) -> list[int]:
    if selector is None:
        return []
    rows = conn.execute(
        "SELECT series_id, labels FROM metric_series WHERE tenant = ? AND metric = ?", [tenant, selector.metric]
    ).fetchall()
    return [int(sid) for sid, labels in rows if selector.matches(selector.metric, orjson.loads(labels))]


def metric_slo_counts(
    conn: duckdb.DuckDBPyConnection, tenant: str, rule: SliRule, start: int, end: int
) -> list[tuple[int, int, int]]:
    """(minute_ns, good, total) of one metric SLI over [start, end), in SQL over the
    appended minute rows (a backfill reads months of them)."""

    def run(ids: list[int], sql: str) -> list[tuple[Any, ...]]:
        if not ids:
            return []
        _ids(conn, ids)
        try:
            return conn.execute(sql, [tenant, start, end]).fetchall()
        finally:
            conn.unregister("wanted_series")

    scope = ("FROM metric_minutes m SEMI JOIN wanted_series w ON m.series_id = w.series_id "
             "WHERE tenant = ? AND minute_ns >= ? AND minute_ns < ?")
    if rule.kind == "ratio":
        out: dict[int, list[float]] = {}
        for minute, v in run(_matching(conn, tenant, rule.total), f"SELECT minute_ns, sum(value) {scope} GROUP BY 1"):
            out.setdefault(int(minute), [0.0, 0.0])[1] += v
        part = _matching(conn, tenant, rule.good if rule.good is not None else rule.bad)
        for minute, v in run(part, f"SELECT minute_ns, sum(value) {scope} GROUP BY 1"):
            out.setdefault(int(minute), [0.0, 0.0])[0] += v
        rows = []
        for minute, (g, t) in sorted(out.items()):
            total_n = round(t)
            good_n = round(g) if rule.good is not None else total_n - round(g)
            if total_n > 0:
                rows.append((minute, min(max(good_n, 0), total_n), total_n))
        return rows
    if rule.kind == "threshold":
        how = {"avg": "sum(value) / sum(points)", "min": "min(min)", "max": "max(max)",
               "last": "arg_max(last, last_ns)"}[rule.aggregate or "avg"]
        tests = [f"v >= {float(rule.min_value)!r}" if rule.min_value is not None else "",
                 f"v <= {float(rule.max_value)!r}" if rule.max_value is not None else ""]
        good = " AND ".join(t for t in tests if t) or "true"
        sql = (f"SELECT minute_ns, count(*) FILTER (WHERE {good}), count(*) FROM ("
               f"SELECT m.series_id, minute_ns, {how} AS v {scope} GROUP BY 1, 2 HAVING sum(points) > 0) GROUP BY 1 ORDER BY 1")
        return [(int(m), int(g), int(t)) for m, g, t in run(_matching(conn, tenant, rule.total), sql)]
    if rule.kind == "freshness":
        # The gauge is the newest update's time (unix seconds); the minute is good when its
        # end is at most max_value seconds later.
        bound = float(rule.max_value if rule.max_value is not None else 0.0)
        sql = (f"SELECT minute_ns, count(*) FILTER (WHERE (minute_ns + {MINUTE_NS}) / 1e9 - v <= {bound!r}), count(*) FROM ("
               f"SELECT m.series_id, minute_ns, max(max) AS v {scope} GROUP BY 1, 2 HAVING sum(points) > 0) GROUP BY 1 ORDER BY 1")
        return [(int(m), int(g), int(t)) for m, g, t in run(_matching(conn, tenant, rule.total), sql)]
    if rule.kind == "histogram":
        le = float(rule.le) if rule.le is not None else float("inf")
        # Observations in buckets whose upper bound is at most le are surely under it.
        under = (f"list_sum(list_transform(list_filter(list_zip(bounds, buckets), lambda x: x[1] <= {le!r}), lambda x: x[2]))"
                 if le != float("inf") else "list_sum(buckets)")
        sql = f"SELECT minute_ns, sum(coalesce({under}, 0)), sum(value) {scope} GROUP BY 1 ORDER BY 1"
        return [(int(m), min(round(g), round(t)), round(t))
                for m, g, t in run(_matching(conn, tenant, rule.total), sql) if round(t) > 0]
    return []
