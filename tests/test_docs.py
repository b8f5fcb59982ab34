"""Docs are tested: every server setting has its row in the README's settings table."""

from __future__ import annotations

import re

from aisre.core.settings import SETTINGS
from tests.conftest import REPO


def _settings_table() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Settings"):]
    section = section[: section.index("\n## ", 1)]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z_0-9]+)` \| ([^|]*) \|", section, re.M)}


def test_every_setting_has_a_readme_row() -> None:
    rows = _settings_table()
    missing = [s.name for s in SETTINGS if s.name not in rows]
    assert missing == [], f"settings with no row in the README's settings table: {missing}"
    unknown = sorted(set(rows) - {s.name for s in SETTINGS})
    assert unknown == [], f"README rows for settings that do not exist: {unknown}"


def test_cli_reference_is_generated_from_the_help() -> None:
    """docs/cli.md is what `python -m aisre.present.cli.reference` prints (regenerate it so)."""
    from aisre.present.cli.reference import markdown

    expected = markdown()
    actual = (REPO / "docs" / "cli.md").read_text()
    assert actual == expected, "docs/cli.md is stale: python -m aisre.present.cli.reference > docs/cli.md"


def test_every_cli_command_is_in_the_readme_table() -> None:
    from aisre.present.cli.reference import cli_app, command_paths

    text = (REPO / "README.md").read_text()
    section = text[text.index("## CLI"):]
    rows = [line for line in section[: section.index("\n## ", 1)].splitlines() if line.startswith("| `aisre")]
    missing = []
    for path in command_paths(cli_app()):
        if not path:
            continue
        group = f"`aisre {path[0]}"
        if not any(group in row and (len(path) == 1 or path[-1] in row) for row in rows):
            missing.append(" ".join(path))
    assert missing == [], f"commands with no row in the README's CLI table: {missing}"
