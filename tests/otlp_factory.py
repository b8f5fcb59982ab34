"""Synthetic OTLP requests with fresh ids, for tests that need many distinct spans."""

from __future__ import annotations

import os
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def _kv(key: str, value: object) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = str(value)
    return kv


def journey_request(traces: int = 10, *, journey: str = "ask", start_ns: int | None = None,
                    include_roots: bool = True) -> tuple[ExportTraceServiceRequest, list[str]]:
    """``traces`` runs of root + embeddings + chat; returns the request and its trace ids."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "svc"), _kv("service.version", "1.0")])
    spans = rs.scope_spans.add().spans
    base = start_ns or time.time_ns()
    trace_ids = []
    for i in range(traces):
        trace_id = os.urandom(16)
        root_id = os.urandom(8)
        trace_ids.append(trace_id.hex())
        t0 = base + i * 1_000_000
        if include_roots:
            spans.append(Span(trace_id=trace_id, span_id=root_id, name="POST /ask", kind=Span.SPAN_KIND_SERVER,
                              start_time_unix_nano=t0, end_time_unix_nano=t0 + 900_000,
                              attributes=[_kv("aisre.journey", journey)]))
        spans.append(Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id, name="embeddings",
                          start_time_unix_nano=t0 + 1000, end_time_unix_nano=t0 + 100_000,
                          attributes=[_kv("gen_ai.operation.name", "embeddings"),
                                      _kv("gen_ai.request.model", "text-embedding-3-small"),
                                      _kv("gen_ai.usage.input_tokens", 12)]))
        spans.append(Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id, name="chat",
                          start_time_unix_nano=t0 + 200_000, end_time_unix_nano=t0 + 800_000,
                          attributes=[_kv("gen_ai.operation.name", "chat"),
                                      _kv("gen_ai.request.model", "gpt-4o-mini"),
                                      _kv("gen_ai.usage.input_tokens", 100),
                                      _kv("gen_ai.usage.output_tokens", 20)]))
    return request, trace_ids


def span_count(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def chat_runs(starts_ns: list[int], tokens: list[tuple[int, int]], *, journey: str = "ask", model: str = "gpt-4o",
              prompt: str | None = None) -> ExportTraceServiceRequest:
    """One run per start time: a root and one chat call of ``model`` with (input, output) tokens."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "svc"), _kv("service.version", "1.0")])
    spans = rs.scope_spans.add().spans
    for t0, (tokens_in, tokens_out) in zip(starts_ns, tokens, strict=True):
        trace_id, root_id = os.urandom(16), os.urandom(8)
        spans.append(Span(trace_id=trace_id, span_id=root_id, name="POST /ask", kind=Span.SPAN_KIND_SERVER,
                          start_time_unix_nano=t0, end_time_unix_nano=t0 + 900_000_000,
                          attributes=[_kv("aisre.journey", journey)]))
        attributes = [_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                      _kv("gen_ai.request.model", model), _kv("gen_ai.usage.input_tokens", tokens_in),
                      _kv("gen_ai.usage.output_tokens", tokens_out)]
        if prompt is not None:
            attributes.append(_kv("aisre.prompt.version", prompt))
        spans.append(Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id, name=f"chat {model}",
                          start_time_unix_nano=t0 + 1000, end_time_unix_nano=t0 + 800_000_000, attributes=attributes))
    return request


def retry_runs(start_ns: int, runs: int = 6, *, model: str = "gpt-4o-mini") -> ExportTraceServiceRequest:
    """Runs whose model calls are retried: per run, a call answered 429 then retried and billed;
    a call billed, then resent (retry 1, billed again: paid twice), then resent again; and in
    every other run a failed last attempt that fails the run. Resend counts are the
    instrumentation's ``http.request.resend_count``."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "svc"), _kv("service.version", "2.0")])
    spans = rs.scope_spans.add().spans
    for i in range(runs):
        trace_id, root_id, agent_id = os.urandom(16), os.urandom(8), os.urandom(8)
        t0 = start_ns + i * 7_000_000_000
        root = Span(trace_id=trace_id, span_id=root_id, name="POST /ask", kind=Span.SPAN_KIND_SERVER,
                    start_time_unix_nano=t0, end_time_unix_nano=t0 + 5_000_000_000,
                    attributes=[_kv("aisre.journey", "retrying")])
        if i % 2:
            root.status.code = 2  # the run fails with its last call
        spans.append(root)
        spans.append(Span(trace_id=trace_id, span_id=agent_id, parent_span_id=root_id, name="agent",
                          start_time_unix_nano=t0 + 1000, end_time_unix_nano=t0 + 4_900_000_000))
        # (offset ms, resend count, http status or None, input, output)
        attempts = [(10, 0, 429, 0, 0), (300, 1, None, 120, 30),
                    (1000, 0, None, 200, 50), (1600, 1, None, 200, 50), (2200, 2, None, 200, 50)]
        if i % 2:
            attempts.append((3000, 0, 503, 0, 0))
        for offset_ms, resend, status, tokens_in, tokens_out in attempts:
            attributes = [_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                          _kv("gen_ai.request.model", model), _kv("http.request.resend_count", resend)]
            if tokens_in or tokens_out:
                attributes += [_kv("gen_ai.usage.input_tokens", tokens_in), _kv("gen_ai.usage.output_tokens", tokens_out)]
            span = Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=agent_id, name=f"chat {model}",
                        start_time_unix_nano=t0 + offset_ms * 1_000_000,
                        end_time_unix_nano=t0 + (offset_ms + 250) * 1_000_000, attributes=attributes)
            if status is not None:
                span.attributes.append(_kv("http.response.status_code", status))
                span.status.code = 2  # STATUS_CODE_ERROR
                span.status.message = f"HTTP {status}"
            spans.append(span)
    return request


def pipeline_runs(runs: list[tuple[int, int, str | None, bool]], *, pipeline: str = "nightly",
                  cicd: bool = True, service: str = "airflow") -> ExportTraceServiceRequest:
    """One root span per (start_ns, end_ns, cicd.pipeline.result or None, status error): OTel
    CI/CD pipeline-run spans (with a task span under each), or plain job spans named ``pipeline``."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", service)])
    spans = rs.scope_spans.add().spans
    for start, end, result, error in runs:
        trace_id, root_id = os.urandom(16), os.urandom(8)
        attributes = [_kv("cicd.pipeline.name", pipeline), _kv("cicd.pipeline.action.name", "RUN")] if cicd else []
        if result is not None:
            attributes.append(_kv("cicd.pipeline.result", result))
        root = Span(trace_id=trace_id, span_id=root_id, name=f"RUN {pipeline}" if cicd else pipeline,
                    start_time_unix_nano=start, end_time_unix_nano=end, attributes=attributes)
        if error:
            root.status.code = 2  # STATUS_CODE_ERROR
        spans.append(root)
        if cicd:  # a task span: part of the run, never a run itself
            spans.append(Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id, name="RUN extract",
                              start_time_unix_nano=start + 1000, end_time_unix_nano=start + 2000,
                              attributes=[_kv("cicd.pipeline.name", pipeline), _kv("cicd.pipeline.task.name", "extract"),
                                          _kv("cicd.pipeline.task.run.result", "failure")]))
    return request
