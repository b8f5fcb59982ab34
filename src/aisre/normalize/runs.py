"""Per-trace partial journey-run aggregates of one batch, computed next to flattening.

The store merges these into its one-row-per-trace table: counts add up and root-span
fields come from whichever batch carries the root, so a root that arrives after its
children completes the run and nothing is counted twice. Doing this here, in plain
Python over rows already in hand, costs a few microseconds a span in the decoder
processes instead of a query in the single writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from aisre.core.schema import LLM_OPERATIONS, SPAN_COLUMN_NAMES, TRACE_PART_SCHEMA
from aisre.normalize.journeys import JourneyRule, resolve

_I = {name: i for i, name in enumerate(SPAN_COLUMN_NAMES)}
TENANT, TRACE, SPAN, PARENT, NAME = _I["tenant"], _I["trace_id"], _I["span_id"], _I["parent_span_id"], _I["name"]
SERVICE, START, END, STATUS, MESSAGE = _I["service"], _I["start_ns"], _I["end_ns"], _I["status"], _I["status_message"]
JOURNEY, ROOT, OPERATION, REQ_MODEL, RESP_MODEL = _I["journey"], _I["is_root"], _I["operation"], _I["request_model"], _I["response_model"]
IN_TOK, OUT_TOK, CACHED_TOK, COST = _I["input_tokens"], _I["output_tokens"], _I["cached_input_tokens"], _I["cost_usd"]
VERSION, PROMPT, PROMPT_VERSION, ENV = _I["service_version"], _I["prompt_name"], _I["prompt_version"], _I["deployment_environment"]
HTTP, RETRY, ERROR_TYPE, USER, SESSION = _I["http_status"], _I["retry_attempt"], _I["error_type"], _I["user_id"], _I["session_id"]
FAILS, RECEIVED = _I["marks_failure"], _I["received_ns"]

# Positions in an accumulator (same order as TRACE_PART_SCHEMA).
(A_TENANT, A_TRACE, A_JOURNEY, A_RULE, A_HAS_ROOT, A_ROOT_SPAN, A_ROOT_NAME, A_ROOT_SERVICE, A_ROOT_START,
 A_ROOT_END, A_START, A_END, A_FAILED, A_REASON, A_SPANS, A_ERRORS, A_LLM, A_LLM_ERRORS, A_TOOLS,
 A_RETRIEVALS, A_AGENTS, A_RETRIES, A_IN, A_OUT, A_CACHED, A_COST, A_VERSION, A_PROMPT,
 A_PROMPT_VERSION, A_ENV, A_MODELS, A_CALLS, A_USER, A_SESSION, A_FIRST, A_LAST) = range(36)


def _failure_reason(row: Sequence[Any]) -> str:
    if row[MESSAGE]:
        return str(row[MESSAGE])
    if row[ERROR_TYPE]:
        return str(row[ERROR_TYPE])
    if row[HTTP] is not None:
        return f"HTTP {row[HTTP]}"
    return "aisre.outcome=failure"


def trace_partials(rows: Sequence[Sequence[Any]], rules: tuple[JourneyRule, ...] = ()) -> pa.Table:
    """One partial `traces` row per (tenant, trace_id) among ``rows`` (flattened spans);
    ``rules`` name the journey of a root that carries no journey attribute."""
    acc: dict[tuple[str, str], list[Any]] = {}
    reason_start: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r[TENANT], r[TRACE])
        a = acc.get(key)
        if a is None:
            a = acc[key] = [
                r[TENANT], r[TRACE], None, None, False, None, None, None, None, None, r[START], r[END],
                False, None, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, None, None, None, None, [],
                [], None, None, r[RECEIVED], r[RECEIVED],
            ]
        if r[START] < a[A_START]:
            a[A_START] = r[START]
        if r[END] > a[A_END]:
            a[A_END] = r[END]
        a[A_SPANS] += 1
        if r[JOURNEY] is not None and (a[A_JOURNEY] is None or r[JOURNEY] > a[A_JOURNEY]):
            a[A_JOURNEY] = r[JOURNEY]
        is_root = r[ROOT]
        if is_root and not a[A_HAS_ROOT]:
            a[A_HAS_ROOT] = True
            a[A_ROOT_SPAN], a[A_ROOT_NAME], a[A_ROOT_SERVICE] = r[SPAN], r[NAME], r[SERVICE]
            a[A_ROOT_START], a[A_ROOT_END] = r[START], r[END]
            if rules:
                a[A_RULE] = resolve(rules, r[SERVICE], r[NAME])
            # The root's release and prompt describe the run better than any child's.
            if r[VERSION] is not None:
                a[A_VERSION] = r[VERSION]
            if r[PROMPT] is not None:
                a[A_PROMPT] = r[PROMPT]
            if r[PROMPT_VERSION] is not None:
                a[A_PROMPT_VERSION] = r[PROMPT_VERSION]
        else:
            if a[A_VERSION] is None:
                a[A_VERSION] = r[VERSION]
            if a[A_PROMPT] is None:
                a[A_PROMPT] = r[PROMPT]
            if a[A_PROMPT_VERSION] is None:
                a[A_PROMPT_VERSION] = r[PROMPT_VERSION]
        if r[FAILS]:
            a[A_FAILED] = True
            if key not in reason_start or r[START] < reason_start[key]:
                reason_start[key] = r[START]
                a[A_REASON] = _failure_reason(r)
        failed = r[STATUS] == "error"
        if failed:
            a[A_ERRORS] += 1
        operation = r[OPERATION]
        if operation in LLM_OPERATIONS:
            a[A_LLM] += 1
            if failed:
                a[A_LLM_ERRORS] += 1
            a[A_CALLS].append(
                {"p": r[PARENT], "m": f"{operation}/{r[REQ_MODEL] or ''}", "s": r[START], "e": r[END], "f": failed, "r": r[RETRY]}
            )
            model = r[RESP_MODEL]
            if model is not None and model not in a[A_MODELS]:
                a[A_MODELS].append(model)
        elif operation == "execute_tool":
            a[A_TOOLS] += 1
        elif operation == "retrieval":
            a[A_RETRIEVALS] += 1
        elif operation == "agent":
            a[A_AGENTS] += 1
        if r[RETRY]:
            a[A_RETRIES] += 1
        if r[IN_TOK]:
            a[A_IN] += r[IN_TOK]
        if r[OUT_TOK]:
            a[A_OUT] += r[OUT_TOK]
        if r[CACHED_TOK]:
            a[A_CACHED] += r[CACHED_TOK]
        if r[COST]:
            a[A_COST] += r[COST]
        if a[A_ENV] is None:
            a[A_ENV] = r[ENV]
        if a[A_USER] is None:
            a[A_USER] = r[USER]
        if a[A_SESSION] is None:
            a[A_SESSION] = r[SESSION]
        received = r[RECEIVED]
        if received < a[A_FIRST]:
            a[A_FIRST] = received
        if received > a[A_LAST]:
            a[A_LAST] = received
    if not acc:
        return TRACE_PART_SCHEMA.empty_table()
    columns = list(zip(*acc.values(), strict=True))
    return pa.Table.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, TRACE_PART_SCHEMA, strict=True)],
        schema=TRACE_PART_SCHEMA,
    )


def trace_partials_of(spans: pa.Table, rules: tuple[JourneyRule, ...] = ()) -> pa.Table:
    """:func:`trace_partials` for spans already in a table (e.g. a filtered batch)."""
    rows = list(zip(*(spans.column(name).to_pylist() for name in SPAN_COLUMN_NAMES), strict=True))
    return trace_partials(rows, rules)
