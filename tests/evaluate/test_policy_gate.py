"""The release gate compares policy violation rates: a canary whose agent loops more often fails,
one at the baseline's rate passes (Fisher's exact test on per-run 0/1, as for failure rate)."""

from __future__ import annotations

import time
from pathlib import Path

from aisre.derive.populations import parse_selector
from aisre.evaluate.gate.config import GateConfig
from aisre.evaluate.gate.judge import GateRequest, judge
from aisre.evaluate.policy.service import PolicyService
from aisre.normalize.spans import flatten
from aisre.store.factory import open_store
from tests.policy_traces import agent_run, model, tool

S = 10**9
NOW = time.time_ns()
POLICY = "policies:\n  - name: triage\n    rules:\n      - {name: no-loops, kind: loop, max_repeats: 5}\n"


def _side(store, version: str, runs: int, looping: int, offset: int) -> None:
    every = {i * runs // looping for i in range(looping)} if looping else set()
    spans = []
    for i in range(runs):
        steps = ([tool("read_file", path="/x")] * 6 if i in every else [tool("read_file", path=f"/{i}")]) + [model()]
        run = agent_run(steps, start_ns=NOW - 1800 * S + (offset + i) * S, step_ns=S // 100, version=version)
        spans += run.spans
    flat = flatten(run.request(spans), "t")
    store.submit_spans(flat.table, flat.resources).result(30)


def _judge(store, baseline: str, candidate: str) -> dict:
    request = GateRequest("t", "triage", parse_selector(f"service.version={baseline}"),
                          parse_selector(f"service.version={candidate}"))
    return judge(store, request, GateConfig(), now_ns=NOW)


def test_the_gate_fails_a_canary_whose_violation_rate_rose(tmp_path: Path) -> None:
    store = open_store(f"duckdb:///{tmp_path}/gate.duckdb", retention_days=0)
    try:
        _side(store, "1.0", 200, 4, 0)      # 2 % of runs loop
        _side(store, "1.1", 200, 4, 200)    # the same rate
        _side(store, "2.0", 200, 40, 400)   # 20 %
        before = _judge(store, "1.0", "2.0")
        assert "policy_violation" not in {m["name"] for m in before["metrics"]}  # nothing judged yet
        service = PolicyService(store)
        service.apply("t", POLICY, "tester")
        # Policy sets apply to runs that started after them, and to older runs the first set.
        while service.judge_pending("t"):
            pass
        worse = _judge(store, "1.0", "2.0")
        metric = {m["name"]: m for m in worse["metrics"]}["policy_violation"]
        assert (metric["classification"], metric["test"], metric["critical"]) == ("High", "fisher", True), metric
        assert worse["verdict"] == "fail"
        assert "policy_violation" in str(worse["failed_metrics"])
        same = _judge(store, "1.0", "1.1")
        assert {m["name"]: m for m in same["metrics"]}["policy_violation"]["classification"] == "Pass"
        assert same["verdict"] == "pass", same["reasons"]
    finally:
        store.close()


SLOS = """
slos:
  - name: triage-policy
    journey: triage
    objective: 95
    window: 28d
    sli: {kind: score, score: policy_violation, max: 0}
    diagnostic: true
  - name: triage-guardrail-trips
    journey: triage
    objective: 99
    window: 28d
    sli: {kind: score, score: guardrail_trip, max: 0}
    diagnostic: true
"""


def test_violation_and_guardrail_trip_rates_are_slos(tmp_path: Path) -> None:
    """A diagnostic score SLO counts runs without a deny violation as good; a late span that
    adds a violation moves the run from good to bad."""
    from aisre.evaluate.slo import SloEngine
    from aisre.evaluate.specs import specs_from_text
    from tests.policy_traces import guardrail

    store = open_store(f"duckdb:///{tmp_path}/slo.duckdb", retention_days=0)
    try:
        service = PolicyService(store)
        service.apply("t", POLICY, "tester")
        engine = SloEngine(store)
        engine.apply("t", specs_from_text(SLOS))
        spans, late_run = [], None
        for i in range(20):
            looping = i < 2
            steps = [tool("read_file", path="/x")] * (6 if looping else 1) + [guardrail(tripped=i < 5), model()]
            run = agent_run(steps, start_ns=NOW - 600 * S + i * S, step_ns=S // 100)
            if i == 19:
                late_run = run
                spans += run.spans[:-1]  # its last model call arrives later
            else:
                spans += run.spans
        flat = flatten(run.request(spans), "t")
        store.submit_spans(flat.table, flat.resources).result(30)
        while service.judge_pending("t"):
            pass
        store.flush_rollups()
        status = engine.status("t", "triage-policy", NOW)
        assert (status["good"], status["total"]) == (18, 20)
        assert not status["carries_budget"]
        trips = engine.status("t", "triage-guardrail-trips", NOW)
        assert (trips["good"], trips["total"]) == (15, 20)
        # Late: run 19 gets a sixth identical read, which is a loop now.
        assert late_run is not None
        extra = agent_run([tool("read_file", path="/x")] * 6, start_ns=NOW - 600 * S + 19 * S, step_ns=S // 100)
        for span in extra.spans[2:]:
            span.trace_id = bytes.fromhex(late_run.trace_id)
            span.parent_span_id = late_run.spans[1].span_id
        flat = flatten(run.request([late_run.spans[-1], *extra.spans[2:]]), "t")
        store.submit_spans(flat.table, flat.resources).result(30)
        while service.judge_pending("t"):
            pass
        store.flush_rollups()
        status = engine.status("t", "triage-policy", NOW)
        assert (status["good"], status["total"]) == (17, 20)
    finally:
        store.close()
