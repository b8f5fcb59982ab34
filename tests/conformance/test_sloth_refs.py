"""Every Sloth spec in the refs loads; the invalid ones fail with the right error."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from aisre.core.slo import AlertWindows, PrometheusSli, SpecValidationError, format_duration
from aisre.evaluate.burn import error_budget
from aisre.evaluate.specs import check_files, load_specs
from aisre.evaluate.windows import builtin_windows, load_windows
from tests.conftest import REFS

SLOTH = REFS / "sloth"
SPECS = sorted((SLOTH / "specs").iterdir())
INPUTS = sorted(p for p in (SLOTH / "testdata").glob("in-*.yaml") if "invalid" not in p.name)
EXPECTED = yaml.safe_load((SLOTH / "expected_burn_factors.yaml").read_text())


@pytest.mark.parametrize("path", SPECS + INPUTS, ids=lambda p: p.name)
def test_sloth_spec_loads(path: Path) -> None:
    specs = load_specs([path])
    assert specs
    for spec in specs:
        assert spec.service and 0 < spec.objective < 100
        assert isinstance(spec.sli, PrometheusSli)
        assert spec.window.duration == timedelta(days=30)  # Sloth's default period


def test_invalid_version_fails_with_a_version_error() -> None:
    result = check_files([SLOTH / "testdata" / "in-invalid-version.yaml"])
    assert not result.specs or result.errors
    assert [(e.line, e.field) for e in result.errors] == [(1, "version")]
    assert "prometheus/v999" in result.errors[0].message and "prometheus/v1" in result.errors[0].message


@pytest.mark.parametrize("path", sorted((SLOTH / "testdata/validate/good").iterdir()), ids=lambda p: p.name)
def test_validate_good(path: Path) -> None:
    assert load_specs([path])


@pytest.mark.parametrize("name", ["bad-aa", "bad-ab", "bad-ba"])
def test_validate_bad_objective_names_the_line(name: str) -> None:
    path = SLOTH / "testdata/validate/bad" / f"{name}.yaml"
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "101" in text)
    with pytest.raises(SpecValidationError) as info:
        load_specs([path])
    (error,) = info.value.errors
    assert (error.file, error.line, error.field) == (str(path), line, "slos[1].objective")
    assert str(error) == f"{path}:{line}: slos[1].objective: must be > 0 and < 100 (got 101)"


def test_bad_directory_as_a_whole_fails() -> None:
    with pytest.raises(SpecValidationError):
        load_specs([SLOTH / "testdata/validate/bad"])


def test_mapping_of_getting_started() -> None:
    (spec,) = load_specs([SLOTH / "specs" / "getting-started.yml"])
    assert spec.id == "myservice-requests-availability"
    assert spec.labels == {"owner": "myteam", "repo": "myorg/myservice", "tier": "2"}
    assert spec.alerting.name == "MyServiceHighErrorRate"
    assert spec.alerting.page.labels == {"severity": "pageteam", "routing_key": "myteam"}
    assert spec.alerting.ticket.labels["slack_channel"] == "#alerts-myteam"
    assert spec.sli.error_query and "{{.window}}" in spec.sli.error_query  # type: ignore[union-attr]


def test_k8s_cr_matches_the_plain_spec() -> None:
    (plain,) = load_specs([SLOTH / "specs" / "getting-started.yml"])
    (cr,) = load_specs([SLOTH / "specs" / "k8s-getting-started.yml"])
    assert (cr.id, cr.objective, cr.sli, cr.alerting.page, cr.alerting.ticket, cr.labels) == (
        plain.id, plain.objective, plain.sli, plain.alerting.page, plain.alerting.ticket, plain.labels)


def test_disabled_alerts_and_raw_sli() -> None:
    specs = {s.name: s for s in load_specs([SLOTH / "testdata" / "in-base.yaml"])}
    assert specs["slo02"].alerting.page.enabled is False and specs["slo02"].alerting.ticket.enabled is False
    assert specs["slo02"].sli.shape == "raw"  # type: ignore[union-attr]
    assert specs["slo1"].labels == {"global01k1": "global01v1", "global02k1": "global02v1"}


def test_openslo_v1alpha_ids_follow_sloth() -> None:
    (spec,) = load_specs([SLOTH / "specs" / "openslo-getting-started.yml"])
    assert spec.id == "my-service-sloth-slo-my-service-0"  # sloth_id in generated/
    assert spec.alerting.page.enabled is False  # Sloth makes no alerts for OpenSLO


def _check_factors(windows: AlertWindows, expected: dict[str, dict[str, object]]) -> None:
    for pair, want in expected.items():
        w = windows.pairs()[pair]
        assert windows.burn_factor(w) == want["factor"], pair  # exact, as Sloth prints them
        assert w.error_budget_percent == want["budget_pct"]


@pytest.mark.parametrize("period,key", [(30, "30d"), (28, "28d"), (7, "7d_custom")])
def test_builtin_windows_reproduce_sloth_factors(period: int, key: str) -> None:
    _check_factors(builtin_windows()[timedelta(days=period)], EXPECTED["windows"][key])


@pytest.mark.parametrize("file,key", [
    ("google-30d.yaml", "30d"), ("google-28d.yaml", "28d"), ("test-7d.yaml", "7d_custom"),
    ("example-7d.yaml", "7d_custom"), ("example-custom-30d.yaml", "30d_custom_example"),
])
def test_sloth_windows_files_load_with_exact_factors(file: str, key: str) -> None:
    _check_factors(load_windows(SLOTH / "windows" / file), EXPECTED["windows"][key])


def test_default_period_override_picks_matching_windows() -> None:
    specs = load_specs([SLOTH / "testdata" / "in-base.yaml"], default_window=timedelta(days=28))
    assert specs[0].alerting.windows is not None
    assert specs[0].alerting.windows.factors()["page_quick"] == 13.44
    custom = load_windows(SLOTH / "windows" / "test-7d.yaml")
    specs = load_specs([SLOTH / "testdata" / "in-base.yaml"], default_window=timedelta(days=7),
                       windows=[custom])
    assert specs[0].alerting.windows is custom


GENERATED = [(SLOTH / "generated" / p.name, [p], 30, None) for p in SPECS] + [
    (SLOTH / "testdata" / f"out-{name}.rendered.yaml", [SLOTH / "testdata" / f"in-{src}.yaml"], days, win)
    for name, src, days, win in [
        ("base", "base", 30, None), ("base-extra-labels", "base", 30, None),
        ("base-no-recordings", "base", 30, None), ("base-28d", "base", 28, None),
        ("base-custom-windows-7d", "base", 7, "test-7d.yaml"), ("base-k8s", "base-k8s", 30, None),
        ("multifile", "multifile", 30, None), ("openslo", "openslo", 30, None),
    ]
]
THRESHOLD = re.compile(r'ratio_rate(\w+)\{sloth_id="([^"]+)"[^}]*\} > \(([0-9.e-]+) \* ([0-9.e-]+)\)')


@pytest.mark.parametrize("out,inputs,days,windows_file", GENERATED, ids=lambda v: getattr(v, "name", ""))
def test_every_alert_threshold_in_sloth_output(
    out: Path, inputs: list[Path], days: int, windows_file: str | None
) -> None:
    custom = [load_windows(SLOTH / "windows" / windows_file)] if windows_file else []
    specs = {s.id: s for s in load_specs(inputs, default_window=timedelta(days=days), windows=custom)}
    found = THRESHOLD.findall(out.read_text())
    alerting = {s.id for s in specs.values() if s.alerting.page.enabled or s.alerting.ticket.enabled}
    assert {sloth_id for _, sloth_id, _, _ in found} == alerting
    for window, sloth_id, factor, budget in found:
        spec = specs[sloth_id]
        assert spec.alerting.windows is not None
        ours = {repr(spec.alerting.windows.burn_factor(w)) for w in spec.alerting.windows.pairs().values()
                if window in (format_duration(w.short), format_duration(w.long))}
        assert repr(float(factor)) in ours or factor in ours, (window, factor, ours)
        assert repr(error_budget(spec.objective)) == budget
