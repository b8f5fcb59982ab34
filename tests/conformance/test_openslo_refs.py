"""OpenSLO refs: spec and go-sdk examples load; the go-sdk inliner cases behave as upstream."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from aisre.core.slo import PrometheusSli, SpecValidationError
from aisre.evaluate._yaml import parse_documents, plain
from aisre.evaluate.specs import check_files, load_specs
from aisre.evaluate.specs.openslo import OpenSloRefError, inline
from tests.conftest import REFS

OPENSLO = REFS / "openslo"
EXPECTED = yaml.safe_load((OPENSLO / "EXPECTED.yaml").read_text())
INLINE = OPENSLO / "go_sdk_inline"


@pytest.mark.parametrize("path", sorted((OPENSLO / "go_sdk_v1_examples").iterdir()), ids=lambda p: p.name)
def test_go_sdk_examples_load(path: Path) -> None:
    specs = load_specs([path])
    assert len(specs) == (1 if path.name == "slos.yaml" else 0)  # other kinds are accepted, skipped


def test_go_sdk_examples_load_together() -> None:
    (spec,) = load_specs([OPENSLO / "go_sdk_v1_examples"])
    assert spec.id == "web-web-availability" and spec.objective == 99.5
    assert spec.window.rolling is False and spec.window.calendar == "week"
    assert spec.window.timezone == "America/New_York" and spec.window.start == "2022-01-01 12:00:00"
    assert spec.budgeting.method == "timeslices"
    assert spec.budgeting.slice_length == timedelta(minutes=1) and spec.budgeting.slice_objective == 95
    assert isinstance(spec.sli, PrometheusSli) and spec.sli.shape == "good_total"
    assert spec.labels == {"env": "prod", "team": "team-a,team-b"}


@pytest.mark.parametrize("path", sorted((OPENSLO / "spec_repo_examples").iterdir()), ids=lambda p: p.name)
def test_spec_repo_examples_load(path: Path) -> None:
    specs = load_specs([path])
    assert specs and all(0 < s.objective < 100 for s in specs)


def test_spec_repo_details() -> None:
    (search,) = load_specs([OPENSLO / "spec_repo_examples" / "occurrences-slo.yaml"])
    assert isinstance(search.sli, PrometheusSli)
    assert (search.sli.shape, search.sli.op, search.sli.value) == ("threshold", "lt", 500)
    assert search.window.duration == timedelta(weeks=2) and search.window.rolling
    two = load_specs([OPENSLO / "spec_repo_examples" / "timeslices-slo.yaml"])
    assert [s.name for s in two] == ["service-availability-0", "service-availability-1"]
    # 'm' is minutes in OpenSLO ('M' is month), whatever the upstream comment says.
    assert two[0].window.duration == timedelta(minutes=1)
    (ratio,) = load_specs([OPENSLO / "spec_repo_examples" / "ratio-timeslices.yaml"])
    assert ratio.budgeting.method == "ratio_timeslices"


def _objects(path: Path) -> list[Any]:
    errors: list[Any] = []
    (doc, _), = parse_documents(path.read_text(), str(path), errors)
    assert not errors
    return list(doc)


CASES = [c for c in EXPECTED["go_sdk_inline_cases"] if "output" in c]
ERROR_CASES = [c for c in EXPECTED["go_sdk_inline_cases"] if "error" in c]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_inliner_outputs(case: dict[str, Any]) -> None:
    got = inline(_objects(INLINE / case["input"]), remove_referenced=case.get("mode") == "remove_referenced_objects")
    want = yaml.safe_load((INLINE / case["output"]).read_text())
    assert plain(got) == want


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c["name"])
def test_inliner_errors(case: dict[str, Any]) -> None:
    with pytest.raises(OpenSloRefError) as info:
        inline(_objects(INLINE / case["input"]))
    if case["error"].startswith("failed"):
        assert info.value.message == case["error"]
    else:  # the policy case is not asserted upstream; we say it the same way
        assert info.value.message == (
            "failed to inline v1.SLO 'my-slo': v1.AlertPolicy 'no-policy' referenced at "
            "'spec.alertPolicies[0].alertPolicyRef' does not exist")


@pytest.mark.parametrize("case", [c for c in ERROR_CASES if "slo" in c["input"]], ids=lambda c: c["name"])
def test_loader_refuses_unresolved_slo_references(case: dict[str, Any]) -> None:
    path = INLINE / case["input"]
    result = check_files([path])
    (error,) = result.errors
    assert error.file == str(path) and error.line > 0
    assert error.message.startswith("failed to inline v1.SLO 'my-slo'")
    if case["error"].startswith("failed"):
        assert error.message == case["error"]
    with pytest.raises(SpecValidationError):
        load_specs([path])


def test_loader_inlines_references_across_files(tmp_path: Path) -> None:
    src = (INLINE / "inputs" / "v1_slo.yaml").read_text().split("- apiVersion: openslo/v1\n  kind: SLI")
    (tmp_path / "slos.yaml").write_text(src[0])
    (tmp_path / "sli.yaml").write_text("- apiVersion: openslo/v1\n  kind: SLI" + src[1])
    specs = {s.name: s for s in load_specs([tmp_path])}
    assert specs["my-slo-2"].sli == specs["my-slo-1"].sli
    policies = specs["my-slo-2"].alerting.policies
    assert [p.name for p in policies] == ["single-referenced-object", "mix-of-referenced-and-inlined-objects"]
    assert policies[0].conditions[0].name == "cpu-usage-breach" and policies[0].targets == ("devs-email-notification",)
    assert policies[0].conditions[0].lookback_window == timedelta(hours=1)


def test_sloth_v1alpha_bad_openslo_is_not_a_standalone_negative() -> None:
    # EXPECTED: Sloth accepts a 28-day window; only the whole bad/ folder must fail.
    path = OPENSLO.parent / "sloth" / "testdata/validate/bad/bad-openslo.yaml"
    (spec,) = load_specs([path])
    assert spec.window.duration == timedelta(days=28)
