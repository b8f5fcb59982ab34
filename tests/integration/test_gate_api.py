"""The release gate through a live server: /api/gate, `aisre gate` exit codes, --wait, policy, history."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.present.cli.main import build_cli
from tests.conftest import ServerProcess, aisre_up_refused
from tests.evaluate.gate_factory import runs_request

PB = {"Content-Type": "application/x-protobuf"}
S = 10**9
SLOS = """
slos:
  - name: ask-success
    journey: ask
    objective: 99.5
    window: 28d
    sli: {kind: outcome}
    tier: 0
"""
POLICY = """
policy:
  - name: tier-0-budget
    slos: {tier: [0]}
    allow_fix: true
"""
runner = CliRunner()
cli = build_cli(run_server)


def _send(server: ServerProcess, request) -> None:
    httpx.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB).raise_for_status()


def _wait_runs(server: ServerProcess, selector: str, n: int) -> None:
    deadline = time.monotonic() + 20
    params = {"journey": "ask", "baseline": selector, "candidate": selector, "record": "false"}
    while httpx.get(server.url + "/api/gate", params=params).json()["baseline"]["runs"] < n:
        assert time.monotonic() < deadline, f"runs of {selector} did not arrive"
        time.sleep(0.2)


def _gate(server: ServerProcess, *args: str):
    return runner.invoke(cli, ["gate", "--journey", "ask", "--url", server.url, *args], env={"COLUMNS": "220"})


def test_gate_end_to_end(server_factory, tmp_path: Path) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text(SLOS)
    server = server_factory(tmp_path / "gate.duckdb", "--slos", str(slos))
    rng = np.random.default_rng(3)
    start = time.time_ns() - 1200 * S
    _send(server, runs_request(200, version="1.4", start_ns=start, rng=rng))
    _send(server, runs_request(60, version="1.5", start_ns=start + 5 * S, rng=rng,
                               input_tokens=lambda r: int(r.normal(1400, 60)),
                               groundedness=lambda r: float(r.uniform(0.45, 0.75))))
    _send(server, runs_request(60, version="1.6", start_ns=start + 7 * S, rng=rng))
    _send(server, runs_request(5, version="1.7", start_ns=start + 9 * S, rng=rng))
    _wait_runs(server, "service.version=1.7", 5)

    # The API, shaped for an Argo Rollouts web metric: {$.verdict}.
    doc = httpx.get(server.url + "/api/gate", params={
        "journey": "ask", "baseline": "service.version=1.4", "candidate": "service.version=1.5"}).json()
    assert doc["verdict"] == "fail" and doc["exit_code"] == 1
    assert {"groundedness", "cost"} <= set(doc["failed_metrics"]) and "latency" not in doc["failed_metrics"]

    # The CLI: evidence table, and the exit code a CI step gates on.
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.5")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "groundedness" in result.output and "Low" in result.output
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.6")
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.7")
    assert result.exit_code == 3 and "INSUFFICIENT DATA" in result.output
    assert "candidate has 5 runs; at least 20 needed" in result.output

    # --wait polls until the deadline when data never comes, then still says "not enough data".
    t0 = time.monotonic()
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.7",
                   "--wait", "2s", "--poll", "0.5", "--format", "json")
    assert result.exit_code == 3 and 1.5 < time.monotonic() - t0 < 15
    assert json.loads(result.stdout)["verdict"] == "insufficient_data"

    # A local gate file: muting everything but latency and groundedness (not critical) gives a marginal score.
    config = tmp_path / "gate.yaml"
    config.write_text(
        "judge:\n  group_weights: {latency: 80, quality: 20}\n"
        "metrics:\n  outcome: {muted: true}\n  cost: {muted: true}\n  tokens: {muted: true}\n"
        "  scores:\n    groundedness: {critical: false}\n"
    )
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.5",
                   "--config", str(config))
    assert result.exit_code == 2 and "MARGINAL" in result.output, result.output
    # A bad gate file is refused with its file, line and field.
    config.write_text("judge:\n  confidence: 2\n  thresholds: {pass: 50, marginal: 80}\n")
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.5",
                   "--config", str(config))
    assert result.exit_code == 1
    assert f"{config}:2: judge.confidence: must be at least 0.5 and below 1" in result.output
    assert "judge.thresholds.marginal: must not be above the pass threshold" in result.output
    bad = httpx.post(server.url + "/api/gate", params={"journey": "ask", "baseline": "a=1", "candidate": "a=2"},
                     content=b"metrics:\n  latency: {direction: sideways}\n")
    assert bad.status_code == 400 and "request body:2: metrics.latency.direction: must be one of" in bad.json()["error"]
    bad = httpx.get(server.url + "/api/gate", params={"journey": "ask", "baseline": "service.version"})
    assert bad.status_code == 400 and "baseline 'service.version' must be key=value" in bad.json()["error"]

    # History: every recorded verdict, newest first, with its evidence.
    history = httpx.get(server.url + "/api/gate/verdicts", params={"journey": "ask"}).json()["items"]
    assert [h["verdict"] for h in history[:4]] == ["marginal", "insufficient_data", "insufficient_data", "pass"]
    one = httpx.get(f"{server.url}/api/gate/verdicts/{history[-1]['id']}").json()
    assert one["verdict"] == "fail" and one["metrics"]
    assert httpx.get(f"{server.url}/api/gate/verdicts/999999").status_code == 404

    # Policy: failing runs exhaust the tier-0 budget of ask-success; no release then, unless a fix.
    # Three days back, so the 28-day budget is measured over three observed days (docs/alerting.md).
    _send(server, runs_request(40, version="0.9", start_ns=start - 3 * 86400 * S, rng=rng, failure_rate=1.0))
    deadline = time.monotonic() + 20
    while httpx.get(server.url + "/api/slos/ask-success").json().get("error_budget", {}).get("remaining_ratio", 1) > 0:
        assert time.monotonic() < deadline, "the budget was not spent"
        time.sleep(0.2)
    config.write_text(POLICY)
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.6",
                   "--config", str(config))
    assert result.exit_code == 1, result.output
    assert "policy 'tier-0-budget': ask-success (tier 0) error budget exhausted" in result.output
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.6",
                   "--config", str(config), "--fix", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["policy"]["blocked"] is False and doc["policy"]["findings"][0]["outcome"] == "waived"
    # Not enough data is still not a verdict for a fix; a blocked release fails even without data.
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.7",
                   "--config", str(config))
    assert result.exit_code == 1


def test_server_refuses_a_bad_gate_file(tmp_path: Path) -> None:
    bad = tmp_path / "gate.yaml"
    bad.write_text("policy:\n  - name: x\n    slos: {tier: zero}\n")
    out = aisre_up_refused(tmp_path, "--gate-config", str(bad))
    assert f"{bad}:3: policy[0].slos.tier: must be a tier number or a list of them" in out


SLOS_7D = """
slos:
  - name: ask-success
    journey: ask
    objective: 99.5
    window: 7d
    sli: {kind: outcome}
    tier: 0
"""


def _gate_on(server: ServerProcess, journey: str, *args: str):
    return runner.invoke(cli, ["gate", "--journey", journey, "--url", server.url, *args], env={"COLUMNS": "220"})


def test_gate_cli_rates_and_the_default_policy(server_factory, tmp_path: Path) -> None:
    """Rare failures fail through the CLI with their counts shown; then, with the tier-0 budget
    spent (26 h of runs at 20 % failures against 99.5 % over 7 d) and no gate file, the default
    policy blocks, until a gate file switches it off."""
    slos = tmp_path / "slos.yaml"
    slos.write_text(SLOS_7D)
    server = server_factory(tmp_path / "rates.duckdb", "--slos", str(slos))
    start = time.time_ns() - 1200 * S
    every = lambda n, k: {i * n // k for i in range(k)}  # noqa: E731
    # The rates compared on a journey no SLO covers, so their failures spend no budget.
    for version, failures in (("1.4", every(400, 4)), ("1.5", every(400, 16)), ("1.6", {i + 3 for i in every(400, 4)})):
        _send(server, runs_request(400, version=version, start_ns=start, rng=np.random.default_rng(5),
                                   failures=failures, journey="search"))
    for version in ("1.4", "1.6"):
        _send(server, runs_request(60, version=version, start_ns=start, rng=np.random.default_rng(5)))
    _wait_runs(server, "service.version=1.6", 60)
    deadline = time.monotonic() + 20
    params = {"journey": "search", "baseline": "service.version=1.6", "candidate": "x=1", "record": "false"}
    while httpx.get(server.url + "/api/gate", params=params).json()["baseline"]["runs"] < 400:
        assert time.monotonic() < deadline, "runs of search did not arrive"
        time.sleep(0.2)

    result = _gate_on(server, "search", "--baseline", "service.version=1.4", "--candidate", "service.version=1.5")
    assert result.exit_code == 1, result.output
    assert "Fisher" in result.output and "1.00% (4/400)" in result.output and "4.00% (16/400)" in result.output
    assert "The metric outcome was classified as High (Critical)" in result.output
    assert "error-budget policy: tier-0-budget (defaults)" in result.output
    result = _gate_on(server, "search", "--baseline", "service.version=1.4", "--candidate", "service.version=1.6")
    assert result.exit_code == 0, result.output
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.6")
    assert result.exit_code == 0, result.output
    assert "error-budget policy: tier-0-budget (defaults)" in result.output

    # Spend the budget of ask: a day and more of runs, every fifth failing.
    old = time.time_ns() - 26 * 3600 * S
    _send(server, runs_request(312, version="1.3", start_ns=old, rng=np.random.default_rng(6),
                               failures=set(range(0, 312, 5)), spacing_ns=300 * S))
    deadline = time.monotonic() + 30
    while httpx.get(server.url + "/api/slos/ask-success").json().get("error_budget", {}).get("remaining_ratio", 1) > 0:
        assert time.monotonic() < deadline, "the budget was not spent"
        time.sleep(0.2)
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.6")
    assert result.exit_code == 1, result.output
    assert "policy 'tier-0-budget': ask-success (tier 0) error budget exhausted (-" in result.output
    assert "% left)" in result.output
    doc = httpx.get(server.url + "/api/gate", params={
        "journey": "ask", "baseline": "service.version=1.4", "candidate": "service.version=1.6"}).json()
    assert doc["verdict"] == "fail" and doc["policy"]["default"] and doc["failed_metrics"] == []

    config = tmp_path / "gate.yaml"
    config.write_text("policy: off\n")
    result = _gate(server, "--baseline", "service.version=1.4", "--candidate", "service.version=1.6",
                   "--config", str(config))
    assert result.exit_code == 0, result.output
    assert f"error-budget policy: off ({config})" in result.output
    assert f"note: error-budget policy is off ({config})" in result.output
