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
