"""The demo's agent scenarios against the demo policy: a looping canary and a refunding agent
show up as the violations they were built to cause, and the default traffic has none."""

from __future__ import annotations

from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from aisre.demo.runner import run
from aisre.evaluate.policy.actions import group_traces, run_actions
from aisre.evaluate.policy.engine import evaluate_run
from aisre.evaluate.policy.spec import load_policy_files
from aisre.normalize.spans import flatten

from .receiver import OtlpReceiver
from .test_runner import FAST

POLICY = Path(str(resources.files("aisre.demo").joinpath("policy.yaml")))


def _judged(receiver: OtlpReceiver) -> list[tuple[str, str | None, Counter[str]]]:
    """Per triage run: its version, and its violations by rule."""
    policies = load_policy_files([POLICY])
    rows = flatten(receiver.merged(), tenant="t").table.to_pylist()
    out = []
    for trace_id, spans in group_traces(rows).items():
        root = next(s for s in spans if s["is_root"])
        acts = run_actions({"trace_id": trace_id}, spans, "t")
        if acts.context.journey != "triage-agent":
            continue
        verdict = evaluate_run(policies, acts.context, acts.actions)
        out.append((trace_id, root["service_version"], Counter(v.rule for v in verdict.violations)))
    return out


def _run(receiver: OtlpReceiver, **kw: Any) -> list[tuple[str, str | None, Counter[str]]]:
    stats = run(receiver.endpoint, duration_s=2.0, seed=5, failure_rate=0.0, rate_limit_rate=0.0, **{**FAST, **kw})
    assert stats.crashed == 0
    return _judged(receiver)


def test_default_triage_traffic_keeps_the_demo_policy(receiver: OtlpReceiver) -> None:
    runs = _run(receiver, agent_share=0.5)
    assert len(runs) > 10
    assert [r for r in runs if r[2]] == []


def test_the_canary_loops_and_the_stable_version_does_not(receiver: OtlpReceiver) -> None:
    runs = _run(receiver, scenario="agent-loop")
    canary = [r for r in runs if r[1] == "1.5.0"]
    stable = [r for r in runs if r[1] != "1.5.0"]
    assert canary and stable
    looping = [r for r in canary if r[2]["no-loops"]]
    assert 0 < len(looping) < len(canary)  # about half of the canary's runs
    assert all(r[2]["no-loops"] == 1 for r in looping)  # eight identical look-ups: one violation
    assert not any(r[2] for r in stable)


def test_refunds_are_denied(receiver: OtlpReceiver) -> None:
    runs = _run(receiver, scenario="agent-denied-tool")
    refunding = [r for r in runs if r[2]]
    assert refunding and len(refunding) < len(runs)
    assert all(set(r[2]) == {"no-refunds", "known-tools"} for r in refunding)
