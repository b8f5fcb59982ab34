"""What every client command shares: the server URL and output format options, errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from aisre.core.errors import AisreError, PermanentError

DEFAULT_URL = "http://127.0.0.1:4318"
err = Console(stderr=True)

UrlOption = typer.Option(DEFAULT_URL, "--url", envvar="AISRE_URL", help="Base URL of a running aisre server")
FormatOption = typer.Option("table", "--format", help="table (for people) or json (for machines)")
WideOption = typer.Option(False, "--wide", help="Full ids and times and every column, however wide (default: fit 80 columns)")


def wide_console() -> Console:
    """A console as wide as its widest line, so --wide never folds or cuts an id."""
    return Console(width=400, soft_wrap=True)


class StartOptionError(PermanentError):
    """A start-up flag or setting is wrong (busy port, bad value): the CLI exits 2 naming it."""


def fail(message: str, code: int = 1) -> None:
    """Print one clear line and exit ``code`` (1: the command failed; 2: a flag or setting is wrong)."""
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def emit_json(data: Any) -> None:
    """Machine-readable output on stdout."""
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def call(fn: Callable[[], Any]) -> Any:
    """Run an API call; its error becomes one clear line."""
    try:
        return fn()
    except AisreError as exc:
        fail(exc.message)
