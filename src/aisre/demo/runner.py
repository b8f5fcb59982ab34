"""Drive the simulated support-bot at a steady rate and export its traces over OTLP/HTTP.

``run(...)`` blocks until its duration passes or ``stop`` is set; :class:`Demo` is the same
thing as a start/stop object, for callers that switch scenarios while it runs.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import openai

from aisre.demo.platform import PlatformSim, PlatformTelemetry, metrics_url
from aisre.demo.provider import FakeProvider, ModelUsage
from aisre.demo.scenarios import SCENARIOS, Scenario, get_scenario
from aisre.demo.service import ASK, TRIAGE, JourneyResult, ServiceConfig, SupportBot
from aisre.demo.telemetry import (
    DEFAULT_ENDPOINT,
    Headers,
    ReplicaTracerProvider,
    SimClock,
    openai_instrumented,
    traces_url,
)

__all__ = ["DEFAULT_ENDPOINT", "SCENARIOS", "Demo", "DemoStats", "Scenario", "run"]

log = logging.getLogger(__name__)


@dataclass
class DemoStats:
    """What a demo run did, from the service's side, plus the provider's own usage count."""

    journeys: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    by_version: Counter[str] = field(default_factory=Counter)
    llm_calls: int = 0
    rate_limited: int = 0  # 429s the service received
    server_errors: int = 0  # 5xx the service received
    retries: int = 0
    fallbacks: int = 0
    tool_calls: int = 0
    streamed: int = 0
    shed: int = 0  # journeys skipped because every worker was busy
    crashed: int = 0  # journeys that raised something unexpected (a bug)
    provider_usage: dict[str, ModelUsage] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Journeys run, all names."""
        return sum(self.journeys.values())

    def add(self, result: JourneyResult, version: str) -> None:
        """Count one finished journey."""
        self.journeys[result.journey] += 1
        self.by_version[version] += 1
        if not result.ok:
            self.failures[result.journey] += 1
        self.llm_calls += result.llm_calls
        self.rate_limited += result.rate_limited
        self.server_errors += result.server_errors
        self.retries += result.retries
        self.fallbacks += result.fallbacks
        self.tool_calls += result.tool_calls
        self.streamed += result.streamed


class Demo:
    """The simulator: fake provider, instrumented service and a load generator."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        rate_per_s: float = 2.0,
        scenario: Scenario | str = "default",
        seed: int | None = None,
        time_scale: float = 1.0,
        workers: int = 8,
        export_delay_ms: int = 500,
        headers: Headers | None = None,
        clock: SimClock | None = None,
        arrivals: str = "poisson",
        platform: bool = False,
        metrics_interval_s: float = 10.0,
    ) -> None:
        if arrivals not in ("poisson", "uniform"):
            raise ValueError(f"arrivals must be 'poisson' or 'uniform', got {arrivals!r}")
        self._uniform = arrivals == "uniform"
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if metrics_interval_s <= 0:
            raise ValueError(f"metrics_interval_s must be > 0, got {metrics_interval_s}")
        self._scenario = get_scenario(scenario)
        self._rate = rate_per_s
        self._time_scale = time_scale
        self._workers = workers
        self._rng = random.Random(seed)
        self._provider = FakeProvider(seed=self._rng.getrandbits(64), time_scale=time_scale)
        self._tracing = ReplicaTracerProvider(
            endpoint,
            default_version=self._scenario.service_version,
            schedule_delay_ms=export_delay_ms,
            headers=headers,
            clock=clock,
        )
        self.clock = clock  # None: spans carry real time
        # The ML platform under the service (GPU pool, feature store, nightly job), exported as
        # OTLP metrics and job spans when ``platform``; its own seed keeps the journeys' draws as they were.
        self._platform_wanted = platform
        self._platform_seed = seed if seed is not None else random.getrandbits(32)
        self._metrics_interval_s = metrics_interval_s
        self._endpoint = endpoint
        self._headers = headers
        self.platform: PlatformTelemetry | None = None
        self._lock = threading.Lock()
        self._stats = DemoStats()
        self._inflight = 0
        self._stopping = threading.Event()
        self._started = False
        self._stopped = False
        self._instrumentation: Any = None
        self._client: openai.OpenAI | None = None
        self._bot: SupportBot | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._loop: threading.Thread | None = None

    @property
    def provider(self) -> FakeProvider:
        """The fake provider, for its knobs and its usage count."""
        return self._provider

    @property
    def scenario(self) -> Scenario:
        """The scenario in force."""
        return self._scenario

    def set_scenario(self, scenario: Scenario | str, **knobs: Any) -> None:
        """Switch scenario (and knobs) while running; new journeys see it at once."""
        chosen = get_scenario(scenario).with_knobs(**knobs)
        models = chosen.fault_models
        self._provider.set_faults(chosen.faults(), models)
        self._provider.set_tool_call_rate(chosen.tool_call_rate)
        if self.platform is not None:
            self.platform.set_scenario(chosen)
        self._scenario = chosen  # one reference swap: the load loop reads it per journey
        log.info("demo scenario: %s", chosen.name)

    def start(self) -> Demo:
        """Start the provider, instrumentation and load; returns at once."""
        if self._started:
            raise RuntimeError("a Demo can be started once")
        self._started = True
        try:
            url = self._provider.start()
            target = self._scenario
            if target.rollout_after_s > 0:
                self.set_scenario(target.before_rollout())
                threading.Thread(target=self._roll_out, args=(target,), name="aisre-demo-rollout", daemon=True).start()
            else:
                self.set_scenario(target)
            if self._platform_wanted:
                self.platform = self._start_platform()
            self._instrumentation = openai_instrumented(self._tracing)
            self._instrumentation.__enter__()
            self._client = openai.OpenAI(base_url=url, api_key="demo", max_retries=0, timeout=60)
            self._bot = SupportBot(self._client, self._tracing, time_scale=self._time_scale)
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="aisre-demo-journey")
            self._loop = threading.Thread(target=self._load, name="aisre-demo-load", daemon=True)
            self._loop.start()
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self, duration_s: float | None = None, stop: threading.Event | None = None) -> None:
        """Block until ``duration_s`` passes or ``stop`` is set (both None: forever)."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self._stopping.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            step = 0.1 if remaining is None else min(0.1, remaining)
            if stop is not None:
                if stop.wait(step):
                    return
            else:
                time.sleep(step)

    def stats(self) -> DemoStats:
        """A snapshot of the counts so far."""
        with self._lock:
            snapshot = DemoStats(
                journeys=Counter(self._stats.journeys),
                failures=Counter(self._stats.failures),
                by_version=Counter(self._stats.by_version),
                llm_calls=self._stats.llm_calls,
                rate_limited=self._stats.rate_limited,
                server_errors=self._stats.server_errors,
                retries=self._stats.retries,
                fallbacks=self._stats.fallbacks,
                tool_calls=self._stats.tool_calls,
                streamed=self._stats.streamed,
                shed=self._stats.shed,
                crashed=self._stats.crashed,
            )
        snapshot.provider_usage = self._provider.usage()
        return snapshot

    def stop(self) -> DemoStats:
        """Finish in-flight journeys, flush spans, stop every thread and server; idempotent."""
        if not self._stopped:
            self._stopped = True
            self._stopping.set()
            if self._loop is not None:
                self._loop.join()
            if self._pool is not None:
                # Queued journeys never started are dropped; running ones finish.
                self._pool.shutdown(wait=True, cancel_futures=True)
            if self._client is not None:
                self._client.close()
            if self._instrumentation is not None:
                self._instrumentation.__exit__(None, None, None)
            if self.platform is not None:
                self.platform.shutdown()  # the last latencies and runs, then a final export
            self._tracing.shutdown()  # flushes the last spans to the endpoint
            self._provider.stop()
        return self.stats()

    def __enter__(self) -> Demo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_platform(self) -> PlatformTelemetry:
        clock = self.clock.now_ns if self.clock is not None else time.time_ns
        sim = PlatformSim(self._scenario, clock(), seed=self._platform_seed)
        return PlatformTelemetry(
            sim, clock=clock, metrics_endpoint=metrics_url(self._endpoint), traces_endpoint=traces_url(self._endpoint),
            interval_s=self._metrics_interval_s, headers=self._headers, sim_time=self.clock is not None,
        ).start()

    def _roll_out(self, target: Scenario) -> None:
        if not self._stopping.wait(target.rollout_after_s):
            log.info("demo rollout: %s", target.description)
            self.set_scenario(target)

    # -- load --------------------------------------------------------------------------

    def _load(self) -> None:
        # Poisson arrivals at the scenario's rate; a full pool sheds rather than queueing.
        max_inflight = self._workers * 2
        next_at = time.monotonic()
        while not self._stopping.is_set():
            scenario = self._scenario
            rate = self._rate * scenario.traffic_factor
            next_at += 1.0 / rate if self._uniform else self._rng.expovariate(rate)
            now = time.monotonic()
            if next_at < now - 1.0:
                next_at = now  # fell behind (e.g. a paused process): do not burst to catch up
            if self._stopping.wait(max(0.0, next_at - now)):
                break
            journey = TRIAGE if self._rng.random() < scenario.agent_share else ASK
            canary = self._rng.random() < scenario.canary_share
            config = scenario.service_config(canary=canary)
            seed = self._rng.getrandbits(64)
            with self._lock:
                if self._inflight >= max_inflight:
                    self._stats.shed += 1
                    continue
                self._inflight += 1
            assert self._pool is not None
            self._pool.submit(self._journey, journey, config, seed)

    def _journey(self, journey: str, config: ServiceConfig, seed: int) -> None:
        assert self._bot is not None
        try:
            with self._tracing.replica(config.service_version):
                result = self._bot.run(journey, config, random.Random(seed))
        except Exception:
            log.exception("demo journey %s crashed", journey)
            with self._lock:
                self._stats.crashed += 1
                self._inflight -= 1
            return
        with self._lock:
            self._stats.add(result, config.service_version)
            self._inflight -= 1


def run(
    endpoint: str = DEFAULT_ENDPOINT,
    *,
    rate_per_s: float = 2.0,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    scenario: Scenario | str = "default",
    seed: int | None = None,
    time_scale: float = 1.0,
    workers: int = 8,
    export_delay_ms: int = 500,
    headers: Headers | None = None,
    clock: SimClock | None = None,
    platform: bool = False,
    metrics_interval_s: float = 10.0,
    **knobs: Any,
) -> DemoStats:
    """Run the demo until ``duration_s`` passes or ``stop`` is set; knobs override the scenario.

    Example: ``run(url, duration_s=5, scenario="retry-storm", rate_limit_rate=0.8)``. With a
    ``clock`` (:class:`SimClock`) the spans carry its accelerated time instead of real time.
    With ``platform`` the ML platform under the service (demo/platform.py) exports OTLP metrics
    to the endpoint's ``/v1/metrics`` every ``metrics_interval_s`` and its nightly job's spans.
    """
    chosen = get_scenario(scenario).with_knobs(**knobs)
    demo = Demo(
        endpoint,
        rate_per_s=rate_per_s,
        scenario=chosen,
        seed=seed,
        time_scale=time_scale,
        workers=workers,
        export_delay_ms=export_delay_ms,
        headers=headers,
        clock=clock,
        platform=platform,
        metrics_interval_s=metrics_interval_s,
    )
    demo.start()
    try:
        demo.wait(duration_s, stop)
    finally:
        stats = demo.stop()
    return stats
