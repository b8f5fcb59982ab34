"""``aisre export``: write SLO specs as other systems' configuration (offline, no server)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from aisre.core.errors import PermanentError

err = Console(stderr=True)


def build_export_cli() -> typer.Typer:
    """The ``export`` sub-command group."""
    app = typer.Typer(help="Export SLO specs (offline): Prometheus rules.", no_args_is_help=True)

    @app.callback()
    def export() -> None:
        """Export SLO specs (offline): Prometheus rules."""

    @app.command("prometheus-rules")
    def prometheus_rules_cmd(
        paths: list[Path] = typer.Argument(..., help="Spec files or folders (aisre, OpenSLO, Sloth)"),
        out: Path | None = typer.Option(None, "--out", "-o", help="Rule file to write; stdout if not given"),
        with_tests: bool = typer.Option(False, "--with-tests", help="Also write a promtool test file (OUT.test.yaml); needs -o"),
    ) -> None:
        """Write Sloth-style recording and burn-rate alert rules; exit 1 if the specs are invalid."""
        from aisre.core.slo import SpecValidationError
        from aisre.evaluate.export import render_rules, write_rules
        from aisre.evaluate.specs import load_specs

        if with_tests and out is None:
            err.print("[bold red]error:[/] --with-tests needs -o OUT (the test file goes next to it)")
            raise typer.Exit(1)
        try:
            specs = load_specs(paths)
            if out is None:
                sys.stdout.write(render_rules(specs))
                return
            written = write_rules(specs, out, with_tests=with_tests)
        except SpecValidationError as exc:
            for e in exc.errors:
                err.print(f"[red]{escape(str(e))}[/]", soft_wrap=True)
            raise typer.Exit(1) from None
        except PermanentError as exc:
            err.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
            raise typer.Exit(1) from None
        for path in written:
            err.print(f"[green]wrote[/] {escape(str(path))}", soft_wrap=True)

    return app
