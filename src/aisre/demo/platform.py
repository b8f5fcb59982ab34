"""The ML platform under the support-bot: the GPU pool that serves its models, a feature store
and a nightly batch job, exported through the real OpenTelemetry SDK (metrics over OTLP/HTTP to
``/v1/metrics``, the batch job's runs as spans to ``/v1/traces``).

:class:`PlatformSim` is the model: what the pool's GPUs, KV caches and queue read at a
simulated moment, the inference latencies it served, when the feature view last refreshed and
how each night's batch run went. It is a function of the scenario, a seed and the simulated
time only, so tests drive it with a hand-set clock. :class:`PlatformTelemetry` feeds it into SDK
instruments: observable gauges (``hw.gpu.utilization`` per GPU, a 0-1 ratio, vLLM's
``vllm.gpu_cache_usage_perc`` and ``vllm.num_requests_waiting``, a feature view's
``feature_view.last_update_timestamp``), the GenAI ``gen_ai.server.request.duration`` histogram,
and one span per batch run with the OTel CI/CD attributes (``cicd.pipeline.name``,
``cicd.pipeline.result``) the pipeline and deadline SLIs read.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from aisre.demo.scenarios import Scenario

log = logging.getLogger(__name__)

MIN_NS = 60 * 10**9
HOUR_NS = 60 * MIN_NS
DAY_NS = 24 * HOUR_NS

POOL = "a100"
GPUS = 4
# The OTel hardware conventions' GPU utilisation, a ratio per GPU (the SDK lowercases
# instrument names, so DCGM's DCGM_FI_DEV_GPU_UTIL would not arrive as such).
GPU_UTIL = "hw.gpu.utilization"
# OTel instrument names may not hold vLLM's Prometheus colons: vLLM's gauges under dotted
# names, and the GenAI server latency histogram of the OTel semantic conventions.
KV_CACHE = "vllm.gpu_cache_usage_perc"  # 0-1, per vLLM instance (one per GPU)
QUEUE = "vllm.num_requests_waiting"  # requests queued in the pool
LATENCY = "gen_ai.server.request.duration"  # histogram, seconds
LATENCY_BOUNDS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
SERVED_MODEL = "gpt-4.1"
FRESHNESS = "feature_view.last_update_timestamp"  # unix seconds of the view's last refresh
FEATURE_VIEW = "customer_orders"
FEATURE_REFRESH_NS = 10 * MIN_NS
PIPELINE = "nightly-features"
BATCH_START_NS = 2 * HOUR_NS  # the nightly job starts at 02:00 UTC
BATCH_DEADLINE_NS = 6 * HOUR_NS  # and must be done by 06:00 UTC (demo/slos.yaml)
BATCH_NIGHTS = 12  # nights of history sent at start (within the default 14-day span retention)

# Utilisation of each GPU at rest (percent), and the pool's slow organic growth: what the
# capacity page forecasts (at 0.25 points an hour the pool reaches 90 % in about five days).
GPU_BASE: tuple[float, ...] = (58.0, 61.0, 63.0, 66.0)
GPU_GROWTH_PER_HOUR = 0.25
GPU_NOISE = 2.0
GPU_CLIMB_NS = 20 * MIN_NS  # gpu-saturation: from the base to the peak in 20 minutes
REQUESTS_PER_MIN = 30  # inference requests the pool serves per simulated minute
LATENCY_MEDIAN_S = 0.6
LATENCY_SIGMA = 0.5

Clock = Callable[[], int]


@dataclass(frozen=True)
class BatchRun:
    """One night's run of the batch job."""

    night: int  # days since the epoch
    start_ns: int
    end_ns: int
    result: str  # success | timeout (killed at the deadline)


class PlatformSim:
    """The simulated platform: readings are a function of the scenario, the seed and the time."""

    def __init__(self, scenario: Scenario, start_ns: int, seed: int = 0) -> None:
        self._seed = seed
        self.start_ns = start_ns
        self._scenario = scenario
        self._since_ns = start_ns  # when the scenario in force began
        self._lock = threading.Lock()
        # The nights whose runs time out: the last ``batch_missed_nights`` at start, then every
        # night while a scenario that misses them is in force.
        last = self._last_night(start_ns)
        self._missed = set(range(last - scenario.batch_missed_nights + 1, last + 1))
        self._latency_until = start_ns  # latencies are drawn up to here
        self._freshness_frozen: int | None = self._refresh_before(start_ns) if scenario.features_stale else None

    @property
    def scenario(self) -> Scenario:
        """The scenario in force."""
        return self._scenario

    def set_scenario(self, scenario: Scenario, now_ns: int) -> None:
        """Switch scenario at ``now_ns``: a saturation climbs from here, a stale view stops here."""
        with self._lock:
            self._scenario = scenario
            self._since_ns = now_ns
            self._freshness_frozen = self._refresh_before(now_ns) if scenario.features_stale else None

    # -- gauges ------------------------------------------------------------------------

    def gpu_util(self, now_ns: int) -> list[float]:
        """Utilisation of each GPU, percent."""
        minute = now_ns // MIN_NS
        grown = GPU_GROWTH_PER_HOUR * max(0, now_ns - self.start_ns) / HOUR_NS
        with self._lock:
            peak, since = self._scenario.gpu_util_peak, self._since_ns
        out = []
        for gpu, base in enumerate(GPU_BASE):
            level = base + grown
            if peak is not None:
                share = min(1.0, max(0, now_ns - since) / GPU_CLIMB_NS)
                level += (peak - level) * share
            noise = random.Random(f"{self._seed}:{minute}:{gpu}").gauss(0.0, GPU_NOISE)
            out.append(round(min(100.0, max(0.0, level + noise)), 2))
        return out

    def kv_cache(self, now_ns: int) -> list[float]:
        """KV-cache use of each GPU's vLLM instance, 0-1: follows the load."""
        return [round(min(0.99, 0.05 + 0.85 * u / 100), 4) for u in self.gpu_util(now_ns)]

    def queue(self, now_ns: int) -> int:
        """Requests waiting in the pool: none until the GPUs pass about 85 %."""
        mean = sum(self.gpu_util(now_ns)) / GPUS
        return max(0, round((mean - 85.0) * 1.5))

    def freshness(self, now_ns: int) -> float:
        """When the feature view last refreshed, unix seconds (every 10 minutes, unless stale)."""
        with self._lock:
            frozen = self._freshness_frozen
        last = self._refresh_before(now_ns)
        return (min(last, frozen) if frozen is not None else last) / 1e9

    @staticmethod
    def _refresh_before(now_ns: int) -> int:
        return now_ns // FEATURE_REFRESH_NS * FEATURE_REFRESH_NS

    # -- latencies ---------------------------------------------------------------------

    def latency_median_s(self, now_ns: int) -> float:
        """The median inference latency at ``now_ns``: it grows once the GPUs pass 85 %."""
        mean = sum(self.gpu_util(now_ns)) / GPUS
        return LATENCY_MEDIAN_S * (1.0 + 0.3 * max(0.0, mean - 85.0))

    def latencies(self, until_ns: int) -> list[float]:
        """Latencies (seconds) of the requests served since the last call, up to ``until_ns``;
        REQUESTS_PER_MIN per whole simulated minute, lognormal around the minute's median."""
        with self._lock:
            first, self._latency_until = self._latency_until // MIN_NS, max(self._latency_until, until_ns)
        out: list[float] = []
        for minute in range(first, until_ns // MIN_NS):
            at = minute * MIN_NS + MIN_NS // 2
            mu = math.log(self.latency_median_s(at))
            rng = random.Random(f"{self._seed}:latency:{minute}")
            out.extend(round(math.exp(rng.gauss(mu, LATENCY_SIGMA)), 4) for _ in range(REQUESTS_PER_MIN))
        return out

    # -- the nightly batch job ---------------------------------------------------------

    @staticmethod
    def _last_night(now_ns: int) -> int:
        """The last night whose deadline has passed by ``now_ns``."""
        return (now_ns - BATCH_DEADLINE_NS) // DAY_NS

    def run_of(self, night: int) -> BatchRun:
        """How the run of ``night`` went: done by about 03:15, or killed at 06:00 when it
        missed (one of the nights missed at start, or a night whose run would have ended
        while an overrunning scenario was in force)."""
        day = night * DAY_NS
        jitter = random.Random(f"{self._seed}:batch:{night}").randint(0, 20) * MIN_NS
        start = day + BATCH_START_NS + jitter // 4
        end = start + 70 * MIN_NS + jitter
        with self._lock:
            missed = night in self._missed or (self._scenario.batch_missed_nights > 0 and end > self._since_ns)
        if missed:
            return BatchRun(night, start, day + BATCH_DEADLINE_NS, "timeout")
        return BatchRun(night, start, end, "success")

    def runs(self, now_ns: int) -> list[BatchRun]:
        """Every run that ended by ``now_ns``, from BATCH_NIGHTS nights before the start on."""
        first = self._last_night(self.start_ns) - BATCH_NIGHTS + 1
        upcoming = self._last_night(now_ns + DAY_NS)  # the night whose deadline comes next
        return [run for night in range(first, upcoming + 1) if (run := self.run_of(night)).end_ns <= now_ns]


def _shift(data: MetricsData, now_ns: int, start_ns: int) -> MetricsData:
    """The same data stamped with simulated time: each point at ``now_ns``, cumulative ones
    counting from ``start_ns``."""

    def point(p: Any) -> Any:
        start = start_ns if getattr(p, "start_time_unix_nano", None) else p.start_time_unix_nano
        return dataclasses.replace(p, time_unix_nano=now_ns, start_time_unix_nano=start)

    return dataclasses.replace(data, resource_metrics=[
        dataclasses.replace(rm, scope_metrics=[
            dataclasses.replace(sm, metrics=[
                dataclasses.replace(m, data=_points(m.data, point))
                for m in sm.metrics
            ])
            for sm in rm.scope_metrics
        ])
        for rm in data.resource_metrics
    ])


def _points(data: Any, point: Callable[[Any], Any]) -> Any:
    return dataclasses.replace(data, data_points=[point(p) for p in data.data_points])


class SimTimeMetricExporter(MetricExporter):
    """Exports metrics stamped with the demo's simulated clock instead of the SDK's real time."""

    def __init__(self, inner: MetricExporter, clock: Clock, start_ns: int) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self._inner = inner
        self._clock = clock
        self._start = start_ns

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return self._inner.export(_shift(metrics_data, self._clock(), self._start), timeout_millis=timeout_millis)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis)


def metrics_url(endpoint: str) -> str:
    """The OTLP/HTTP metrics URL beside a traces URL (or a bare ``http://host:4318``)."""
    base = endpoint.rstrip("/")
    if base.endswith("/v1/traces"):
        base = base[: -len("/v1/traces")]
    return base + "/v1/metrics"


class PlatformTelemetry:
    """The platform's SDK wiring: a meter provider for the pool and feature store, a tracer
    provider for the batch job, and a ticker that advances the simulation.

    ``reader`` defaults to a periodic OTLP/HTTP exporter to ``metrics_endpoint`` every
    ``interval_s``; tests pass an ``InMemoryMetricReader`` and call :meth:`tick` themselves.
    """

    def __init__(
        self,
        sim: PlatformSim,
        *,
        clock: Clock = time.time_ns,
        metrics_endpoint: str | None = None,
        traces_endpoint: str | None = None,
        interval_s: float = 10.0,
        headers: Any = None,
        reader: MetricReader | None = None,
        span_exporter: SpanExporter | None = None,
        sim_time: bool = False,
    ) -> None:
        self.sim = sim
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent: set[int] = set()  # nights whose run was sent
        self._tick_lock = threading.Lock()
        resource = Resource.create({"service.name": "gpu-pool", "service.instance.id": str(uuid.uuid4()),
                                    "deployment.environment.name": "demo"})
        if reader is None:
            if metrics_endpoint is None:
                raise ValueError("give metrics_endpoint or a reader")
            exporter: MetricExporter = OTLPMetricExporter(endpoint=metrics_endpoint, timeout=5,
                                                          **_headers(headers))
            if sim_time:
                exporter = SimTimeMetricExporter(exporter, clock, sim.start_ns)
            reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval_s * 1000)
        self.reader = reader
        self.meters = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
        meter = self.meters.get_meter("aisre.demo.platform")
        meter.create_observable_gauge(GPU_UTIL, [self._gpu_util], unit="1", description="GPU utilisation")
        meter.create_observable_gauge(KV_CACHE, [self._kv_cache], unit="1", description="KV-cache use")
        meter.create_observable_gauge(QUEUE, [self._queue], unit="{request}", description="requests queued")
        meter.create_observable_gauge(FRESHNESS, [self._freshness], unit="s",
                                      description="unix time of the feature view's last refresh")
        self._latency = meter.create_histogram(LATENCY, unit="s", description="end-to-end inference latency",
                                               explicit_bucket_boundaries_advisory=list(LATENCY_BOUNDS))
        if span_exporter is None:
            if traces_endpoint is None:
                raise ValueError("give traces_endpoint or a span_exporter")
            span_exporter = OTLPSpanExporter(endpoint=traces_endpoint, timeout=5, **_headers(headers))
        self.tracers = TracerProvider(
            resource=Resource.create({"service.name": "feature-pipeline", "deployment.environment.name": "demo"}),
            shutdown_on_exit=False,
        )
        self.tracers.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=500))
        self._tracer = self.tracers.get_tracer("aisre.demo.platform")

    # -- observations ------------------------------------------------------------------

    def _gpu_util(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(round(u / 100, 4), {"hw.id": f"gpu{i}", "pool": POOL, "hw.model": "A100-SXM4-80GB"})
                for i, u in enumerate(self.sim.gpu_util(self._clock()))]

    def _kv_cache(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(u, {"hw.id": f"gpu{i}", "pool": POOL, "model_name": SERVED_MODEL})
                for i, u in enumerate(self.sim.kv_cache(self._clock()))]

    def _queue(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.sim.queue(self._clock()), {"pool": POOL, "model_name": SERVED_MODEL})]

    def _freshness(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.sim.freshness(self._clock()), {"view": FEATURE_VIEW, "store": "feast"})]

    # -- ticks -------------------------------------------------------------------------

    def tick(self) -> int:
        """Advance the simulation to now: record the latencies served meanwhile and send the
        batch runs that ended; returns how many runs were sent."""
        with self._tick_lock:
            now = self._clock()
            labels = {"model_name": SERVED_MODEL, "pool": POOL}
            for seconds in self.sim.latencies(now):
                self._latency.record(seconds, labels)
            runs = [run for run in self.sim.runs(now) if run.night not in self._sent]
            for run in runs:
                self._send_run(run)
                self._sent.add(run.night)
            return len(runs)

    def _send_run(self, run: BatchRun) -> None:
        attributes = {"cicd.pipeline.name": PIPELINE, "cicd.pipeline.action.name": "RUN",
                      "cicd.pipeline.result": run.result, "cicd.pipeline.run.id": f"{PIPELINE}-{run.night}"}
        span = self._tracer.start_span(PIPELINE, kind=SpanKind.INTERNAL, start_time=run.start_ns, attributes=attributes)
        if run.result != "success":
            span.set_status(Status(StatusCode.ERROR, "killed by the scheduler at the 06:00 deadline"))
        span.end(end_time=run.end_ns)

    def start(self, tick_s: float = 1.0) -> PlatformTelemetry:
        """Tick every ``tick_s`` real seconds on a thread until :meth:`shutdown`."""
        self.tick()

        def loop() -> None:
            while not self._stop.wait(tick_s):
                try:
                    self.tick()
                except Exception:  # a bad tick must not end the demo's platform
                    log.exception("demo platform tick failed")

        self._thread = threading.Thread(target=loop, name="aisre-demo-platform", daemon=True)
        self._thread.start()
        return self

    def set_scenario(self, scenario: Scenario) -> None:
        """Switch the platform's scenario now."""
        self.sim.set_scenario(scenario, self._clock())

    def shutdown(self) -> None:
        """Stop ticking, then flush and stop both providers; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.tick()  # the last runs and latencies, then a final export
        except Exception:
            log.exception("demo platform tick failed")
        self.meters.shutdown()
        self.tracers.shutdown()


def _headers(headers: Any) -> dict[str, Any]:
    """Exporter keyword arguments for fixed headers, or a function asked before each export."""
    if headers is None:
        return {}
    if callable(headers):
        import requests

        from aisre.demo.telemetry import _HeadersPerRequest

        session = requests.Session()
        session.auth = _HeadersPerRequest(headers)
        return {"session": session}
    return {"headers": dict(headers)}
