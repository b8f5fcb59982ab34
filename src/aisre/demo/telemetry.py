"""The demo's OpenTelemetry wiring: real SDK, real OTLP/HTTP exporter, GenAI instrumentation.

Nothing here touches the global tracer provider. One SDK ``TracerProvider`` is built per
``service.version`` (a replica: stable, canary…) because the version is a resource
attribute; :class:`ReplicaTracerProvider` routes each span to the replica chosen for the
current context, so the process-wide OpenAI instrumentation follows it too.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.auth
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.util.genai.utils import is_experimental_mode

log = logging.getLogger(__name__)

SERVICE_NAME = "support-bot"
ENVIRONMENT = "demo"
DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
# Baggage keys copied onto every span, so each span carries its journey (DESIGN §3).
BAGGAGE_KEYS: tuple[str, ...] = ("aisre.journey",)

_CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"
_GEN_AI_LATEST = "gen_ai_latest_experimental"


def traces_url(endpoint: str) -> str:
    """``endpoint`` as a full OTLP/HTTP traces URL; a bare ``http://host:4318`` gets ``/v1/traces``."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"OTLP endpoint must be an http(s) URL, got {endpoint!r}")
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


class BaggageSpanProcessor(SpanProcessor):
    """Copies selected baggage entries onto each span as it starts."""

    def __init__(self, keys: Sequence[str] = BAGGAGE_KEYS) -> None:
        self._keys = tuple(keys)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Set each present baggage key as a span attribute."""
        for key in self._keys:
            value = baggage.get_baggage(key, parent_context)
            if isinstance(value, str) and value:
                span.set_attribute(key, value)

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing to do when a span ends."""


# The attribute aisre reads an application-level retry number from (http.request.resend_count's
# sibling for model calls the app repeats itself).
RETRY_ATTRIBUTE = "aisre.retry.attempt"
_retry_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("aisre_demo_retry_attempt", default=0)


@contextmanager
def retry_attempt(attempt: int) -> Iterator[None]:
    """Spans started inside carry ``aisre.retry.attempt`` = ``attempt`` (when > 0)."""
    token = _retry_attempt.set(attempt)
    try:
        yield
    finally:
        _retry_attempt.reset(token)


class RetryAttemptProcessor(SpanProcessor):
    """Marks spans started inside :func:`retry_attempt` with the attempt number."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attempt = _retry_attempt.get()
        if attempt > 0:
            span.set_attribute(RETRY_ATTRIBUTE, attempt)

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing to do when a span ends."""


class SimClock:
    """An accelerated clock for the demo's timestamps: ``speed`` simulated seconds pass per
    real second from ``start_ns`` on. Each trace keeps its real durations and moves as a
    whole to the simulated time of its root's start, so a few real seconds of traffic read
    as hours (pair it with the demo's ``time_scale`` to keep latencies plausible)."""

    def __init__(self, speed: float, start_ns: int | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self.speed = speed
        self._real0 = time.time_ns()
        self._sim0 = self._real0 if start_ns is None else start_ns
        self._anchors: dict[int, int] = {}
        self._lock = threading.Lock()

    def sim(self, real_ns: int) -> int:
        """Simulated time of a real instant."""
        return self._sim0 + round((real_ns - self._real0) * self.speed)

    def now_ns(self) -> int:
        """Simulated now."""
        return self.sim(time.time_ns())

    def anchor(self, trace_id: int, real_start_ns: int) -> None:
        with self._lock:
            self._anchors.setdefault(trace_id, real_start_ns)

    def offset(self, trace_id: int, real_ns: int, release: bool) -> int:
        """How far the spans of a trace move; the root's export releases its anchor."""
        with self._lock:
            anchor = self._anchors.pop(trace_id, real_ns) if release else self._anchors.get(trace_id, real_ns)
        return self.sim(anchor) - anchor


class _ClockAnchors(SpanProcessor):
    def __init__(self, clock: SimClock) -> None:
        self._clock = clock

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        context = span.get_span_context()
        if span.parent is None and span.start_time is not None and context is not None:
            self._clock.anchor(context.trace_id, span.start_time)

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing to do when a span ends."""


class _ShiftedExporter(SpanExporter):
    """Exports spans moved to the simulated clock."""

    def __init__(self, inner: SpanExporter, clock: SimClock) -> None:
        self._inner = inner
        self._clock = clock

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._shift(s) for s in spans])

    def _shift(self, span: ReadableSpan) -> ReadableSpan:
        ctx = span.get_span_context()
        start = span.start_time or 0
        delta = self._clock.offset(ctx.trace_id if ctx is not None else 0, start, release=span.parent is None)
        return ReadableSpan(
            name=span.name, context=ctx, parent=span.parent, resource=span.resource,
            attributes=span.attributes, links=span.links, kind=span.kind, status=span.status,
            events=[Event(e.name, e.attributes, (e.timestamp or start) + delta) for e in span.events],
            start_time=start + delta, end_time=(span.end_time or start) + delta,
            instrumentation_scope=span.instrumentation_scope,
        )

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


# Export headers: fixed, or a function asked before every export (a key that appears later).
Headers = Mapping[str, str] | Callable[[], Mapping[str, str]]


class _HeadersPerRequest(requests.auth.AuthBase):
    """Adds the headers ``source`` gives at the time of each export request."""

    def __init__(self, source: Callable[[], Mapping[str, str]]) -> None:
        self._source = source

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self._source())
        return request


class ReplicaTracerProvider(trace.TracerProvider):
    """A tracer provider that sends each span to the replica (service version) in context."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        default_version: str = "1.4.2",
        environment: str = ENVIRONMENT,
        schedule_delay_ms: int = 500,
        export_timeout_s: float = 5.0,
        headers: Headers | None = None,
        clock: SimClock | None = None,
    ) -> None:
        self._endpoint = traces_url(endpoint)
        self._clock = clock
        self._default = default_version
        self._environment = environment
        self._delay_ms = schedule_delay_ms
        self._timeout_s = export_timeout_s
        self._headers = headers if callable(headers) else dict(headers or {})
        self._lock = threading.Lock()
        self._providers: dict[str, TracerProvider] = {}
        self._current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            f"aisre_demo_replica_{id(self)}", default=None
        )
        self._closed = False

    @property
    def versions(self) -> list[str]:
        """Service versions that have a provider so far."""
        with self._lock:
            return list(self._providers)

    def provider(self, version: str | None = None) -> TracerProvider:
        """The SDK provider of ``version`` (default: the context's replica), built on first use."""
        version = version or self._current.get() or self._default
        with self._lock:
            existing = self._providers.get(version)
            if existing is not None:
                return existing
            if self._closed:
                raise RuntimeError("tracer provider is shut down")
            resource = Resource.create(
                {
                    "service.name": SERVICE_NAME,
                    "service.version": version,
                    "service.instance.id": str(uuid.uuid4()),
                    "deployment.environment.name": self._environment,
                }
            )
            # Shut down explicitly by the runner, so no atexit hook holding references.
            created = TracerProvider(resource=resource, shutdown_on_exit=False)
            created.add_span_processor(BaggageSpanProcessor())
            created.add_span_processor(RetryAttemptProcessor())
            exporter: SpanExporter = self._exporter()
            if self._clock is not None:
                created.add_span_processor(_ClockAnchors(self._clock))
                exporter = _ShiftedExporter(exporter, self._clock)
            created.add_span_processor(
                BatchSpanProcessor(exporter, schedule_delay_millis=self._delay_ms)
            )
            self._providers[version] = created
            return created

    def _exporter(self) -> OTLPSpanExporter:
        if not callable(self._headers):
            return OTLPSpanExporter(endpoint=self._endpoint, timeout=self._timeout_s, headers=self._headers or None)
        session = requests.Session()
        session.auth = _HeadersPerRequest(self._headers)
        return OTLPSpanExporter(endpoint=self._endpoint, timeout=self._timeout_s, session=session)

    @contextmanager
    def replica(self, version: str) -> Iterator[None]:
        """Spans started inside go to the provider of ``version``."""
        token = self._current.set(version)
        try:
            yield
        finally:
            self._current.reset(token)

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        """A tracer that picks the replica's SDK tracer on every span start."""
        return _RoutedTracer(
            self, (instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        )

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export everything buffered so far."""
        with self._lock:
            providers = list(self._providers.values())
        return all(p.force_flush(timeout_millis) for p in providers)

    def shutdown(self) -> None:
        """Flush and stop every replica's processors and exporters; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            providers = list(self._providers.values())
        for provider in providers:
            provider.shutdown()


class _RoutedTracer(trace.Tracer):
    def __init__(self, router: ReplicaTracerProvider, args: tuple[Any, ...]) -> None:
        self._router = router
        self._args = args
        self._tracers: dict[int, trace.Tracer] = {}

    def _tracer(self) -> trace.Tracer:
        provider = self._router.provider()
        tracer = self._tracers.get(id(provider))
        if tracer is None:
            tracer = provider.get_tracer(*self._args)
            self._tracers[id(provider)] = tracer
        return tracer

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._tracer().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._tracer().start_as_current_span(*args, **kwargs)


@contextmanager
def openai_instrumented(tracer_provider: trace.TracerProvider) -> Iterator[None]:
    """Instrument the ``openai`` client with ``tracer_provider``, prompts and completions on spans.

    The instrumentation patches the ``openai`` module, so only one demo per process can
    hold it at a time; it is removed, and the environment restored, on exit.
    """
    instrumentor = OpenAIInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        raise RuntimeError("openai is already instrumented in this process; run one demo at a time")
    saved = {name: os.environ.get(name) for name in (_CAPTURE_ENV, _OPT_IN_ENV)}
    # Content lands on spans (gen_ai.input/output.messages), where aisre's trace view reads
    # it, only with the latest GenAI conventions and a mode name; "true" is the legacy
    # spelling, which sends content to log events instead.
    capture = (saved[_CAPTURE_ENV] or "").strip()
    if capture.lower() in ("", "true"):
        os.environ[_CAPTURE_ENV] = "span_only"
    opt_in = [s.strip() for s in (saved[_OPT_IN_ENV] or "").split(",") if s.strip()]
    if _GEN_AI_LATEST not in opt_in:
        os.environ[_OPT_IN_ENV] = ",".join([*opt_in, _GEN_AI_LATEST])
    try:
        instrumentor.instrument(tracer_provider=tracer_provider)
        if not is_experimental_mode():
            # The opt-in is read once per process; someone instrumented before us.
            log.warning("GenAI semantic conventions were fixed earlier in this process: "
                        "prompts and completions will not be on the demo's spans")
        yield
    finally:
        instrumentor.uninstrument()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
