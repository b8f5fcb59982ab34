"""Make the telemetry checker's two captures from the real Logfire capture (../logfire/raw).

    python make.py        # from this folder; rewrites complete/ and no-models/

No real instrumentation here leaves models out, and none sends everything a platform team
asks for, so both are derived from one real capture by editing attributes only (spans, ids,
times, usage and content stay as Logfire sent them):

- no-models/: the three streamed `summarise` calls lose their model attributes (request and
  response model, as an instrumentation that drops them on streams would send them).
- complete/: every root span gains aisre.prompt.name / aisre.prompt.version and user.id, and
  the failed call gains error.type = "500" (its HTTP status, which Logfire only puts in an
  exception event).
"""

from __future__ import annotations

from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "logfire" / "raw"
MODEL_KEYS = {"gen_ai.request.model", "gen_ai.response.model"}


def _attr(span: Span, key: str) -> str | None:
    return next((kv.value.string_value for kv in span.attributes if kv.key == key), None)


def _set(span: Span, key: str, value: str) -> None:
    span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))


def _journeys(request: ExportTraceServiceRequest) -> dict[bytes, str]:
    return {
        span.trace_id: _attr(span, "aisre.journey") or span.name
        for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans if not span.parent_span_id
    }


def no_models(request: ExportTraceServiceRequest) -> None:
    journeys = _journeys(request)
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if journeys.get(span.trace_id) == "summarise" and span.parent_span_id:
                    kept = [kv for kv in span.attributes if kv.key not in MODEL_KEYS]
                    del span.attributes[:]
                    span.attributes.extend(kept)


def complete(request: ExportTraceServiceRequest) -> None:
    journeys = _journeys(request)
    users = 0
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if not span.parent_span_id:
                    users += 1
                    _set(span, "aisre.prompt.name", f"support-{journeys[span.trace_id]}")
                    _set(span, "aisre.prompt.version", "v3")
                    _set(span, "user.id", f"user-{users}")
                elif span.status.code == Status.STATUS_CODE_ERROR and _attr(span, "gen_ai.operation.name"):
                    _set(span, "error.type", "500")


def main() -> None:
    for name, edit in (("no-models", no_models), ("complete", complete)):
        out = HERE / name / "raw"
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(SOURCE.glob("*.pb")):
            request = ExportTraceServiceRequest.FromString(path.read_bytes())
            edit(request)
            (out / path.name).write_bytes(request.SerializeToString())


if __name__ == "__main__":
    main()
