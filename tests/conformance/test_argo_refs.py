"""The documented Argo Rollouts AnalysisTemplate for /api/gate, judged by Argo's own rules.

Argo's measurement evaluation (success/failure conditions) and metric assessment (limits and
count) are restated here as small functions, checked against every case transcribed in
tests/data/refs/argo_rollouts (a copy of ../shared/refs), then applied to the template in docs/gate.md and to real verdicts.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REFS

REPO = Path(__file__).resolve().parents[2]
ARGO = REFS / "argo_rollouts" / "fixtures"
EVALUATE = yaml.safe_load((ARGO / "evaluate_result_cases.yaml").read_text())
ASSESS = yaml.safe_load((ARGO / "assess_metric_status_cases.yaml").read_text())


class ExprError(Exception):
    pass


def _condition(expr: str, result: Any) -> bool:
    """Argo's expr conditions as far as the templates here use them."""
    if result is None and "result[" in expr:
        raise ExprError("metric result is nil or empty: no data returned from the metric provider")
    code = expr.replace("||", " or ").replace("&&", " and ")
    env = {"result": result, "true": True, "false": False, "isNaN": math.isnan, "isInf": math.isinf, "len": len, "__builtins__": {}}
    try:
        # A test helper evaluating the fixed reference expressions only.
        return bool(eval(code, env))
    except Exception as exc:
        raise ExprError(str(exc)) from None


def evaluate_result(success: str, failure: str, result: Any) -> str:
    """utils/evaluate EvaluateResult: failure wins; neither true is Inconclusive; errors are Error."""
    try:
        ok = _condition(success, result) if success else None
        bad = _condition(failure, result) if failure else None
    except ExprError:
        return "Error"
    if ok is None and bad is None:
        return "Successful"
    if bad is None:
        bad = not ok
    if ok is None:
        ok = not bad
    if bad:
        return "Failed"
    return "Successful" if ok else "Inconclusive"


def assess_metric(metric: dict[str, Any], result: dict[str, Any], terminating: bool) -> tuple[str, str]:
    """analysis.assessMetricStatus, with the message of the limit that decided."""
    if result.get("measurements") == 0:
        return ("Successful" if terminating else "Pending"), ""
    if result.get("last_measurement_phase") == "Running":
        return "Running", ""
    failure_limit = metric.get("failureLimit", 0)
    inconclusive_limit = metric.get("inconclusiveLimit", 0)
    error_limit = metric.get("consecutiveErrorLimit", 4)
    phase, message = "", ""
    failed, inconclusive = result.get("failed", 0), result.get("inconclusive", 0)
    errors = result.get("consecutiveError", 0)
    if failure_limit >= 0 and failed > failure_limit:
        phase, message = "Failed", f"failed ({failed}) > failureLimit ({failure_limit})"
    if inconclusive > inconclusive_limit:
        phase, message = "Inconclusive", f"inconclusive ({inconclusive}) > inconclusiveLimit ({inconclusive_limit})"
    if errors > error_limit:
        phase, message = "Error", f"consecutiveErrors ({errors}) > consecutiveErrorLimit ({error_limit})"
    if phase:
        return phase, message
    success_limit = metric.get("consecutiveSuccessLimit", 0)
    if success_limit > 0 and result.get("consecutiveSuccess", 0) >= success_limit:
        return "Successful", ""
    count = metric.get("count", 0) or (1 if "interval" not in metric else None)
    if count and result.get("count", 0) >= count:
        failure_applies, success_applies = failure_limit >= 0, success_limit > 0
        if failure_applies and success_applies:
            return "Inconclusive", ""
        return ("Failed" if success_applies else "Successful"), ""
    return ("Successful" if terminating else "Running"), ""


_ORDER = ["Successful", "Running", "Pending", "Inconclusive", "Error", "Failed"]


def run_phase(phases: dict[str, str]) -> str:
    """assessRunStatus: the worst metric phase."""
    return max(phases.values(), key=_ORDER.index)


def _result(raw: Any) -> Any:
    return {"NaN": math.nan, "+Inf": math.inf}.get(raw, raw) if isinstance(raw, str) else raw


@pytest.mark.parametrize("case", EVALUATE["cases"] + EVALUATE["docs_cases"], ids=str)
def test_evaluate_result_reference_case(case: dict[str, Any]) -> None:
    # "<invalid expr>" stands for any expression that does not parse.
    success, failure = (("result ==== 1" if c == "<invalid expr>" else c) for c in (case["success"], case["failure"]))
    assert evaluate_result(success, failure, _result(case["result"])) == case["phase"]


@pytest.mark.parametrize("case", ASSESS["cases"], ids=lambda c: c["name"])
def test_assess_metric_reference_case(case: dict[str, Any]) -> None:
    for terminating, want in zip((False, True), case["expect"], strict=True):
        if want is None:
            continue
        phase, message = assess_metric(case["metric"], case["result"], terminating)
        assert phase == want, (terminating, message)
        if "message" in case:
            assert message == case["message"]


@pytest.mark.parametrize("case", ASSESS["run_level_cases"], ids=str)
def test_run_level_reference_case(case: dict[str, Any]) -> None:
    assert run_phase(case["metrics"]) == case["expect"]


def _documented_template() -> dict[str, Any]:
    text = (REPO / "docs" / "gate.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and doc.get("kind") == "AnalysisTemplate":
            return doc
    raise AssertionError("docs/gate.md has no AnalysisTemplate")


@pytest.mark.parametrize(
    ("verdict", "measurement", "analysis"),
    [("pass", "Successful", "Successful"), ("fail", "Failed", "Failed"),
     ("marginal", "Inconclusive", "Inconclusive"), ("no_data", "Inconclusive", "Inconclusive")],
)
def test_documented_template_maps_verdicts(verdict: str, measurement: str, analysis: str) -> None:
    template = _documented_template()
    metric = template["spec"]["metrics"][0]
    web = metric["provider"]["web"]
    assert web["jsonPath"] == "{$.verdict}"
    assert "/api/gate?journey={{args.journey}}" in web["url"]
    phase = evaluate_result(metric.get("successCondition", ""), metric.get("failureCondition", ""), verdict)
    assert phase == measurement
    counts = {"Successful": "successful", "Failed": "failed", "Inconclusive": "inconclusive"}
    result = {counts[phase]: 1, "count": 1, "last_measurement_phase": phase}
    assert assess_metric(metric, result, terminating=False)[0] == analysis


def test_background_variant_tolerates_three_inconclusive_answers() -> None:
    metric = {"interval": "5m", "failureLimit": 0, "inconclusiveLimit": 3}
    assert assess_metric(metric, {"inconclusive": 3, "count": 3}, False)[0] == "Running"
    assert assess_metric(metric, {"inconclusive": 4, "count": 4}, False)[0] == "Inconclusive"
    assert assess_metric(metric, {"inconclusive": 2, "failed": 1, "count": 3}, False)[0] == "Failed"
