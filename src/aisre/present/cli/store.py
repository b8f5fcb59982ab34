"""``aisre store``: what the store holds, and how long it keeps raw spans."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from aisre.present.cli.client import get_json, send_json
from aisre.present.cli.common import FormatOption, UrlOption, call, emit_json, fail

console = Console()


def _print_retention(doc: dict[str, Any]) -> None:
    days = doc["retention_days"]
    kept = f"{days:g} days" if days else "for ever"
    console.print(
        f"tenant [bold]{doc['tenant']}[/]: raw spans and traces kept {kept} ({doc['source']}); "
        f"minute rollups {doc['rollup_retention_days']:g} days; spans delivered again within "
        f"{doc['dedup_window_s']:g} s are stored once"
    )


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

    return app
