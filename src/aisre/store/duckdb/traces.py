"""Journey-run maintenance: per-trace partial aggregates of a batch, merged into `traces`.

The aggregation is pure (an in-memory DuckDB over the batch's Arrow table), so it runs
in the decoder processes; the writer only merges the partials. Counts add up; root-span
fields come from whichever batch carries the root, so a root that arrives after its
children completes the run without counting anything twice.
"""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa

from aisre.core.schema import LLM_OPERATIONS

_LLM = ", ".join(f"'{op}'" for op in sorted(LLM_OPERATIONS))

# Column order of the `traces` table (migration 0001).
TRACE_COLUMNS = (
    "tenant", "trace_id", "journey_attr", "has_root", "root_span_id", "root_name",
    "root_service", "root_start_ns", "root_end_ns", "start_ns", "end_ns", "failed",
    "failure_reason", "span_count", "error_spans", "llm_calls", "llm_errors", "tool_calls",
    "retrieval_calls", "agent_steps", "retries", "input_tokens", "output_tokens",
    "cached_input_tokens", "cost_usd", "service_version", "prompt_name", "prompt_version",
    "environment", "models", "llm_call_log", "user_id", "session_id", "first_received_ns",
    "last_received_ns",
)

_AGGREGATE = f"""
SELECT
    tenant,
    trace_id,
    max(journey) AS journey_attr,
    bool_or(is_root) AS has_root,
    min(span_id) FILTER (WHERE is_root),
    min(name) FILTER (WHERE is_root),
    min(service) FILTER (WHERE is_root),
    min(start_ns) FILTER (WHERE is_root),
    max(end_ns) FILTER (WHERE is_root),
    min(start_ns),
    max(end_ns),
    bool_or(marks_failure),
    arg_min(
        coalesce(nullif(status_message, ''), error_type, 'HTTP ' || http_status::VARCHAR, 'aisre.outcome=failure'),
        start_ns
    ) FILTER (WHERE marks_failure),
    count(*),
    count(*) FILTER (WHERE status = 'error'),
    count(*) FILTER (WHERE operation IN ({_LLM})),
    count(*) FILTER (WHERE operation IN ({_LLM}) AND status = 'error'),
    count(*) FILTER (WHERE operation = 'execute_tool'),
    count(*) FILTER (WHERE operation = 'retrieval'),
    count(*) FILTER (WHERE operation = 'agent'),
    count(*) FILTER (WHERE retry_attempt > 0),
    coalesce(sum(input_tokens), 0),
    coalesce(sum(output_tokens), 0),
    coalesce(sum(cached_input_tokens), 0),
    coalesce(sum(cost_usd), 0),
    coalesce(min(service_version) FILTER (WHERE is_root), min(service_version)),
    coalesce(min(prompt_name) FILTER (WHERE is_root), min(prompt_name)),
    coalesce(min(prompt_version) FILTER (WHERE is_root), min(prompt_version)),
    min(deployment_environment),
    list_distinct(list(response_model) FILTER (WHERE response_model IS NOT NULL)),
    coalesce(list(struct_pack(
        p := parent_span_id, m := operation || '/' || coalesce(request_model, ''),
        s := start_ns, e := end_ns, f := status = 'error', r := retry_attempt
    )) FILTER (WHERE operation IN ({_LLM})), []),
    min(user_id),
    min(session_id),
    min(received_ns),
    max(received_ns)
FROM batch
GROUP BY tenant, trace_id
"""

AGGREGATE_TRACES = f"SELECT * FROM ({_AGGREGATE}) AS parts({', '.join(TRACE_COLUMNS)})"

INSERT_TRACES = "INSERT INTO traces SELECT * FROM parts"

MERGE_TRACES = """
INSERT INTO traces SELECT * FROM parts
ON CONFLICT (tenant, trace_id) DO UPDATE SET
    journey_attr = coalesce(traces.journey_attr, excluded.journey_attr),
    has_root = traces.has_root OR excluded.has_root,
    root_span_id = coalesce(traces.root_span_id, excluded.root_span_id),
    root_name = coalesce(traces.root_name, excluded.root_name),
    root_service = coalesce(traces.root_service, excluded.root_service),
    root_start_ns = coalesce(traces.root_start_ns, excluded.root_start_ns),
    root_end_ns = coalesce(traces.root_end_ns, excluded.root_end_ns),
    start_ns = least(traces.start_ns, excluded.start_ns),
    end_ns = greatest(traces.end_ns, excluded.end_ns),
    failed = traces.failed OR excluded.failed,
    failure_reason = coalesce(traces.failure_reason, excluded.failure_reason),
    span_count = traces.span_count + excluded.span_count,
    error_spans = traces.error_spans + excluded.error_spans,
    llm_calls = traces.llm_calls + excluded.llm_calls,
    llm_errors = traces.llm_errors + excluded.llm_errors,
    tool_calls = traces.tool_calls + excluded.tool_calls,
    retrieval_calls = traces.retrieval_calls + excluded.retrieval_calls,
    agent_steps = traces.agent_steps + excluded.agent_steps,
    -- Only a trace with a failed model call can hold a retry seen across batches.
    retries = CASE WHEN traces.llm_errors + excluded.llm_errors = 0
        THEN traces.retries + excluded.retries
        ELSE len(list_filter(
            list_concat(traces.llm_call_log, excluded.llm_call_log),
            lambda c: c.r > 0 OR len(list_filter(
                list_concat(traces.llm_call_log, excluded.llm_call_log),
                lambda x: x.f AND x.p = c.p AND x.m = c.m AND x.e <= c.s
            )) > 0
        )) END,
    input_tokens = traces.input_tokens + excluded.input_tokens,
    output_tokens = traces.output_tokens + excluded.output_tokens,
    cached_input_tokens = traces.cached_input_tokens + excluded.cached_input_tokens,
    cost_usd = traces.cost_usd + excluded.cost_usd,
    service_version = CASE WHEN excluded.has_root AND NOT traces.has_root
        THEN coalesce(excluded.service_version, traces.service_version)
        ELSE coalesce(traces.service_version, excluded.service_version) END,
    prompt_name = CASE WHEN excluded.has_root AND NOT traces.has_root
        THEN coalesce(excluded.prompt_name, traces.prompt_name)
        ELSE coalesce(traces.prompt_name, excluded.prompt_name) END,
    prompt_version = CASE WHEN excluded.has_root AND NOT traces.has_root
        THEN coalesce(excluded.prompt_version, traces.prompt_version)
        ELSE coalesce(traces.prompt_version, excluded.prompt_version) END,
    environment = coalesce(traces.environment, excluded.environment),
    models = list_distinct(list_concat(traces.models, excluded.models)),
    llm_call_log = list_concat(traces.llm_call_log, excluded.llm_call_log),
    user_id = coalesce(traces.user_id, excluded.user_id),
    session_id = coalesce(traces.session_id, excluded.session_id),
    first_received_ns = least(traces.first_received_ns, excluded.first_received_ns),
    last_received_ns = greatest(traces.last_received_ns, excluded.last_received_ns)
"""

_local = threading.local()


def aggregate_traces(spans: pa.Table) -> pa.Table:
    """One partial `traces` row per (tenant, trace_id) in ``spans``."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = duckdb.connect(":memory:")
    conn.register("batch", spans)
    try:
        return conn.sql(AGGREGATE_TRACES).to_arrow_table()
    finally:
        conn.unregister("batch")
