"""Re-pricing stored model calls on ClickHouse when a price changes (store/duckdb/cost.py's
``reprice``, in ClickHouse's terms).

Three steps, on the store's writer thread (so no commit interleaves):

1. the range's model calls get their new ``cost_usd`` and ``price_version`` in one
   synchronous mutation (``ALTER TABLE spans UPDATE … SETTINGS mutations_sync = 1``); the
   price table becomes a ``multiIf`` over (provider, model, validity) with literal prices,
   since a mutation cannot join, and a price list is short;
2. runs are merged from partial rows (run_parts), so a run's cost is not updated in place:
   each touched run gets one correction partial whose ``cost_usd`` is the difference
   between the sum of its spans' new costs and the run's merged cost (every other column
   neutral: no root, zero counts, NULL first-wins values, its own start/end/received
   bounds), which the aggregating table folds in like any late partial;
3. the minutes of the touched runs are recounted (run, cost and SLO minutes), as after a
   commit.

The formula is DuckDB's, term for term and in the same order, so both backends give the
same floating-point costs.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from aisre.core.schema import LLM_OPERATIONS, MINUTE_NS, TRACE_PART_SCHEMA
from aisre.normalize.conventions import CACHE_WRITE_INPUT_TOKENS
from aisre.normalize.semantics import RUN_MERGE, Merge

if TYPE_CHECKING:
    from aisre.store.clickhouse.store import ClickHouseStore

_LLM = "(" + ", ".join(f"'{op}'" for op in sorted(LLM_OPERATIONS)) + ")"
_MODEL = "coalesce(response_model, request_model, '')"


def _text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _number(value: Any) -> str:
    return repr(float(value))


def _range(tenant: str, since_ns: int, until_ns: int) -> str:
    return (f"tenant = {_text(tenant)} AND operation IN {_LLM} "
            f"AND start_ns >= {int(since_ns)} AND start_ns < {int(until_ns)}")


def priced_models(store: ClickHouseStore, tenant: str, since_ns: int, until_ns: int) -> list[tuple[str, str]]:
    """(provider, model) of every model call in the range: what a reprice must price."""
    found = store.client.query(
        f"SELECT DISTINCT ifNull(provider, '') AS p, {_MODEL} AS m FROM spans "
        f"WHERE tenant = {{tenant:String}} AND operation IN {_LLM} AND start_ns >= {{since:Int64}} "
        "AND start_ns < {until:Int64} ORDER BY p, m",
        {"tenant": tenant, "since": int(since_ns), "until": int(until_ns)})
    return list(zip(found.column("p").to_pylist(), found.column("m").to_pylist(), strict=True))


def _cache_write_premium(price: dict[str, Any], uncached: str) -> str:
    """What cache writes cost beyond the input price (their count is kept only in the span's
    attributes, under any of CACHE_WRITE_INPUT_TOKENS' names), as DuckDB computes it."""
    if price.get("cache_write_input") is None:
        return "0"
    names = ", ".join(
        f"toInt64OrNull(trim(BOTH '\"' FROM JSONExtractRaw(ifNull(attributes, '{{}}'), {_text(name)})))"
        for name in CACHE_WRITE_INPUT_TOKENS)
    return (f"greatest(least(coalesce({names}, 0), {uncached}), 0) * "
            f"({_number(price['cache_write_input'])} - {_number(price['input'])})")


def _cost(price: dict[str, Any], with_premium: bool) -> str:
    if price["version"] is None:
        return "toFloat64(0.0)"
    cached = "least(ifNull(cached_input_tokens, 0), ifNull(input_tokens, 0))"
    uncached = f"ifNull(input_tokens, 0) - {cached}"
    premium = _cache_write_premium(price, uncached) if with_premium else "0"
    return (f"(({uncached}) * {_number(price['input'])} + {cached} * {_number(price['cached_input'])} "
            f"+ {premium} + ifNull(output_tokens, 0) * {_number(price['output'])}) / 1000000.0")


def reprice(store: ClickHouseStore, tenant: str, since_ns: int, until_ns: int, prices: pa.Table) -> dict[str, Any]:
    """Recompute the range's model calls' cost from ``prices`` (provider, model, from_ns,
    to_ns, version, input, output, cached_input, optionally cache_write_input; a null version
    means unpriced), then their runs' costs and their minutes. Runs on the writer thread."""
    return dict(store._writer.call(lambda: _reprice(store, tenant, since_ns, until_ns, prices)).result(3600))


def _reprice(store: ClickHouseStore, tenant: str, since_ns: int, until_ns: int, prices: pa.Table) -> dict[str, Any]:
    client = store.client
    where = _range(tenant, since_ns, until_ns)
    before = client.query(f"SELECT count() AS n, sum(ifNull(cost_usd, 0)) AS c FROM spans WHERE {where}").to_pylist()[0]
    rows = prices.to_pylist()
    with_premium = "cache_write_input" in prices.column_names
    if rows:
        conditions = [
            f"(ifNull(provider, '') = {_text(p['provider'])} AND {_MODEL} = {_text(p['model'])} "
            f"AND start_ns >= {int(p['from_ns'])} AND start_ns < {int(p['to_ns'])})" for p in rows]
        cost = "multiIf(" + ", ".join(f"{c}, {_cost(p, with_premium)}" for c, p in zip(conditions, rows, strict=True))
        cost += ", ifNull(cost_usd, 0))"
        version = "multiIf(" + ", ".join(
            f"{c}, " + ("CAST(NULL AS Nullable(String))" if p["version"] is None else f"toNullable({_text(p['version'])})")
            for c, p in zip(conditions, rows, strict=True)) + ", price_version)"
        client.command(
            f"ALTER TABLE spans UPDATE cost_usd = toNullable(toFloat64({cost})), price_version = {version} "
            f"WHERE {where} AND ({' OR '.join(conditions)}) SETTINGS mutations_sync = 1")
    after = client.query(
        f"SELECT sum(ifNull(cost_usd, 0)) AS c, countIf(price_version IS NULL "
        f"AND ifNull(input_tokens, 0) + ifNull(output_tokens, 0) > 0) AS n FROM spans WHERE {where}").to_pylist()[0]
    runs = _correct_runs(store, tenant, where)
    touched: dict[str, set[int]] = {}
    for run in runs:
        if run["has_root"] and run["root_start"] is not None:
            touched.setdefault(tenant, set()).add(int(run["root_start"]) // MINUTE_NS * MINUTE_NS)
    store._mark_dirty(touched)
    store.refresh_rollups()
    return {
        "spans": int(before["n"]),
        "runs": len(runs),
        "cost_before_usd": float(before["c"] or 0.0),
        "cost_after_usd": float(after["c"] or 0.0),
        "unpriced_calls": int(after["n"]),
    }


def _correct_runs(store: ClickHouseStore, tenant: str, where: str) -> list[dict[str, Any]]:
    """One correction partial per run of the range's model calls whose merged cost differs
    from the sum of its spans' costs; returns every such run (corrected or already right)."""
    traces = f"SELECT DISTINCT trace_id FROM spans WHERE {where}"
    runs = store.client.query(f"""
        SELECT r.trace_id AS trace_id, r.lo AS lo, r.hi AS hi, r.first_in AS first_in, r.last_in AS last_in,
            r.kept AS kept, r.run_cost AS run_cost, s.span_cost AS span_cost, r.rooted AS has_root,
            r.root_start AS root_start
        FROM (
            SELECT trace_id, min(start_ns) AS lo, max(end_ns) AS hi, min(first_received_ns) AS first_in,
                max(last_received_ns) AS last_in, max(retention_days) AS kept, sum(cost_usd) AS run_cost,
                max(has_root) AS rooted, argMinMerge(root_start_ns) AS root_start
            FROM run_parts WHERE tenant = {_text(tenant)} AND trace_id IN ({traces}) GROUP BY trace_id
        ) AS r INNER JOIN (
            SELECT trace_id, sum(ifNull(cost_usd, 0)) AS span_cost
            FROM spans WHERE tenant = {_text(tenant)} AND trace_id IN ({traces}) GROUP BY trace_id
        ) AS s ON r.trace_id = s.trace_id
        ORDER BY trace_id""").to_pylist()
    fix = [r for r in runs if r["span_cost"] != r["run_cost"]]
    if fix:
        n = len(fix)
        columns: dict[str, pa.Array] = {}
        given = {
            "tenant": [tenant] * n, "trace_id": [r["trace_id"] for r in fix], "has_root": [False] * n,
            "start_ns": [r["lo"] for r in fix], "end_ns": [r["hi"] for r in fix], "failed": [False] * n,
            "cost_usd": [float(r["span_cost"]) - float(r["run_cost"]) for r in fix],
            "first_received_ns": [r["first_in"] for r in fix], "last_received_ns": [r["last_in"] for r in fix],
            "models": [[] for _ in fix], "llm_call_log": [[] for _ in fix],
        }
        for field in TRACE_PART_SCHEMA:
            if field.name in given:
                columns[field.name] = pa.array(given[field.name], type=field.type)
            elif RUN_MERGE.get(field.name) in (Merge.SUM, Merge.RETRIES):
                columns[field.name] = pa.array([0] * n, type=field.type)
            else:
                columns[field.name] = pa.nulls(n, type=field.type)
        table = pa.table(columns, schema=TRACE_PART_SCHEMA)
        first = store._next_seq()
        table = table.append_column("seq", pa.array([first] * n, type=pa.int64())).append_column(
            "retention_days", pa.array([int(r["kept"]) for r in fix], type=pa.uint32()))
        # A token of its own: a correction is never a duplicate of another insert.
        store.client.insert_arrow("run_parts_in", table, {
            "insert_deduplicate": 1, "deduplicate_blocks_in_dependent_materialized_views": 1,
            "insert_deduplication_token": f"reprice:{uuid.uuid4().hex}"})
    return runs
