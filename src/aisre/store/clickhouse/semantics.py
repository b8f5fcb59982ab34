"""normalize/semantics.py compiled to ClickHouse SQL: the run merge as aggregate columns,
the minute rollup and the SLI good-event predicates.

A run is never stored whole: each batch adds a partial row per trace to `run_parts` (an
AggregatingMergeTree keyed by tenant and trace), and a read merges a trace's partials
with the aggregate functions below, so two ingest nodes can take spans of one trace.
"""

from __future__ import annotations

from collections.abc import Callable

from aisre.core.model import SliRule
from aisre.core.schema import DURATION_BUCKETS_MS, MINUTE_NS, TRACE_PART_SCHEMA
from aisre.normalize.semantics import (
    DERIVED_RUN_FIELDS,
    JOURNEY_OF_RUN,
    RUN_MERGE,
    RUN_MINUTE_MEASURES,
    Condition,
    Measure,
    Merge,
    good_conditions,
)
from aisre.store.sql import condition_sql

# The last bound catches everything longer, so every row has the same number of buckets.
BOUNDS_NS = [*(int(ms * 1e6) for ms in DURATION_BUCKETS_MS), 2**63 - 1]

_CALL = "Tuple(p Nullable(String), m Nullable(String), s Int64, e Int64, f Bool, r Nullable(Int32))"
# ClickHouse types of the partial columns (core/schema.py TRACE_PART_SCHEMA).
_TYPES = {
    "string": "Nullable(String)", "bool": "Bool", "int64": "Int64", "double": "Float64",
    "list<item: string>": "Array(String)",
}


def _type(column: str) -> str:
    if column == "llm_call_log":
        return f"Array({_CALL})"
    t = _TYPES[str(TRACE_PART_SCHEMA.field(column).type)]
    if RUN_MERGE.get(column) in (Merge.FIRST, Merge.ROOT_WINS) and not t.startswith("Nullable"):
        t = f"Nullable({t})"  # a batch without the root has none of its fields
    return t


# The order a FIRST / ROOT_WINS value is picked by: non-null first, then (ROOT_WINS) the
# batch carrying the root, then the batch committed first (seq).
_FIRST_KEY = "Tuple(Bool, Int64)"
_ROOT_KEY = "Tuple(Bool, Bool, Int64)"
_SIMPLE = {Merge.ANY: "max", Merge.SUM: "sum", Merge.MIN: "min", Merge.MAX: "max",
           Merge.UNION: "groupUniqArrayArray", Merge.CONCAT: "groupArrayArray", Merge.RETRIES: "sum"}


def _column_type(column: str, rule: Merge) -> str:
    t = _type(column)
    if rule is Merge.FIRST:
        return f"AggregateFunction(argMin, {t}, {_FIRST_KEY})"
    if rule is Merge.ROOT_WINS:
        return f"AggregateFunction(argMin, {t}, {_ROOT_KEY})"
    if rule is Merge.ANY:
        t = "Bool"
    return f"SimpleAggregateFunction({_SIMPLE[rule]}, {t})"


def run_parts_ddl() -> str:
    """The `run_parts` table: one aggregate column per RUN_MERGE rule."""
    columns = ",\n    ".join(f"{c} {_column_type(c, rule)}" for c, rule in RUN_MERGE.items())
    return (
        "CREATE TABLE IF NOT EXISTS run_parts (\n    tenant LowCardinality(String),\n    trace_id String,\n    "
        + columns
        + ",\n    retention_days SimpleAggregateFunction(max, UInt32)"
        + "\n)\nENGINE = AggregatingMergeTree\nORDER BY (tenant, trace_id)\n"
        # A run expires with its spans (the retention stamped on them, 0: kept).
        "TTL toDateTime(intDiv(end_ns, 1000000000)) + toIntervalDay(retention_days) DELETE WHERE retention_days > 0\n"
        "SETTINGS non_replicated_deduplication_window = 10000"
    )


def _state_expr(column: str, rule: Merge) -> str:
    """How a batch's partials (source ``p``, column ``seq``) become the column's state."""
    c = f"p.{column}"  # qualified: the output aliases reuse the column names
    if rule is Merge.FIRST:
        return f"argMinState({c}, ({c} IS NULL, p.seq)::{_FIRST_KEY})"
    if rule is Merge.ROOT_WINS:
        return f"argMinState({c}, ({c} IS NULL, NOT p.has_root, p.seq)::{_ROOT_KEY})"
    return f"{_SIMPLE[rule]}({c})"


def run_parts_in_ddl() -> str:
    """`run_parts_in`: where a batch's partials are inserted, as plain rows plus ``seq``
    (the batch's commit order); a Null table, so only its view keeps anything."""
    columns = ",\n    ".join(f"{c} {_type(c) if c not in ('tenant', 'trace_id') else 'String'}"
                              for c in TRACE_PART_SCHEMA.names)
    return (f"CREATE TABLE IF NOT EXISTS run_parts_in (\n    {columns},\n    seq Int64,\n    retention_days UInt32\n)\n"
            "ENGINE = Null")


def run_parts_mv_ddl() -> str:
    """The view turning inserted partials into `run_parts` states (a group commit may
    carry one trace in several batches: they merge here already)."""
    states = ",\n    ".join([*(f"{_state_expr(c, r)} AS {c}" for c, r in RUN_MERGE.items()),
                              "max(p.retention_days) AS retention_days"])
    return ("CREATE MATERIALIZED VIEW IF NOT EXISTS run_parts_mv TO run_parts AS\n"
            f"SELECT p.tenant AS tenant, p.trace_id AS trace_id,\n    {states}\nFROM run_parts_in AS p\nGROUP BY p.tenant, p.trace_id")


def _merged_expr(column: str, rule: Merge) -> str:
    if rule in (Merge.FIRST, Merge.ROOT_WINS):
        return f"argMinMerge({column})"
    if rule is Merge.ANY:
        return f"toBool(max({column}))"
    return f"{_SIMPLE[rule]}({column})"


# The cross-batch retry rule (normalize/semantics.py retried_calls) over the merged call log.
_RETRIED = (
    "if(llm_errors = 0, retries_sum, toInt64(arrayCount(c -> ifNull(c.r, 0) > 0 OR arrayExists("
    "x -> x.f AND isNotDistinctFrom(x.p, c.p) AND isNotDistinctFrom(x.m, c.m) AND x.e <= c.s, llm_call_log), "
    "llm_call_log)))"
)


# What journey_runs_sql derives its columns from: the least a run listing must merge.
LISTING_COLUMNS = ("journey_attr", "journey_rule", "root_name", "has_root", "failed", "root_start_ns", "root_end_ns",
                   "start_ns", "end_ns", "service_version", "models")


def merged_runs_sql(where: str, columns: tuple[str, ...] | None = None) -> str:
    """Every trace's merged run row (the columns of TRACE_PART_SCHEMA, or just ``columns``)
    for partials that match ``where`` (a condition on tenant and trace_id, so the key
    prunes the scan)."""
    rules = {c: r for c, r in RUN_MERGE.items() if columns is None or c in columns}
    if Merge.RETRIES in rules.values():
        rules.setdefault("llm_errors", Merge.SUM)
        rules.setdefault("llm_call_log", Merge.CONCAT)
    merged = ",\n        ".join(
        f"{_merged_expr(c, r)} AS {'retries_sum' if r is Merge.RETRIES else c}" for c, r in rules.items()
    )
    names = ", ".join(c if r is not Merge.RETRIES else f"{_RETRIED} AS retries" for c, r in rules.items())
    return (
        f"SELECT tenant, trace_id, {names} FROM (\n    SELECT tenant, trace_id,\n        {merged}\n"
        f"    FROM run_parts WHERE {where}\n    GROUP BY tenant, trace_id\n)"
    )


def journey_sql(prefix: str = "") -> str:
    return "coalesce(" + ", ".join(f"{prefix}{c}" for c in JOURNEY_OF_RUN) + ")"


def journey_runs_sql(where: str, columns: tuple[str, ...] | None = None) -> str:
    """What the DuckDB `journey_runs` view shows, over the merged runs matching ``where``
    (only ``columns`` merged, when given: at least LISTING_COLUMNS)."""
    return (
        "SELECT *, coalesce(journey_attr, journey_rule, root_name, '(incomplete)') AS journey,\n"
        "    multiIf(NOT has_root, 'incomplete', failed, 'failure', 'success') AS outcome,\n"
        "    coalesce(root_start_ns, start_ns) AS run_start_ns,\n"
        "    coalesce(root_end_ns, end_ns) - coalesce(root_start_ns, start_ns) AS duration_ns\n"
        f"FROM ({merged_runs_sql(where, columns)})"
    )


def run_field_sql(field: str, prefix: str = "") -> str:
    """A run field as SQL over merged runs (``prefix``: a table alias and dot)."""
    if field in DERIVED_RUN_FIELDS:
        minuend, subtrahend = DERIVED_RUN_FIELDS[field]
        return f"({prefix}{minuend} - {prefix}{subtrahend})"
    return f"{prefix}{field}"


def measure_sql(m: Measure, field_sql: Callable[[str], str] = run_field_sql) -> str:
    """One rollup measure as a ClickHouse aggregate (a sum over no rows is 0)."""
    field = field_sql(m.field) if m.field else ""
    where = " AND ".join(_condition_sql(c, field_sql) for c in m.where)
    if m.agg == "count":
        return f"toInt64(countIf({where}))" if where else "toInt64(count())"
    if m.agg == "sum":
        return f"sumIf({field}, {where})" if where else f"sum({field})"
    if m.agg == "histogram":
        # Bucket i counts the durations d with bound[i-1] < d <= bound[i].
        bounds = "[" + ", ".join(str(b) for b in BOUNDS_NS) + "]::Array(Int64)"
        return (f"sumForEach(arrayMap(b -> toInt64(b = arrayFirstIndex(x -> {field} <= x, {bounds})), "
                f"range(1, {len(BOUNDS_NS) + 1})))")
    raise ValueError(f"no ClickHouse aggregate {m.agg!r}")


def run_minutes_select(runs: str) -> str:
    """run_minutes rows (without version) of the rooted runs of ``runs`` (a table expression),
    filtered to root starts in [{start:Int64}, {end:Int64})."""
    measures = ",\n    ".join(f"{measure_sql(m)} AS {m.name}" for m in RUN_MINUTE_MEASURES)
    return (
        f"SELECT tenant, {journey_sql()} AS journey,\n"
        f"    intDiv(root_start_ns, {MINUTE_NS}) * {MINUTE_NS} AS minute_ns,\n    {measures}\n"
        f"FROM {runs}\nWHERE has_root AND root_start_ns >= {{start:Int64}} AND root_start_ns < {{end:Int64}}\n"
        "GROUP BY tenant, journey, minute_ns"
    )


def measure_names() -> list[str]:
    return [m.name for m in RUN_MINUTE_MEASURES]


def _if_null(expr: str, default: str) -> str:
    return f"ifNull({expr}, {default})"


def _condition_sql(c: Condition, field: Callable[[str], str]) -> str:
    return condition_sql(c, field, _if_null)


def good_sql(rule: SliRule, field: Callable[[str], str]) -> str:
    """SQL true for a good event of ``rule``; ``field`` renders a field name as SQL."""
    conditions = good_conditions(rule)
    if not conditions:
        return "true"
    return "(" + " AND ".join(_condition_sql(c, field) for c in conditions) + ")"


def good_predicate(rule: SliRule) -> str:
    """SQL over merged run columns that is true for a good run of ``rule``."""
    return good_sql(rule, run_field_sql)
