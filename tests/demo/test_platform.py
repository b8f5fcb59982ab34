"""The demo's ML platform (demo/platform.py) on a simulated clock: its SDK instruments are read
by an in-memory reader, stamped with simulated time, decoded and counted by a real store
against the demo's SLOs (demo/slos.yaml). The default stays healthy; gpu-saturation,
stale-features and late-batch burn the SLOs they should, by exactly the truth the simulation
gives."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aisre.demo.platform import (
    BATCH_NIGHTS,
    DAY_NS,
    FEATURE_REFRESH_NS,
    GPUS,
    HOUR_NS,
    MIN_NS,
    PlatformSim,
    PlatformTelemetry,
    _shift,
    metrics_url,
)
from aisre.demo.scenarios import Scenario, get_scenario
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import load_specs
from aisre.normalize.metrics import flatten_metrics
from aisre.normalize.spans import flatten
from aisre.store.factory import open_store

DEMO_SLOS = Path(str(resources.files("aisre.demo").joinpath("slos.yaml")))
START = 1_767_225_600 * 10**9 + 12 * HOUR_NS  # 2026-01-01 12:00 UTC
STEP = 2  # minutes between collections (the demo exports every 10-15 s of real time)
PLATFORM = ("gpu-pool-gpu-utilisation", "inference-latency", "feature-store-features-fresh",
            "batch-nightly-succeeds", "batch-nightly-on-time")


@dataclass
class Run:
    """What the platform sent over ``minutes`` of simulated time, and the truth to check it by."""

    ticks: list[int] = field(default_factory=list)
    gpu_util: list[list[float]] = field(default_factory=list)  # per tick, per GPU, as sent (0-1)
    freshness: list[float] = field(default_factory=list)
    end: int = 0


def drive(store: Any, scenario: str, minutes: int, switch: tuple[int, str] | None = None) -> Run:
    """Collect the platform's metrics every STEP simulated minutes (switching scenario at a
    minute when asked) and commit them, with the batch job's spans, to ``store``."""
    now = [START]
    sim = PlatformSim(get_scenario(scenario), START, seed=5)
    reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
    platform = PlatformTelemetry(sim, clock=lambda: now[0], reader=reader, span_exporter=spans)
    run, points = Run(), []
    for minute in range(0, minutes + 1, STEP):
        now[0] = START + minute * MIN_NS + 30 * 10**9
        if switch is not None and minute == switch[0]:
            platform.set_scenario(get_scenario(switch[1]))
        platform.tick()
        data = _shift(reader.get_metrics_data(), now[0], START)
        points += flatten_metrics(encode_metrics(data)).points
        run.ticks.append(now[0])
        run.gpu_util.append([round(u / 100, 4) for u in sim.gpu_util(now[0])])
        run.freshness.append(sim.freshness(now[0]))
    run.end = now[0]
    platform.tracers.force_flush()
    store.submit_metrics("t", points).result(60)
    flat = flatten(encode_spans(spans.get_finished_spans()), "t", received_ns=now[0])
    store.submit_spans(flat.table, flat.resources).result(60)
    platform.shutdown()
    return run


@pytest.fixture
def platform_store(tmp_path: Path) -> Iterator[Any]:
    # The store's clock is the end of the simulated run (deadlines count once due).
    clock = [START + 3 * HOUR_NS]
    store = open_store(f"duckdb:///{tmp_path / 'p.duckdb'}", rollup_interval_ms=0, retention_days=0,
                       clock=lambda: clock[0])
    try:
        yield store
    finally:
        store.close()


def _engine(store: Any) -> SloEngine:
    engine = SloEngine(store)
    engine.apply("t", load_specs([DEMO_SLOS]))  # backfilled from what was sent
    return engine


def _minutes(store: Any, slo: str) -> dict[int, tuple[int, int]]:
    arrays = store.slo_minute_arrays("t", 0, 2**62, slo).get(slo)
    return {} if arrays is None else {int(m): (int(g), int(t)) for m, g, t in zip(*arrays, strict=True)}


def _truth_latencies(scenario: str, switch: tuple[int, str] | None, until: int) -> list[float]:
    sim = PlatformSim(get_scenario(scenario), START, seed=5)
    if switch is not None:
        sim.set_scenario(get_scenario(switch[1]), START + switch[0] * MIN_NS + 30 * 10**9)
    return sim.latencies(until)


def test_default_platform_is_healthy(platform_store: Any) -> None:
    run = drive(platform_store, "default", 180)
    engine = _engine(platform_store)
    now = run.end
    docs = {name: engine.status("t", name, now_ns=now) for name in PLATFORM}
    assert {name: doc["status"] for name, doc in docs.items()} == dict.fromkeys(PLATFORM, "ok")
    # One event per GPU per collection, all under 90 %; one per collection for the view.
    assert (docs["gpu-pool-gpu-utilisation"]["good"], docs["gpu-pool-gpu-utilisation"]["total"]) == (4 * 91, 4 * 91)
    assert max(max(u) for u in run.gpu_util) < 0.9
    assert (docs["feature-store-features-fresh"]["good"], docs["feature-store-features-fresh"]["total"]) == (91, 91)
    latencies = _truth_latencies("default", None, now)
    assert docs["inference-latency"]["total"] == len(latencies) == 30 * 180
    assert docs["inference-latency"]["good"] == sum(1 for x in latencies if x <= 4)
    # Twelve nights of the nightly job, each done by 06:00.
    assert (docs["batch-nightly-succeeds"]["good"], docs["batch-nightly-succeeds"]["total"]) == (BATCH_NIGHTS, BATCH_NIGHTS)
    deadlines = _minutes(platform_store, "batch-nightly-on-time")
    first_night = (START - 6 * HOUR_NS) // DAY_NS - BATCH_NIGHTS + 1
    assert deadlines == {(first_night + i) * DAY_NS + 6 * HOUR_NS: (1, 1) for i in range(BATCH_NIGHTS)}
    # The triage SLO's dependencies are evaluated beside it, neither burning.
    triage = engine.status("t", "triage-success", now_ns=now)
    assert [(d["slo"], d["burning"]) for d in triage["dependencies"]] == [
        ("gpu-pool-gpu-utilisation", False), ("inference-latency", False)]
    assert triage["burning_because"] == []


def test_gpu_saturation_burns_the_gpu_and_latency_slos(platform_store: Any) -> None:
    switch = (120, "gpu-saturation")
    run = drive(platform_store, "default", 180, switch)
    engine = _engine(platform_store)
    gpu = engine.status("t", "gpu-pool-gpu-utilisation", now_ns=run.end)
    bad = sum(1 for tick in run.gpu_util for u in tick if u > 0.9)
    assert (gpu["good"], gpu["total"]) == (4 * 91 - bad, 4 * 91)
    # Every GPU is past 90 % within 20 minutes of the switch, and none before it.
    assert all(u <= 0.9 for tick in run.gpu_util[: 120 // STEP + 1] for u in tick)
    assert all(u > 0.9 for tick in run.gpu_util[(120 + 20) // STEP + 1:] for u in tick)
    assert gpu["status"] == "page" and gpu["burn_rates"]["1h"] > 10
    latencies = _truth_latencies("default", switch, run.end)
    lat = engine.status("t", "inference-latency", now_ns=run.end)
    assert (lat["good"], lat["total"]) == (sum(1 for x in latencies if x <= 4), len(latencies))
    assert lat["burn_rates"]["1h"] > 5  # a 99 % objective; about a tenth of the last hour's requests over 4 s
    # The triage journey's dependencies: both burn, highest burn first, at their own 1h burn.
    deps = engine.status("t", "triage-success", now_ns=run.end)["dependencies"]
    assert {d["slo"] for d in deps} == {"gpu-pool-gpu-utilisation", "inference-latency"}
    assert all(d["burning"] and d["window"] == "1h" for d in deps) and deps[0]["burn_rate"] >= deps[1]["burn_rate"]
    by_slo = {d["slo"]: d["burn_rate"] for d in deps}
    assert by_slo["gpu-pool-gpu-utilisation"] == pytest.approx(gpu["alerts"][0]["long_burn"])
    assert by_slo["inference-latency"] == pytest.approx(lat["alerts"][0]["long_burn"])
    # The scenario also slows the triage agent's model calls (its journey latency suffers).
    saturated = get_scenario("gpu-saturation")
    assert saturated.extra_latency_s > 0 and saturated.fault_models == ("gpt-4.1",)


def test_stale_features_stop_the_freshness_gauge(platform_store: Any) -> None:
    run = drive(platform_store, "default", 180, (60, "stale-features"))
    engine = _engine(platform_store)
    frozen_ns = (START + 60 * MIN_NS + 30 * 10**9) // FEATURE_REFRESH_NS * FEATURE_REFRESH_NS
    frozen = frozen_ns / 1e9
    assert run.freshness[60 // STEP:] == [frozen] * len(run.freshness[60 // STEP:])
    # Good while the minute's end is within 30 minutes of the last refresh.
    truth = {t // MIN_NS * MIN_NS: (int((t // MIN_NS + 1) * 60 - f <= 1800), 1) for t, f in zip(run.ticks, run.freshness, strict=True)}
    assert _minutes(platform_store, "feature-store-features-fresh") == truth
    bad = [m for m, (g, _) in truth.items() if not g]
    assert bad and min(bad) == frozen_ns + 30 * MIN_NS  # the first stale minute: 30 min after the refresh
    doc = engine.status("t", "feature-store-features-fresh", now_ns=run.end)
    assert doc["total"] - doc["good"] == len(bad) and doc["status"] == "page"


def test_late_batch_misses_the_last_three_deadlines(platform_store: Any) -> None:
    run = drive(platform_store, "late-batch", 10)
    engine = _engine(platform_store)
    last = (START - 6 * HOUR_NS) // DAY_NS
    deadlines = _minutes(platform_store, "batch-nightly-on-time")
    assert deadlines == {(last - i) * DAY_NS + 6 * HOUR_NS: ((0, 1) if i < 3 else (1, 1)) for i in range(BATCH_NIGHTS)}
    doc = engine.status("t", "batch-nightly-on-time", now_ns=run.end)
    assert (doc["good"], doc["total"]) == (BATCH_NIGHTS - 3, BATCH_NIGHTS)
    assert doc["error_budget"]["spent_events"] == 3 and doc["error_budget"]["remaining_ratio"] < 0  # 10 % of 12 allows 1.2
    runs = engine.status("t", "batch-nightly-succeeds", now_ns=run.end)
    assert (runs["good"], runs["total"]) == (BATCH_NIGHTS - 3, BATCH_NIGHTS)  # killed at the deadline: timeouts


def test_tonight_misses_too_while_the_job_overruns() -> None:
    sim = PlatformSim(get_scenario("late-batch"), START, seed=5)
    tomorrow = START + DAY_NS
    after_start = [r for r in sim.runs(tomorrow) if r.start_ns > START]
    assert [(r.result, r.end_ns) for r in after_start] == [("timeout", (tomorrow // DAY_NS) * DAY_NS + 6 * HOUR_NS)]
    healthy = PlatformSim(get_scenario("default"), START, seed=5)
    assert {r.result for r in healthy.runs(tomorrow)} == {"success"}


def test_scenario_knobs_are_checked() -> None:
    with pytest.raises(ValueError, match="gpu_util_peak"):
        Scenario("x", gpu_util_peak=120.0)
    with pytest.raises(ValueError, match="batch_missed_nights"):
        Scenario("x", batch_missed_nights=-1)
    assert metrics_url("http://h:4318/v1/traces") == metrics_url("http://h:4318") == "http://h:4318/v1/metrics"
    assert GPUS == 4
