"""OTLP metric points → per-minute series rollups, on the writer thread.

Cumulative sums and histograms become increases against the last point kept per series
(``metric_series``): a point whose value went down, or whose start time moved on, is a
reset, and its whole value is the increase (never a negative rate). A point no newer
than the last one seen (a retried export) adds nothing. Delta points add as they are.
The increase of a cumulative point is put in the minute of its timestamp.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
from duckdb.func import FunctionNullHandling

from aisre.core.model import SliRule
from aisre.core.schema import MINUTE_NS
from aisre.core.series import MetricPoint, MetricSelector
from aisre.normalize.metrics import points_table
from aisre.store.duckdb.metric_steady import (
    KnownSeries,
    SteadyFold,
    fold_steady,
    last_buckets,
    last_points,
)
from aisre.store.duckdb.transaction import transaction
from aisre.store.metric_fold import MetricCommit, MinuteAgg, ratio_minutes, rebucket


def _rebucket_udf(bounds: list[float] | None, counts: list[float] | None, target: list[float] | None) -> list[float] | None:
    # Called by the commit's SQL only for the rare point whose bounds differ from the ones it
    # is compared or summed with (an exponential histogram whose range moved).
    if bounds is None or counts is None or target is None:
        return None
    return rebucket(tuple(bounds), list(counts), tuple(target))


log = logging.getLogger(__name__)

# How long after a tenant's last commit its newest minutes count as settled (see compact()).
SETTLE_S = 120.0


class MetricTables:
    """Series state and minute rollups for one DuckDB connection (writer thread only).

    A commit registers the decoded points (an Arrow table, ``METRIC_POINTS_SCHEMA``) and does
    everything in SQL over it: the series limit, kind checks, cumulative points to increases
    (window functions over each series' points, the last stored point joined in), and the
    per-minute rows; Python only sees the counts.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection, max_series: int) -> None:
        self._conn = conn
        self.max_series = max_series
        self._counts: dict[str, int] = {}  # series per tenant (the limit), kept in step by commits
        # Series as last committed, per tenant, for steady requests (see metric_steady.py).
        self._known: dict[str, KnownSeries] = {}
        self.steady = True  # False: every request through the SQL commit (tests compare the two)
        self.steady_requests = 0
        # Minutes that got rows since they were last compacted (see compact()), and each
        # tenant's newest minute with the (monotonic) time it was committed.
        self._unfolded: dict[str, set[int]] = {}
        self._newest: dict[str, tuple[int, float]] = {}
        listed = duckdb.list_type(duckdb.sqltypes.DOUBLE)
        conn.create_function("aisre_rebucket", _rebucket_udf, [listed, listed, listed], listed,
                             null_handling=FunctionNullHandling.SPECIAL, side_effects=False)

    def series_count(self, tenant: str) -> int:
        """How many series the tenant has (counted once, then kept in step by commits)."""
        known = self._counts.get(tenant)
        if known is None:
            rows = self._conn.execute("SELECT count(*) FROM metric_series WHERE tenant = ?", [tenant]).fetchall()
            known = self._counts[tenant] = int(rows[0][0])
        return known

    def forget(self, tenant: str) -> None:
        """Drop what is kept in memory of the tenant's series (rows were written around the
        commits: ``aisre store copy``); the next commit reads them back as stored."""
        self._known.pop(tenant, None)
        self._counts.pop(tenant, None)

    def commit(self, tenant: str, points: pa.Table | Sequence[MetricPoint]) -> MetricCommit:
        """Fold ``points`` into the rollups in one transaction; the series limit refuses
        points of new series past it (counted), everything else is kept."""
        return self.commit_many(tenant, [points])[0]

    def commit_many(self, tenant: str, requests: Sequence[pa.Table | Sequence[MetricPoint]]) -> list[MetricCommit]:
        """Commit several requests' points, with the outcome each would have had committed
        one after the other (in the order given): the leading steady ones in numpy
        (store/duckdb/metric_steady.py), the rest in SQL, one transaction each."""
        tables = [t if isinstance(t, pa.Table) else points_table(t) for t in requests]
        if not self.steady:
            return self._commit_sql(tenant, tables)
        known = self._known.get(tenant)
        if known is None:
            known = self._known[tenant] = KnownSeries.load(self._conn, tenant)
        fold = SteadyFold()
        try:
            done = fold_steady(known, tables, fold)
        except Exception:
            # A fault of the fast path must not cost the data: the SQL commit handles every case.
            log.exception("the steady metric fold failed; committing these requests in SQL")
            self._known.pop(tenant, None)
            return self._commit_sql(tenant, tables)
        try:
            if done:
                self._commit_steady(tenant, known, fold)
        except Exception:
            self._known.pop(tenant, None)  # moved on in memory, not in the store
            raise
        self.steady_requests += done
        if done == len(tables):
            return fold.results
        rest = tables[done:]
        try:
            results = self._commit_sql(tenant, rest)
        finally:
            # The SQL commit moved these series on (or failed): read them back as stored.
            ids = np.unique(np.concatenate([t.column("series_id").to_numpy() for t in rest]))
            self._known[tenant] = known.merge(KnownSeries.load(self._conn, tenant, ids.tolist()))
        return fold.results + results

    def _commit_steady(self, tenant: str, known: KnownSeries, fold: SteadyFold) -> None:
        if not fold.rows:
            return
        conn = self._conn
        moved = np.unique(np.concatenate(fold.slots))
        histograms = np.unique(np.concatenate(fold.histograms))
        conn.register("steady_rows", pa.concat_tables(fold.rows))
        conn.register("steady_last", last_points(known, moved))
        conn.register("steady_buckets", last_buckets(known, histograms))
        try:
            with transaction(conn):
                conn.execute("INSERT INTO metric_minutes SELECT ?, series_id, minute_ns, value, points, min, max, "
                             "last, last_ns, sum, bounds, buckets FROM steady_rows", [tenant])
                # Statements with nothing to do are skipped: planning one costs milliseconds.
                if moved.size:
                    conn.execute(
                        "UPDATE metric_series s SET start_ns = n.start_ns, last_ns = n.last_ns, last_value = "
                        "n.last_value, last_sum = n.last_sum FROM steady_last n WHERE s.tenant = ? "
                        "AND s.series_id = n.series_id", [tenant])
                if histograms.size:
                    conn.execute("UPDATE metric_series_buckets s SET last_buckets = n.last_buckets FROM steady_buckets n "
                                 "WHERE s.tenant = ? AND s.series_id = n.series_id", [tenant])
        finally:
            for name in ("steady_rows", "steady_last", "steady_buckets"):
                conn.unregister(name)
        self._touched(tenant, [result.minutes for result in fold.results])

    def _commit_sql(self, tenant: str, tables: list[pa.Table]) -> list[MetricCommit]:
        results = [MetricCommit() for _ in tables]
        tables = [t.append_column("req", pa.array(np.full(t.num_rows, i, dtype=np.int64)))
                  for i, t in enumerate(tables) if t.num_rows]
        if not tables:
            return results
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        room = max(0, self.max_series - self.series_count(tenant))
        conn = self._conn
        conn.register("metric_points", table)
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute(_POINTS, [tenant, room])
            rows = conn.execute(
                "SELECT req, count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok), "
                "count(DISTINCT series_id) FILTER (WHERE admitted AND NOT known AND req = first_req), "
                "list(DISTINCT minute_ns) FILTER (WHERE ok), "
                "count(*) FILTER (WHERE ok AND kind <> 'gauge' AND temporality <> 'delta'), "
                "count(*) FILTER (WHERE ok AND kind = 'histogram' AND temporality <> 'delta') FROM m_points GROUP BY req"
            ).fetchall()
            cumulative = sum(int(r[5]) for r in rows)
            conn.execute(_INCREASES, [tenant])
            conn.execute(_INSERT_MINUTES, [tenant])
            # Statements with nothing to do are skipped: planning one costs milliseconds.
            if cumulative:
                conn.execute(_UPDATE_SERIES, [tenant])
            if any(r[3] for r in rows):
                conn.execute(_INSERT_SERIES, [tenant])
            if any(r[6] for r in rows):
                conn.execute(_DELETE_BUCKETS, [tenant])
                conn.execute(_INSERT_BUCKETS, [tenant])
            conn.execute("DROP TABLE m_points")
            conn.execute("DROP TABLE m_increases")
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.unregister("metric_points")
        for req, accepted, over, new, minutes, _, _ in rows:
            results[req] = MetricCommit(int(accepted), int(over), set(minutes or ()))
            self._counts[tenant] = self._counts.get(tenant, 0) + int(new)
        self._touched(tenant, [result.minutes for result in results])
        return results

    def _touched(self, tenant: str, minutes: list[set[int]]) -> None:
        touched = self._unfolded.setdefault(tenant, set())
        for some in minutes:
            touched.update(some)
        committed = [max(some) for some in minutes if some]
        if committed:
            newest = max(committed)
            if tenant in self._newest:
                newest = max(newest, self._newest[tenant][0])
            self._newest[tenant] = (newest, time.monotonic())

    def compact(self, before_ns: int, *, everything: bool = False) -> int:
        """Fold the rows each commit appended to a minute into one, for minutes before
        ``before_ns`` (closed: exporters have moved on); returns minutes compacted. A
        histogram minute whose rows have different bounds is left as it is (reads fold it).

        While a tenant's points keep coming (a commit in the last SETTLE_S seconds), only
        minutes two behind its newest are due, so that a backfill or a Collector catching up
        on old data has each minute folded once, not at every pass while it still fills
        (``everything`` folds them all now: tests, benchmarks)."""
        done = 0
        now = time.monotonic()
        for tenant, minutes in list(self._unfolded.items()):
            limit = before_ns
            newest = self._newest.get(tenant)
            if not everything and newest is not None and now - newest[1] < SETTLE_S:
                limit = min(limit, newest[0] - MINUTE_NS)
            due = sorted(m for m in minutes if m < limit)
            if not due:
                continue
            conn = self._conn
            conn.execute("BEGIN TRANSACTION")
            try:
                conn.execute("CREATE OR REPLACE TEMP TABLE due_minutes AS SELECT unnest(?::BIGINT[]) AS minute_ns", [due])
                # The range as well as the set: it lets zone maps skip the rest of the table.
                conn.execute(_COMPACT, [tenant, due[0], due[-1]])
                conn.execute(
                    "DELETE FROM metric_minutes m WHERE tenant = ? AND minute_ns BETWEEN ? AND ? AND EXISTS ("
                    "SELECT 1 FROM compacted c WHERE c.series_id = m.series_id AND c.minute_ns = m.minute_ns)",
                    [tenant, due[0], due[-1]],
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



# -- the commit, in SQL over the registered points (metric_points) -----------------------
#
# m_points: every point with its series' verdict. A series already stored is known (its
# kind and last cumulative point joined in); a new one is admitted while the tenant has room,
# new series in the order their first point comes (by time, then request order), so the
# limit refuses whole series and never a known one. A point of another kind than its series
# is refused too. Parameters: tenant, room.
_POINTS = """
CREATE TEMP TABLE m_points AS
WITH p AS MATERIALIZED (
    SELECT * FROM metric_points
), firsts AS (
    SELECT series_id, arg_min(metric, k) AS metric, arg_min(labels, k) AS labels, arg_min(kind, k) AS kind,
        arg_min(unit, k) AS unit, min(k).r AS first_req, min(k).t AS first_ns, min(k).s AS first_seq
    FROM (SELECT *, struct_pack(r := req, t := time_ns, s := seq) AS k FROM p) GROUP BY series_id
), series AS (
    SELECT f.*, s.series_id IS NOT NULL AS known, coalesce(s.kind, f.kind) AS series_kind,
        nullif(s.start_ns, 0) AS s_start, s.last_ns AS s_last_ns, s.last_value AS s_value, s.last_sum AS s_sum
    FROM firsts f LEFT JOIN (
        SELECT series_id, kind, start_ns, last_ns, last_value, last_sum FROM metric_series WHERE tenant = $1
    ) s ON s.series_id = f.series_id
), ranked AS (
    SELECT series_id, row_number() OVER (ORDER BY first_req, first_ns, first_seq) AS rank FROM series WHERE NOT known
), verdicts AS (
    SELECT s.*, s.known OR r.rank <= $2 AS admitted FROM series s LEFT JOIN ranked r ON s.series_id = r.series_id
)
SELECT p.*, v.admitted AND p.kind = v.series_kind AS ok, v.known, v.admitted, v.first_req, v.first_ns,
    v.metric AS series_metric, v.labels AS series_labels, v.series_kind, v.unit AS series_unit,
    v.s_start, v.s_last_ns, v.s_value, v.s_sum
FROM p JOIN verdicts v ON p.series_id = v.series_id
"""

# m_increases: what each accepted cumulative point adds since the one before it in its
# series (the stored last point for the first), in the order the points would have been
# committed one by one (request, then time, then place in the request). A point no newer
# than every one before it (a retried export, or the same time twice) adds nothing and is
# left out. A reset (a lower value, or a new start time) adds its whole value; so does a
# series' first point when it has a start time before its time (an SDK's first export
# holds everything since the process started); without one nothing is known and it adds 0.
# Bucket counts are compared on the current point's bounds (the previous ones moved onto
# them if they differ). The windows carry scalars only; bucket lists are joined after.
# Parameter: tenant.
_INCREASES = """
CREATE TEMP TABLE m_increases AS
WITH cumulative AS (
    SELECT req, seq, series_id, kind, start_ns, time_ns, value, sum, known, s_start, s_last_ns, s_value, s_sum,
        count(*) OVER (PARTITION BY series_id) > 1 AS several
    FROM m_points WHERE ok AND kind <> 'gauge' AND temporality <> 'delta'
), single AS (
    -- The usual commit holds one point per series: nothing to order, the stored point is
    -- the one before (window functions over thousands of one-row partitions cost more).
    SELECT * EXCLUDE (several), NULL::BIGINT AS p_req, NULL::BIGINT AS p_seq, NULL::BIGINT AS p_ns,
        NULL::DOUBLE AS p_value, NULL::DOUBLE AS p_sum, NULL::BIGINT AS p_start
    FROM cumulative WHERE NOT several AND time_ns > coalesce(s_last_ns, -9223372036854775808)
), ordered AS (
    SELECT * EXCLUDE (several), max(time_ns) OVER (PARTITION BY series_id ORDER BY req, time_ns, seq
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS seen_ns
    FROM cumulative WHERE several
), kept AS (
    SELECT * EXCLUDE (seen_ns) FROM ordered
    WHERE time_ns > coalesce(greatest(s_last_ns, seen_ns), -9223372036854775808)
), chained AS (
    SELECT *,
        lag(req) OVER w AS p_req, lag(seq) OVER w AS p_seq, lag(time_ns) OVER w AS p_ns,
        lag(value) OVER w AS p_value, lag(sum) OVER w AS p_sum,
        -- The last start time sent before (kept points only grow in time, so time orders them).
        max_by(start_ns, time_ns) FILTER (WHERE start_ns <> 0) OVER (
            PARTITION BY series_id ORDER BY time_ns ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS p_start
    FROM kept WINDOW w AS (PARTITION BY series_id ORDER BY req, time_ns, seq)
    UNION ALL BY NAME
    SELECT * FROM single
), prev AS (
    SELECT *,
        p_ns IS NULL AND s_last_ns IS NULL AS first,
        CASE WHEN p_ns IS NULL THEN s_value ELSE p_value END AS prev_value,
        CASE WHEN p_ns IS NULL THEN s_sum ELSE p_sum END AS prev_sum,
        coalesce(p_start, s_start) AS prev_start
    FROM chained
), judged AS (
    SELECT *,
        first OR (start_ns <> 0 AND prev_start IS NOT NULL AND start_ns <> prev_start)
            OR value < coalesce(prev_value, 0) AS reset,
        first AND NOT (start_ns <> 0 AND start_ns < time_ns) AS unknown_start
    FROM prev
), scalars AS (
    SELECT req, seq, series_id, kind, time_ns, known, reset, unknown_start, p_ns, p_req, p_seq,
        coalesce(nullif(start_ns, 0), prev_start) AS new_start, value AS new_value, sum AS new_sum,
        CASE WHEN unknown_start THEN 0.0 WHEN reset THEN value ELSE value - prev_value END AS a_value,
        CASE WHEN unknown_start THEN 0.0 WHEN reset THEN sum ELSE greatest(0.0, sum - coalesce(prev_sum, 0.0)) END AS a_sum
    FROM judged
), histograms AS (
    -- Only histograms that are neither reset nor first need the previous buckets.
    SELECT j.req, j.seq,
        CASE WHEN j.p_ns IS NULL THEN s.last_bounds ELSE b.bounds END AS prev_bounds,
        CASE WHEN j.p_ns IS NULL THEN s.last_buckets ELSE b.buckets END AS prev_buckets
    FROM scalars j
    LEFT JOIN m_points b ON j.p_ns IS NOT NULL AND b.req = j.p_req AND b.seq = j.p_seq
    LEFT JOIN (SELECT s.series_id, s.last_bounds, b.last_buckets FROM metric_series s
               LEFT JOIN metric_series_buckets b ON b.tenant = s.tenant AND b.series_id = s.series_id
               WHERE s.tenant = $1) s
        ON j.p_ns IS NULL AND s.series_id = j.series_id
    WHERE j.kind = 'histogram' AND NOT j.reset
)
SELECT j.* EXCLUDE (p_ns, p_req, p_seq, reset, unknown_start), c.bounds AS new_bounds, c.buckets AS new_buckets,
    CASE
        WHEN j.kind <> 'histogram' THEN c.buckets
        WHEN j.unknown_start THEN list_transform(c.buckets, lambda n: 0.0)
        WHEN j.reset OR coalesce(len(h.prev_buckets), 0) = 0 THEN c.buckets
        WHEN h.prev_bounds IS DISTINCT FROM c.bounds THEN list_transform(
            list_zip(c.buckets, aisre_rebucket(coalesce(h.prev_bounds, []::DOUBLE[]), h.prev_buckets, c.bounds), true),
            lambda x: greatest(0.0, x[1] - x[2]))
        ELSE list_transform(list_zip(c.buckets, h.prev_buckets, true), lambda x: greatest(0.0, x[1] - x[2]))
    END AS a_buckets
FROM scalars j
JOIN m_points c ON c.req = j.req AND c.seq = j.seq
LEFT JOIN histograms h ON h.req = j.req AND h.seq = j.seq
"""

# One appended row per (series, minute) an accepted point falls in (a retried point too:
# its row adds nothing). Gauges: sum, count, min, max and the last value; sums: the
# increases or deltas; histograms: counts, sums and buckets, summed over the union of
# the bounds when they differ within the minute (a minute of one histogram point, the
# usual case, takes its buckets as they are). Parameter: tenant.
_INSERT_MINUTES = """
INSERT INTO metric_minutes
WITH adds AS (
    SELECT p.req, p.seq, p.series_id, p.minute_ns, p.kind, p.time_ns, p.value AS raw,
        CASE WHEN p.kind = 'gauge' OR p.temporality = 'delta' THEN p.value ELSE i.a_value END AS a_value,
        CASE WHEN p.kind = 'gauge' OR p.temporality = 'delta' THEN p.sum ELSE i.a_sum END AS a_sum,
        CASE WHEN p.kind <> 'histogram' THEN NULL WHEN p.temporality = 'delta' THEN p.buckets ELSE i.a_buckets END AS a_buckets,
        CASE WHEN p.kind = 'histogram' THEN p.bounds END AS bounds
    FROM m_points p LEFT JOIN m_increases i ON p.req = i.req AND p.seq = i.seq
    WHERE p.ok
), minutes AS (
    SELECT series_id, minute_ns, any_value(kind) AS kind,
        coalesce(sum(a_value), 0.0) AS value, count(a_value) AS points,
        min(raw) AS min, max(raw) AS max, last(raw ORDER BY time_ns, req, seq) AS last, max(time_ns) AS last_ns,
        sum(a_sum) FILTER (WHERE a_value IS NOT NULL) AS sum,
        count(bounds) FILTER (WHERE a_value IS NOT NULL) AS rows,
        count(DISTINCT bounds) FILTER (WHERE a_value IS NOT NULL) AS shapes,
        CASE WHEN count(DISTINCT bounds) FILTER (WHERE a_value IS NOT NULL) = 1
            THEN any_value(bounds) FILTER (WHERE a_value IS NOT NULL)
            ELSE list_sort(list_distinct(flatten(list(bounds) FILTER (WHERE a_value IS NOT NULL)))) END AS bounds,
        any_value(a_buckets) FILTER (WHERE a_value IS NOT NULL) AS one_buckets
    FROM adds GROUP BY series_id, minute_ns
), cells AS (
    SELECT series_id, minute_ns, i, sum(n) AS n FROM (
        SELECT a.series_id, a.minute_ns, unnest(b) AS n, generate_subscripts(b, 1) AS i FROM (
            SELECT a.series_id, a.minute_ns,
                CASE WHEN m.shapes = 1 THEN a.a_buckets ELSE aisre_rebucket(a.bounds, a.a_buckets, m.bounds) END AS b
            FROM adds a JOIN minutes m ON a.series_id = m.series_id AND a.minute_ns = m.minute_ns
            WHERE m.rows > 1 AND a.kind = 'histogram' AND a.a_value IS NOT NULL
        ) a
    ) GROUP BY ALL
), buckets AS (
    SELECT series_id, minute_ns, list(n ORDER BY i) AS buckets FROM cells GROUP BY ALL
)
SELECT $1, m.series_id, m.minute_ns, m.value, m.points,
    CASE WHEN m.kind = 'gauge' THEN m.min END, CASE WHEN m.kind = 'gauge' THEN m.max END,
    CASE WHEN m.kind = 'gauge' THEN m.last END, CASE WHEN m.kind = 'gauge' THEN m.last_ns END,
    CASE WHEN m.kind = 'histogram' THEN m.sum END,
    CASE WHEN m.kind = 'histogram' AND m.points > 0 THEN m.bounds END,
    CASE WHEN m.kind = 'histogram' AND m.points > 0 THEN
        CASE WHEN m.rows = 1 THEN m.one_buckets ELSE coalesce(b.buckets, []::DOUBLE[]) END END
FROM minutes m LEFT JOIN buckets b ON m.series_id = b.series_id AND m.minute_ns = b.minute_ns
"""

# The last cumulative point of each series, kept for the next commit. Parameter: tenant.
_LAST_POINTS = """
SELECT series_id, any_value(known) AS known, any_value(kind) AS kind, max(time_ns) AS time_ns,
    arg_max(new_start, k) AS new_start, arg_max(new_value, k) AS new_value, arg_max(new_sum, k) AS new_sum,
    arg_max(new_bounds, k) AS new_bounds, arg_max(new_buckets, k) AS new_buckets
FROM (SELECT *, struct_pack(r := req, t := time_ns, s := seq) AS k FROM m_increases) GROUP BY series_id
"""
_UPDATE_SERIES = f"""
UPDATE metric_series s SET start_ns = n.new_start, last_ns = n.time_ns, last_value = n.new_value,
    last_sum = n.new_sum, last_bounds = n.new_bounds
FROM ({_LAST_POINTS}) n WHERE s.tenant = $1 AND s.series_id = n.series_id AND n.known
"""
_INSERT_SERIES = f"""
INSERT INTO metric_series
SELECT $1, f.series_id, f.series_metric, f.series_labels, f.series_kind, f.series_unit, f.first_ns,
    n.new_start, n.time_ns, n.new_value, n.new_sum, n.new_bounds
FROM (SELECT * FROM m_points WHERE admitted AND NOT known
      QUALIFY row_number() OVER (PARTITION BY series_id ORDER BY req, time_ns, seq) = 1) f
LEFT JOIN ({_LAST_POINTS}) n ON f.series_id = n.series_id
"""
# A histogram's kept bucket counts (metric_series_buckets), replaced. Parameter: tenant.
_DELETE_BUCKETS = """
DELETE FROM metric_series_buckets WHERE tenant = $1
    AND series_id IN (SELECT series_id FROM m_increases WHERE kind = 'histogram')
"""
_INSERT_BUCKETS = f"""
INSERT INTO metric_series_buckets
SELECT $1, series_id, new_buckets FROM ({_LAST_POINTS}) n WHERE kind = 'histogram'
"""


# Per (series, minute) with several rows and one set of bounds: the rows folded into one
# (bucket lists added element by element). Parameters: tenant, first and last due minute.
_COMPACT = """
CREATE OR REPLACE TEMP TABLE compacted AS
WITH due AS (
    SELECT m.* FROM metric_minutes m SEMI JOIN due_minutes d ON m.minute_ns = d.minute_ns
    WHERE m.tenant = ? AND m.minute_ns BETWEEN ? AND ?
)
SELECT any_value(tenant) AS tenant, series_id, minute_ns, sum(value) AS value, sum(points)::BIGINT AS points,
    min(min) AS min, max(max) AS max, arg_max(last, last_ns) AS last, max(last_ns) AS last_ns, sum(sum) AS sum,
    any_value(bounds) AS bounds,
    list_reduce(list(buckets) FILTER (WHERE buckets IS NOT NULL),
                lambda a, b: list_transform(list_zip(a, b), lambda x: x[1] + x[2])) AS buckets
FROM due GROUP BY series_id, minute_ns HAVING count(*) > 1 AND count(DISTINCT bounds) <= 1
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
    return [(int(sid), int(minute), folded_minute(value, points, lo, hi, last, None, total, bounds, buckets))
            for sid, minute, value, points, lo, hi, last, total, bounds, buckets in rows]


def folded_minute(value: float, points: int, lo: float | None, hi: float | None, last: float | None,
                  last_ns: int | None, total: float | None, bounds: list[Any], buckets: list[Any]) -> MinuteAgg:
    """One (series, minute) from its rows' sums and their bounds and bucket lists (one pair
    per row), the buckets summed over the union of the bounds."""
    agg = MinuteAgg(float(value), int(points), lo, hi, last, last_ns, total)
    for b, n in zip(bounds, buckets, strict=True):
        if b is not None and n is not None:
            agg.add_histogram(0.0, 0.0, tuple(b), n)
            agg.points -= 1
    if agg.sum is not None and total is None:
        agg.sum = None
    return agg


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
        return ratio_minutes(out, rule.good is not None)
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
