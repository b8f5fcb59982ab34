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
