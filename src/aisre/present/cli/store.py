"""``aisre store``: what the store holds, and how long it keeps raw spans."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from aisre.core.display import money
from aisre.present.cli.client import get_json, send_json
from aisre.present.cli.common import FormatOption, UrlOption, call, emit_json, fail

console = Console()
PAGE_TRACES = 2000  # ingest/copy.py's default (not imported here: the CLI starts fast)


def _print_retention(doc: dict[str, Any]) -> None:
    days = doc["retention_days"]
    kept = f"{days:g} days" if days else "for ever"
    console.print(
        f"tenant [bold]{doc['tenant']}[/]: raw spans and traces kept {kept} ({doc['source']}); "
        f"minute rollups {doc['rollup_retention_days']:g} days; spans delivered again within "
        f"{doc['dedup_window_s']:g} s are stored once"
    )


def _control_tables() -> tuple[Any, ...]:
    from aisre.ingest.copy import CONTROL_TABLES, POLICY_TABLES

    return CONTROL_TABLES + POLICY_TABLES


def build_store_cli() -> typer.Typer:
    """The ``aisre store`` command group."""
    app = typer.Typer(help="Store contents, retention and exactly-once ingest.", no_args_is_help=True)

    @app.command("stats")
    def stats(url: str = UrlOption, fmt: str = FormatOption) -> None:
        """Spans and traces stored, what retention expired, duplicates left out, the oldest span."""
        doc = call(lambda: get_json(url, "/api/stats"))
        if fmt == "json":
            emit_json(doc)
            return
        table = Table("figure", "value")
        for name in ("backend", "spans", "traces", "expired_spans", "expired_traces", "expiry_steps",
                     "expired_decisions", "expired_violations",
                     "duplicate_spans", "queued_spans", "commits", "spans_committed"):
            if name in doc:
                value = doc[name]
                table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
        table.add_row("oldest_span", doc.get("oldest_span") or "none")
        console.print(table)
        if isinstance(doc.get("retention"), dict):
            _print_retention(doc["retention"])

    @app.command("retention")
    def retention(
        days: float = typer.Argument(None, help="Days to keep the tenant's raw spans and traces (0: for ever); omit to show"),
        clear: bool = typer.Option(False, "--clear", help="Drop the tenant's own setting (back to retention_file / retention_days)"),
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """Show or set how long the caller's tenant keeps raw spans (admin key to set)."""
        if days is not None and clear:
            fail("give DAYS or --clear, not both")
        if days is not None and not days >= 0:
            fail(f"DAYS must be ≥ 0 (0 keeps raw spans for ever); got {days:g}")
        if days is None and not clear:
            doc = call(lambda: get_json(url, "/api/retention"))
        else:
            doc = call(lambda: send_json(url, "PUT", "/api/retention", {"retention_days": None if clear else days}))
        if fmt == "json":
            emit_json(doc)
        else:
            _print_retention(doc)

    @app.command("copy")
    def copy(
        source_url: str = typer.Option(..., "--from", help="Store to copy from, e.g. duckdb:///var/lib/aisre/aisre.duckdb (no server running on it)"),
        target_url: str = typer.Option(..., "--to", help="Store to copy into, e.g. clickhouse://user:pass@host:8123/aisre or chdb:///path"),
        state_file: Path = typer.Option(None, "--state", help="Where to keep how far the copy got (default: COPY-STATE.json beside the source file, else the current folder)"),
        journey_rules: Path = typer.Option(None, "--journey-rules", help="The journey_rules file the server uses, so runs get the same journeys"),
        page_traces: int = typer.Option(PAGE_TRACES, "--page-traces", min=1, help="Whole traces per page"),
        skip_metrics: bool = typer.Option(False, "--skip-metrics", help="Leave metric series, metric minutes and platform scores behind (they are copied by default)"),
        control_url: str = typer.Option("", "--control", help="Also copy the control plane (keys, audit log, alerts, incidents, changes, verdicts, prices, budgets, retention, agent policies) into this PostgreSQL, e.g. postgresql://aisre@db:5432/aisre"),
        fmt: str = FormatOption,
    ) -> None:
        """Copy stored traces (spans, resources, scores) to another store, resumably, then check
        spans, runs, failures, model calls, tokens and cost per tenant on both sides (exit 1 if they
        differ). Runs and rollups are rebuilt by the target. Metric series (each with its kept
        cumulative point), metric minutes and platform scores go as stored (raw metric points are
        not kept, so they cannot be recounted), and are checked per tenant: series, per metric the
        minutes' sum of value and of points, platform scores and their sum. With --control, the control plane
        (keys, audit log, alert episodes, incidents with their timeline, changes, gate verdicts,
        prices, budgets, retention settings, agent policy sets, decision records, violations and
        judged runs) goes to PostgreSQL too, ids and times kept, and each table's row count is
        checked on both sides."""
        from aisre.ingest.copy import (
            CopyState,
            as_dict,
            copy_control,
            copy_metrics,
            copy_traces,
            verify,
            verify_control,
            verify_metrics,
        )
        from aisre.normalize.journeys import load_rules
        from aisre.store.factory import open_control, open_store, parse_store_url
        from aisre.store.protocol import ControlExport, MetricExport, SpanExport

        rules = load_rules(journey_rules) if journey_rules else ()
        local = parse_store_url(source_url).local_file
        state = CopyState(state_file or (Path(local).with_suffix(".copy-state.json") if local else Path("COPY-STATE.json")))
        source = call(lambda: open_store(source_url, rollup_interval_ms=0))
        try:
            target = call(lambda: open_store(target_url))
            try:
                if not hasattr(source, "export_traces"):
                    fail(f"{source_url}: this backend cannot be read back for a copy yet")
                exporter = cast(SpanExport, source)
                tenants = exporter.span_tenants()
                wanted = {t: int(source.stats(t).get("traces") or 0) for t in tenants}
                with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("traces · {task.fields[spans]:,} spans"), TimeRemainingColumn(),
                              console=console, transient=fmt == "json") as progress:
                    tasks = {t: progress.add_task(t, total=wanted[t], spans=0) for t in tenants}
                    copied = copy_traces(
                        exporter, target, state, rules, page_traces,
                        on_page=lambda p: progress.update(tasks[p.tenant], spans=p.spans,
                                                          completed=wanted[p.tenant] - p.remaining))
                report = verify(source, target, tenants)
                metrics: list[Any] = []
                if not skip_metrics:
                    if not hasattr(source, "export_metric_series") or not hasattr(target, "import_metric_series"):
                        fail(f"{source_url} → {target_url}: these backends cannot copy metrics (--skip-metrics leaves them)")
                    metric_source = cast(MetricExport, source)
                    with Progress(TextColumn("[bold]{task.description}"), TextColumn(
                            "{task.fields[series]:,} series · {task.fields[minutes]:,} minute rows · "
                            "{task.fields[scores]:,} platform scores"),
                            console=console, transient=fmt == "json") as progress:
                        mtasks: dict[str, Any] = {}

                        def on_metric_page(p: Any, _part: str, _n: int) -> None:
                            if p.tenant not in mtasks:
                                mtasks[p.tenant] = progress.add_task(f"{p.tenant} metrics", total=None,
                                                                     series=0, minutes=0, scores=0)
                            progress.update(mtasks[p.tenant], series=p.series, minutes=p.minutes, scores=p.scores)

                        metrics = copy_metrics(metric_source, target, state, on_page=on_metric_page)
                    verify_metrics(metric_source, target, report)
                if control_url:
                    if not hasattr(source, "export_control"):
                        fail(f"{source_url}: this backend holds no control plane to copy")
                    control = call(lambda: open_control(control_url))
                    try:
                        exported = cast(ControlExport, source)
                        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("rows"), console=console, transient=fmt == "json") as progress:
                            task = progress.add_task("control plane", total=sum(
                                exported.control_count(t.name) for t in _control_tables()))
                            copy_control(exported, control, state,
                                         on_page=lambda _p, n: progress.advance(task, n))
                        verify_control(exported, control, report)
                    finally:
                        control.close()
            finally:
                target.close()
        finally:
            source.close()
        if fmt == "json":
            emit_json({**as_dict(report), "state_file": str(state.path),
                       "copied": {c.tenant: {"traces": c.traces, "spans": c.spans} for c in copied},
                       "copied_metrics": {m.tenant: {"series": m.series, "minutes": m.minutes, "platform_scores": m.scores}
                                          for m in metrics}})
        else:
            table = Table("tenant", "figure", "source", "target", "same")
            for tenant, figures in report.totals.items():
                for figure, value in figures.items():
                    bad = next((m for m in report.mismatches if m.tenant == tenant and m.figure == figure), None)
                    def fmt_value(v: float, usd: bool = figure.endswith("usd")) -> str:
                        return money(v) if usd else f"{v:,.0f}" if float(v).is_integer() else f"{v:,.6g}"

                    shown = fmt_value(value)
                    other = fmt_value(bad.target) if bad else shown
                    table.add_row(tenant, figure, shown, other, "no" if bad else "yes")
            console.print(table)
            if report.control:
                rows = Table("control-plane table", "source rows", "target rows", "same")
                for name, counts in report.control.items():
                    rows.add_row(name, f"{counts['source']:,}", f"{counts['target']:,}",
                                 "yes" if counts["source"] == counts["target"] else "no")
                console.print(rows)
            console.print(("[green]verified[/]: every figure is the same on both sides" if report.verified
                           else f"[red]{len(report.mismatches)} figures differ[/]") + f"; state in {state.path}")
        if not report.verified:
            raise typer.Exit(1)

    return app
