"""The demo canary judged end to end: simulated service → OTel SDK → live server → /api/gate.

An accelerated clock (time_scale) runs a few minutes of traffic in seconds. The canary (1.5.0)
uses a longer, less grounded prompt; the gate must fail it naming groundedness and cost. A canary
that only differs by version passes; a canary with a handful of runs is "insufficient data".
"""

from __future__ import annotations

import time

import httpx

from aisre.demo.runner import run
from aisre.demo.scenarios import SCENARIOS
from tests.conftest import ServerProcess

FAST = {"rate_per_s": 80.0, "time_scale": 0.02, "workers": 8, "export_delay_ms": 100}


def _gate(server: ServerProcess, candidate: str) -> dict:
    return httpx.get(server.url + "/api/gate", params={
        "journey": "ask", "baseline": "service.version=1.4.2", "candidate": candidate}, timeout=60).json()


def _wait_for(server: ServerProcess, candidate: str, runs: int) -> None:
    deadline = time.monotonic() + 30
    while _gate(server, candidate)["candidate"]["runs"] < runs:
        assert time.monotonic() < deadline, f"{candidate}: runs did not arrive"
        time.sleep(0.3)


def test_demo_canary_fails_on_groundedness_and_cost(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "canary.duckdb", "--grpc-port", "0")
    endpoint = server.url + "/v1/traces"
    canary = SCENARIOS["canary"]
    stats = run(endpoint, duration_s=5.0, seed=5, scenario=canary, canary_share=0.35, **FAST)
    assert stats.crashed == 0
    # The same canary, identical to the stable replica but for its version.
    twin = canary.with_knobs(
        canary_version="1.5.1", canary_prompt_version=None, canary_prompt_tokens_factor=None,
        canary_failure_rate=0.0, canary_groundedness_drop=0.0, canary_share=0.35,
    )
    run(endpoint, duration_s=5.0, seed=6, scenario=twin, **FAST)
    # A canary that has barely started.
    run(endpoint, duration_s=0.5, seed=7, scenario=canary.with_knobs(canary_version="1.5.2", canary_share=0.05), **FAST)
    _wait_for(server, "service.version=1.5.1", 25)

    bad = _gate(server, "service.version=1.5.0")
    assert bad["candidate"]["runs"] >= 25, bad["candidate"]
    assert bad["verdict"] == "fail" and bad["exit_code"] == 1, bad["reasons"]
    assert {"groundedness", "cost"} <= set(bad["failed_metrics"]), bad["failed_metrics"]
    by_name = {m["name"]: m for m in bad["metrics"]}
    assert by_name["groundedness"]["classification"] == "Low"
    assert by_name["cost"]["classification"] == "High"
    assert by_name["cost"]["candidate"]["mean"] > by_name["cost"]["baseline"]["mean"]

    good = _gate(server, "service.version=1.5.1")
    assert good["verdict"] == "pass" and good["exit_code"] == 0, [
        (m["name"], m["classification"]) for m in good["metrics"]]

    few = _gate(server, "service.version=1.5.2")
    assert few["candidate"]["runs"] < 20
    assert few["verdict"] == "insufficient_data" and few["exit_code"] == 3 and few["score"] is None
