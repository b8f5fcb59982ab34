"""OTLP runs of the ask journey with versions, prompts and tool calls, for incident tests."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from tests.otlp_factory import _kv

S = 10**9
MINUTE = 60 * S
PROMPT_TEXT = "You answer questions about orders. Cite a document. Prompt v{version}."
TOOL_ARGS = '{"order_id": "A-1042"}'
TOOL_ARGS_SHOWN = '"order_id": "A-1042"'
TOOL_RESULT_SHOWN = '"status": "shipped"'
TOOL_RESULT = '{"status": "shipped"}'


def runs_request(
    n: int, start_ns: int, *, step_ns: int = S, failed: bool = False, prompt_version: str = "v3",
    service_version: str = "1.4.2", journey: str = "ask", chat_error: bool = False, tool: bool = True,
    user_prefix: str = "u", retrieved: int | None = None, fails: Callable[[int], bool] | None = None,
) -> tuple[ExportTraceServiceRequest, list[str]]:
    """``n`` runs a ``step_ns`` apart: root, chat (prompt captured), maybe a tool call, answer.
    Run ``i`` fails when ``failed`` is set or ``fails(i)`` says so."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "support-bot"), _kv("service.version", service_version)])
    spans = rs.scope_spans.add().spans
    ids = []
    for i in range(n):
        trace_id, root_id = os.urandom(16), os.urandom(8)
        ids.append(trace_id.hex())
        t0 = start_ns + i * step_ns
        root = Span(trace_id=trace_id, span_id=root_id, name="POST /ask", kind=Span.SPAN_KIND_SERVER,
                    start_time_unix_nano=t0, end_time_unix_nano=t0 + 900_000_000,
                    attributes=[_kv("aisre.journey", journey), _kv("aisre.prompt.name", "ask-answer"),
                                _kv("aisre.prompt.version", prompt_version), _kv("user.id", f"{user_prefix}{i % 7}")])
        if failed or (fails is not None and fails(i)):
            root.status.code = Status.STATUS_CODE_ERROR
            root.status.message = "AnswerRejected: answer failed output validation"
        spans.append(root)
        messages = [{"role": "system", "parts": [{"type": "text", "content": PROMPT_TEXT.format(version=prompt_version)}]},
                    {"role": "user", "parts": [{"type": "text", "content": "Where is my order A-1042?"}]}]
        chat = Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id, name="chat gpt-4o-mini",
                    start_time_unix_nano=t0 + 10_000_000, end_time_unix_nano=t0 + 400_000_000,
                    attributes=[_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.request.model", "gpt-4o-mini"),
                                _kv("gen_ai.provider.name", "openai"), _kv("gen_ai.usage.input_tokens", 300),
                                _kv("gen_ai.usage.output_tokens", 40), _kv("gen_ai.input.messages", json.dumps(messages))])
        if chat_error:
            chat.status.code = Status.STATUS_CODE_ERROR
            chat.status.message = "Error code: 500"
            chat.attributes.append(_kv("http.response.status_code", 500))
            chat.attributes.append(_kv("error.type", "InternalServerError"))
        spans.append(chat)
        if retrieved is not None:
            spans.append(Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id,
                              name="vector_search docs", kind=Span.SPAN_KIND_CLIENT,
                              start_time_unix_nano=t0 + 1_000_000, end_time_unix_nano=t0 + 9_000_000,
                              attributes=[_kv("db.system.name", "pgvector"), _kv("db.operation.name", "search"),
                                          _kv("db.response.returned_rows", retrieved)]))
        if tool:
            spans.append(Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id,
                              name="execute_tool lookup_order", start_time_unix_nano=t0 + 450_000_000,
                              end_time_unix_nano=t0 + 500_000_000,
                              attributes=[_kv("gen_ai.operation.name", "execute_tool"),
                                          _kv("gen_ai.tool.name", "lookup_order"),
                                          _kv("gen_ai.tool.call.arguments", TOOL_ARGS),
                                          _kv("gen_ai.tool.call.result", TOOL_RESULT)]))
    return request, ids


def load(store: DuckDBStore, request: ExportTraceServiceRequest, tenant: str = "t") -> None:
    """Commit a request and bring the rollups up to date."""
    flat = flatten(request, tenant)
    store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()


def thirty_percent(i: int) -> bool:
    """Three runs in ten fail, spread so every six consecutive runs hold at least one."""
    return i % 10 in (0, 3, 6)
