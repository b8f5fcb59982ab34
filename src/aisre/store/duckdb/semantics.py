"""normalize/semantics.py compiled to DuckDB SQL: the run merge, the minute rollup and the
SLI good-event predicates."""

from __future__ import annotations

from collections.abc import Callable

from aisre.core.model import SliRule
from aisre.core.schema import DURATION_BUCKETS_MS, LLM_OPERATIONS, MINUTE_NS
from aisre.normalize.semantics import (
    COST_MINUTE_KEYS,
    COST_MINUTE_MEASURES,
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


def measure_sql(m: Measure, field: Callable[[str], str] = run_field_sql) -> str:
    """One rollup measure as a DuckDB aggregate (a sum over no rows is 0)."""
    where = f" FILTER (WHERE {' AND '.join(_condition_sql(c, field) for c in m.where)})" if m.where else ""
    if m.agg == "count":
        return f"count(*){where}"
    if m.agg == "sum":
        return f"coalesce(sum({field(m.field or '')}){where}, 0)"
    if m.agg == "histogram":
        return f"map_values(histogram({field(m.field or '')}, {_BOUNDS_NS}::BIGINT[]))"
    raise ValueError(f"no DuckDB aggregate {m.agg!r}")


def run_minutes_sql() -> str:
    """Rebuild `run_minutes` for one tenant's [start, end) from `traces` (three parameters)."""
    measures = ",\n    ".join(measure_sql(m) for m in RUN_MINUTE_MEASURES)
    return (
        "INSERT INTO run_minutes\nSELECT\n    tenant,\n"
        f"    {journey_sql()} AS journey,\n"
        f"    (root_start_ns // {MINUTE_NS}) * {MINUTE_NS} AS minute_ns,\n    {measures}\n"
        "FROM traces\nWHERE tenant = ? AND has_root AND root_start_ns >= ? AND root_start_ns < ?\nGROUP BY ALL"
    )


def _condition_sql(c: Condition, field: Callable[[str], str]) -> str:
    return condition_sql(c, field)


def good_sql(rule: SliRule, field: Callable[[str], str]) -> str:
    """SQL true for a good event of ``rule``; ``field`` renders a field name as SQL."""
    conditions = good_conditions(rule)
    if not conditions:
        return "TRUE"
    return " AND ".join(_condition_sql(c, field) for c in conditions)


def good_predicate(rule: SliRule) -> str:
    """SQL over `traces` columns that is true for a good run of ``rule``."""
    return f"({good_sql(rule, run_field_sql)})"


# Spans of a run start after its root; a run longer than this is counted only this far.
STEP_SLACK_NS = 3600 * 10**9


def _call_field(name: str) -> str:
    return "(coalesce(input_tokens, 0) + coalesce(output_tokens, 0))" if name == "tokens" else name


LLM_OPERATIONS_SQL = "(" + ", ".join(f"'{op}'" for op in sorted(LLM_OPERATIONS)) + ")"


def cost_minutes_sql() -> str:
    """Rebuild `cost_minutes` for one tenant's [start, end) from the model-call spans of its
    rooted runs (six parameters: tenant, start, end twice). ``billed`` and ``resent`` are
    normalize/semantics.py's call_flags, here as window functions."""
    measures = ",\n    ".join(measure_sql(m, _call_field) for m in COST_MINUTE_MEASURES)
    keys = ", ".join(COST_MINUTE_KEYS)
    return f"""
INSERT INTO cost_minutes
SELECT
    tenant, {keys},
    {measures}
FROM (
    SELECT *,
        coalesce(billed AND retry_attempt > 0 AND sum(billed::INTEGER) OVER (
            PARTITION BY trace_id, parent_span_id, request_model, call_no ORDER BY start_ns, span_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) > 0, FALSE) AS resent
    FROM (
    SELECT *,
        sum((retry_attempt = 0)::INTEGER) OVER (
            PARTITION BY trace_id, parent_span_id, request_model ORDER BY start_ns, span_id) AS call_no
    FROM (
        SELECT
            t.tenant, t.trace_id, s.parent_span_id, coalesce(s.request_model, '') AS request_model,
            s.start_ns, s.span_id, t.failed,
            {journey_sql("t.")} AS journey,
            (t.root_start_ns // {MINUTE_NS}) * {MINUTE_NS} AS minute_ns,
            coalesce(s.provider, '') AS provider,
            coalesce(s.response_model, s.request_model, '') AS model,
            coalesce(t.prompt_version, '') AS prompt_version,
            coalesce(t.service_version, '') AS service_version,
            (coalesce(s.input_tokens, 0) + coalesce(s.output_tokens, 0) > 0) AS billed,
            coalesce(s.retry_attempt, 0) AS retry_attempt,
            s.status, s.http_status, s.input_tokens, s.output_tokens, s.cached_input_tokens,
            s.cost_usd, s.price_version
        FROM spans s
        JOIN traces t ON t.tenant = s.tenant AND t.trace_id = s.trace_id
        WHERE s.tenant = ? AND s.operation IN {LLM_OPERATIONS_SQL}
          AND s.start_ns >= ? AND s.start_ns < ? + {STEP_SLACK_NS}
          AND t.tenant = ? AND t.has_root AND t.root_start_ns >= ? AND t.root_start_ns < ?
    )
    )
)
GROUP BY tenant, {keys}
"""
