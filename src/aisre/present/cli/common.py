"""What every client command shares: the server URL and output format options, errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from aisre.core.errors import AisreError, PermanentError

DEFAULT_URL = "http://127.0.0.1:4318"
err = Console(stderr=True)

UrlOption = typer.Option(DEFAULT_URL, "--url", envvar="AISRE_URL", help="Base URL of a running aisre server")
FormatOption = typer.Option("table", "--format", help="table (for people) or json (for machines)")
WideOption = typer.Option(False, "--wide", help="Full ids and times and every column, however wide (default: fit 80 columns)")


def wide_console(base: Console | None = None) -> Console:
    """A console (on ``base``'s file) as wide as its widest line, so --wide never folds or cuts an id."""
    if base is None:
        return Console(width=400, soft_wrap=True)
    return Console(file=base.file, width=400, soft_wrap=True, no_color=base.no_color,
                   force_terminal=base.is_terminal)


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


def listing(
    *headers: str, wide: bool = False, flex: Sequence[int] = (), extra: Sequence[int] = (), title: str | None = None,
) -> Table:
    """A listing command's table. By default compact (no frame, one space between columns)
    to fit 80 columns: the ``extra`` columns are left for ``--wide``, values of ids, names and
    figures keep their width (a header may wrap), and the ``flex`` columns (free text: titles,
    summaries, warnings) wrap to make room. With ``--wide`` every column, framed, printed
    whole by :func:`show`."""
    from rich import box

    if wide:
        return Table(*headers, title=title)
    table = Table(*headers, box=box.SIMPLE_HEAD, show_edge=False, padding=0, title=title)
    for i, column in enumerate(table.columns):
        column.overflow = "fold" if i in flex else "ellipsis"
    setattr(table, "_aisre_layout", (frozenset(flex), frozenset(extra)))  # noqa: B010 - read by show()
    return table


# A value wider than this may still wrap: a whole line for one cell helps nobody.
_MAX_KEPT = 32


def show(console: Console, table: Table, wide: bool) -> None:
    """Print a listing table: in the terminal's width (80 when piped), or whole with ``--wide``."""
    if wide:
        wide_console(console).print(table)
        return
    from rich import box
    from rich.text import Text

    flex, extra = getattr(table, "_aisre_layout", (frozenset(), frozenset()))
    kept = [(i, c) for i, c in enumerate(table.columns) if i not in extra]
    needs = []
    for _, column in kept:
        cells = [Text.from_markup(c).cell_len if isinstance(c, str) else 0 for c in column._cells]
        words = [len(w) for w in str(column.header).split()]
        needs.append(min(max([*cells, *words, 1]), _MAX_KEPT))
    # Explicit widths (rich honours them): every column its widest value, the free-text ones
    # share what is left; when even that does not fit, rich shares the room out itself.
    flexible = [n for n, (i, _) in enumerate(kept) if i in flex]
    fixed = sum(w for n, w in enumerate(needs) if n not in flexible) + len(kept) - 1
    room = (console.width - fixed) // len(flexible) if flexible else 0
    fits = fixed <= console.width and (not flexible or room >= 8)
    narrow = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=0, title=table.title)
    for n, (_, column) in enumerate(kept):
        width = (min(room, needs[n]) if n in flexible and needs[n] < _MAX_KEPT else room if n in flexible else needs[n])
        narrow.add_column(column.header, overflow=column.overflow, width=width if fits else None)
    for row in range(table.row_count):
        narrow.add_row(*(column._cells[row] for _, column in kept))
    console.print(narrow)
