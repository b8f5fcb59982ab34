"""Every Kayenta classifier, confidence-interval, scorer and verdict case in tests/data/refs/kayenta
(a copy of ../shared/refs/kayenta)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats

from aisre.evaluate.gate import mannwhitney
from aisre.evaluate.gate.classifier import (
    Classification,
    Direction,
    EffectSize,
    MannWhitneyClassifier,
    MeanInequalityClassifier,
    MetricSettings,
    NanStrategy,
)
from aisre.evaluate.gate.scorer import ScoredMetric, Verdict, aggregated_judgement, score, verdict
from tests.conftest import REFS

KAYENTA = REFS / "kayenta"
CLASSIFIER = json.loads((KAYENTA / "fixtures" / "classifier_cases.json").read_text())["cases"]
CI = json.loads((KAYENTA / "fixtures" / "mannwhitney_ci_cases.json").read_text())["cases"]
SCORER = yaml.safe_load((KAYENTA / "fixtures" / "scorer_cases.yaml").read_text())["cases"]
VERDICTS = yaml.safe_load((KAYENTA / "fixtures" / "verdict_rules.yaml").read_text())


def _settings(case: dict[str, Any]) -> MetricSettings:
    p = case["params"]
    decrease, increase = p.get("effectSizeThresholds_decrease_increase", [1.0, 1.0])
    crit_decrease, crit_increase = p.get("criticalThresholds_decrease_increase", [1.0, 1.0])
    return MetricSettings(
        direction=Direction(case["direction"]),
        nan_strategy=NanStrategy(case["nan_strategy"]),
        critical=case["is_critical"],
        must_have_data=case["is_data_required"],
        allowed_increase=increase,
        allowed_decrease=decrease,
        critical_increase=crit_increase,
        critical_decrease=crit_decrease,
        effect_size=EffectSize(p.get("effectSizeMeasure", "meanRatio")),
    )


def test_all_classifier_cases_are_walked() -> None:
    assert len(CLASSIFIER) == 37
    assert sum(c["classifier"] == "MannWhitneyClassifier" for c in CLASSIFIER) == 34


@pytest.mark.parametrize("case", CLASSIFIER, ids=lambda c: c["name"])
def test_classifier_case(case: dict[str, Any]) -> None:
    if case["classifier"] == "MannWhitneyClassifier":
        p = case["params"]
        clf: MannWhitneyClassifier | MeanInequalityClassifier = MannWhitneyClassifier(
            tolerance=p["tolerance"], confidence=p["confLevel"]
        )
    else:
        clf = MeanInequalityClassifier()
    got = clf.classify(case["metric_name"], case["control"], case["experiment"], _settings(case))
    expect = case["expect"]
    assert set(expect) <= {"classification", "critical", "deviation", "reason_non_empty"}
    if "classification" in expect:
        assert got.classification is Classification(expect["classification"])
    if "critical" in expect:
        assert got.critical is expect["critical"]
    if "deviation" in expect:
        if expect["deviation"] == "NaN":
            assert math.isnan(got.deviation)
        else:
            assert got.deviation == pytest.approx(expect["deviation"])
    if expect.get("reason_non_empty"):
        assert got.reason


@pytest.mark.parametrize("case", CI, ids=lambda c: c["name"])
def test_confidence_interval_case(case: dict[str, Any]) -> None:
    x = np.asarray(case["x_experiment"], dtype=np.float64)
    y = np.asarray(case["y_control"], dtype=np.float64)
    e = case["expect"]
    got = mannwhitney.shift_interval(x, y, case["confidence_level"])
    if "ci_low" in e:
        assert got.lower == pytest.approx(e["ci_low"], abs=e["tol_ci"])
        assert got.upper == pytest.approx(e["ci_high"], abs=e["tol_ci"])
        assert got.estimate == pytest.approx(e["estimate"], abs=e["tol_est"])
        return
    # The intermediate values of the wilcoxon-diff function, at tolerance 1e-6.
    tol = 1e-6
    mu_min, mu_max = float(x.min() - y.max()), float(x.max() - y.min())
    assert mu_min == pytest.approx(e["rMumin"], abs=tol)
    assert mu_max == pytest.approx(e["rMumax"], abs=tol)
    z_lower = float(-np.asarray(stats.norm.ppf((1 - case["confidence_level"]) / 2)))
    assert z_lower == pytest.approx(e["rZqLower"], abs=tol)
    assert -z_lower == pytest.approx(e["rZqUpper"], abs=tol)
    assert mannwhitney.wilcoxon_diff(mu_min, z_lower, x, y) == pytest.approx(e["rFlower1"], abs=tol)
    assert mannwhitney.wilcoxon_diff(mu_max, z_lower, x, y) == pytest.approx(e["rFupper1"], abs=tol)
    assert mannwhitney.wilcoxon_diff(mu_min, -z_lower, x, y) == pytest.approx(e["rFlower2"], abs=tol)
    assert mannwhitney.wilcoxon_diff(mu_max, -z_lower, x, y) == pytest.approx(e["rFupper2"], abs=tol)
    assert got.lower == pytest.approx(e["rCil"], abs=tol)
    assert got.upper == pytest.approx(e["rCiu"], abs=tol)
    assert got.estimate == pytest.approx(e["rEst"], abs=tol)


def test_normal_quantile_from_the_suite() -> None:
    assert float(stats.norm.ppf(0.01)) == pytest.approx(-2.326348, abs=1e-6)


@pytest.mark.parametrize("case", SCORER, ids=lambda c: c["name"])
def test_scorer_case(case: dict[str, Any]) -> None:
    metrics = [
        ScoredMetric(m[0], Classification(m[1]), tuple(m[2]), critical=bool(m[3]) if len(m) > 3 else False)
        for m in case["metrics"]
    ]
    got = score(metrics, case["group_weights"])
    e = case["expect"]
    assert got.summary == e["summary_score"]
    if "group_scores" in e:
        assert {g.name: g.score for g in got.groups} == e["group_scores"]
    if "group_scores_sorted" in e:
        assert sorted(g.score for g in got.groups) == e["group_scores_sorted"]


@pytest.mark.parametrize("case", VERDICTS["judge_threshold_classifier"]["cases"], ids=lambda c: str(c["score"]))
def test_judge_verdict_boundaries(case: dict[str, Any]) -> None:
    assert verdict(case["score"], case["pass"], case["marginal"]) is Verdict(case["verdict"].lower())


def test_standalone_judgement_boundary_differs_at_marginal() -> None:
    messages = VERDICTS["standalone_aggregated_judgement"]["messages"]
    assert aggregated_judgement(50.0, 75, 50) == (False, messages["not_above_marginal"] % 50.0)
    assert aggregated_judgement(60.0, 75, 50) == (False, messages["below_pass"] % 60.0)
    assert aggregated_judgement(75.0, 75, 50) == (True, messages["pass"] % 75.0)
    assert aggregated_judgement(10.0, None, None) == (True, messages["none"])
    assert verdict(50.0, 75, 50) is Verdict.MARGINAL  # the judge's own rule keeps the boundary


def _config(name: str) -> dict[str, Any]:
    return dict(json.loads((KAYENTA / "configs" / name).read_text()))


@pytest.mark.parametrize(
    "case", VERDICTS["standalone_aggregated_judgement"]["integration_cases"], ids=lambda c: c["case"]
)
def test_integration_cases(case: dict[str, Any]) -> None:
    """The integration suite's gauges are uniform random samples; a seeded draw of one minute of them."""
    apps = yaml.safe_load((KAYENTA / "configs" / "integration-application-cases.yml").read_text())
    app = apps["canary-analysis.cases"][case["case"]]
    config = _config(case.get("config", "prometheus-integration-test-cpu.json"))
    thresholds = config["classifier"]["scoreThresholds"]
    # NetflixACAJudge's own parameters.
    clf = MannWhitneyClassifier(tolerance=0.25, confidence=0.98)
    rng = np.random.default_rng(7)
    scored = []
    for i, metric in enumerate(config["metrics"]):
        canary = metric["analysisConfigurations"]["canary"]
        settings = MetricSettings(direction=Direction(canary["direction"]), critical=canary["critical"])
        ctl, exp = app["control"]["metrics"][i], app["experiment"]["metrics"][i]
        control = rng.uniform(ctl["lower-bound"], ctl["upper-bound"], 60)
        experiment = rng.uniform(exp["lower-bound"], exp["upper-bound"], 60)
        got = clf.classify(metric["name"], control, experiment, settings)
        want = case.get("metric_classification") or case["classifications"][metric["name"]]
        assert got.classification is Classification(want)
        scored.append(
            ScoredMetric(metric["name"], got.classification, tuple(metric["groups"]), got.critical,
                         muted=bool(canary.get("muted")))
        )
    result = score(scored, config["classifier"]["groupWeights"])
    if "score" in case:
        assert result.summary == case["score"]
    passed, _ = aggregated_judgement(result.summary, thresholds["pass"], thresholds["marginal"])
    assert passed is case["didPassThresholds"]
