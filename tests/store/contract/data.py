"""The fixtures the contract is fed from, ingested the way the server ingests a request:
decode -> normalize/flatten -> the store's ``prepare`` -> ``submit_prepared``, with a fixed
clock so every derived value is the same on every run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aisre.core.pipeline import EncodedExport
from aisre.ingest.pipeline import decode_and_prepare
from aisre.store.protocol import Store

DATA = Path(__file__).resolve().parents[2] / "data"
MAX_BODY = 16 * 1024 * 1024
MINUTE_NS = 60 * 10**9
# Every capture was made before this instant; the store's clock and every request's
# receive time are pinned to it so runs, rollups and goldens never depend on the day.
NOW_NS = 1_800_000_000 * 10**9


@dataclass(frozen=True)
class Fixture:
    """One capture: its request bodies in the order they were sent, and its ground truth."""

    name: str
    folder: Path

    @property
    def bodies(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted((self.folder / "raw").glob("*.pb"))]

    @property
    def truth(self) -> dict[str, Any]:
        return dict(json.loads((self.folder / "truth.json").read_text()))


FIXTURES: tuple[Fixture, ...] = (
    *(Fixture(n, DATA / "fixtures" / "otlp" / n) for n in ("otel-genai", "otel-genai-content", "openllmetry")),
    # Captures whose truth.json is what the spans carry (those where an instrumentation loses
    # calls or tokens, e.g. google-genai or LiteLLM, are checked against their documented losses
    # in tests/integration/test_instrumentation_captures.py instead).
    *(Fixture(n, DATA / "captures" / n)
      for n in ("ai-sdk", "anthropic-twice", "logfire", "pydantic-ai", "strands", "mastra", "langgraph",
                "langgraph-openllmetry")),
)
BY_NAME = {f.name: f for f in FIXTURES}


def ingest(store: Store, tenant: str, body: bytes, received_ns: int = NOW_NS) -> int:
    """One export request through the server's path (what SpanIngest does in-process:
    decode, normalize, the store's ``prepare``, then ``submit_prepared``); returns the
    spans the store kept."""
    prepared = decode_and_prepare(EncodedExport(body, "protobuf"), tenant, MAX_BODY, store.prepare,
                                  received_ns=received_ns)
    assert prepared.rejected == 0, prepared.reasons
    return int(store.submit_prepared(prepared.tables).result(120))


def split_by_root(body: bytes) -> tuple[bytes, bytes]:
    """One request as two: its child spans, then its root spans (each keeping its resource and scope)."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    children, roots = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    for rs in request.resource_spans:
        for out, want_root in ((children, False), (roots, True)):
            out_rs = out.resource_spans.add()
            out_rs.resource.CopyFrom(rs.resource)
            out_rs.schema_url = rs.schema_url
            for ss in rs.scope_spans:
                out_ss = out_rs.scope_spans.add()
                out_ss.scope.CopyFrom(ss.scope)
                out_ss.schema_url = ss.schema_url
                out_ss.spans.extend(s for s in ss.spans if (not s.parent_span_id) == want_root)
    return children.SerializeToString(), roots.SerializeToString()


@cache
def span_count(body: bytes) -> int:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def later_release(body: bytes, shift_ns: int, version: str) -> bytes:
    """``body`` as if sent ``shift_ns`` later by a new release: every time moved, the
    resource's ``service.version`` set to ``version``, new trace ids (a byte flipped)."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    for rs in request.resource_spans:
        for kv in rs.resource.attributes:
            if kv.key == "service.version":
                kv.value.string_value = version
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.trace_id = bytes([span.trace_id[0] ^ 0xFF]) + span.trace_id[1:]
                span.start_time_unix_nano += shift_ns
                span.end_time_unix_nano += shift_ns
                for event in span.events:
                    event.time_unix_nano += shift_ns
    return request.SerializeToString()
