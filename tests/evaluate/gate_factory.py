"""OTLP runs of the ``ask`` journey with chosen latency, tokens, failures and groundedness."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore


def _kv(key: str, value: object) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = str(value)
    return kv


def runs_request(
    n: int,
    *,
    version: str,
    start_ns: int,
    rng: np.random.Generator,
    latency_ms: Callable[[np.random.Generator], float] = lambda r: float(r.normal(800, 80)),
    input_tokens: Callable[[np.random.Generator], int] = lambda r: int(r.normal(1000, 60)),
    failure_rate: float = 0.0,
    groundedness: Callable[[np.random.Generator], float] | None = lambda r: float(r.uniform(0.75, 0.95)),
    canary: bool | None = None,
    journey: str = "ask",
    failures: Collection[int] | None = None,
    scores: Mapping[str, Callable[[int], float | None]] | None = None,
    spacing_ns: int = 1_000_000_000,
) -> ExportTraceServiceRequest:
    """``n`` runs ``spacing_ns`` apart (one second) from ``start_ns``, from a service replica at ``version``.

    ``failures``: the indices of the runs that fail, exactly (``rng`` is then not drawn for them, so
    two sides built from equal seeds get the same latencies and tokens). ``scores``: more
    ``aisre.score.<name>`` values, by run index (None: that run has none).
    """
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "support-bot"), _kv("service.version", version)])
    spans = rs.scope_spans.add().spans
    for i in range(n):
        trace_id, root_id = os.urandom(16), os.urandom(8)
        t0 = start_ns + i * spacing_ns
        dur = int(max(latency_ms(rng), 1.0) * 1e6)
        attrs = [_kv("aisre.journey", journey)]
        if canary is not None:
            attrs.append(_kv("aisre.canary", canary))
        if groundedness is not None:
            attrs.append(_kv("aisre.score.groundedness", groundedness(rng)))
        for name, score in (scores or {}).items():
            if (value := score(i)) is not None:
                attrs.append(_kv(f"aisre.score.{name}", float(value)))
        failed = i in failures if failures is not None else rng.random() < failure_rate
        status = Status(code=Status.STATUS_CODE_ERROR if failed else Status.STATUS_CODE_OK)
        spans.append(Span(trace_id=trace_id, span_id=root_id, name="POST /ask", kind=Span.SPAN_KIND_SERVER,
                          start_time_unix_nano=t0, end_time_unix_nano=t0 + dur, attributes=attrs, status=status))
        spans.append(Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id, name="chat gpt-4o-mini",
                          start_time_unix_nano=t0 + 1000, end_time_unix_nano=t0 + dur - 1000,
                          attributes=[_kv("gen_ai.operation.name", "chat"),
                                      _kv("gen_ai.provider.name", "openai"),
                                      _kv("gen_ai.request.model", "gpt-4o-mini"),
                                      _kv("gen_ai.usage.input_tokens", max(input_tokens(rng), 1)),
                                      _kv("gen_ai.usage.output_tokens", 200)]))
    return request


def ingest(store: DuckDBStore, request: ExportTraceServiceRequest, tenant: str = "t") -> None:
    """Normalize and commit a request, scores included."""
    flat = flatten(request, tenant)
    store.submit_spans(flat.table, flat.resources, flat.scores).result(30)
