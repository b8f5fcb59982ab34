"""Merging a batch's per-trace partials (normalize/runs.py) into `traces`.

Counts add up; root-span fields come from whichever batch carries the root, so a root
that arrives after its children completes the run without counting anything twice.
"""

from __future__ import annotations

INSERT_TRACES = "INSERT INTO traces SELECT * FROM parts"

MERGE_TRACES = """
INSERT INTO traces SELECT * FROM parts
ON CONFLICT (tenant, trace_id) DO UPDATE SET
    journey_attr = coalesce(traces.journey_attr, excluded.journey_attr),
    journey_rule = coalesce(traces.journey_rule, excluded.journey_rule),
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
RETURNING tenant, has_root, root_start_ns
"""
