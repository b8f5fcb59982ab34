"""The canary judge over a real store: populations by attribute, verdicts, exit codes, history."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from aisre.core.errors import PermanentError
from aisre.derive.populations import parse_selector
from aisre.evaluate.gate.config import GateConfig, parse_gate_config
from aisre.evaluate.gate.judge import GateRequest, judge, judge_and_record
from aisre.store.duckdb import DuckDBStore
from tests.evaluate.gate_factory import ingest, runs_request

S = 10**9


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> DuckDBStore:
    """Stable 1.4 (200 runs), a worse 1.5 (60 runs: less grounded, more tokens, failures) and an
    identical 1.6 (60 runs), all within the last hour, plus a 1.7 with 5 runs."""
    s = DuckDBStore(str(tmp_path_factory.mktemp("gate") / "g.duckdb"))
    rng = np.random.default_rng(42)
    start = time.time_ns() - 1800 * S
    ingest(s, runs_request(200, version="1.4", start_ns=start, rng=rng, canary=False))
    ingest(s, runs_request(
        60, version="1.5", start_ns=start + 10 * S, rng=rng, canary=True,
        input_tokens=lambda r: int(r.normal(1400, 60)),
        groundedness=lambda r: float(r.uniform(0.45, 0.75)),
        failure_rate=0.2,
    ))
    ingest(s, runs_request(60, version="1.6", start_ns=start + 20 * S, rng=rng))
    ingest(s, runs_request(5, version="1.7", start_ns=start + 30 * S, rng=rng))
    yield s
    s.close()


def _req(baseline: str, candidate: str, **kw: object) -> GateRequest:
    return GateRequest("t", "ask", parse_selector(baseline), parse_selector(candidate), **kw)  # type: ignore[arg-type]


def test_worse_candidate_fails_naming_the_metrics(store: DuckDBStore) -> None:
    doc = judge(store, _req("service.version=1.4", "service.version=1.5"), GateConfig())
    assert doc["verdict"] == "fail" and doc["exit_code"] == 1
    assert (doc["baseline"]["runs"], doc["candidate"]["runs"]) == (200, 60)
    by_name = {m["name"]: m for m in doc["metrics"]}
    assert by_name["groundedness"]["classification"] == "Low"
    assert by_name["cost"]["classification"] == "High"
    assert by_name["tokens"]["classification"] == "High"
    assert by_name["outcome"]["classification"] == "High"
    assert by_name["latency"]["classification"] == "Pass"
    assert {"groundedness", "cost", "outcome"} <= set(doc["failed_metrics"])
    # The outcome metric is critical by default: its failure zeroes the score.
    assert doc["score"] == 0.0
    assert any("groundedness" in r for r in doc["reasons"])
    ci, cost = by_name["cost"]["interval"], by_name["cost"]
    assert 0 < ci["lower"] <= ci["estimate"] <= ci["upper"]
    # USD per run is ~1e-4: judged rescaled, so the interval is not as wide as the root finder's step.
    assert ci["upper"] - ci["lower"] < 0.5 * (cost["candidate"]["mean"] - cost["baseline"]["mean"])
    assert by_name["cost"]["candidate"]["mean"] > by_name["cost"]["baseline"]["mean"]
    dist = by_name["groundedness"]["distribution"]
    assert sum(dist["baseline"]) == 200 and sum(dist["candidate"]) == 60


def test_same_behaviour_passes(store: DuckDBStore) -> None:
    doc = judge(store, _req("service.version=1.4", "service.version=1.6"), GateConfig())
    assert doc["verdict"] == "pass", doc["reasons"]
    assert doc["exit_code"] == 0 and doc["score"] == 100.0 and doc["failed_metrics"] == []


def test_too_few_runs_is_not_enough_data(store: DuckDBStore) -> None:
    doc = judge(store, _req("service.version=1.4", "service.version=1.7"), GateConfig())
    assert doc["verdict"] == "insufficient_data" and doc["exit_code"] == 3
    assert doc["score"] is None and doc["failed_metrics"] == []
    assert doc["reasons"] == ["candidate has 5 runs; at least 20 needed"]
    assert doc["insufficient_data"] == [{"metric": "runs", "baseline": 200, "candidate": 5, "needed": 20}]
    # Every metric is shown with its counts, none tested.
    by_name = {m["name"]: m for m in doc["metrics"]}
    assert by_name["outcome"]["classification"] == "InsufficientData" and by_name["outcome"]["test"] is None
    assert by_name["groundedness"]["counts"] == {"baseline": 200, "candidate": 5, "needed": 20}


def test_without_critical_outcome_the_score_is_weighted(store: DuckDBStore) -> None:
    # groundedness is a known score, critical beyond a 10 % drop by default: made plain here.
    config = parse_gate_config(
        "metrics:\n  outcome: {critical: false}\n  tokens: {muted: true}\n"
        "  scores:\n    groundedness: {critical: false}\n"
    )
    doc = judge(store, _req("service.version=1.4", "service.version=1.5"), config)
    groups = {g["name"]: g["score"] for g in doc["groups"]}
    # errors 0, latency 100, cost 0 (cost High; tokens muted), quality 0: equal shares of 25.
    assert groups == {"errors": 0.0, "latency": 100.0, "cost": 0.0, "quality": 0.0}
    assert doc["score"] == 25.0 and doc["verdict"] == "fail"
    assert "tokens" not in doc["failed_metrics"]


def test_marginal_between_thresholds(store: DuckDBStore) -> None:
    # Muted metrics leave the score (so do their groups); only quality fails, and it weighs 20 of
    # 100: 80 is marginal (75 ≤ 80 < 95).
    config = parse_gate_config(
        "judge:\n  group_weights: {latency: 80, quality: 20}\n"
        "metrics:\n  outcome: {critical: false, muted: true}\n  cost: {muted: true}\n  tokens: {muted: true}\n"
        "  scores:\n    groundedness: {critical: false}\n"
    )
    doc = judge(store, _req("service.version=1.4", "service.version=1.5"), config)
    assert doc["score"] == 80.0
    assert doc["verdict"] == "marginal" and doc["exit_code"] == 2
    assert doc["failed_metrics"] == ["groundedness"]


def test_selection_by_a_canary_flag_attribute(store: DuckDBStore) -> None:
    doc = judge(store, _req("aisre.canary=false", "aisre.canary=true"), GateConfig())
    assert (doc["baseline"]["runs"], doc["candidate"]["runs"]) == (200, 60)
    assert doc["verdict"] == "fail"


def test_window_excludes_older_runs(store: DuckDBStore) -> None:
    now = time.time_ns()
    doc = judge(store, _req("service.version=1.4", "service.version=1.6", since_ns=now - 60 * S), GateConfig())
    assert doc["verdict"] == "insufficient_data" and doc["baseline"]["runs"] == 0


def test_verdicts_are_kept_per_journey(store: DuckDBStore) -> None:
    doc = judge_and_record(store, _req("service.version=1.4", "service.version=1.5"), GateConfig())
    history = store.list_gate_verdicts("t", "ask")
    assert history[0]["id"] == doc["id"] and history[0]["verdict"] == "fail"
    assert history[0]["candidate"] == "service.version=1.5"
    assert store.get_gate_verdict("t", doc["id"])["failed_metrics"] == doc["failed_metrics"]
    assert store.list_gate_verdicts("t", "other") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "baseline is required"),
        ("service.version", "must be key=value"),
        ("a b=1", "may only hold"),
    ],
)
def test_bad_selectors_are_refused(text: str, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        parse_selector(text, "baseline")


def test_store_file_for_history_reopens(tmp_path: Path) -> None:
    s = DuckDBStore(str(tmp_path / "h.duckdb"))
    vid = s.save_gate_verdict({
        "tenant": "t", "journey": "ask", "baseline": "a=1", "candidate": "a=2", "verdict": "pass", "score": 100.0,
        "baseline_runs": 30, "candidate_runs": 30, "decided_ns": 1, "document": {"verdict": "pass"},
    })
    s.close()
    s = DuckDBStore(str(tmp_path / "h.duckdb"))
    assert s.get_gate_verdict("t", vid) == {"verdict": "pass", "id": vid}
    s.close()
