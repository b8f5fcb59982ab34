"""``aisre capacity``: when saturation gauges run out of headroom at current growth."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aisre.present.cli.client import get_json
from aisre.present.cli.common import FormatOption, UrlOption, call, emit_json

console = Console()


def register_capacity(app: typer.Typer) -> None:
    """Add ``aisre capacity`` to the CLI."""

    @app.command("capacity")
    def capacity_cmd(
        metric: str = typer.Argument(..., help='a series selector, e.g. gpu.utilization{pool="a100"}'),
        threshold: float = typer.Option(..., "--threshold", help="the level that means no headroom left, e.g. 0.9"),
        lookback: str = typer.Option("1d", "--lookback", help="history the trend is fit on"),
        horizon: str = typer.Option("7d", "--horizon", help="how far ahead to look"),
        falling: bool = typer.Option(False, "--falling", help="the series is a headroom falling to the threshold (its floor)"),
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """Per series: level now, growth per hour, and when it crosses the threshold (80 % band)."""
        data = call(lambda: get_json(url, "/api/capacity", {
            "metric": metric, "threshold": str(threshold), "lookback": lookback, "horizon": horizon,
            "direction": "falling" if falling else "rising"}))
        if fmt == "json":
            emit_json(data)
            return
        table = Table("series", "now", "per hour", "crosses", "earliest", "latest")
        for item in data["items"]:
            labels = ",".join(f"{k}={v}" for k, v in sorted(item["labels"].items()))
            now = "-" if item["current"] is None else f"{item['current']:.4g}"
            table.add_row(escape(f"{item['metric']}{{{labels}}}"), now, f"{item['slope_per_hour']:+.4g}",
                          item["crossing"] or "not within horizon", item["earliest"] or "-", item["latest"] or "-")
        console.print(table)
