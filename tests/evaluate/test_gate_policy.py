"""The error-budget policy step and the gate file loader's errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aisre.core.slo import SpecValidationError
from aisre.evaluate.gate.classifier import Direction
from aisre.evaluate.gate.config import load_gate_config, parse_gate_config
from aisre.evaluate.gate.policy import PolicyRule, SloSelector, apply_policy


def _slo(name: str, tier: int | None, remaining: float | None, journey: str = "ask", **kw: Any) -> dict[str, Any]:
    status = "no_data" if remaining is None else ("exhausted" if remaining <= 0 else "ok")
    return {"name": name, "journey": journey, "tier": tier, "status": status, "carries_budget": True,
            "error_budget": {"remaining_ratio": remaining}, **kw}


TIER0 = PolicyRule("tier-0-budget", SloSelector(tiers=(0,)))


def test_exhausted_tier_0_budget_blocks() -> None:
    result = apply_policy([TIER0], "ask", [_slo("ask-success", 0, -0.4), _slo("ask-latency", 1, -1.0)])
    assert result.blocked
    # The message names the SLO and the budget left.
    assert result.reasons == ["policy 'tier-0-budget': ask-success (tier 0) error budget exhausted (-40.0% left)"]


def test_a_fix_passes_the_policy_step() -> None:
    result = apply_policy([TIER0], "ask", [_slo("ask-success", 0, 0.0)], fix=True)
    assert not result.blocked and result.findings[0].outcome == "waived"
    strict = PolicyRule("strict", SloSelector(tiers=(0,)), allow_fix=False)
    assert apply_policy([strict], "ask", [_slo("ask-success", 0, 0.0)], fix=True).blocked


def test_what_does_not_block() -> None:
    slos = [
        _slo("ask-success", 0, 0.3),                       # budget left
        _slo("ask-new", 0, None),                          # no data yet
        _slo("triage-success", 0, -1.0, journey="triage"),  # another journey
        _slo("ask-cost", 0, -1.0, carries_budget=False),   # diagnostic: no budget to spend
    ]
    result = apply_policy([TIER0], "ask", slos)
    assert not result.blocked
    assert {f.slo: f.outcome for f in result.findings} == {"ask-success": "ok", "ask-new": "no_data"}


def test_minimum_remaining_and_names() -> None:
    rule = PolicyRule("keep-20", SloSelector(names=("ask-success",)), min_budget_remaining=0.2)
    assert apply_policy([rule], "ask", [_slo("ask-success", None, 0.15)]).blocked
    assert not apply_policy([rule], "ask", [_slo("ask-success", None, 0.25)]).blocked


def test_gate_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(
        "judge: {confidence: 0.95, min_runs: 50, window: 2h, thresholds: {pass: 90, marginal: 60}}\n"
        "metrics:\n  latency: {allowed_increase: 1.2}\n"
        "  scores:\n    hallucination: {direction: increase, critical: true}\n    '*': {must_have_data: true}\n"
        "policy:\n  - {name: t0, slos: {tier: 0}, journeys: [ask, triage], min_budget_remaining: 10}\n"
    )
    c = load_gate_config(path)
    assert (c.confidence, c.min_runs, c.window.total_seconds(), c.pass_threshold) == (0.95, 50, 7200, 90)
    assert c.metrics["latency"].settings.allowed_increase == 1.2
    assert c.score_config("hallucination").settings.direction is Direction.INCREASE
    assert c.score_config("hallucination").settings.must_have_data  # inherits "*"
    assert c.score_config("groundedness").settings.direction is Direction.DECREASE
    assert c.policy[0].journeys == ("ask", "triage") and c.policy[0].min_budget_remaining == pytest.approx(0.1)


def test_gate_file_errors_name_file_line_and_field() -> None:
    text = (
        "judge:\n"
        "  confidence: 1.5\n"
        "  colour: red\n"
        "metrics:\n"
        "  latency: {direction: up}\n"
        "  scores:\n"
        "    groundedness: {critical: maybe}\n"
        "policy:\n"
        "  - name: t0\n"
        "    slos: {}\n"
    )
    with pytest.raises(SpecValidationError) as info:
        parse_gate_config(text, "gate.yaml")
    assert sorted((e.line, str(e)) for e in info.value.errors) == [(int(s.split(":")[1]), s) for s in [
        "gate.yaml:2: judge.confidence: must be at least 0.5 and below 1 (got 1.5)",
        "gate.yaml:3: judge.colour: unknown field; allowed: confidence, tolerance, min_runs, window, "
        "outcome_batch, thresholds, group_weights",
        "gate.yaml:5: metrics.latency.direction: must be one of increase, decrease, either (got 'up')",
        "gate.yaml:7: metrics.scores.groundedness.critical: must be true or false (got text ('maybe'))",
        "gate.yaml:10: policy[0].slos.tier: give tier and/or names to say which SLOs the rule covers",
    ]]
