"""normalize/semantics.py compiled to DuckDB SQL: the run merge, the minute rollup and the
SLI good-event predicates."""

from __future__ import annotations

from collections.abc import Callable

from aisre.core.model import SliRule
from aisre.core.schema import DURATION_BUCKETS_MS, MINUTE_NS
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

# The last bound catches everything longer, so every row has the same number of buckets.
_BOUNDS_NS = "[" + ", ".join([*(str(int(ms * 1e6)) for ms in DURATION_BUCKETS_MS), str(2**63 - 1)]) + "]"


def _merge_expr(column: str, rule: Merge) -> str:
    old, new = f"traces.{column}", f"excluded.{column}"
    if rule is Merge.FIRST:
        return f"coalesce({old}, {new})"
    if rule is Merge.ROOT_WINS:
        return (f"CASE WHEN excluded.has_root AND NOT traces.has_root THEN coalesce({new}, {old}) "
                f"ELSE coalesce({old}, {new}) END")
    if rule is Merge.ANY:
        return f"{old} OR {new}"
    if rule is Merge.SUM:
        return f"{old} + {new}"
    if rule is Merge.MIN:
        return f"least({old}, {new})"
    if rule is Merge.MAX:
        return f"greatest({old}, {new})"
    if rule is Merge.UNION:
        return f"list_distinct(list_concat({old}, {new}))"
    if rule is Merge.CONCAT:
        return f"list_concat({old}, {new})"
    if rule is Merge.RETRIES:
        log = "list_concat(traces.llm_call_log, excluded.llm_call_log)"
        return (
            f"CASE WHEN traces.llm_errors + excluded.llm_errors = 0 THEN {old} + {new} "
            f"ELSE len(list_filter({log}, lambda c: c.r > 0 OR len(list_filter({log}, "
            f"lambda x: x.f AND x.p = c.p AND x.m = c.m AND x.e <= c.s)) > 0)) END"
        )
    raise ValueError(f"no DuckDB merge for {rule!r}")


def merge_traces_sql() -> str:
    """Insert a batch's partials (view ``parts``), merging each into its trace's row."""
    sets = ",\n    ".join(f"{column} = {_merge_expr(column, rule)}" for column, rule in RUN_MERGE.items())
    return (
        "INSERT INTO traces SELECT * FROM parts\n"
        "ON CONFLICT (tenant, trace_id) DO UPDATE SET\n    "
        + sets
        + "\nRETURNING tenant, has_root, root_start_ns"
    )


def run_field_sql(field: str, prefix: str = "") -> str:
    """A run field as SQL over `traces` (``prefix``: a table alias and dot)."""
    if field in DERIVED_RUN_FIELDS:
        minuend, subtrahend = DERIVED_RUN_FIELDS[field]
        return f"({prefix}{minuend} - {prefix}{subtrahend})"
    return f"{prefix}{field}"


def journey_sql(prefix: str = "") -> str:
    return "coalesce(" + ", ".join(f"{prefix}{c}" for c in JOURNEY_OF_RUN) + ")"


def _measure_sql(m: Measure) -> str:
    field = run_field_sql(m.field) if m.field else ""
    if m.agg == "count":
        return "count(*)"
    if m.agg == "count_if":
        return f"count(*) FILTER (WHERE {m.where})"
    if m.agg == "sum":
        return f"sum({field})"
    if m.agg == "sum_if":
        return f"coalesce(sum({field}) FILTER (WHERE {m.where}), 0)"
    if m.agg == "histogram":
        return f"map_values(histogram({field}, {_BOUNDS_NS}::BIGINT[]))"
    raise ValueError(f"no DuckDB aggregate {m.agg!r}")


def run_minutes_sql() -> str:
    """Rebuild `run_minutes` for one tenant's [start, end) from `traces` (three parameters)."""
    measures = ",\n    ".join(_measure_sql(m) for m in RUN_MINUTE_MEASURES)
    return (
        "INSERT INTO run_minutes\nSELECT\n    tenant,\n"
        f"    {journey_sql()} AS journey,\n"
        f"    (root_start_ns // {MINUTE_NS}) * {MINUTE_NS} AS minute_ns,\n    {measures}\n"
        "FROM traces\nWHERE tenant = ? AND has_root AND root_start_ns >= ? AND root_start_ns < ?\nGROUP BY ALL"
    )


def _condition_sql(c: Condition, field: Callable[[str], str]) -> str:
    if c.op == "is_false":
        return f"NOT {field(c.field)}"
    if c.op == "not_error":
        return f"{field(c.field)} != 'error'"
    value = repr(float(c.value)) if isinstance(c.value, float) else str(int(c.value or 0))
    return f"{field(c.field)} {c.op} {value}"


def good_sql(rule: SliRule, field: Callable[[str], str]) -> str:
    """SQL true for a good event of ``rule``; ``field`` renders a field name as SQL."""
    conditions = good_conditions(rule)
    if not conditions:
        return "TRUE"
    return " AND ".join(_condition_sql(c, field) for c in conditions)


def good_predicate(rule: SliRule) -> str:
    """SQL over `traces` columns that is true for a good run of ``rule``."""
    return f"({good_sql(rule, run_field_sql)})"
