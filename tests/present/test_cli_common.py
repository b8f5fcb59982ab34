"""Listing tables: 80 columns by default with ids and figures whole, every column with --wide."""

from __future__ import annotations

import io

from rich.console import Console

from aisre.present.cli.common import listing, show

HEADERS = ("key id", "state", "title", "opened", "detect", "owner")
ROWS = [
    ("k_0123456789ab", "open", "answers fail for most users after the 1.5.0 rollout of the ask service",
     "2026-12-05T09:12:17.537935Z", "1 min 30 s", "search-team"),
    ("k_ba9876543210", "resolved", "slow", "2026-12-04T21:00:00.000000Z", "-", "support"),
]


def _render(wide: bool, width: int = 80) -> str:
    table = listing(*HEADERS, wide=wide, flex=(2,), extra=(4,))
    for row in ROWS:
        table.add_row(*row)
    out = io.StringIO()
    show(Console(file=out, width=width, color_system=None), table, wide)
    return out.getvalue()


def test_default_fits_80_columns_and_keeps_ids_and_times_whole() -> None:
    text = _render(wide=False)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for row in ROWS:
        assert row[0] in text and row[3] in text and row[5] in text
    assert "detect" not in text  # an extra column waits for --wide
    assert "answers fail" in text and "rollout" in text  # free text wraps, it is not lost


def test_wide_shows_every_column_on_one_line_each() -> None:
    text = _render(wide=True)
    assert "detect" in text and "1 min 30 s" in text
    row = next(line for line in text.splitlines() if "k_0123456789ab" in line)
    assert ROWS[0][2] in row and ROWS[0][3] in row
