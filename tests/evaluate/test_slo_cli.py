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


def test_objective_written_as_a_ratio_is_a_warning_not_an_error(tmp_path: Path) -> None:
    spec = tmp_path / "ratio.yaml"
    spec.write_text("slos:\n  - name: a\n    journey: ask\n    objective: 0.995\n    sli: outcome\n")
    result = CliRunner().invoke(build_slo_cli(), ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert f"warning: {spec}:4: slos[0].objective: 0.995 means 0.995 % (a percentage); did you mean 99.5?" in result.output


def test_objective_out_of_range_is_reported_next_to_other_errors(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    # The second SLO lacks its sli too: it is never built, and its objective was missed.
    spec.write_text("slos:\n  - {name: a, journey: ask, objective: 99, sli: outcome, window: 5x}\n"
                    "  - name: b\n    journey: ask\n    objective: 199\n")
    result = CliRunner().invoke(build_slo_cli(), ["validate", str(spec)])
    assert result.exit_code == 1
    assert f"{spec}:5: slos[1].objective: must be > 0 and < 100 (got 199)" in result.output
    assert f"{spec}:3: slos[1].sli: is required" in result.output
    assert "slos[0].window: invalid duration '5x'" in result.output
