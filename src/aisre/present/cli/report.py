"""``aisre report``: the weekly or monthly reliability review from a running server, as Markdown
(the default, for a wiki or a chat), printable HTML with charts, or JSON."""

from __future__ import annotations

from pathlib import Path

import typer

from aisre.present.cli.common import DEFAULT_URL, fail


def register_report(app: typer.Typer) -> None:
    """Add ``aisre report`` to the CLI."""

    @app.command("report")
    def report(
        period: str = typer.Option("month", "--period", help="week, month (the current one) or a label: 2026-11, 2026-W47, 2026-Q4"),
        fmt: str = typer.Option("markdown", "--format", help="markdown, html (printable, with charts; print to PDF from a browser) or json"),
        output: Path = typer.Option(None, "--output", "-o", help="Write the review to this file"),
        server: str = typer.Option(DEFAULT_URL, "--url", "--server", envvar="AISRE_URL", help="Base URL of a running aisre server"),
    ) -> None:
        """The reliability review: top incidents and near misses, SLO compliance and budget burn, cost and capacity, changes, open remediation."""
        from aisre.core.errors import AisreError
        from aisre.present.cli.client import get_text

        if fmt not in ("markdown", "html", "json"):
            fail(f"--format must be markdown, html or json; got {fmt!r}", code=2)
        try:
            text = get_text(server, "/api/report", {"period": period, "format": fmt}, timeout=300)
        except AisreError as exc:
            fail(exc.message)
            raise
        if output is not None:
            output.write_text(text)
            typer.echo(f"wrote {output}")
        else:
            typer.echo(text, nl=False)
