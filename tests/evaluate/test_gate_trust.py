"""Gate judgements on data with known truth: rare failures as proportions, score directions, the
default error-budget policy, and insufficient data (issue 12). Real DuckDB store throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aisre.derive.populations import parse_selector
from aisre.evaluate.gate.classifier import (
    Classification,
    Direction,
    MannWhitneyClassifier,
    MetricSettings,
)
from aisre.evaluate.gate.config import GateConfig, parse_gate_config
from aisre.evaluate.gate.judge import GateRequest, judge
from aisre.evaluate.gate.proportion import FisherClassifier, is_binary
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import load_specs
from aisre.store.duckdb import DuckDBStore
from tests.evaluate.gate_factory import ingest, runs_request

S = 10**9
NOW = time.time_ns()
START = NOW - 1800 * S  # the gate window is the last hour


def _every(n: int, k: int) -> set[int]:
    """``k`` failing runs spread evenly over ``n``."""
    return {i * n // k for i in range(k)}


def _side(store: DuckDBStore, version: str, n: int, *, seed: int = 11, journey: str = "ask", **kw: Any) -> None:
    """``n`` runs; equal seeds give equal latencies, tokens and groundedness on both sides."""
    ingest(store, runs_request(n, version=version, start_ns=START, rng=np.random.default_rng(seed),
                               journey=journey, **kw))


def _judge(store: DuckDBStore, baseline: str, candidate: str, config: GateConfig | None = None,
           journey: str = "ask", **kw: Any) -> dict[str, Any]:
    request = GateRequest("t", journey, parse_selector(f"service.version={baseline}"),
                          parse_selector(f"service.version={candidate}"))
    return judge(store, request, config or GateConfig(), now_ns=NOW, **kw)


def _metrics(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in doc["metrics"]}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path_factory.mktemp("trust") / "trust.duckdb"))
    # Rare failures: 1 % (4 of 400) against 4 % (16 of 400), and 1 % against 1 % elsewhere.
    _side(s, "r1", 400, failures=_every(400, 4))
    _side(s, "r4", 400, failures=_every(400, 16))
    _side(s, "r1b", 400, failures={i + 3 for i in _every(400, 4)})
    # Hallucination ~0.1 in the baseline, a constant 1.0 in the candidate.
    base_h = {"hallucination": lambda i: 0.05 + 0.1 * ((i * 37) % 100) / 100}
    _side(s, "h-base", 200, scores=base_h)
    _side(s, "h-const", 200, scores={"hallucination": lambda i: 1.0})
    # Groundedness dropping and rising (one draw per run either way, so the rest stays equal).
    _side(s, "g-drop", 200, groundedness=lambda r: float(r.uniform(0.45, 0.75)))
    _side(s, "g-rise", 200, groundedness=lambda r: float(r.uniform(0.92, 1.0)))
    # A score of unknown meaning, equal on both sides.
    _side(s, "u-base", 60, scores={"zorblax": lambda i: float(i % 7)})
    _side(s, "u-cand", 60, scores={"zorblax": lambda i: float(i % 7)})
    # Sparse data: 5 candidate runs; groundedness on only 3 of 60 candidate runs.
    _side(s, "few", 5)
    _side(s, "sparse", 60, groundedness=None, scores={"groundedness": lambda i: 0.85 if i < 3 else None})
    _side(s, "sparse-bad", 60, groundedness=None, failures=set(range(0, 60, 3)),
          scores={"groundedness": lambda i: 0.85 if i < 3 else None})
    yield s
    s.close()


# --- 2. rates are proportions -------------------------------------------------------------------


def test_rare_failures_fail_the_gate(store: DuckDBStore) -> None:
    doc = _judge(store, "r1", "r4")
    assert doc["verdict"] == "fail" and doc["exit_code"] == 1, doc["reasons"]
    m = _metrics(doc)
    outcome = m["outcome"]
    assert outcome["test"] == "fisher" and outcome["classification"] == "High" and outcome["critical"]
    rates = outcome["rates"]
    assert rates["baseline"] == {"count": 4, "runs": 400, "rate": 0.01}
    assert rates["candidate"] == {"count": 16, "runs": 400, "rate": 0.04}
    assert rates["ratio"] == pytest.approx(4.0)
    # Fisher's exact one-sided p for 16/400 against 4/400, as scipy computes it (and R's fisher.test).
    assert outcome["p_value"] == pytest.approx(0.0054107, rel=1e-4)
    assert rates["alpha"] == pytest.approx(0.01)  # (1 - 0.98) / 2: the rank-sum interval's error per side
    assert outcome["counts"] == {"baseline": 400, "candidate": 400, "needed": 20}
    assert "16/400 (4.00%) against 4/400 (1.00%)" in outcome["reason"]
    # Everything else is equal: the same latencies, tokens and groundedness.
    assert {name: x["classification"] for name, x in m.items() if name != "outcome"} == {
        "latency": "Pass", "cost": "Pass", "tokens": "Pass", "groundedness": "Pass"}
    assert doc["failed_metrics"] == ["outcome"]
    assert m["latency"]["test"] == "mann-whitney"
    assert sum(outcome["distribution"]["candidate"]) == 400 and len(outcome["distribution"]["candidate"]) == 2


def test_equal_failure_rates_pass(store: DuckDBStore) -> None:
    doc = _judge(store, "r1", "r1b")  # 4 of 400 on each side, at other runs
    assert doc["verdict"] == "pass" and doc["exit_code"] == 0, doc["reasons"]
    outcome = _metrics(doc)["outcome"]
    assert outcome["classification"] == "Pass" and outcome["rates"]["ratio"] == pytest.approx(1.0)
    assert outcome["p_value"] > 0.5


def test_batches_of_ten_hid_what_fisher_sees() -> None:
    """The old judgement, failure ratios per batch of 10 runs through the rank test, passed 1 % vs 4 %
    when the candidate's failures came in bursts: 4 batches hold failures on each side."""
    base, cand = np.zeros(400), np.zeros(400)
    base[[5, 105, 205, 305]] = 1.0
    for k in range(4):
        cand[100 * k: 100 * k + 4] = 1.0
    settings = MetricSettings(direction=Direction.INCREASE, critical=True)
    # (x10 as the judge rescaled values below 1)
    batches = MannWhitneyClassifier(tolerance=0.25, confidence=0.98).classify(
        "outcome", base.reshape(40, 10).mean(axis=1) * 10, cand.reshape(40, 10).mean(axis=1) * 10, settings)
    assert batches.classification is Classification.PASS
    per_run = FisherClassifier(confidence=0.98).classify("outcome", base, cand, settings)
    assert per_run.classification is Classification.HIGH and per_run.critical


def test_fisher_classifier_directions_and_effect_sizes() -> None:
    base = np.array([1.0] * 10 + [0.0] * 190)
    worse = np.array([1.0] * 30 + [0.0] * 170)
    fisher = FisherClassifier(confidence=0.98)
    assert fisher.classify("x", base, worse, MetricSettings(direction=Direction.INCREASE)).classification is Classification.HIGH
    # A lower rate is no failure when only an increase is bad; it is Low when either way is.
    assert fisher.classify("x", worse, base, MetricSettings(direction=Direction.INCREASE)).classification is Classification.PASS
    assert fisher.classify("x", worse, base, MetricSettings(direction=Direction.EITHER)).classification is Classification.LOW
    # allowed_increase: tripling is within 4x.
    lenient = MetricSettings(direction=Direction.INCREASE, allowed_increase=4.0)
    assert fisher.classify("x", base, worse, lenient).classification is Classification.PASS
    # Critical only beyond critical_increase.
    crit = MetricSettings(direction=Direction.INCREASE, critical=True, critical_increase=5.0)
    got = fisher.classify("x", base, worse, crit)
    assert got.classification is Classification.HIGH and not got.critical
    assert got.rates is not None and (got.rates.baseline_count, got.rates.candidate_count) == (10, 30)
    # From none to some is a failure even though the ratio is undefined.
    assert fisher.classify("x", np.zeros(200), worse, crit).critical
    assert is_binary(base, np.array([np.nan, 1.0])) and not is_binary(base, np.array([0.5]))


# --- 3. score directions ------------------------------------------------------------------------


def test_constant_hallucination_fails(store: DuckDBStore) -> None:
    doc = _judge(store, "h-base", "h-const")
    assert doc["verdict"] == "fail" and doc["exit_code"] == 1, doc["reasons"]
    h = _metrics(doc)["hallucination"]
    assert (h["direction"], h["better"], h["direction_from"]) == ("increase", "lower", "score name")
    assert h["classification"] == "High" and h["critical"] and h["test"] == "mann-whitney"
    assert h["baseline"]["mean"] == pytest.approx(0.0995, abs=1e-3) and h["candidate"]["mean"] == 1.0
    assert "hallucination" in doc["failed_metrics"]
    assert not any("hallucination" in n for n in doc["notes"])  # a known name: nothing assumed


def test_groundedness_dropping_fails_and_rising_does_not(store: DuckDBStore) -> None:
    drop = _judge(store, "r1", "g-drop")
    g = _metrics(drop)["groundedness"]
    assert (g["direction"], g["better"], g["direction_from"]) == ("decrease", "higher", "score name")
    assert g["classification"] == "Low" and g["critical"]  # 0.85 → 0.60: beyond the 10 % critical drop
    assert drop["verdict"] == "fail" and drop["exit_code"] == 1 and drop["failed_metrics"] == ["groundedness"]

    rise = _judge(store, "r1", "g-rise")
    g = _metrics(rise)["groundedness"]
    assert g["classification"] == "Pass" and g["candidate"]["mean"] > g["baseline"]["mean"] + 0.1
    assert rise["verdict"] == "pass" and rise["exit_code"] == 0, rise["reasons"]


def test_a_declared_direction_wins_and_unknown_names_are_reported(store: DuckDBStore) -> None:
    # Declared "lower is better", groundedness rising is now the failure.
    config = parse_gate_config("metrics:\n  scores:\n    groundedness: {better: lower}\n")
    doc = _judge(store, "r1", "g-rise", config)
    g = _metrics(doc)["groundedness"]
    assert (g["direction"], g["direction_from"], g["classification"]) == ("increase", "gate file", "High")
    assert not g["critical"]  # the name's defaults do not apply against a declared direction
    # Declaring what the name says keeps the name's critical default.
    config = parse_gate_config("metrics:\n  scores:\n    groundedness: {better: higher}\n")
    g = _metrics(_judge(store, "r1", "g-drop", config))["groundedness"]
    assert (g["direction_from"], g["classification"], g["critical"]) == ("gate file", "Low", True)

    doc = _judge(store, "u-base", "u-cand")
    z = _metrics(doc)["zorblax"]
    assert (z["direction"], z["direction_from"]) == ("decrease", "assumed")
    assert doc["verdict"] == "pass"
    assert any("score 'zorblax': direction not declared" in n and "assumed higher is better" in n for n in doc["notes"])
    config = parse_gate_config("metrics:\n  scores:\n    '*': {better: lower}\n")
    z = _metrics(_judge(store, "u-base", "u-cand", config))["zorblax"]
    assert (z["direction"], z["direction_from"]) == ("increase", "gate file (*)")


# --- 1. the default error-budget policy -----------------------------------------------------------

SLOS = """
slos:
  - name: ask-success
    journey: ask
    objective: 99.5
    window: 7d
    sli: {kind: outcome}
    tier: 0
"""


@pytest.fixture(scope="module")
def exhausted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBStore, SloEngine]]:
    """A 7-day tier-0 SLO of ``ask`` with 26 hours of runs at 20 % failures (every 5th run), then two
    equal releases within the last hour: the budget is spent under any reading of a young window."""
    tmp = tmp_path_factory.mktemp("policy")
    s = DuckDBStore(str(tmp / "policy.duckdb"))
    old = runs_request(312, version="1.3", start_ns=NOW - 26 * 3600 * S, rng=np.random.default_rng(1),
                       failures=set(range(0, 312, 5)), spacing_ns=300 * S)
    ingest(s, old)
    _side(s, "1.4", 60)
    _side(s, "1.5", 60)
    s.flush_rollups()
    spec = tmp / "slos.yaml"
    spec.write_text(SLOS)
    engine = SloEngine(s)
    engine.apply("t", load_specs([spec]))
    yield s, engine
    s.close()


def test_exhausted_tier_0_budget_blocks_by_default(exhausted: tuple[DuckDBStore, SloEngine]) -> None:
    store, engine = exhausted
    status = engine.status("t", "ask-success", NOW)
    remaining = status["error_budget"]["remaining_ratio"]
    assert status["status"] in ("exhausted", "page", "ticket") and remaining < -1
    doc = _judge(store, "1.4", "1.5", slo_statuses=lambda: engine.statuses("t", NOW))
    assert doc["verdict"] == "fail" and doc["exit_code"] == 1
    assert doc["failed_metrics"] == []  # the two releases are equal: the policy alone blocks
    p = doc["policy"]
    assert (p["enabled"], p["default"], p["source"], p["blocked"]) == (True, True, "defaults", True)
    assert p["summary"] == "tier-0-budget (defaults)" and p["rules"][0]["tiers"] == [0]
    assert doc["reasons"][0] == (
        f"policy 'tier-0-budget': ask-success (tier 0) error budget exhausted ({remaining:.1%} left)")
    # A fix may go.
    request = GateRequest("t", "ask", parse_selector("service.version=1.4"), parse_selector("service.version=1.5"),
                          fix=True)
    fixed = judge(store, request, GateConfig(), lambda: engine.statuses("t", NOW), now_ns=NOW)
    assert fixed["verdict"] == "pass" and fixed["policy"]["findings"][0]["outcome"] == "waived"


@pytest.mark.parametrize("switch", ["policy: off", "policy: []", "policy: false"])
def test_policy_switched_off_in_the_gate_file(exhausted: tuple[DuckDBStore, SloEngine], switch: str) -> None:
    store, engine = exhausted
    config = parse_gate_config(switch + "\n", "gate.yaml")
    doc = _judge(store, "1.4", "1.5", config, slo_statuses=lambda: engine.statuses("t", NOW))
    assert doc["verdict"] == "pass" and doc["exit_code"] == 0, doc["reasons"]
    p = doc["policy"]
    assert (p["enabled"], p["default"], p["source"], p["blocked"], p["findings"]) == (False, False, "gate.yaml", False, [])
    assert p["summary"] == "off (gate.yaml)"
    assert "error-budget policy is off (gate.yaml)" in doc["notes"]


def test_a_gate_file_without_policy_keeps_the_default(exhausted: tuple[DuckDBStore, SloEngine]) -> None:
    store, engine = exhausted
    config = parse_gate_config("judge: {min_runs: 30}\n", "gate.yaml")
    doc = _judge(store, "1.4", "1.5", config, slo_statuses=lambda: engine.statuses("t", NOW))
    assert doc["verdict"] == "fail" and doc["policy"]["default"] and doc["policy"]["blocked"]


# --- 4. insufficient data -------------------------------------------------------------------------


@pytest.mark.parametrize(("candidate", "runs"), [("none-at-all", 0), ("few", 5)])
def test_too_few_candidate_runs_is_insufficient_data(store: DuckDBStore, candidate: str, runs: int) -> None:
    doc = _judge(store, "r1", candidate)
    assert doc["verdict"] == "insufficient_data" and doc["exit_code"] == 3 and doc["score"] is None
    assert doc["insufficient_data"] == [{"metric": "runs", "baseline": 400, "candidate": runs, "needed": 20}]
    assert doc["reasons"] == [f"candidate has {runs} run{'s' if runs != 1 else ''}; at least 20 needed"]
    outcome = _metrics(doc)["outcome"]
    assert outcome["classification"] == "InsufficientData" and outcome["test"] is None and outcome["rates"] is None
    assert outcome["counts"] == {"baseline": 400, "candidate": runs, "needed": 20}


def test_a_metric_with_too_few_values_is_insufficient_data(store: DuckDBStore) -> None:
    doc = _judge(store, "r1", "sparse")
    assert doc["verdict"] == "insufficient_data" and doc["exit_code"] == 3 and doc["score"] is None
    g = _metrics(doc)["groundedness"]
    assert g["classification"] == "InsufficientData" and g["counts"] == {"baseline": 400, "candidate": 3, "needed": 20}
    assert doc["insufficient_data"] == [{"metric": "groundedness", "baseline": 400, "candidate": 3, "needed": 20}]
    assert "groundedness: candidate has 3 runs with a value; at least 20 needed" in doc["reasons"]
    # Judged as failed (critical by name) it would fail; judged as Pass it would pass.
    assert doc["score_range"] == {"low": 0.0, "high": 100.0}
    assert all(m["classification"] == "Pass" for m in doc["metrics"] if m["name"] != "groundedness")


def test_missing_data_that_cannot_change_the_verdict_does_not_hold_it(store: DuckDBStore) -> None:
    doc = _judge(store, "r1", "sparse-bad")  # 20 of 60 runs failed: a critical failure already
    assert doc["verdict"] == "fail" and doc["exit_code"] == 1
    assert doc["failed_metrics"] == ["outcome"]
    assert doc["insufficient_data"][0]["metric"] == "groundedness"
    assert any(n.startswith("groundedness: candidate has 3 runs") and "either way the verdict is fail" in n
               for n in doc["notes"])


def test_per_metric_minimum_and_must_have_data(store: DuckDBStore) -> None:
    config = parse_gate_config("metrics:\n  scores:\n    groundedness: {min_runs: 3}\n")
    doc = _judge(store, "r1", "sparse", config)
    assert doc["verdict"] == "pass" and _metrics(doc)["groundedness"]["classification"] == "Pass"
    # must_have_data: a score that is not there at all fails, as in Kayenta.
    config = parse_gate_config("metrics:\n  scores:\n    hallucination: {must_have_data: true, critical: false}\n")
    doc = _judge(store, "h-base", "r1", config)
    h = _metrics(doc)["hallucination"]
    assert h["classification"] == "NodataFailMetric" and h["counts"]["candidate"] == 0
    assert doc["verdict"] != "pass"


def test_gate_file_fields(tmp_path: Path) -> None:
    config = parse_gate_config(
        "judge: {outcome_batch: 10}\n"
        "metrics:\n  outcome: {test: fisher, allowed_increase: 1.5}\n"
        "  scores:\n    thumbs: {better: higher, min_runs: 5}\n"
    )
    assert config.metrics["outcome"].test.value == "fisher"
    assert config.score_config("thumbs").min_runs == 5
    assert config.score_config("thumbs").settings.direction is Direction.DECREASE
    assert any("outcome_batch is no longer used" in n for n in config.notes)
    assert config.policy_source == "defaults" and config.policy[0].name == "tier-0-budget"
