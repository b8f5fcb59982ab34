"""The normalized span row: one column list shared by normalize (which fills it)
and every store backend (which declares it in its own SQL dialect)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

ColumnKind = Literal["str", "int", "float", "bool", "json"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    help: str


SPAN_COLUMNS: tuple[Column, ...] = (
    Column("tenant", "str", "Tenant the span belongs to"),
    Column("trace_id", "str", "32 lowercase hex digits"),
    Column("span_id", "str", "16 lowercase hex digits"),
    Column("parent_span_id", "str", "Empty for a root span"),
    Column("name", "str", "Span name"),
    Column("kind", "str", "internal | server | client | producer | consumer | unspecified"),
    Column("service", "str", "Resource service.name"),
    Column("scope", "str", "Instrumentation scope name"),
    Column("start_ns", "int", "Start, Unix nanoseconds"),
    Column("end_ns", "int", "End, Unix nanoseconds"),
    Column("duration_ns", "int", "end_ns - start_ns, never negative"),
    Column("status", "str", "ok | error | unset"),
    Column("status_message", "str", "Status description"),
    Column("journey", "str", "aisre.journey on this span, if any"),
    Column("is_root", "bool", "No parent span id"),
    Column("operation", "str", "chat | text_completion | embeddings | retrieval | execute_tool | agent | other"),
    Column("provider", "str", "Model provider (gen_ai.provider.name and equivalents)"),
    Column("request_model", "str", "Model asked for"),
    Column("response_model", "str", "Model that answered"),
    Column("input_tokens", "int", "Input (prompt) tokens"),
    Column("output_tokens", "int", "Output (completion) tokens"),
    Column("cached_input_tokens", "int", "Input tokens served from the provider's cache"),
    Column("cost_usd", "float", "Cost of the call in USD"),
    Column("price_version", "str", "Price catalog version the cost used"),
    Column("service_version", "str", "Resource service.version"),
    Column("prompt_name", "str", "Prompt template name"),
    Column("prompt_version", "str", "Prompt template version"),
    Column("deployment_environment", "str", "Resource deployment.environment(.name)"),
    Column("http_status", "int", "HTTP status of the call, from attributes or the status message"),
    Column("retry_attempt", "int", "0 for a first attempt; n for the n-th retry"),
    Column("error_type", "str", "error.type or the exception type"),
    Column("tool_name", "str", "Tool executed or called"),
    Column("user_id", "str", "user.id / enduser.id"),
    Column("session_id", "str", "session.id"),
    Column("marks_failure", "bool", "This span judges its journey run failed (root error, root 5xx, aisre.outcome=failure)"),
    Column("attributes", "json", "Every span attribute, whole"),
    Column("resource_id", "int", "Hash of the resource's attributes; the resource itself, whole, is in `resources`"),
    Column("events", "json", "Span events with their attributes"),
    Column("links", "json", "Span links"),
    Column("received_ns", "int", "When aisre accepted the span"),
)

SPAN_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in SPAN_COLUMNS)

# A span as a trace view reads it (``RunReads.get_trace``): the columns above but the tenant
# and resource id, and the resource itself (JSON) in their place.
TRACE_SPAN_COLUMNS: tuple[Column, ...] = (
    *(c for c in SPAN_COLUMNS if c.name not in ("tenant", "resource_id")),
    Column("resource", "json", "The span's resource attributes, whole"),
)

_PY_TYPES: dict[ColumnKind, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "json": (str,),
}


def span_row_problems(row: Mapping[str, Any], columns: tuple[Column, ...] = TRACE_SPAN_COLUMNS) -> list[str]:
    """What in a span row disagrees with ``columns``: missing or extra fields, and values of
    the wrong type (None is allowed everywhere; JSON columns are text; no bool for a number)."""
    names = {c.name for c in columns}
    problems = [f"missing field {c.name!r}" for c in columns if c.name not in row]
    problems += [f"undeclared field {name!r}" for name in row if name not in names]
    for c in columns:
        value = row.get(c.name)
        if value is None:
            continue
        wrong_bool = isinstance(value, bool) and c.kind != "bool"
        if wrong_bool or not isinstance(value, _PY_TYPES[c.kind]):
            problems.append(f"{c.name}={value!r} is not {c.kind}")
    return problems


# A resource (service.name, versions, host, SDK…) is the same for every span of an
# exporter, so it is stored once and spans refer to it.
RESOURCE_ARROW_SCHEMA: pa.Schema = pa.schema(
    [pa.field("tenant", pa.string()), pa.field("resource_id", pa.int64()), pa.field("resource", pa.string())]
)

_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "json": pa.string(),
}

SPAN_ARROW_SCHEMA: pa.Schema = pa.schema(
    [pa.field(c.name, _ARROW_TYPES[c.kind]) for c in SPAN_COLUMNS]
)

# A batch's per-trace partial of a journey run, merged by the store (normalize/runs.py).
TRACE_PART_SCHEMA: pa.Schema = pa.schema(
    [
        ("tenant", pa.string()), ("trace_id", pa.string()), ("journey_attr", pa.string()),
        ("journey_rule", pa.string()),
        ("has_root", pa.bool_()), ("root_span_id", pa.string()), ("root_name", pa.string()),
        ("root_service", pa.string()), ("root_start_ns", pa.int64()), ("root_end_ns", pa.int64()),
        ("start_ns", pa.int64()), ("end_ns", pa.int64()), ("failed", pa.bool_()),
        ("failure_reason", pa.string()), ("span_count", pa.int64()), ("error_spans", pa.int64()),
        ("llm_calls", pa.int64()), ("llm_errors", pa.int64()), ("tool_calls", pa.int64()),
        ("retrieval_calls", pa.int64()), ("agent_steps", pa.int64()), ("retries", pa.int64()),
        ("input_tokens", pa.int64()), ("output_tokens", pa.int64()),
        ("cached_input_tokens", pa.int64()), ("cost_usd", pa.float64()),
        ("service_version", pa.string()), ("prompt_name", pa.string()),
        ("prompt_version", pa.string()), ("environment", pa.string()),
        ("models", pa.list_(pa.string())),
        ("llm_call_log", pa.list_(pa.struct([
            ("p", pa.string()), ("m", pa.string()), ("s", pa.int64()), ("e", pa.int64()),
            ("f", pa.bool_()), ("r", pa.int32()),
        ]))),
        ("user_id", pa.string()), ("session_id", pa.string()),
        ("first_received_ns", pa.int64()), ("last_received_ns", pa.int64()),
    ]
)

OPERATIONS: tuple[str, ...] = (
    "chat",
    "text_completion",
    "embeddings",
    "retrieval",
    "execute_tool",
    "agent",
    "other",
)
LLM_OPERATIONS: frozenset[str] = frozenset({"chat", "text_completion", "embeddings"})

# Upper bounds (ms) of the run-duration buckets in rollups and on /metrics: x1.25 steps
# from 1 ms to about 10 minutes, so a quantile read from them is within 12.5 %.
# Rollups, SLO counts and cost are kept per minute: the grain of every window.
MINUTE_NS = 60 * 10**9

DURATION_BUCKETS_MS: tuple[float, ...] = tuple(round(1.25**i, 3) for i in range(0, 61))

# Evaluation results attached to a trace or span: REST (POST /api/scores) or span
# attributes (aisre.score.<name>) and events (gen_ai.evaluation.result).
SCORE_ARROW_SCHEMA: pa.Schema = pa.schema(
    [
        ("tenant", pa.string()), ("trace_id", pa.string()), ("span_id", pa.string()),
        ("name", pa.string()), ("value", pa.float64()), ("label", pa.string()),
        ("source", pa.string()), ("comment", pa.string()), ("time_ns", pa.int64()),
        ("received_ns", pa.int64()),
    ]
)
SCORE_SOURCES: tuple[str, ...] = ("human", "model", "heuristic", "span", "other")
# Scores of a subject (a model, a dataset) at a time, not of a trace: a drift or data-quality
# report's numbers. One kept per (tenant, subject, name, time_ns); minute_ns is time_ns's
# minute (they are kept, and expire, with the minute rollups).
PLATFORM_SCORE_ARROW_SCHEMA: pa.Schema = pa.schema(
    [
        ("tenant", pa.string()), ("subject", pa.string()), ("name", pa.string()), ("value", pa.float64()),
        ("source", pa.string()), ("comment", pa.string()), ("time_ns", pa.int64()), ("minute_ns", pa.int64()),
        ("received_ns", pa.int64()),
    ]
)
