"""Score SLIs over a subject (a model's drift, a dataset's quality): the spec (a platform SLO,
no journey, errors with file and line) and a drifting model burning its budget into an alert
through the same SLO minutes → budget → burn rate → alert machinery as any SLO."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisre.act.alerts import AlertEvaluator
from aisre.core.slo import ScoreSli, SpecValidationError
from aisre.core.timefmt import rfc3339
from aisre.evaluate.slo import SloEngine, sli_rule
from aisre.evaluate.specs import load_specs
from aisre.normalize.scores import parse_score_batch
from aisre.store.duckdb import DuckDBStore

MIN = 60 * 10**9
T0 = 1_767_225_600 * 10**9
HOURS = 8
DRIFT = range(5 * 60, 6 * 60)  # minutes whose report says the model drifted
SPEC = """slos:
  - name: churn-drift
    service: ml-models
    objective: 95
    window: 30d
    sli: {kind: score, subject: 'model:churn-v3', score: drift.share_of_drifted_columns, max: 0.3}
"""


def _load(tmp_path: Path, text: str) -> list:
    path = tmp_path / "slos.yaml"
    path.write_text(text)
    return load_specs([path])


def test_a_score_slo_over_a_subject_is_a_platform_slo_with_a_budget(tmp_path: Path) -> None:
    (spec,) = _load(tmp_path, SPEC)
    assert spec.id == "ml-models-churn-drift" and spec.journey is None
    assert spec.sli == ScoreSli("drift.share_of_drifted_columns", None, 0.3, "model:churn-v3")
    assert not spec.diagnostic and spec.carries_budget  # journey score SLIs default to diagnostic
    rule = sli_rule(spec)
    assert rule is not None and (rule.kind, rule.subject, rule.score, rule.max_value) == (
        "score", "model:churn-v3", "drift.share_of_drifted_columns", 0.3)


@pytest.mark.parametrize(("sli", "where", "error"), [
    ("{kind: score, subject: 'model:m', score: s, max: 1}\n    journey: ask", "slos.yaml:6: slos[0].journey",
     "platform SLO: give service, not journey"),
    ("{kind: score, subject: churn, score: s, max: 1}", "slos.yaml:5: slos[0].sli.subject", "<kind>:<name>"),
    ("{kind: score, subject: 'model:m', max: 1}", "slos.yaml:5: slos[0].sli.score", "is required"),
    ("{kind: score, subject: 'model:m', score: s}", "slos.yaml:5: slos[0].sli", "needs min, max or both"),
])
def test_bad_score_slis_over_subjects_are_reported_with_file_and_line(tmp_path: Path, sli: str, where: str,
                                                                     error: str) -> None:
    with pytest.raises(SpecValidationError) as info:
        _load(tmp_path, f"slos:\n  - name: x\n    service: s\n    objective: 99\n    sli: {sli}\n")
    assert any(str(e).rsplit("/", 1)[-1].startswith(where) and error in str(e) for e in info.value.errors), info.value.errors


def test_a_subject_slo_needs_a_service(tmp_path: Path) -> None:
    with pytest.raises(SpecValidationError) as info:
        _load(tmp_path, "slos:\n  - name: x\n    objective: 99\n    sli: {kind: score, subject: 'model:m', score: s, max: 1}\n")
    assert "or service, for a score SLI over a subject" in str(info.value)


def test_a_drifting_model_burns_its_budget_and_opens_an_alert(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    try:
        engine = SloEngine(store)
        engine.apply("t", _load(tmp_path, SPEC))
        # One drift report a minute for 8 hours; within DRIFT half the columns drift.
        items = [{"subject": "model:churn-v3", "name": "drift.share_of_drifted_columns",
                  "value": 0.5 if i in DRIFT else 0.1, "time": rfc3339(T0 + i * MIN + 20 * 10**9)}
                 for i in range(HOURS * 60)]
        batch = parse_score_batch(items, "t", T0)
        assert store.add_platform_scores(batch.platform) == HOURS * 60
        now = T0 + HOURS * 60 * MIN
        status = engine.status("t", "ml-models-churn-drift", now_ns=now)
        assert (status["good"], status["total"]) == (HOURS * 60 - len(DRIFT), HOURS * 60)
        # The 60 bad reports spend the budget: 60 events of it, by the same measure as any SLO.
        budget = status["error_budget"]
        assert budget["spent_events"] == len(DRIFT)
        assert budget["remaining_ratio"] == pytest.approx(1 - len(DRIFT) / budget["total_events"])
        assert status["burn_rates"]["6h"] == pytest.approx((len(DRIFT) / 359) / 0.05)  # the 6 h window holds 359 minutes
        fired = AlertEvaluator(engine, store, "t").evaluate_once(now_ns=T0 + (DRIFT.start + 45) * MIN)
        page = [r for r in fired if r["slo"] == "ml-models-churn-drift" and r["severity"] == "page"]
        assert page and page[0]["state"] in ("firing", "pending") and page[0]["journey"] is None
        replayed = engine.replay("t", "ml-models-churn-drift", T0, now)
        assert any(a["severity"] == "page" for a in replayed)
        assert all(rfc3339(T0 + DRIFT.start * MIN) <= a["start"] <= rfc3339(T0 + DRIFT.stop * MIN) for a in replayed)
    finally:
        store.close()
