"""The layout is a rule, not a hope: folders import only those before them (DESIGN §1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aisre.core.settings import SETTINGS, Settings

REPO = Path(__file__).resolve().parents[1]


def test_import_layers_contract_holds() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_every_setting_has_a_field_and_help() -> None:
    fields = set(Settings.__dataclass_fields__) - {"extra"}
    assert {s.name for s in SETTINGS} == fields
    for setting in SETTINGS:
        assert setting.help.strip(), setting.name
        assert getattr(Settings(), setting.name) == setting.default, setting.name


def test_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in readme, setting.name


def test_readme_documents_every_cli_command() -> None:
    readme = (REPO / "README.md").read_text()
    for command in ("aisre up", "aisre demo", "aisre traces show", "aisre journeys runs", "aisre journeys list"):
        assert command in readme, command


def test_ruff_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run([str(ruff), "check", "src", "tests", "bench"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_store_ports_live_in_store_protocol() -> None:
    """Every port onto the store is declared once, in store/protocol.py: a consumer imports its
    narrow port from there instead of declaring a private one (a second backend implements
    what that file lists, and nothing else)."""
    import re

    declared = re.compile(r"^class (\w*(?:Store|Reads|Tables|Sink))\(.*Protocol\)", re.M)
    strays = []
    for path in (REPO / "src" / "aisre").rglob("*.py"):
        if path.parts[-2:] == ("store", "protocol.py"):
            continue
        strays += [f"{path.relative_to(REPO)}: {name}" for name in declared.findall(path.read_text())]
    assert strays == []
