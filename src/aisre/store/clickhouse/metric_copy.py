"""Metric rollups and platform scores read back and written as stored on ClickHouse (``aisre
store copy``), as store/duckdb/metric_copy.py does on DuckDB: series with their kept point,
each (series, minute) folded into one row, platform scores as they are.

Imports insert only keys the target does not hold yet. A copied series is written as
version 1 of its row, below any version a commit writes (the clock), so a series the target's
own ingest moves on meanwhile keeps the target's state. A page of minutes is inserted with a
token of its rows too: the same page inserted again is dropped by the engine.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pyarrow as pa

from aisre.core.rows import MetricMinuteRow, MetricSeriesRow, PlatformScoreRow
from aisre.store.clickhouse.client import Client
from aisre.store.clickhouse.metrics import _MINUTES_IN, ClickHouseMetricTables
from aisre.store.duckdb.metric_copy import minute_row, series_row
from aisre.store.duckdb.platform_scores import COLUMNS as SCORE_COLUMNS
from aisre.store.protocol import ExportedMinutes

COPIED_VERSION = 1
_FLOATS = pa.list_(pa.float64())


def export_series(client: Client, tenant: str, after: int | None, limit: int) -> list[MetricSeriesRow]:
    """Up to ``limit`` of the tenant's series after series id ``after``, with their kept point."""
    where, params = "", {"tenant": tenant, "limit": int(limit)}
    if after is not None:
        where, params["after"] = " AND series_id > {after:Int64}", int(after)
    rows = client.query(
        "SELECT series_id, metric, labels, kind, unit, first_ns, start_ns, last_ns, last_value, last_sum, "
        f"last_bounds, last_buckets FROM metric_series FINAL WHERE tenant = {{tenant:String}}{where} "
        "ORDER BY series_id LIMIT {limit:UInt64}", params).to_pylist()
    return [series_row(r) for r in rows]


def export_minutes(tables: ClickHouseMetricTables, client: Client, tenant: str, after: list[int] | None,
                   limit: int) -> ExportedMinutes:
    """Up to ``limit`` of the tenant's (series, minute) keys after ``after``, in the table's
    order (series, then minute: the primary key), each folded from every row written for it."""
    where, params = "", {"tenant": tenant, "limit": int(limit)}
    if after is not None:
        # Spelled so that the primary key narrows the read to the series from ``after`` on.
        where = " AND series_id >= {sid:Int64} AND (series_id > {sid:Int64} OR minute_ns > {minute:Int64})"
        params.update(sid=int(after[0]), minute=int(after[1]))
    # Rows, not grouped keys: read in key order, the read stops after ``limit`` rows (a GROUP BY
    # would fold every row after ``after`` for each page). A key with rows past the limit is
    # still whole: the fold below reads every row of each key it is given.
    found = client.query(
        f"SELECT series_id, minute_ns FROM metric_minutes WHERE tenant = {{tenant:String}}{where} "
        "ORDER BY series_id, minute_ns LIMIT {limit:UInt64}", params).to_pylist()
    keys = [k for n, k in enumerate(found) if n == 0 or k != found[n - 1]]
    if not keys:
        return ExportedMinutes([], None)
    wanted = {(int(k["series_id"]), int(k["minute_ns"])) for k in keys}
    ids = sorted({sid for sid, _ in wanted})
    lo, hi = min(m for _, m in wanted), max(m for _, m in wanted)
    rows = [minute_row(sid, minute, agg) for sid, minute, agg in tables.minutes(tenant, ids, lo, hi + 1)
            if (sid, minute) in wanted]
    return ExportedMinutes(rows, [int(keys[-1]["series_id"]), int(keys[-1]["minute_ns"])])


def export_platform_scores(client: Client, tenant: str, after: list[Any] | None, limit: int) -> list[PlatformScoreRow]:
    """Up to ``limit`` of the tenant's platform scores after ``after`` in (subject, name, time_ns) order."""
    where = "" if after is None else " AND (subject, name, time_ns) > ({s:String}, {n:String}, {t:Int64})"
    params: dict[str, Any] = {"tenant": tenant, "limit": int(limit)}
    if after is not None:
        params.update(s=after[0], n=after[1], t=int(after[2]))
    rows = client.query(
        f"SELECT {SCORE_COLUMNS} FROM platform_scores FINAL WHERE tenant = {{tenant:String}}{where} "
        "ORDER BY subject, name, time_ns LIMIT {limit:UInt64}", params).to_pylist()
    return [PlatformScoreRow(**r) for r in rows]  # type: ignore[typeddict-item]


def import_series(client: Client, tenant: str, rows: list[MetricSeriesRow]) -> int:
    """Insert the series the tenant does not have yet, kept point included; returns how many."""
    if not rows:
        return 0
    held = client.query(
        "SELECT series_id FROM metric_series FINAL WHERE tenant = {tenant:String} AND series_id IN {ids:Array(Int64)}",
        {"tenant": tenant, "ids": [int(r["series_id"]) for r in rows]}).column("series_id").to_pylist()
    have = set(held)
    new = [r for r in rows if int(r["series_id"]) not in have]
    if not new:
        return 0
    client.insert_arrow("metric_series", pa.table({
        "tenant": [tenant] * len(new),
        "series_id": pa.array([r["series_id"] for r in new], pa.int64()),
        "metric": [r["metric"] for r in new],
        "labels": [r["labels"] for r in new],
        "kind": [r["kind"] for r in new],
        "unit": [r["unit"] for r in new],
        "first_ns": pa.array([r["first_ns"] for r in new], pa.int64()),
        "start_ns": pa.array([r["start_ns"] for r in new], pa.int64()),
        "last_ns": pa.array([r["last_ns"] for r in new], pa.int64()),
        "last_value": pa.array([r["last_value"] for r in new], pa.float64()),
        "last_sum": pa.array([r["last_sum"] for r in new], pa.float64()),
        "last_bounds": pa.array([r["last_bounds"] or [] for r in new], _FLOATS),
        "last_buckets": pa.array([r["last_buckets"] or [] for r in new], _FLOATS),
        "version": pa.array([COPIED_VERSION] * len(new), pa.int64()),
    }), {"insert_deduplicate": 0})
    return len(new)


def import_minutes(client: Client, tenant: str, rows: list[MetricMinuteRow]) -> list[int]:
    """Insert the (series, minute) rows the tenant does not have yet; returns the minute of each."""
    if not rows:
        return []
    minutes = [int(r["minute_ns"]) for r in rows]
    held = client.query(
        "SELECT DISTINCT series_id, minute_ns FROM metric_minutes WHERE tenant = {tenant:String} "
        "AND series_id IN {ids:Array(Int64)} AND minute_ns >= {lo:Int64} AND minute_ns <= {hi:Int64}",
        {"tenant": tenant, "ids": sorted({int(r["series_id"]) for r in rows}), "lo": min(minutes), "hi": max(minutes)},
    ).to_pylist()
    have = {(int(h["series_id"]), int(h["minute_ns"])) for h in held}
    new = [r for r in rows if (int(r["series_id"]), int(r["minute_ns"])) not in have]
    if not new:
        return []
    token = hashlib.sha256(tenant.encode() + orjson.dumps(new)).hexdigest()
    table = pa.table({
        "tenant": [tenant] * len(new),
        "series_id": [int(r["series_id"]) for r in new],
        "minute_ns": [int(r["minute_ns"]) for r in new],
        "bounds": [r["bounds"] or [] for r in new],
        "value": [float(r["value"]) for r in new],
        "points": [int(r["points"]) for r in new],
        "min": [r["min"] for r in new],
        "max": [r["max"] for r in new],
        # A minute without a last value: (-1, 0), as commits write it.
        "last_ns": [r["last_ns"] if r["last_ns"] is not None and r["last"] is not None else -1 for r in new],
        "last": [r["last"] if r["last_ns"] is not None and r["last"] is not None else 0.0 for r in new],
        "sum": [float(r["sum"] or 0.0) for r in new],
        "buckets": [r["buckets"] or [] for r in new],
    }, schema=_MINUTES_IN)
    client.insert_arrow("metric_minutes_in", table, {
        "insert_deduplicate": 1, "deduplicate_blocks_in_dependent_materialized_views": 1,
        "insert_deduplication_token": f"copy:{token}"})
    return [int(r["minute_ns"]) for r in new]


def copy_totals(client: Client, tenant: str) -> dict[str, float]:
    """Series, per metric the minutes' value and point sums, platform scores and their sum."""
    params = {"tenant": tenant}
    out: dict[str, float] = {}
    out["metric series"] = float(client.query(
        "SELECT count() AS n FROM metric_series FINAL WHERE tenant = {tenant:String}", params).column("n")[0].as_py())
    # Summing over unmerged parts is exact: value and points are SimpleAggregateFunction(sum).
    for r in client.query(
            "SELECT s.metric AS metric, sum(m.value) AS value, sum(m.points) AS points FROM metric_minutes AS m "
            "INNER JOIN (SELECT series_id, metric FROM metric_series FINAL WHERE tenant = {tenant:String}) AS s "
            "ON s.series_id = m.series_id WHERE m.tenant = {tenant:String} GROUP BY s.metric ORDER BY s.metric",
            params).to_pylist():
        out[f"{r['metric']} minute value"] = float(r["value"])
        out[f"{r['metric']} minute points"] = float(r["points"])
    found = client.query("SELECT count() AS n, sum(value) AS total FROM platform_scores FINAL "
                         "WHERE tenant = {tenant:String}", params).to_pylist()[0]
    out["platform scores"] = float(found["n"])
    out["platform score sum"] = float(found["total"] or 0.0)
    return out
