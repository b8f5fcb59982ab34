"""OTLP metrics from the real OpenTelemetry SDK exporters (HTTP and gRPC) into a live
server: the right per-minute series, both temporalities, GenAI client metrics, the
series limit answered with partial success, and a metric SLI counted from them."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from aisre.store.duckdb import DuckDBStore
from tests.conftest import ServerProcess
from tests.metrics_otlp import T0, gauge, request

SLOS = """
slos:
  - name: errors
    service: api
    objective: 99
    sli: {kind: ratio, bad: 'requests{code=~"5.."}', total: requests}
  - name: model-latency
    service: api
    objective: 90
    sli: {kind: histogram, metric: 'gen_ai.client.operation.duration{gen_ai.request.model="m1"}', le: 2.56}
"""


def _provider(exporter: object) -> tuple[MeterProvider, PeriodicExportingMetricReader]:
    # A long interval: the test exports with force_flush, so it knows what each export holds.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)  # type: ignore[arg-type]
    return MeterProvider([reader], resource=Resource.create({"service.name": "api"})), reader


def _record(provider: MeterProvider) -> None:
    meter = provider.get_meter("test")
    requests = meter.create_counter("requests")
    duration = meter.create_histogram(
        "gen_ai.client.operation.duration", unit="s",
        explicit_bucket_boundaries_advisory=[0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24],
    )
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    requests.add(7, {"code": "200"})
    requests.add(3, {"code": "500"})
    for seconds in (0.1, 0.5, 1.0, 3.0):
        duration.record(seconds, {"gen_ai.request.model": "m1", "gen_ai.operation.name": "chat"})
    tokens.record(120, {"gen_ai.token.type": "input", "gen_ai.request.model": "m1"})
    provider.force_flush()
    requests.add(5, {"code": "200"})
    duration.record(0.2, {"gen_ai.request.model": "m1", "gen_ai.operation.name": "chat"})
    provider.force_flush()


def _totals(db: Path, tenant: str = "default") -> dict[tuple[str, str], float]:
    store = DuckDBStore(str(db), rollup_interval_ms=0)
    try:
        series = store.metric_series(tenant)
        rows = store.metric_minutes(tenant, [s["series_id"] for s in series], 0, 2**62)
        slo = store.slo_minute_arrays(tenant, 0, 2**62)
    finally:
        store.close()
    # The SDK names its instance (service.instance.id, a random id): part of the series, not of the test.
    def shown(labels: str) -> str:
        kept = {k: v for k, v in orjson.loads(labels).items() if k != "service.instance.id"}
        return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS).decode()

    by_id = {s["series_id"]: (s["metric"], shown(s["labels"])) for s in series}
    # The GenAI client metrics are recognised by name.
    meanings = {s["metric"]: s["meaning"] for s in series}
    assert meanings["gen_ai.client.token.usage"].startswith("tokens per model call")
    assert meanings["gen_ai.client.operation.duration"] == "duration of a GenAI client operation"
    assert meanings["requests"] is None
    out: dict[tuple[str, str], float] = {}
    for r in rows:
        out[by_id[r["series_id"]]] = out.get(by_id[r["series_id"]], 0.0) + r["value"]
    for name, (_, good, total) in slo.items():
        out[("slo:" + name, "good")] = float(good.sum())
        out[("slo:" + name, "total")] = float(total.sum())
    return out


@pytest.mark.parametrize("transport", ["http-cumulative", "http-delta", "grpc-cumulative"])
def test_sdk_exporters_land_as_minute_series(server_factory, tmp_path: Path, transport: str) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text(SLOS)
    server: ServerProcess = server_factory(tmp_path / f"{transport}.duckdb", "--setting", f"slos={slos}")
    delta = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    if transport.startswith("http"):
        exporter = HttpMetricExporter(
            endpoint=f"{server.url}/v1/metrics",
            preferred_temporality=delta if transport == "http-delta" else None,
        )
    else:
        exporter = GrpcMetricExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True)
    provider, _ = _provider(exporter)
    _record(provider)
    provider.shutdown()
    text = httpx.get(f"{server.url}/metrics").text
    assert 'aisre_ingest_metric_points_total{result="accepted"}' in text
    assert server.stop() == 0
    totals = _totals(server.db)
    svc = '"service.name":"api"'
    assert totals[("requests", f'{{"code":"200",{svc}}}')] == 12.0
    assert totals[("requests", f'{{"code":"500",{svc}}}')] == 3.0
    duration = ("gen_ai.client.operation.duration", f'{{"gen_ai.operation.name":"chat","gen_ai.request.model":"m1",{svc}}}')
    assert totals[duration] == 5.0
    assert totals[("gen_ai.client.token.usage", f'{{"gen_ai.request.model":"m1","gen_ai.token.type":"input",{svc}}}')] == 1.0
    # The SLOs counted from them: 3 of 15 requests bad; 4 of 5 model calls under 2.56 s.
    assert (totals[("slo:api-errors", "good")], totals[("slo:api-errors", "total")]) == (12.0, 15.0)
    assert (totals[("slo:api-model-latency", "good")], totals[("slo:api-model-latency", "total")]) == (4.0, 5.0)


def test_series_limit_partial_success_json_gzip_and_protobuf(server_factory, tmp_path: Path) -> None:
    server: ServerProcess = server_factory(tmp_path / "limit.duckdb", "--setting", "max_metric_series=3")
    first = request([gauge("gpu.util", [(T0, 0.5, {"gpu": str(i)}) for i in range(2)])])
    r = httpx.post(f"{server.url}/v1/metrics", content=first.SerializeToString(),
                   headers={"content-type": "application/x-protobuf"})
    assert r.status_code == 200
    assert ExportMetricsServiceResponse.FromString(r.content).partial_success.rejected_data_points == 0
    # Two known series and three new ones, as gzip'd OTLP/JSON: one new fits, two are refused.
    second = request([gauge("gpu.util", [(T0 + 60 * 10**9, 0.7, {"gpu": str(i)}) for i in range(5)])])
    doc = json_format.MessageToDict(second)
    r = httpx.post(f"{server.url}/v1/metrics", content=gzip.compress(orjson.dumps(doc)),
                   headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["partialSuccess"]["rejectedDataPoints"] == "2"
    assert "max_metric_series" in answer["partialSuccess"]["errorMessage"]
    # Malformed bodies get 400, as for traces.
    bad = httpx.post(f"{server.url}/v1/metrics", content=b"\x0a\xff\xff", headers={"content-type": "application/x-protobuf"})
    assert bad.status_code == 400
    assert server.stop() == 0
    store = DuckDBStore(str(server.db), rollup_interval_ms=0)
    try:
        series = store.metric_series("default", "gpu.util")
        rows = store.metric_minutes("default", [s["series_id"] for s in series], 0, 2**62)
    finally:
        store.close()
    assert sorted(orjson.loads(s["labels"])["gpu"] for s in series) == ["0", "1", "2"]
    # Nothing else lost: both points of the known series, and the one new series' point.
    assert sorted((r["minute_ns"] - T0) // (60 * 10**9) for r in rows) == [0, 0, 1, 1, 1]


def test_metrics_follow_tenant_keys(tmp_path: Path) -> None:
    """An ingest key's tenant owns the series it sends (HTTP and gRPC); no key, or a read
    key, is refused as for traces."""
    import json

    from typer.testing import CliRunner

    from aisre.app import run_server
    from aisre.present.cli.main import build_cli
    from tests.conftest import free_port

    cli = build_cli(run_server)
    db = tmp_path / "tenants.duckdb"
    keys = {}
    for tenant in ("a", "b"):
        for role in ("ingest", "read"):
            out = CliRunner().invoke(cli, ["keys", "create", "--db", str(db), "--tenant", tenant, "--role", role,
                                           "--format", "json"])
            assert out.exit_code == 0, out.output
            keys[f"{tenant}-{role}"] = json.loads(out.output)["key"]
    server = ServerProcess(db, free_port(), free_port()).start()
    try:
        body = request([gauge("gpu.util", [(T0, 0.5, {"gpu": "0"})])], service="a-svc").SerializeToString()
        proto = {"content-type": "application/x-protobuf"}
        assert httpx.post(f"{server.url}/v1/metrics", content=body, headers=proto).status_code == 401
        read = httpx.post(f"{server.url}/v1/metrics", content=body,
                          headers={**proto, "authorization": f"Bearer {keys['a-read']}"})
        assert read.status_code == 403
        ok = httpx.post(f"{server.url}/v1/metrics", content=body,
                        headers={**proto, "authorization": f"Bearer {keys['a-ingest']}"})
        assert ok.status_code == 200, ok.text
        provider, _ = _provider(GrpcMetricExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True,
                                                   headers=(("x-aisre-key", keys["b-ingest"]),)))
        provider.get_meter("t").create_counter("b.requests").add(4)
        provider.force_flush()
        provider.shutdown()
    finally:
        assert server.stop() == 0
    store = DuckDBStore(str(db), rollup_interval_ms=0)
    try:
        assert [s["metric"] for s in store.metric_series("a")] == ["gpu.util"]
        assert [s["metric"] for s in store.metric_series("b")] == ["b.requests"]
        assert store.metric_series("default") == []
    finally:
        store.close()


def test_acknowledged_points_survive_sigkill(server_factory, tmp_path: Path) -> None:
    server: ServerProcess = server_factory(tmp_path / "kill.duckdb")
    for k in range(5):
        body = request([gauge("queue.depth", [(T0 + k * 60 * 10**9, float(k), {"q": "a"})])]).SerializeToString()
        r = httpx.post(f"{server.url}/v1/metrics", content=body, headers={"content-type": "application/x-protobuf"})
        assert r.status_code == 200
    server.kill()  # no shutdown code runs
    store = DuckDBStore(str(server.db), rollup_interval_ms=0)
    try:
        series = store.metric_series("default", "queue.depth")
        rows = store.metric_minutes("default", [s["series_id"] for s in series], 0, 2**62)
    finally:
        store.close()
    assert [(r["minute_ns"] - T0) // (60 * 10**9) for r in rows] == [0, 1, 2, 3, 4]
    assert [r["last"] for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0]
