"""Metric rollups and platform scores read back and written as stored (``aisre store copy``).

Raw metric points are not kept, so a copy cannot recount the minute series on the target:
each series goes with its kept cumulative point (``metric_series`` and, for histograms,
``metric_series_buckets``), each (series, minute) folded into one row, and platform scores
as they are. Imports insert only keys the target does not hold yet, in one transaction a
page, so a page sent twice adds nothing. Writes run on the writer thread (the caller's job).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from aisre.core.rows import MetricMinuteRow, MetricSeriesRow, PlatformScoreRow
from aisre.core.schema import MINUTE_NS
from aisre.store.duckdb.metrics import folded_minute
from aisre.store.duckdb.platform_scores import COLUMNS as SCORE_COLUMNS
from aisre.store.duckdb.transaction import transaction
from aisre.store.metric_fold import MinuteAgg
from aisre.store.protocol import ExportedMinutes

_FLOATS = pa.list_(pa.float64())
SERIES_SCHEMA = pa.schema([
    ("series_id", pa.int64()), ("metric", pa.string()), ("labels", pa.string()), ("kind", pa.string()),
    ("unit", pa.string()), ("first_ns", pa.int64()), ("start_ns", pa.int64()), ("last_ns", pa.int64()),
    ("last_value", pa.float64()), ("last_sum", pa.float64()), ("last_bounds", _FLOATS), ("last_buckets", _FLOATS),
])
MINUTE_SCHEMA = pa.schema([
    ("series_id", pa.int64()), ("minute_ns", pa.int64()), ("value", pa.float64()), ("points", pa.int64()),
    ("min", pa.float64()), ("max", pa.float64()), ("last", pa.float64()), ("last_ns", pa.int64()),
    ("sum", pa.float64()), ("bounds", _FLOATS), ("buckets", _FLOATS),
])


def _rows(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    result = conn.execute(sql, params)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _after(key: tuple[str, ...], after: list[Any] | None) -> tuple[str, list[Any]]:
    """`` AND (k1, k2, …) > (a1, a2, …)``, spelled out, with its parameters."""
    if after is None:
        return "", []
    ors, params = [], []
    for i in range(len(key)):
        ors.append("(" + " AND ".join([*(f"{k} = ?" for k in key[:i]), f"{key[i]} > ?"]) + ")")
        params += [*after[:i], after[i]]
    return " AND (" + " OR ".join(ors) + ")", params


def series_row(r: dict[str, Any]) -> MetricSeriesRow:
    """A stored series as a ``MetricSeriesRow`` (buckets only where a histogram kept a point)."""
    hist = r["kind"] == "histogram" and r["last_ns"] is not None and r["last_buckets"] is not None
    return MetricSeriesRow(
        series_id=int(r["series_id"]), metric=r["metric"], labels=r["labels"], kind=r["kind"], unit=r["unit"],
        first_ns=int(r["first_ns"]), start_ns=None if r["start_ns"] is None else int(r["start_ns"]),
        last_ns=None if r["last_ns"] is None else int(r["last_ns"]),
        last_value=None if r["last_value"] is None else float(r["last_value"]),
        last_sum=None if r["last_sum"] is None else float(r["last_sum"]),
        last_bounds=[float(b) for b in r["last_bounds"] or ()] if hist else None,
        last_buckets=[float(n) for n in r["last_buckets"]] if hist else None,
    )


def minute_row(series_id: int, minute_ns: int, a: MinuteAgg) -> MetricMinuteRow:
    """A folded minute as a ``MetricMinuteRow``."""
    hist = a.bounds is not None and a.buckets is not None
    return MetricMinuteRow(
        series_id=int(series_id), minute_ns=int(minute_ns), value=float(a.value), points=int(a.points),
        min=a.min, max=a.max, last=a.last, last_ns=None if a.last_ns is None else int(a.last_ns),
        sum=None if a.sum is None else float(a.sum),
        bounds=[float(b) for b in a.bounds or ()] if hist else None,
        buckets=[float(n) for n in a.buckets or ()] if hist else None,
    )


def export_series(conn: duckdb.DuckDBPyConnection, tenant: str, after: int | None, limit: int) -> list[MetricSeriesRow]:
    """Up to ``limit`` of the tenant's series after series id ``after``, with their kept point."""
    where, params = _after(("s.series_id",), None if after is None else [after])
    rows = _rows(conn,
                 "SELECT s.series_id, metric, labels, kind, unit, first_ns, start_ns, last_ns, last_value, last_sum, "
                 "last_bounds, b.last_buckets FROM metric_series s LEFT JOIN metric_series_buckets b "
                 f"ON b.tenant = s.tenant AND b.series_id = s.series_id WHERE s.tenant = ?{where} "
                 "ORDER BY s.series_id LIMIT ?", [tenant, *params, int(limit)])
    return [series_row(r) for r in rows]


def export_minutes(conn: duckdb.DuckDBPyConnection, tenant: str, after: list[int] | None, limit: int) -> ExportedMinutes:
    """Up to ``limit`` of the tenant's (minute, series) keys after ``after`` (minute_ns,
    series_id), each folded from every row written for it (bounds that differ within a minute
    onto their union, as reads do).

    Minutes are appended in time order, so the page is looked for in a window of minutes from
    ``after`` on, which zone maps read without the rest of the table; the window widens
    (fourfold) while it holds too few keys and rows lie past it. Paging in series order would
    read the whole table for every page."""
    if after is None:
        first = conn.execute("SELECT min(minute_ns) FROM metric_minutes WHERE tenant = ?", [tenant]).fetchall()[0][0]
        if first is None:
            return ExportedMinutes([], None)
        start, key, params = int(first), "", list[Any]()
    else:
        start = int(after[0])
        key, params = _after(("minute_ns", "series_id"), after)
    width = MINUTE_NS
    while True:
        rows = conn.execute(
            "WITH page AS (SELECT minute_ns, series_id FROM metric_minutes WHERE tenant = ? AND minute_ns >= ? "
            f"AND minute_ns < ?{key} GROUP BY minute_ns, series_id ORDER BY minute_ns, series_id LIMIT ?) "
            "SELECT m.series_id, m.minute_ns, sum(value), sum(points), min(min), max(max), arg_max(last, last_ns), "
            "max(last_ns), sum(sum), list(bounds), list(buckets) FROM metric_minutes m "
            "SEMI JOIN page p ON m.series_id = p.series_id AND m.minute_ns = p.minute_ns "
            "WHERE m.tenant = ? AND m.minute_ns >= ? AND m.minute_ns < ? "
            "GROUP BY m.series_id, m.minute_ns ORDER BY m.minute_ns, m.series_id",
            [tenant, start, start + width, *params, int(limit), tenant, start, start + width]).fetchall()
        if len(rows) >= limit:
            break
        beyond = conn.execute("SELECT 1 FROM metric_minutes WHERE tenant = ? AND minute_ns >= ? LIMIT 1",
                              [tenant, start + width]).fetchall()
        if not beyond:
            break
        width *= 4
    out = []
    for sid, minute, value, points, lo, hi, last, last_ns, total, bounds, buckets in rows:
        agg = folded_minute(value, points, lo, hi, last, None if last is None else last_ns, total, bounds, buckets)
        out.append(minute_row(sid, minute, agg))
    return ExportedMinutes(out, [out[-1]["minute_ns"], out[-1]["series_id"]] if out else None)


def export_platform_scores(conn: duckdb.DuckDBPyConnection, tenant: str, after: list[Any] | None, limit: int) -> list[PlatformScoreRow]:
    """Up to ``limit`` of the tenant's platform scores after ``after`` in (subject, name, time_ns) order."""
    where, params = _after(("subject", "name", "time_ns"), after)
    rows = _rows(conn, f"SELECT {SCORE_COLUMNS} FROM platform_scores WHERE tenant = ?{where} "
                 "ORDER BY subject, name, time_ns LIMIT ?", [tenant, *params, int(limit)])
    return [PlatformScoreRow(**r) for r in rows]  # type: ignore[typeddict-item]


def _register(conn: duckdb.DuckDBPyConnection, name: str, rows: list[Any], schema: pa.Schema) -> None:
    conn.register(name, pa.Table.from_pylist([dict(r) for r in rows], schema=schema))


def import_series(conn: duckdb.DuckDBPyConnection, tenant: str, rows: list[MetricSeriesRow]) -> int:
    """Insert the series the tenant does not have yet, kept point and buckets included; returns how many."""
    if not rows:
        return 0
    _register(conn, "copied_series", rows, SERIES_SCHEMA)
    new = "NOT EXISTS (SELECT 1 FROM metric_series s WHERE s.tenant = ? AND s.series_id = c.series_id)"
    try:
        with transaction(conn):
            conn.execute("INSERT INTO metric_series_buckets SELECT ?, series_id, last_buckets FROM copied_series c "
                         f"WHERE kind = 'histogram' AND last_buckets IS NOT NULL AND {new} AND NOT EXISTS ("
                         "SELECT 1 FROM metric_series_buckets b WHERE b.tenant = ? AND b.series_id = c.series_id)",
                         [tenant, tenant, tenant])
            found = conn.execute(
                "INSERT INTO metric_series (tenant, series_id, metric, labels, kind, unit, first_ns, start_ns, last_ns, "
                "last_value, last_sum, last_bounds) SELECT ?, series_id, metric, labels, kind, unit, first_ns, start_ns, "
                f"last_ns, last_value, last_sum, last_bounds FROM copied_series c WHERE {new}", [tenant, tenant]).fetchall()
    finally:
        conn.unregister("copied_series")
    return int(found[0][0]) if found else 0


def import_minutes(conn: duckdb.DuckDBPyConnection, tenant: str, rows: list[MetricMinuteRow]) -> list[int]:
    """Insert the (series, minute) rows the tenant does not have yet; returns the minute of each."""
    if not rows:
        return []
    _register(conn, "copied_minutes", rows, MINUTE_SCHEMA)
    lo, hi = min(r["minute_ns"] for r in rows), max(r["minute_ns"] for r in rows)
    try:
        with transaction(conn):
            # The minute range as well as the keys: it lets zone maps skip the rest of the table.
            found = conn.execute(
                "INSERT INTO metric_minutes (tenant, series_id, minute_ns, value, points, min, max, last, last_ns, sum, "
                "bounds, buckets) SELECT ?, series_id, minute_ns, value, points, min, max, last, last_ns, sum, bounds, "
                "buckets FROM copied_minutes c WHERE NOT EXISTS (SELECT 1 FROM metric_minutes m WHERE m.tenant = ? "
                "AND m.minute_ns BETWEEN ? AND ? AND m.series_id = c.series_id AND m.minute_ns = c.minute_ns) "
                "RETURNING minute_ns", [tenant, tenant, lo, hi]).fetchall()
    finally:
        conn.unregister("copied_minutes")
    return [int(r[0]) for r in found]


def copy_totals(conn: duckdb.DuckDBPyConnection, tenant: str) -> dict[str, float]:
    """Series, per metric the minutes' value and point sums, platform scores and their sum."""
    out: dict[str, float] = {}
    out["metric series"] = float(conn.execute(
        "SELECT count(*) FROM metric_series WHERE tenant = ?", [tenant]).fetchall()[0][0])
    for metric, value, points in conn.execute(
            "SELECT s.metric, sum(m.value), sum(m.points) FROM metric_minutes m JOIN metric_series s "
            "ON s.tenant = m.tenant AND s.series_id = m.series_id WHERE m.tenant = ? GROUP BY s.metric ORDER BY s.metric",
            [tenant]).fetchall():
        out[f"{metric} minute value"] = float(value)
        out[f"{metric} minute points"] = float(points)
    n, total = conn.execute("SELECT count(*), coalesce(sum(value), 0) FROM platform_scores WHERE tenant = ?",
                            [tenant]).fetchall()[0]
    out["platform scores"] = float(n)
    out["platform score sum"] = float(total)
    return out
