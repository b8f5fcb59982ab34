"""Each cost scenario of the demo, run for simulated hours against a real server, is explained
with the right cause and a share within ±10 % of what the scenario injected.

A baseline phase (the default scenario) and a current phase (the scenario under test) each
run as their own Demo, so the fake provider's own usage count is the ground truth of each
window. The demo's simulated clock moves traces ~45 simulated minutes per real second, so
a 4 s phase is three simulated hours; arrivals are evenly spaced so that run counts follow
the scenario's traffic factor, not Poisson noise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aisre.core.timefmt import rfc3339
from aisre.demo.provider import ModelUsage
from aisre.demo.runner import Demo
from aisre.demo.scenarios import get_scenario
from aisre.demo.telemetry import SimClock
from aisre.normalize.prices import default_catalog
from tests.conftest import ServerProcess, free_port

pytestmark = pytest.mark.slow

SPEED = 2700.0  # simulated seconds per real second
PHASE_S = 4.0
DAY_NS = 86_400 * 10**9
DAY0 = 1_795_000_000 * 10**9 // DAY_NS * DAY_NS  # a fixed simulated day (2026-11-18)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = Path(tmp_path_factory.mktemp("cost")) / "cost.duckdb"
    proc = ServerProcess(db, free_port(), free_port(), ("--setting", "evaluation_interval_s=0",
                                                          # a fixed simulated day older than the default retention
                                                          "--setting", "retention_days=0")).start()
    yield proc
    proc.stop()


@dataclass
class Phase:
    start_ns: int
    end_ns: int  # the load stopped here (stopping and flushing take a little longer)
    stopped_ns: int  # every journey of the phase has started (and finished) by now
    runs: int
    usage: dict[str, ModelUsage]


def _phase(url: str, clock: SimClock, scenario: str, seed: int, **knobs: object) -> Phase:
    # The ask journey only, and no order look-ups (a second answer in a third of the runs):
    # their randomness is not what the scenarios inject.
    chosen = get_scenario(scenario).with_knobs(agent_share=0.0, tool_call_rate=0.0, **knobs)
    demo = Demo(url, rate_per_s=25, scenario=chosen, seed=seed, time_scale=0.02, workers=32,
                export_delay_ms=100, clock=clock, arrivals="uniform")
    # Read before the load starts: at 2,700 simulated seconds per real one, a journey the load
    # starts a millisecond before this line would fall seconds before the window.
    start = clock.now_ns()
    demo.start()
    demo.wait(PHASE_S)
    end = clock.now_ns()
    stats = demo.stop()
    stopped = clock.now_ns()
    assert stats.crashed == 0 and stats.shed == 0, stats
    return Phase(start, end, stopped, stats.journeys["ask"], stats.provider_usage)


# Three phases' worth of simulated time between the two phases' starts (days apart per test).
PHASE_GAP_NS = int(3 * PHASE_S * SPEED * 1e9)


def _explain(server: ServerProcess, day: int, scenario: str, **knobs: object) -> tuple[dict, Phase, Phase]:
    base = _phase(server.url, SimClock(SPEED, start_ns=DAY0 + day * DAY_NS), "default", seed=100 + day,
                  failure_rate=0.0, rate_limit_rate=0.0)
    # The current phase starts a fixed simulated gap later, on its own clock: however long
    # a loaded machine takes to stop the baseline, the equally long windows cannot overlap.
    cur = _phase(server.url, SimClock(SPEED, start_ns=base.start_ns + PHASE_GAP_NS), scenario,
                 seed=200 + day, **knobs)
    # Both windows as long as the longer phase until it had stopped: on a loaded machine the
    # last journeys submitted can start well after the load was told to stop.
    length = max(base.stopped_ns - base.start_ns, cur.stopped_ns - cur.start_ns) + 1
    assert base.start_ns + length <= cur.start_ns
    baseline = f"{rfc3339(base.start_ns)}..{rfc3339(base.start_ns + length)}"
    current = f"{rfc3339(cur.start_ns)}..{rfc3339(cur.start_ns + length)}"
    deadline = time.monotonic() + 15
    while True:  # rollups are rebuilt about once a second after the last commit
        response = httpx.get(server.url + "/api/cost/explain", timeout=30,
                             params={"journey": "ask", "baseline": baseline, "current": current})
        assert response.status_code == 200, response.text
        doc = response.json()
        if (doc["baseline"]["runs"], doc["current"]["runs"]) == (base.runs, cur.runs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (doc["baseline"]["runs"], doc["current"]["runs"]) == (base.runs, cur.runs)
    return doc, base, cur


def _cost(usage: dict[str, ModelUsage]) -> tuple[float, float]:
    """(total USD, USD of gpt-4o-mini input tokens) of what the provider answered."""
    catalog = default_catalog()
    total = chat_input = 0.0
    for model, u in usage.items():
        price = catalog.lookup("openai", model, DAY0)[0]
        assert price is not None
        total += (u.input_tokens * price.input + u.output_tokens * price.output) / 1e6
        if model == "gpt-4o-mini":
            chat_input = u.input_tokens * price.input / 1e6
    return total, chat_input


def _check_doc(doc: dict, base: Phase, cur: Phase) -> None:
    truth_delta = _cost(cur.usage)[0] - _cost(base.usage)[0]
    assert doc["delta_usd"] == pytest.approx(truth_delta, rel=1e-6)
    assert sum(c["delta_usd"] for c in doc["causes"]) == pytest.approx(doc["delta_usd"], rel=1e-6)
    assert sum(c["share"] for c in doc["causes"]) == pytest.approx(1.0, abs=1e-6)
    shares = [c["share"] for c in doc["causes"]]
    assert shares == sorted(shares, reverse=True)
    for cause in doc["causes"]:
        assert cause["cause"] in ("retry_storm", "prompt_regression", "model_shift", "traffic_growth", "unexplained")
        assert cause["evidence"]["summary"]


def _primary(doc: dict, cause: str) -> dict:
    top = doc["causes"][0]
    assert top["cause"] == cause, [(c["cause"], round(c["share"], 3)) for c in doc["causes"]]
    assert top["share"] == pytest.approx(1.0, abs=0.10), doc["causes"]
    return top


def _exemplars_exist(server: ServerProcess, ids: list[str]) -> list[dict]:
    assert ids
    return [httpx.get(f"{server.url}/api/traces/{i}", timeout=10).raise_for_status().json() for i in ids[:2]]


def test_retry_storm(server: ServerProcess) -> None:
    doc, base, cur = _explain(server, 0, "retry-storm")
    _check_doc(doc, base, cur)
    top = _primary(doc, "retry_storm")
    assert cur.usage["gpt-4o-mini"].rate_limited > 20
    assert doc["current"]["resends_per_call"] > 1.3 * doc["baseline"]["resends_per_call"]
    assert top["evidence"]["http_429"]["current"] == cur.usage["gpt-4o-mini"].rate_limited
    for trace in _exemplars_exist(server, top["exemplar_trace_ids"]):
        assert trace["retries"] > 0


def test_prompt_regression(server: ServerProcess) -> None:
    doc, base, cur = _explain(server, 1, "prompt-regression")
    _check_doc(doc, base, cur)
    top = _primary(doc, "prompt_regression")
    assert "v4" in top["evidence"]["versions"]
    for trace in _exemplars_exist(server, top["exemplar_trace_ids"]):
        assert trace["prompt_version"] == "v4"


def test_model_fallback(server: ServerProcess) -> None:
    doc, base, cur = _explain(server, 2, "model-fallback")
    _check_doc(doc, base, cur)
    top = _primary(doc, "model_shift")
    assert cur.usage["gpt-4.1"].calls_ok > 10 and base.usage["gpt-4.1"].calls_ok == 0
    assert top["evidence"]["share_of_calls"]["gpt-4.1"]["current"] > 0.1
    for trace in _exemplars_exist(server, top["exemplar_trace_ids"]):
        assert "gpt-4.1" in trace["models"]


def test_traffic_surge(server: ServerProcess) -> None:
    doc, base, cur = _explain(server, 3, "traffic-surge", traffic_factor=2.0)
    _check_doc(doc, base, cur)
    _primary(doc, "traffic_growth")
    assert cur.runs > 1.6 * base.runs


def test_traffic_and_prompt_regression_together(server: ServerProcess) -> None:
    doc, base, cur = _explain(server, 4, "traffic-and-prompt")
    _check_doc(doc, base, cur)
    # What was injected, from the provider's own counts: runs ×r, gpt-4o-mini input tokens
    # per call ×g on a baseline where that input is a share f of the cost.
    r = cur.runs / base.runs
    mini_b, mini_c = base.usage["gpt-4o-mini"], cur.usage["gpt-4o-mini"]
    g = (mini_c.input_tokens / mini_c.calls_ok) / (mini_b.input_tokens / mini_b.calls_ok)
    total_b, input_b = _cost(base.usage)
    f = input_b / total_b
    assert 1.2 < r < 1.4 and 1.35 < g < 1.65  # the knobs did what they say
    # Two-factor Shapley split of cost = runs × (other + f·g) per run.
    traffic = (r - 1) * (1 + (g - 1) * f / 2)
    prompt = (g - 1) * f * (1 + r) / 2
    expected = {"traffic_growth": traffic / (traffic + prompt), "prompt_regression": prompt / (traffic + prompt)}
    got = {c["cause"]: c["share"] for c in doc["causes"]}
    for cause, share in expected.items():
        assert got.get(cause, 0.0) == pytest.approx(share, abs=0.10), (got, expected)

