"""The native SLO format: the DESIGN example, edge cases and error messages."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from aisre.core.slo import CostSli, OutcomeSli, ScoreSli, SpecValidationError, StepSli
from aisre.evaluate.specs import check_files, load_specs
from tests.conftest import REFS

DESIGN_EXAMPLE = """\
slos:
  - name: ask-success
    journey: ask
    objective: 99.5          # percent
    window: 28d              # rolling; calendar windows too
    sli: {kind: outcome, latency_ms: 4000}   # good = success and fast enough
    tier: 0
    owner: search-team
    runbook: https://runbooks.example/ask
  - name: ask-cost
    journey: ask
    objective: 99
    sli: {kind: cost, max_usd: 0.02}        # good = run cost under the bound
    diagnostic: true
  - name: ask-groundedness
    journey: ask
    objective: 95
    sli: {kind: score, score: groundedness, min: 0.7}
    diagnostic: true
"""


def write(tmp_path: Path, text: str, name: str = "slos.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path, **kw: object) -> list[str]:
    return [f"{e.line}: {e.field}: {e.message}" for e in check_files([path], **kw).errors]  # type: ignore[arg-type]


def one_slo(body: str) -> str:
    return "slos:\n  - name: s\n    journey: ask\n" + textwrap.indent(textwrap.dedent(body), "    ")


def test_design_example_loads(tmp_path: Path) -> None:
    specs = load_specs([write(tmp_path, DESIGN_EXAMPLE)])
    success, cost, grounded = specs
    assert success.sli == OutcomeSli(latency_ms=4000) and success.window.duration == timedelta(days=28)
    assert (success.tier, success.owner, success.runbook) == (0, "search-team", "https://runbooks.example/ask")
    assert success.carries_budget and not cost.carries_budget and grounded.diagnostic
    assert cost.sli == CostSli(0.02) and grounded.sli == ScoreSli("groundedness", 0.7, None)
    assert cost.window.duration == timedelta(days=30)
    assert success.alerting.windows is not None and success.alerting.windows.factors()["page_quick"] == 13.44
    assert success.source.line == 2 and success.source.file.endswith("slos.yaml")


def test_step_and_cost_default_to_diagnostic(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        slos:
          - {name: retrieval-fast, journey: ask, objective: 95, sli: {kind: step, operation: retrieval, latency_ms: 300}}
          - {name: ask-cheap, journey: ask, objective: 95, sli: {kind: cost, max_usd: 0.1}}
          - {name: ask-fast, journey: ask, objective: 95, sli: {kind: latency, latency_ms: 2000}}
        """)
    step, cost, latency = load_specs([path])
    assert step.sli == StepSli("retrieval", 300) and step.diagnostic and cost.diagnostic
    assert not latency.diagnostic


@pytest.mark.parametrize("value,hint", [(100, "100 leaves no error budget"), (0, "got 0"), (101, "got 101"),
                                        (-1, "got -1")])
def test_objective_range(tmp_path: Path, value: float, hint: str) -> None:
    path = write(tmp_path, one_slo(f"objective: {value}\nsli: {{kind: outcome}}\n"))
    (err,) = errors_of(path)
    assert err.startswith("4: slos[0].objective: must be > 0 and < 100") and hint in err


def test_error_string_names_file_line_field(tmp_path: Path) -> None:
    path = write(tmp_path, one_slo("objective: 101\nsli: outcome\n"))
    with pytest.raises(SpecValidationError) as info:
        load_specs([path])
    assert str(info.value.errors[0]) == f"{path}:4: slos[0].objective: must be > 0 and < 100 (got 101)"


def test_missing_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "slos:\n  - owner: x\n")
    errs = errors_of(path)
    assert "2: slos[0].name: is required" in errs
    assert "2: slos[0].objective: is required" in errs
    assert "2: slos[0].sli: is required" in errs


def test_unknown_kind_lists_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, one_slo("objective: 99\nsli: {kind: vibes}\n"))
    (err,) = errors_of(path)
    assert err == ("5: slos[0].sli.kind: unknown SLI kind 'vibes'; allowed: outcome, latency, cost, "
                   "score, step, prometheus, ratio, threshold, histogram, freshness, pipeline, deadline")


def test_unknown_field_lists_allowed(tmp_path: Path) -> None:
    (err,) = errors_of(write(tmp_path, one_slo("objective: 99\nsli: outcome\nobjectve: 9\n")))
    assert err.startswith("6: slos[0].objectve: unknown field; allowed: name, journey")


@pytest.mark.parametrize("window", ["28x", "d28", "1.5d", "0d", "''"])
def test_bad_durations(tmp_path: Path, window: str) -> None:
    (err,) = errors_of(write(tmp_path, one_slo(f"objective: 99\nwindow: {window}\nsli: outcome\n")))
    assert err.startswith("5: slos[0].window:") and ("duration" in err)


def test_calendar_windows(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        slos:
          - {name: a, journey: ask, objective: 99, window: calendar month, sli: outcome}
          - {name: b, journey: ask, objective: 99, window: {calendar: week, timezone: Europe/Paris}, sli: outcome}
          - {name: c, journey: ask, objective: 99, window: {rolling: 7d}, sli: outcome}
        """)
    a, b, c = load_specs([path])
    assert (a.window.rolling, a.window.calendar, a.window.duration) == (False, "month", timedelta(days=30))
    assert (b.window.calendar, b.window.timezone) == ("week", "Europe/Paris")
    assert b.alerting.windows is not None and b.alerting.windows.factors()["page_quick"] == 13.44  # 7d policy
    assert c.window.rolling and c.window.duration == timedelta(days=7)
    (err,) = errors_of(write(tmp_path, one_slo("objective: 99\nwindow: {calendar: fortnight}\nsli: outcome\n"), "b.yaml"))
    assert "calendar: must be one of week, month, quarter, year" in err


def test_timeslices_budgeting(tmp_path: Path) -> None:
    path = write(tmp_path, one_slo(
        "objective: 99\nsli: outcome\nbudgeting: {method: timeslices, slice: 1m, slice_objective: 95}\n"))
    (spec,) = load_specs([path])
    assert (spec.budgeting.method, spec.budgeting.slice_length, spec.budgeting.slice_objective) == (
        "timeslices", timedelta(minutes=1), 95)
    errs = errors_of(write(tmp_path, one_slo("objective: 99\nsli: outcome\nbudgeting: timeslices\n"), "b.yaml"))
    assert any("budgeting.slice: is required for timeslices" in e for e in errs)
    (err,) = errors_of(write(tmp_path, one_slo("objective: 99\nsli: outcome\nbudgeting: sometimes\n"), "c.yaml"))
    assert "must be one of occurrences, timeslices, ratio_timeslices" in err


def test_known_journeys_and_scores(tmp_path: Path) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    errs = errors_of(path, known_journeys={"search"}, known_scores={"toxicity"})
    assert "3: slos[0].journey: unknown journey 'ask'; known: search" in errs
    assert "18: slos[2].sli.score: unknown score 'groundedness'; known: toxicity" in errs
    assert not errors_of(path, known_journeys={"ask"}, known_scores={"groundedness"})


def test_duplicate_names_across_files_and_no_half_load(tmp_path: Path) -> None:
    a = write(tmp_path, DESIGN_EXAMPLE, "a.yaml")
    b = write(tmp_path, one_slo("objective: 99\nsli: outcome\n").replace("name: s", "name: ask-cost"), "b.yaml")
    result = check_files([a, b])
    (err,) = result.errors
    assert err.file == str(b) and "duplicate SLO 'ask-cost'" in err.message and f"{a}:10" in err.message
    with pytest.raises(SpecValidationError):
        load_specs([a, b])


def test_sli_parameter_errors(tmp_path: Path) -> None:
    cases = {
        "sli: {kind: cost}": "sli.max_usd: is required",
        "sli: {kind: score, score: g}": "a score SLI needs min, max or both",
        "sli: {kind: step, operation: thinking}": "sli.operation: must be one of chat",
        "sli: {kind: outcome, latency_ms: -5}": "sli.latency_ms: must be > 0",
        "sli: {kind: latency, latency_ms: fast}": "sli.latency_ms: must be a number (got text ('fast'))",
        "sli: {kind: prometheus, error_query: x}": "sli.total_query: is required",
    }
    for i, (sli, want) in enumerate(cases.items()):
        errs = errors_of(write(tmp_path, one_slo(f"objective: 99\n{sli}\n"), f"{i}.yaml"))
        assert any(want in e for e in errs), (sli, errs)


def test_alerting_and_windows_override(tmp_path: Path) -> None:
    (tmp_path / "w7.yaml").write_text(
        (REFS / "sloth/windows/test-7d.yaml").read_text())
    path = write(tmp_path, one_slo("""\
        objective: 99
        window: 7d
        sli: outcome
        alerting:
          name: AskBurn
          page: {labels: {severity: critical}}
          ticket: false
          windows: w7.yaml
        """))
    (spec,) = load_specs([path])
    assert spec.alerting.name == "AskBurn" and spec.alerting.page.labels == {"severity": "critical"}
    assert spec.alerting.ticket.enabled is False
    assert spec.alerting.windows is not None and spec.alerting.windows.factors()["ticket_slow"] == 0.98
    bad = write(tmp_path, one_slo("objective: 99\nsli: outcome\nalerting: {windows: w7.yaml}\n"), "b.yaml")
    (err,) = errors_of(bad)
    assert "alerting.windows: the windows file is for sloPeriod 7d but the SLO window is 30d" in err
    missing = write(tmp_path, one_slo("objective: 99\nsli: outcome\nalerting: {windows: nope.yaml}\n"), "c.yaml")
    (err,) = errors_of(missing)
    assert err.startswith("6: slos[0].alerting.windows: cannot use windows file")


def test_yaml_problems(tmp_path: Path) -> None:
    (err,) = errors_of(write(tmp_path, "slos:\n  - name: [unclosed\n"))
    assert "not valid YAML" in err
    errs = errors_of(write(tmp_path, one_slo("objective: 99\nobjective: 98\nsli: outcome\n"), "d.yaml"))
    assert "5: objective: key appears twice in the same mapping" in errs
    (err,) = errors_of(write(tmp_path, "hello: world\n", "x.yaml"))
    assert "cannot tell the spec format" in err


def test_folder_loads_every_yaml(tmp_path: Path) -> None:
    write(tmp_path, DESIGN_EXAMPLE, "a.yaml")
    write(tmp_path, one_slo("objective: 99\nsli: outcome\n"), "b.yml")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [s.name for s in load_specs([tmp_path])] == ["ask-success", "ask-cost", "ask-groundedness", "s"]
