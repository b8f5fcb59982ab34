"""OTLP/gRPC: the real OTel gRPC exporter, and the same answers as OTLP/HTTP."""

from __future__ import annotations

import grpc
import httpx
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import ServerProcess
from tests.otlp_factory import journey_request, span_count


def test_sdk_grpc_exporter(server: ServerProcess) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "agent-svc"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True))
    )
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("agent.run triage", attributes={"aisre.journey": "triage-agent", "gen_ai.operation.name": "invoke_agent"}) as root, tracer.start_as_current_span(
        "execute_tool lookup_order", attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"}
    ):
        pass
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")
    doc = httpx.get(f"{server.url}/api/traces/{trace_id}").json()
    assert doc["journey"] == "triage-agent"
    assert [(s["name"], s["operation"], s["depth"]) for s in doc["spans"]] == [
        ("agent.run triage", "agent", 0),
        ("execute_tool lookup_order", "execute_tool", 1),
    ]
    assert doc["tool_calls"] == 1 and doc["agent_steps"] == 1


def test_grpc_partial_success_and_invalid_argument(server: ServerProcess) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        request, _ = journey_request(3)
        good = span_count(request)
        request.resource_spans[0].scope_spans[0].spans.append(
            Span(trace_id=b"\x07" * 16, span_id=b"\x01" * 3, name="bad", start_time_unix_nano=1, end_time_unix_nano=2)
        )
        response = stub.Export(request, timeout=10)
        assert response.partial_success.rejected_spans == 1
        assert "span_id must be 8 non-zero bytes" in response.partial_success.error_message

        # Raw bytes that are not an ExportTraceServiceRequest: INVALID_ARGUMENT, server lives on.
        raw = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        try:
            raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "malformed protobuf" in exc.details()
        else:
            raise AssertionError("a corrupt message was accepted")
    assert httpx.get(server.url + "/api/stats").json()["spans"] == good


def test_grpc_overload_carries_retry_info(server_factory, tmp_path) -> None:
    # A one-span queue: while one batch is being written, the next is refused.
    server = server_factory(tmp_path / "tiny.duckdb", "--queue-max-spans", "1")
    import concurrent.futures

    def export(_: int) -> tuple[str, float | None, int]:
        request, _ids = journey_request(200)
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            try:
                stub.Export(request, timeout=30)
            except grpc.RpcError as exc:
                delay = None
                for key, value in exc.trailing_metadata() or ():
                    if key == "grpc-status-details-bin":
                        status = status_pb2.Status.FromString(value)
                        info = error_details_pb2.RetryInfo()
                        status.details[0].Unpack(info)
                        delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
                return exc.code().name, delay, 0
            return "OK", None, span_count(request)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(export, range(24)))
    codes = {code for code, _, _ in results}
    assert "OK" in codes
    assert "RESOURCE_EXHAUSTED" in codes
    assert all(delay == 1.0 for code, delay, _ in results if code == "RESOURCE_EXHAUSTED")
    acked = sum(n for _, _, n in results)
    assert httpx.get(server.url + "/api/stats").json()["spans"] == acked
