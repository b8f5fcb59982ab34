"""The ``aisre`` command: a thin layer over the REST API and the library."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree
from typer.core import TyperCommand

from aisre.core.display import utc_text
from aisre.core.errors import AisreError
from aisre.core.settings import Settings, resolve
from aisre.present.cli.client import get_json
from aisre.present.cli.common import (
    FormatOption,
    StartOptionError,
    UrlOption,
    WideOption,
    call,
    emit_json,
    fail,
    listing,
    show,
    wide_console,
)

console = Console()

ServerRunner = Callable[..., None]


SHORT_ID = 12  # hex digits: unique in practice, and `traces show` takes a unique prefix


def _short_time(stamp: str | None) -> str:
    """'2026-12-05T09:00:21.437831Z' → '09:00:21' (UTC): a narrow column; --wide shows the stamp."""
    return stamp[11:19] if stamp else "-"


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def build_cli(serve: ServerRunner) -> typer.Typer:
    """Build the CLI; ``serve(settings, on_ready)`` runs a server until it is stopped."""
    app = typer.Typer(
        name="aisre",
        help="Reliability control plane for AI-enabled services: journey SLOs, error budgets, cost and incidents from OpenTelemetry traces.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    traces = typer.Typer(help="Read traces from a running server.", no_args_is_help=True)
    journeys = typer.Typer(help="Journeys and their runs.", no_args_is_help=True)
    app.add_typer(traces, name="traces")
    app.add_typer(journeys, name="journeys")
    from aisre.present.cli.slo import build_slo_cli

    app.add_typer(build_slo_cli(), name="slo")
    from aisre.present.cli.cost import build_cost_cli

    app.add_typer(build_cost_cli(), name="cost")
    from aisre.present.cli.export import build_export_cli

    app.add_typer(build_export_cli(), name="export")
    from aisre.present.cli.keys import build_keys_cli, register_audit

    app.add_typer(build_keys_cli(), name="keys")
    register_audit(app)
    from aisre.present.cli.store import build_store_cli

    app.add_typer(build_store_cli(), name="store")
    from aisre.present.cli.gate import register_gate

    register_gate(app)
    from aisre.present.cli.check import register_check

    register_check(app)
    from aisre.present.cli.scorecard import register_scorecard

    register_scorecard(app)
    from aisre.present.cli.catalog import register_catalog

    register_catalog(app)
    from aisre.present.cli.capacity import register_capacity

    register_capacity(app)
    from aisre.present.cli.metrics import build_metrics_cli

    app.add_typer(build_metrics_cli(), name="metrics")
    from aisre.present.cli.readiness import register_readiness

    register_readiness(app)
    from aisre.present.cli.report import register_report

    register_report(app)
    from aisre.present.cli.gameday import build_gameday_cli

    app.add_typer(build_gameday_cli(), name="gameday")
    from aisre.present.cli.policy import build_policy_cli

    app.add_typer(build_policy_cli(), name="policy")
    from aisre.present.cli.incident import build_change_cli, build_incident_cli

    app.add_typer(build_incident_cli(), name="incident")
    app.add_typer(build_change_cli(), name="change")

    @app.command()
    def up(
        host: str = typer.Option("127.0.0.1", help="Interface to listen on (a public one needs API keys: see `aisre keys`)"),
        port: int = typer.Option(4318, help="HTTP port: OTLP/HTTP, API, UI, /metrics"),
        grpc_port: int = typer.Option(4317, "--grpc-port", help="OTLP/gRPC port; 0 turns gRPC off"),
        db: str = typer.Option("aisre.duckdb", help="DuckDB file (short for --store duckdb:///PATH)"),
        store: str = typer.Option("", "--store", help="Store URL, e.g. duckdb:///var/lib/aisre/aisre.duckdb (overrides --db)"),
        control: str = typer.Option("", "--control", help="Control-plane store, postgresql://user@host:5432/aisre (keys, alerts, incidents, audit; shared by several nodes)"),
        queue_max_spans: int = typer.Option(200_000, help="Spans queued for the writer before ingest answers 429"),
        max_body_bytes: int = typer.Option(16 * 1024 * 1024, help="Largest OTLP body accepted (413 above)"),
        ingest_workers: int = typer.Option(2, help="Processes decoding OTLP requests; 0 decodes in the server process"),
        journey_rules: str = typer.Option("", "--journey-rules", help="YAML rules naming journeys from service and root span name"),
        slos: str = typer.Option("", "--slos", help="SLO spec file or folder (aisre, OpenSLO or Sloth YAML)"),
        gate_config: str = typer.Option("", "--gate-config", help="Release-gate file /api/gate judges with (docs/gate.md)"),
        setting: list[str] = typer.Option([], "--setting", "-s", help="NAME=VALUE for any setting (see README); repeatable"),
    ) -> None:
        """Run the server on the embedded store."""
        extra: dict[str, str] = {}
        for item in setting:
            name, sep, value = item.partition("=")
            if not sep:
                fail(f"--setting takes NAME=VALUE; got {item!r}", code=2)
            extra[name.strip()] = value.strip()
        settings = _settings(
            **{
                "host": host, "port": port, "grpc_port": grpc_port, "db": db, "store": store,
                **({"control_store": control} if control else {}),
                "queue_max_spans": queue_max_spans,
                "max_body_bytes": max_body_bytes, "ingest_workers": ingest_workers,
                "journey_rules": journey_rules, "slos": slos, "gate_config": gate_config, **extra,
            }
        )
        _run_server(serve, settings, banner=True)

    @app.command(cls=_DemoCommand)
    def demo(
        port: int = typer.Option(4318, help="HTTP port of the server the demo starts"),
        grpc_port: int = typer.Option(4317, "--grpc-port", help="OTLP/gRPC port; 0 turns gRPC off"),
        db: str = typer.Option("demo.duckdb", help="DuckDB file for the demo; deleted first unless --keep"),
        keep: bool = typer.Option(False, "--keep", help="Reuse the store of the last run (its journeys and incidents) instead of starting fresh"),
        rate: float = typer.Option(2.0, help="Journeys per second"),
        scenario: str = typer.Option("default", help="Fault scenario to run (listed below)"),
        duration: float = typer.Option(0, help="Seconds to run, then stop the traffic and the server; 0 runs until Ctrl-C"),
        url: str = typer.Option("", "--url", envvar="AISRE_DEMO_TARGET", help="Feed an already running server instead of starting one (sends AISRE_KEY when set)"),
        failure_rate: float = typer.Option(None, help="Share of model calls answered HTTP 500 (overrides the scenario)"),
        rate_limit_rate: float = typer.Option(None, help="Share of model calls answered HTTP 429 (overrides the scenario)"),
    ) -> None:
        """Run the server with a simulated AI service feeding it live traffic.

        Starts with a fresh store unless --keep. Ctrl-C (or --duration) stops the traffic, lets its last spans arrive, stops the server and exits 0. When the store requires API keys the demo sends with an ingest key of its own.
        """
        from aisre.demo import runner
        from aisre.present.cli.client import auth_headers

        scenarios = runner.SCENARIOS
        if scenario not in scenarios:
            fail(f"unknown scenario {scenario!r}; choose one of {', '.join(sorted(scenarios))}", code=2)
        knobs = {k: v for k, v in {"failure_rate": failure_rate, "rate_limit_rate": rate_limit_rate}.items() if v is not None}
        for name, value in knobs.items():
            if not 0.0 <= value <= 1.0:
                fail(f"--{name.replace('_', '-')} must be between 0 and 1; got {value}", code=2)
        chosen = scenarios[scenario].with_knobs(**knobs)
        if url:
            console.print(f"feeding [bold]{url}[/] with scenario [bold]{scenario}[/] at {rate}/s")
            stats = runner.run(
                url.rstrip("/") + "/v1/traces", rate_per_s=rate, duration_s=duration or None,
                scenario=chosen, headers=auth_headers(), platform=True,
            )
            console.print(stats)
            return
        from importlib import resources

        slo_file = str(resources.files("aisre.demo").joinpath("slos.yaml"))
        policy_file = str(resources.files("aisre.demo").joinpath("policy.yaml"))
        settings = _settings(port=port, grpc_port=grpc_port, db=db, slos=slo_file, policies=policy_file,
                             policy_interval_s=2)
        fresh = "" if keep else _fresh_store(db)
        stop = threading.Event()

        def start_feeding(server: Any) -> None:
            headers = _DemoKey(server.keys, settings.tenant)

            def feed() -> None:
                _wait_healthy(f"http://127.0.0.1:{port}")
                runner.run(
                    f"http://127.0.0.1:{port}/v1/traces", rate_per_s=rate,
                    duration_s=duration or None, stop=stop, scenario=chosen, headers=headers, platform=True,
                )
                if not stop.is_set():  # --duration passed; Ctrl-C sets stop first
                    console.print(f"demo: --duration {duration:g} s passed: traffic stopped, stopping the server", soft_wrap=True)
                    stop.set()
                    server.stop()

            feeder = threading.Thread(target=feed, name="aisre-demo", daemon=True)

            def stop_feeding() -> None:
                # Stop the simulated service and let it flush while the server still listens.
                stop.set()
                if feeder is not threading.current_thread():
                    feeder.join(timeout=15)

            server.on_stopping(stop_feeding)
            feeder.start()

        until = f"for {duration:g} s, then stops" if duration else "until Ctrl-C"
        note = f"demo traffic: scenario {scenario}, {rate} journeys/s, {until}"
        note += f"\n{fresh}" if fresh else (f"\nreusing the store of the last run ({db})" if keep else "")
        try:
            _run_server(serve, settings, banner=True, on_ready=start_feeding, note=note)
        finally:
            stop.set()
        if duration:
            console.print("demo: stopped")
    @traces.command("show")
    def traces_show(
        trace_id: str = typer.Argument(..., help="Trace id: 32 hex digits, or a unique prefix of 8 or more"),
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """Show one trace as a span tree with GenAI details."""
        doc = call(lambda: get_json(url, f"/api/traces/{trace_id}"))
        if fmt == "json":
            emit_json(doc)
            return
        head = f"[bold]{doc['journey']}[/] {doc['trace_id']}  {doc['outcome']}  {_fmt_ms(doc['duration_ms'])}"
        tree = Tree(head)
        nodes: dict[str, Tree] = {}
        for span in doc["spans"]:
            label = _span_label(span)
            parent = nodes.get(span["parent_span_id"] or "", tree)
            nodes[span["span_id"]] = parent.add(label)
        console.print(tree)
        if doc.get("failure_reason"):
            console.print(f"[red]failure:[/] {doc['failure_reason']}")

    @journeys.command("list")
    def journeys_list(
        since: str = typer.Option("24h", help="RFC 3339 time or look-back such as 1h, 7d"),
        url: str = UrlOption,
        fmt: str = FormatOption,
        wide: bool = WideOption,
    ) -> None:
        """Journeys with runs, failure rate, latency and tokens."""
        data = call(lambda: get_json(url, "/api/journeys", {"since": since}))
        if fmt == "json":
            emit_json(data)
            return
        table = listing("journey", "runs", "failure rate", "p50", "p95", "tokens/run", "retries", "last seen", wide=wide,
                        extra=(5, 6))
        for j in data["items"]:
            table.add_row(
                j["journey"], str(j["runs"]), f"{j['failure_rate'] * 100:.2f} %", _fmt_ms(j["p50_ms"]),
                _fmt_ms(j["p95_ms"]), f"{j['tokens_per_run'] or 0:.0f}", str(j["retries"]), utc_text(j["last_seen"], missing="-"),
            )
        show(console, table, wide)

    @journeys.command("runs")
    def journeys_runs(
        journey: str = typer.Option("", help="Only this journey"),
        outcome: str = typer.Option("", help="success, failure or incomplete (in flight)"),
        since: str = typer.Option("", help="RFC 3339 time or look-back such as 1h"),
        until: str = typer.Option("", help="RFC 3339 time"),
        service_version: str = typer.Option("", "--service-version"),
        model: str = typer.Option(""),
        limit: int = typer.Option(20, help="Runs per page"),
        cursor: str = typer.Option("", help="next_cursor from a previous page"),
        wide: bool = WideOption,
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """List journey runs, newest first: completed ones, then those still in flight.

        The trace column is a unique prefix that `aisre traces show` accepts; --wide shows full
        ids, times and every count, --format json everything.
        """
        from aisre.present.cli.cost import _usd

        params = {
            "journey": journey, "outcome": outcome, "since": since, "until": until,
            "service_version": service_version, "model": model, "limit": limit, "cursor": cursor,
        }
        data = call(lambda: get_json(url, "/api/journeys/runs", params))
        if fmt == "json":
            emit_json(data)
            return
        # In-flight traces are the newest, but a reader looks for what finished (and how).
        items = sorted(data["items"], key=lambda r: r["outcome"] == "incomplete")
        out = wide_console() if wide else console
        rows = []
        for r in items:
            style = {"failure": "red", "incomplete": "yellow"}.get(r["outcome"], "")
            label = "in flight" if r["outcome"] == "incomplete" else r["outcome"]
            if wide:
                cells = [r["start_time"] or "-", r["journey"], label, _fmt_ms(r["duration_ms"]), _usd(r["cost_usd"]),
                         str(r["llm_calls"]), str(r["tool_calls"]), str(r["retries"]),
                         str((r["input_tokens"] or 0) + (r["output_tokens"] or 0)), r["service_version"] or "-",
                         r.get("failure_reason") or "-", r["trace_id"]]
            else:
                cells = [_short_time(r["start_time"]), _clip(r["journey"], 12), label, _fmt_ms(r["duration_ms"]),
                         _usd(r["cost_usd"]), r.get("failure_reason") or "-", r["trace_id"][:SHORT_ID]]
            rows.append((cells, style))
        if wide:
            table = Table("start", "journey", "outcome", "duration", "cost", "LLM", "tools", "retries", "tokens",
                          "version", "failure reason", "trace")
        else:
            # One line per run in the terminal's width (80 by default): the other columns
            # keep their width and the reason gets what is left (in full with --wide or json).
            headers = ("time", "journey", "outcome", "took", "cost", "failure reason", "trace")
            table = Table(*headers, box=box.SIMPLE_HEAD, show_edge=False, padding=0)
            fixed = sum(max([len(headers[i]), *(len(c[i]) for c, _ in rows)]) for i in (0, 1, 2, 3, 4, 6))
            room = max(len(headers[5]), out.width - fixed - (len(headers) - 1))  # one space between columns
            rows = [([*cells[:5], _clip(cells[5], room), cells[6]], style) for cells, style in rows]
        for cells, style in rows:
            text = [escape(c) for c in cells]
            if style:
                text[2] = f"[{style}]{text[2]}[/]"
            table.add_row(*text)
        out.print(table)
        if data.get("next_cursor"):  # the cursor alone on its line, to copy whole
            console.print(f"more, with --cursor:\n{data['next_cursor']}", soft_wrap=True)

    return app


class _DemoCommand(TyperCommand):
    """``aisre demo``: its help lists the scenarios, read only when the help is shown."""

    @property
    def epilog(self) -> str:
        from aisre.demo.scenarios import SCENARIOS

        return "Scenarios (--scenario):\n\n" + "\n\n".join(f"{s.name}: {s.description}" for s in SCENARIOS.values())

    @epilog.setter
    def epilog(self, value: str | None) -> None:
        pass


class _DemoKey:
    """The demo exporter's headers: none while auth is off; once the store requires keys
    (at start, or when someone creates the first key mid-run) an ingest key of its own,
    created in-process as ``aisre keys create --db`` would, instead of a stream of 401s."""

    def __init__(self, keys: Any, tenant: str) -> None:
        self._keys = keys
        self._tenant = tenant
        self._headers: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, str]:
        with self._lock:
            if not self._headers and self._keys is not None and self._keys.enabled:
                secret, record = self._keys.create(self._tenant, "ingest", "aisre demo", "demo")
                self._headers = {"Authorization": f"Bearer {secret}"}
                console.print(f"demo: auth is on: sending with its own ingest key {record['key_id']} (aisre demo)", soft_wrap=True)
            return self._headers


def _fresh_store(db: str) -> str:
    """Delete the demo store of an earlier run (and its WAL); says what it removed."""
    removed = [path for path in (db, db + ".wal") if os.path.exists(path)]
    for path in removed:
        os.remove(path)
    return f"fresh store: removed the last run's {db} (--keep reuses it)" if removed else ""


def _span_label(span: dict[str, Any]) -> str:
    parts = [f"[bold]{span['name']}[/]", _fmt_ms(span["duration_ms"])]
    if span["operation"] != "other":
        parts.append(f"[cyan]{span['operation']}[/]")
    if span.get("response_model") or span.get("request_model"):
        parts.append(span.get("response_model") or span["request_model"])
    if span.get("input_tokens") is not None or span.get("output_tokens") is not None:
        parts.append(f"{span.get('input_tokens') or 0}→{span.get('output_tokens') or 0} tok")
    if span.get("retry_attempt"):
        parts.append(f"[yellow]retry {span['retry_attempt']}[/]")
    if span["status"] == "error":
        parts.append(f"[red]{span.get('status_message') or 'error'}[/]")
    return "  ".join(parts)


def _settings(**values: Any) -> Settings:
    try:
        return resolve(**values)
    except AisreError as exc:
        fail(exc.message, code=2)
        raise  # unreachable: fail exits


def _wait_healthy(url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def _store_text(settings: Settings) -> str:
    """The store as the banner names it: the DuckDB file's absolute path, else the URL."""
    from aisre.store.factory import parse_store_url, store_url

    url = store_url(settings)
    try:
        location = parse_store_url(url)
    except AisreError:
        return url
    return os.path.abspath(location.local_file) if location.local_file else url


def _run_server(
    serve: ServerRunner, settings: Settings, *, banner: bool, on_ready: Callable[[Any], None] | None = None, note: str = ""
) -> None:
    def ready(server: Any) -> None:
        if banner:
            console.print(f"[bold green]aisre[/] on [link]http://{settings.host}:{settings.port}/[/link]  (store: {_store_text(settings)})", soft_wrap=True)
            grpc = f"OTLP/gRPC {settings.host}:{settings.grpc_port}" if settings.grpc_port else "OTLP/gRPC off"
            console.print(f"OTLP/HTTP http://{settings.host}:{settings.port}/v1/traces   {grpc}")
            keys = getattr(server, "keys", None)
            if keys is not None:
                why = "auth=off" if settings.auth == "off" else "loopback, no key yet"
                console.print("auth on: every request needs an API key" if keys.enabled else
                              f"auth off ({why}): every caller is admin of the default tenant")
            if note:
                console.print(note, soft_wrap=True, highlight=False)
        if on_ready is not None:
            on_ready(server)

    try:
        serve(settings, on_ready=ready)
    except StartOptionError as exc:
        fail(exc.message, code=2)
    except AisreError as exc:
        fail(exc.message)
    except OSError as exc:
        fail(f"cannot start the server: {exc}")
