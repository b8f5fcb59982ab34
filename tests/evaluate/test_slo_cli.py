"""``aisre slo validate``: errors as file:line: field: message and exit 1; summaries and exit 0."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from aisre.present.cli.slo import build_slo_cli
from tests.conftest import REFS

SLOTH = REFS / "sloth"


def test_valid_files_print_a_summary_and_exit_0() -> None:
    result = CliRunner().invoke(build_slo_cli(), ["validate", str(SLOTH / "specs" / "home-wifi.yml")])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output and "2 SLOs (home-wifi-good-wifi-client-satisfaction" in result.output


def test_invalid_file_prints_errors_and_exits_1() -> None:
    bad = SLOTH / "testdata/validate/bad/bad-aa.yaml"
    result = CliRunner().invoke(build_slo_cli(), ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:28: slos[1].objective: must be > 0 and < 100 (got 101)" in result.output


def test_folder_and_unknown_journey(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("slos:\n  - {name: a, journey: ask, objective: 99, sli: outcome}\n")
    runner = CliRunner()
    assert runner.invoke(build_slo_cli(), ["validate", str(tmp_path)]).exit_code == 0
    result = runner.invoke(build_slo_cli(), ["validate", str(tmp_path), "--journey", "search"])
    assert result.exit_code == 1 and "unknown journey 'ask'; known: search" in result.output
