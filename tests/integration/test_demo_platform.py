"""The demo's ML platform through the real OpenTelemetry SDK exporters against a live server:
its metrics land as series (four GPUs, the KV caches, the queue, the feature view's
freshness, the latency histogram) and its nightly job's spans as pipeline runs; the capacity
page lists the resources."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import httpx
import pytest

from aisre.demo.platform import BATCH_NIGHTS, GPUS, PlatformSim, PlatformTelemetry
from aisre.demo.scenarios import get_scenario
from tests.conftest import wait_for

DEMO_SLOS = str(resources.files("aisre.demo").joinpath("slos.yaml"))


@pytest.mark.slow
def test_demo_platform_exporters_land_series_and_runs(server_factory: Any, tmp_path: Any) -> None:
    server = server_factory(tmp_path / "platform.duckdb", "--slos", DEMO_SLOS, "--setting", "evaluation_interval_s=1")
    sim = PlatformSim(get_scenario("default"), time.time_ns(), seed=7)
    platform = PlatformTelemetry(sim, metrics_endpoint=server.url + "/v1/metrics",
                                 traces_endpoint=server.url + "/v1/traces", interval_s=60)
    try:
        platform.tick()
        assert platform.meters.force_flush(10_000)  # one export through the OTLP/HTTP exporter
    finally:
        platform.shutdown()

    def capacity(metric: str) -> list[dict[str, Any]]:
        return httpx.get(server.url + "/api/capacity", params={"metric": metric, "threshold": 0.9}, timeout=30).json()["items"]

    gpus = wait_for(lambda: capacity('hw.gpu.utilization{pool="a100"}'), 30, "the GPU series")
    assert sorted(g["labels"]["hw.id"] for g in gpus) == [f"gpu{i}" for i in range(GPUS)]
    assert all(0.4 < g["current"] < 0.8 and g["labels"]["service.name"] == "gpu-pool" for g in gpus)
    assert len(capacity("vllm.gpu_cache_usage_perc")) == GPUS and len(capacity("vllm.num_requests_waiting")) == 1

    def counted(name: str, total: int) -> dict[str, Any] | None:
        doc = httpx.get(server.url + f"/api/slos/{name}", timeout=30).json()
        return doc if doc.get("total") == total else None

    # Twelve nights of the nightly job, all done by 06:00; the view's freshness and the GPUs counted.
    runs = wait_for(lambda: counted("batch-nightly-succeeds", BATCH_NIGHTS), 30, "the nightly runs")
    assert runs["good"] == BATCH_NIGHTS
    on_time = wait_for(lambda: counted("batch-nightly-on-time", BATCH_NIGHTS), 30, "the deadlines")
    assert on_time["good"] == BATCH_NIGHTS
    gpu = wait_for(lambda: (d := httpx.get(server.url + "/api/slos/gpu-pool-gpu-utilisation", timeout=30).json())
                   ["total"] >= GPUS and d, 30, "the GPU SLO")
    assert gpu["good"] == gpu["total"]
    fresh = wait_for(lambda: (d := httpx.get(server.url + "/api/slos/feature-store-features-fresh", timeout=30).json())
                     ["total"] >= 1 and d, 30, "the freshness SLO")
    assert fresh["good"] == fresh["total"]
    page = httpx.get(server.url + "/capacity", timeout=30).text
    assert 'data-resource="GPU utilisation"' in page and "not enough data (" in page
