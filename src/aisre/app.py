"""Composition root: settings → store → pipeline → present. The only module that wires
layers together, and (through :func:`main`) the only one that exits the process."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from aisre.core.errors import PermanentError
from aisre.present.cli.common import StartOptionError

# Everything the server is built from is imported where it is built, not here: `aisre
# --help` and every API command import this module, and should not pay for the server.
if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from aisre.core.settings import Settings
    from aisre.evaluate.prometheus import PrometheusSync
    from aisre.receive.otlp_grpc import GrpcReceiver

log = logging.getLogger("aisre")
# With a shared control store, keys and price overrides created, revoked or changed through
# another node (or offline) reach this node within this long.
KEY_REFRESH_S = 5.0


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address."""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise PermanentError(f"cannot resolve host {host!r}") from None
    return all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)


def check_bind(host: str, has_keys: bool, auth: str = "auto") -> None:
    """Refuse ``auth=off`` on a non-loopback interface, and a non-loopback interface while no
    usable API key exists (nobody could use it, or with auth off anyone could)."""
    from aisre.core.auth import auth_required

    auth_required(auth, False, False)  # an unknown mode fails here, at start
    if is_loopback(host):
        return
    if auth == "off":
        raise PermanentError(
            f"refusing auth=off on {host!r}: it is not a loopback address, so anyone who can reach it "
            "could read and write everything; auth=off is for loopback only"
        )
    if not has_keys:
        raise PermanentError(
            f"refusing to listen on {host!r}: it is not a loopback address and no API key exists, so "
            "nobody could use it; create a key first "
            "(aisre keys create --db FILE --tenant NAME --role admin), then start the server"
        )


def check_ports(settings: Settings) -> None:
    """Refuse to start when the HTTP or gRPC port cannot be bound, naming the flag that moves it."""
    ports = [(settings.port, "HTTP", "--port")]
    if settings.grpc_port:
        ports.append((settings.grpc_port, "OTLP/gRPC", "--grpc-port (0 turns gRPC off)"))
    for port, what, flag in ports:
        try:
            family = socket.getaddrinfo(settings.host, port, type=socket.SOCK_STREAM)[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                # As the listeners themselves bind: a port held only by closed connections is free.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((settings.host, port))
        except OSError as exc:
            why = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
            raise StartOptionError(f"{what} port {port} on {settings.host} {why}; choose another with {flag}") from None


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Processes started inside inherit SIGINT ignored (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class AisreServer:
    """One aisre process: the store, both OTLP receivers, the API and UI."""

    def __init__(self, settings: Settings) -> None:
        from prometheus_client import CollectorRegistry

        from aisre.act.alerts import AlertEvaluator
        from aisre.act.catalog import load_catalog_file
        from aisre.act.cost_alerts import BudgetAlertEvaluator
        from aisre.act.incidents import IncidentManager
        from aisre.act.notify import Notifier, load_receivers
        from aisre.act.postmortem import Postmortems
        from aisre.act.readiness import load_template
        from aisre.act.scorecards import load_rules as load_scorecard_rules
        from aisre.core.metrics import IngestMetrics
        from aisre.derive.check import load_requirements
        from aisre.derive.journeys import get_trace
        from aisre.evaluate.cost import CostEngine, Minimums
        from aisre.evaluate.gate.config import load_gate_config
        from aisre.evaluate.policy.service import PolicyService
        from aisre.evaluate.policy.spec import check_policy_start
        from aisre.evaluate.slo import SloEngine
        from aisre.evaluate.specs import load_specs
        from aisre.ingest.metrics import MetricIngest
        from aisre.ingest.pipeline import SpanIngest
        from aisre.normalize.journeys import load_rules
        from aisre.normalize.prices import load_catalog
        from aisre.normalize.redaction import load_policy, load_salt
        from aisre.normalize.spans import Limits
        from aisre.present.api.asgi import build_asgi
        from aisre.present.api.auth import KeyRing
        from aisre.present.api.catalog import CATALOG_FILE_KEY
        from aisre.present.api.check import CHECK_REQUIRED_KEY
        from aisre.present.api.context import AppContext
        from aisre.present.api.gate import GATE_CONFIG_KEY
        from aisre.present.api.metrics import (
            LeaseCollector,
            PolicyCollector,
            SloCountsCollector,
            StoreMemoryCollector,
            StoreRetentionCollector,
        )
        from aisre.present.api.policy import POLICY_KEY
        from aisre.present.api.readiness import READINESS_TEMPLATE_KEY, RECEIVERS_KEY
        from aisre.present.api.scorecards import SCORECARD_RULES_KEY
        from aisre.present.ui.cost import cost_ui_routes
        from aisre.present.ui.incidents import incident_ui_routes
        from aisre.present.ui.pages import ui_routes
        from aisre.store.factory import (
            BadStoreSetting,
            check_store_settings,
            control_url,
            open_lease,
            open_store,
            parse_store_url,
            store_url,
        )

        self.settings = settings
        self.before_stopping: list[Callable[[], None]] = []
        self._uvicorn: uvicorn.Server | None = None
        self._stop_requested = False
        # Bad configuration fails here, at start, never on a later request.
        url = store_url(settings)
        rules = load_rules(settings.journey_rules) if settings.journey_rules else ()
        specs = load_specs([Path(settings.slos)]) if settings.slos else []
        policy_files = check_policy_start(settings.policies)
        gate_config = load_gate_config(Path(settings.gate_config)) if settings.gate_config else None
        check_required = load_requirements(settings.check_required) if settings.check_required else []
        readiness_template = load_template(Path(settings.readiness_template)) if settings.readiness_template else None
        catalog_file = load_catalog_file(Path(settings.catalog_file)) if settings.catalog_file else None
        scorecard_rules = load_scorecard_rules(Path(settings.scorecard_rules) if settings.scorecard_rules else None)
        receivers = load_receivers(settings.receivers) if settings.receivers else []
        catalog = load_catalog(settings.price_catalog) if settings.price_catalog else None
        content = load_policy(
            settings.content_capture, settings.content_capture_file, settings.redact_phone_region,
            attributes=settings.redact_attributes, salt=load_salt(settings.redact_hash_salt, parse_store_url(url).local_file or settings.db),
        )
        try:
            check_store_settings(url, settings)
        except BadStoreSetting as exc:
            raise StartOptionError(exc.message) from None
        self.store = open_store(url, settings)
        # The singleton jobs (alert, budget and policy passes, change detection, the Prometheus
        # reader) run on the node holding this lease; without a control store, on this one.
        self.lease = open_lease(settings)
        self._shared_control = bool(control_url(settings))
        self._key_refresh_stop = threading.Event()
        self.keys = KeyRing(self.store, settings.tenant, settings.auth, public=not is_loopback(settings.host))
        now = time.time_ns()
        usable = [k for k in self.store.active_keys() if k["expires_ns"] is None or k["expires_ns"] > now]
        if self.keys.enabled and not usable:
            log.warning("auth is on and no API key is usable: create one with the server stopped "
                        "(aisre keys create --db %s --tenant NAME --role admin)", settings.db)
        self.cost = CostEngine(self.store.cost, catalog, Minimums(
            settings.explain_min_runs, settings.explain_min_exemplars, settings.explain_min_share))
        self.registry = CollectorRegistry()
        self.metrics = IngestMetrics(self.registry)
        with _children_ignore_sigint():
            # Ctrl-C reaches the whole process group: the server stops its decoders itself.
            self.consumer = SpanIngest(
                self.store,
                self.metrics,
                workers=settings.ingest_workers,
                max_body_bytes=settings.max_body_bytes,
                retry_after_s=settings.retry_after_s,
                journey_rules=rules,
                catalog_for=self.cost.catalog_for,
                content=content,
                limits=Limits(
                    max_attributes=settings.max_span_attributes,
                    max_value_chars=max(1, settings.max_attribute_chars),
                    max_depth=settings.max_value_depth,
                    max_spans=settings.max_spans_per_request,
                ),
            )
        self.metric_consumer = MetricIngest(
            self.store, self.metrics, max_body_bytes=settings.max_body_bytes, retry_after_s=settings.retry_after_s,
            decoders=self.consumer,
        )
        self.slos = SloEngine(self.store, prometheus=bool(settings.prometheus_url))
        if specs:
            self.slos.apply(settings.tenant, specs)
        self.registry.register(SloCountsCollector(self.store, self.slos, settings.tenant))
        self.registry.register(StoreMemoryCollector(self.store))
        self.registry.register(StoreRetentionCollector(self.store))
        self.registry.register(LeaseCollector(self.lease))
        tables = self.store.incidents
        self.notifier = Notifier(
            receivers, tables.add_notification_attempt, settings.tenant, timeout_s=settings.notify_timeout_s,
            max_attempts=settings.notify_max_attempts, backoff_s=settings.notify_backoff_s,
        )
        self.incidents = IncidentManager(
            tables, self.slos, settings.tenant, self.notifier,
            public_url=settings.public_url or f"http://{settings.host}:{settings.port}",
            interval_s=max(1, settings.evaluation_interval_s), evidence_interval_s=settings.evidence_interval_s,
            slo_minutes=self.store.slo_minute_arrays,
        )
        self.postmortems = Postmortems(
            self.incidents, self.slos, lambda tenant, trace_id: get_trace(self.store, tenant, trace_id),
            slo_minutes=self.store.slo_minute_arrays,
            violations=lambda tenant, journey, since_ns, limit: self.store.list_violations(
                tenant, journey=journey, since_ns=since_ns, limit=limit),
        )
        # Committed runs are judged on their own thread, never on the ingest path.
        self.policy = PolicyService(
            self.store, scrub=content.scrub, digest_key=content.salt, tenants=self.store.policy_tenants,
            interval_s=settings.policy_interval_s,
        )
        self.registry.register(PolicyCollector(self.policy, settings.tenant))
        if policy_files:
            self.policy.apply(settings.tenant, "\n---\n".join(p.read_text(encoding="utf-8") for p in policy_files),
                              "startup", name=settings.policies)
        self.ctx = AppContext(
            settings=settings, store=self.store, registry=self.registry, ingest_metrics=self.metrics,
            slos=self.slos, keys=self.keys, incidents=self.incidents, postmortems=self.postmortems,
            extra={"cost": self.cost, CHECK_REQUIRED_KEY: check_required, SCORECARD_RULES_KEY: scorecard_rules,
                   CATALOG_FILE_KEY: catalog_file, READINESS_TEMPLATE_KEY: readiness_template, RECEIVERS_KEY: receivers,
                   POLICY_KEY: self.policy},
        )
        if gate_config is not None:
            self.ctx.extra[GATE_CONFIG_KEY] = gate_config
        self.alerts = AlertEvaluator(
            self.slos, self.store, settings.tenant, interval_s=max(1, settings.evaluation_interval_s),
            on_change=self.incidents.on_slo_alerts, keep_firing_s=settings.alert_keep_firing_s,
        )
        self.budget_alerts = BudgetAlertEvaluator(
            self.cost, self.store, settings.tenant, interval_s=max(1, settings.budget_evaluation_interval_s),
            on_change=self.incidents.on_slo_alerts,
        )
        from aisre.store.lease import LeaseGate

        self.alerts.gate = LeaseGate(self.lease)
        self.budget_alerts.gate = LeaseGate(self.lease)
        self.incidents.gate = LeaseGate(self.lease)
        self.policy.gate = LeaseGate(self.lease)
        self.grpc: GrpcReceiver | None = None
        self.prometheus: PrometheusSync | None = None
        if settings.prometheus_url:
            from aisre.evaluate.prometheus import PrometheusSync
            from aisre.receive.prometheus import PrometheusClient

            self.prometheus = PrometheusSync(
                self.slos.specs, PrometheusClient(settings.prometheus_url), self.store, settings.tenant,
                interval_s=max(1, settings.prometheus_interval_s), report=self.slos.set_source_errors,
            )
            self.prometheus.gate = LeaseGate(self.lease)
        self.asgi = build_asgi(self.ctx, self.consumer, ui_routes=[*incident_ui_routes(), *cost_ui_routes(), *ui_routes()], lifespan=self._lifespan,
                               metrics_consumer=self.metric_consumer)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        from aisre.receive.otlp_grpc import GrpcReceiver

        if self.settings.grpc_port:
            self.grpc = GrpcReceiver(
                self.consumer,
                host=self.settings.host,
                port=self.settings.grpc_port,
                tenant_for=self.keys.tenant_for_headers,
                max_message_bytes=self.settings.max_body_bytes,
                metrics=self.metrics,
                metrics_consumer=self.metric_consumer,
            )
            self.grpc.start()
        self.lease.start()
        if self._shared_control:
            threading.Thread(target=self._refresh_keys, name="aisre-key-refresh", daemon=True).start()
        if self.prometheus is not None:
            self.prometheus.start()
        if self.settings.evaluation_interval_s:
            self.alerts.start()
            self.incidents.start()
        self.policy.start()
        if self.settings.budget_evaluation_interval_s:
            self.budget_alerts.start()
        try:
            yield
        finally:
            self.shutdown()

    def _refresh_keys(self) -> None:
        """Re-read the keys and price overrides every KEY_REFRESH_S: other nodes share the
        control store."""
        while not self._key_refresh_stop.wait(KEY_REFRESH_S):
            try:
                self.keys.reload()
                self.cost.reload_overrides()
            except Exception as exc:  # PostgreSQL unreachable for a while: keep what is known
                log.warning("re-reading API keys and price overrides failed: %s", exc)

    def shutdown(self) -> None:
        """Stop taking data, commit what was acknowledged, close the store. Idempotent."""
        self._key_refresh_stop.set()
        if self.prometheus is not None:
            self.prometheus.stop()
        self.alerts.stop()
        self.policy.stop()
        self.budget_alerts.stop()
        self.incidents.stop()
        self.lease.stop()  # given up at once: another node takes over on its next try
        self.notifier.stop()
        if self.grpc is not None:
            self.grpc.stop()
            self.grpc = None
        self.consumer.close()
        self.store.close()

    def serve(self) -> None:
        """Run until SIGINT/SIGTERM; uvicorn's graceful shutdown drains through the lifespan."""
        import uvicorn

        config = uvicorn.Config(
            self.asgi,
            host=self.settings.host,
            port=self.settings.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
        self._uvicorn = _quiet_exit_server(config, self.before_stopping)
        if self._stop_requested:
            return
        self._uvicorn.run()

    def stop(self) -> None:
        """Stop as SIGTERM would (stop hooks, then drain), from any thread."""
        self._stop_requested = True
        if self._uvicorn is not None:
            self._uvicorn.handle_exit(signal.SIGTERM, None)

    def on_stopping(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` when told to stop, before the listeners close (the demo stops its
        simulated service there, so its last spans still reach the server)."""
        self.before_stopping.append(hook)


def _quiet_exit_server(config: uvicorn.Config, before_stopping: list[Callable[[], None]]) -> uvicorn.Server:
    """The uvicorn server aisre runs (uvicorn is imported only when a server starts)."""
    import uvicorn

    class _QuietExitServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; aisre has drained by
        then, so it exits 0 instead of dying of the signal."""

        def __init__(self, config: uvicorn.Config, before_stopping: list[Callable[[], None]]) -> None:
            super().__init__(config)
            self._before_stopping = before_stopping
            self._stopping = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self._stopping or not self._before_stopping:
                super().handle_exit(sig, frame)  # a second signal forces the exit
                return
            self._stopping = True

            def hooks_then_exit() -> None:
                # Off the signal handler: the hooks may wait for requests this loop must serve.
                for hook in self._before_stopping:
                    try:
                        hook()
                    except Exception:
                        log.exception("stop hook failed")
                super(_QuietExitServer, self).handle_exit(sig, frame)

            threading.Thread(target=hooks_then_exit, name="aisre-stopping", daemon=True).start()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

    return _QuietExitServer(config, before_stopping)


def run_server(settings: Settings, on_ready: Any = None) -> None:
    """Check the bind address, build the server and serve until told to stop."""
    from aisre.store.factory import control_url, has_active_keys, store_url

    check_bind(settings.host, has_active_keys(store_url(settings), control_url(settings)), settings.auth)
    server = AisreServer(settings)
    try:
        check_ports(settings)
        if on_ready is not None:
            on_ready(server)
        server.serve()
    finally:
        server.shutdown()


def main() -> None:
    """Console entry point: the CLI with the server runner injected."""
    from aisre.present.cli.main import build_cli

    build_cli(run_server)()
