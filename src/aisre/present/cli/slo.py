"""``aisre slo``: work with SLO spec files (validate now; list/status/apply later)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from aisre.evaluate.specs import check_files

console = Console()
err = Console(stderr=True)


def build_slo_cli() -> typer.Typer:
    """The ``slo`` sub-command group."""
    app = typer.Typer(help="SLO specs: validate (native, OpenSLO, Sloth).", no_args_is_help=True)

    @app.callback()
    def slo() -> None:
        """SLO specs: validate (native, OpenSLO, Sloth)."""

    @app.command("validate")
    def validate_cmd(
        paths: list[Path] = typer.Argument(..., help="Spec files or folders of .yaml/.yml files"),
        journey: list[str] = typer.Option([], "--journey", help="Known journey; unknown ones are errors (repeatable)"),
        score: list[str] = typer.Option([], "--score", help="Known score name; unknown ones are errors (repeatable)"),
    ) -> None:
        """Check spec files; print each error as file:line: field: message and exit 1 if any."""
        result = check_files(paths, known_journeys=journey or None, known_scores=score or None)
        for e in result.errors:
            err.print(f"[red]{escape(str(e))}[/]", soft_wrap=True)
        for path in result.files:
            if result.errors_in(path):
                continue
            specs = result.specs_in(path)
            names = ", ".join(s.id for s in specs)
            count = f"{len(specs)} SLO{'s' if len(specs) != 1 else ''}"
            console.print(f"[green]ok:[/] {escape(str(path))} — {count}" + (f" ({escape(names)})" if names else ""),
                          soft_wrap=True)
        if result.errors:
            raise typer.Exit(1)

    return app
