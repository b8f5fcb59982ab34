"""``aisre metrics``: what metric series a running server holds (what a Collector sent)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aisre.present.cli.client import get_json
from aisre.present.cli.common import FormatOption, UrlOption, call, emit_json

console = Console()


def build_metrics_cli() -> typer.Typer:
    """The ``metrics`` sub-command group."""
    app = typer.Typer(help="OTLP metric series a running server holds.", no_args_is_help=True)

    @app.callback()
    def metrics() -> None:
        """OTLP metric series: what a Collector or SDK sent, to write metric SLIs against."""

    @app.command("series")
    def series_cmd(
        metric: str = typer.Option(None, "--metric", help="a metric name, e.g. gen_ai.client.operation.duration"),
        match: str = typer.Option(None, "--match", help='label matchers, {gpu="0"}, or a whole selector name{...}'),
        service: str = typer.Option(None, "--service", help="the service.name label"),
        limit: int = typer.Option(100, "--limit", help="series per page (1-1000)"),
        cursor: str = typer.Option(None, "--cursor", help="next_cursor of the previous page"),
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """Series by name then labels: kind, unit, first and last minute seen, points, and the selector to use in an SLI."""
        data = call(lambda: get_json(url, "/api/metrics/series", {
            "metric": metric, "match": match, "service": service, "limit": str(limit), "cursor": cursor}))
        if fmt == "json":
            emit_json(data)
            return
        table = Table("selector", "kind", "unit", "first seen", "last seen", "points")
        for item in data["items"]:
            table.add_row(escape(item["selector"]), item["kind"], escape(item["unit"] or "-"), item["first_seen"],
                          item["last_seen"] or "-", str(item["points"]))
        console.print(table)
        if data["next_cursor"]:
            console.print(f"more: --cursor {data['next_cursor']}")

    return app
