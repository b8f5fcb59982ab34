"""``aisre readiness`` and ``/api/readiness`` against a real server: a journey missing a runbook
and a release gate fails those items and exits 1; with the runbook, a gate file and a verdict on
record it passes and exits 0; a template posted by the CLI adds an item."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.present.cli.main import build_cli
from tests.act.incident_data import MINUTE, S, runs_request
from tests.conftest import aisre_up_refused, wait_for
from tests.present.ui_helpers import post_request

runner = CliRunner()
cli = build_cli(run_server)
SLO = "slos:\n  - name: ask-success\n    journey: ask\n    objective: 99\n    sli: {kind: outcome}\n    owner: search-team\n    tier: 1\n"


def test_missing_runbook_and_gate_fail_then_pass(server_factory: Any, tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    (tmp_path / "slos.yaml").write_text(SLO)
    (tmp_path / "receivers.yaml").write_text("receivers:\n  - {name: oncall, type: webhook, url: 'http://127.0.0.1:9/hook'}\n")
    common = ("--setting", f"receivers={tmp_path / 'receivers.yaml'}")
    server = server_factory(db, "--slos", str(tmp_path / "slos.yaml"), *common)
    post_request(server, runs_request(12, time.time_ns() - 30 * MINUTE, step_ns=10 * S)[0])
    wait_for(lambda: httpx.get(server.url + "/api/readiness/ask").json()["facts"]["runs"] == 12, 20, "12 runs")
    assert httpx.put(server.url + "/api/cost/budgets", json={"name": "ask-monthly", "journey": "ask", "period": "month",
                                                             "amount_usd": 50.0, "thresholds": [0.8]}).status_code == 200
    assert httpx.post(server.url + "/api/changes", json={"kind": "loadtest", "summary": "k6: 50 rps, p95 850 ms",
                                                         "journeys": ["ask"], "metadata": {"rps": 50}}).status_code == 201

    out = runner.invoke(cli, ["readiness", "ask", "--url", server.url])
    assert out.exit_code == 1, out.output
    assert "NOT READY: 4 required item(s) fail" in out.output
    for line in ("FAIL  slo-runbook", "FAIL  gate-configured", "FAIL  gate-history", "FAIL  policy",
                 "PASS  alerts-routed", "PASS  budget-set", "PASS  loadtest", "PASS  telemetry"):
        assert line in out.output, line
    assert "fix: set runbook: on each SLO" in out.output
    assert max(len(line) for line in out.output.splitlines()) <= 80

    # Complete them: the runbook, a gate file, and a verdict the gate recorded for the journey.
    server.stop()
    (tmp_path / "slos.yaml").write_text(SLO + "    runbook: https://runbooks.example/ask\n")
    (tmp_path / "gate.yaml").write_text("judge:\n  min_runs: 5\n")
    server = server_factory(db, "--slos", str(tmp_path / "slos.yaml"), "--gate-config", str(tmp_path / "gate.yaml"), *common)
    verdict = httpx.get(server.url + "/api/gate", params={"journey": "ask", "baseline": "service.version=1.4.1",
                                                          "candidate": "service.version=1.4.2", "record": "true"})
    assert verdict.status_code == 200, verdict.text
    out = runner.invoke(cli, ["readiness", "ask", "--url", server.url])
    assert out.exit_code == 0, out.output
    assert "ask  READY (12/12 items pass)" in out.output
    doc = httpx.get(server.url + "/api/readiness/ask").json()
    assert doc["ready"] is True and doc["facts"]["gate_verdicts"] == 1 and doc["facts"]["policy_rules"] >= 1

    template = tmp_path / "readiness.yaml"
    template.write_text("items:\n  - {id: two-slos, title: a latency SLO too, fact: slos, op: '>=', value: 2, fix: add a latency SLO}\n")
    out = runner.invoke(cli, ["readiness", "ask", "--url", server.url, "--template", str(template)])
    assert out.exit_code == 1 and "FAIL  two-slos" in out.output and "fix: add a latency SLO" in out.output
    template.write_text("items:\n  - {id: x, fact: vibes, op: '>=', value: 1}\n")
    out = runner.invoke(cli, ["readiness", "ask", "--url", server.url, "--template", str(template)])
    assert out.exit_code == 2 and f"{template}:2: items[0].fact: unknown fact 'vibes'" in out.output.replace("\n", "")

    page = httpx.get(server.url + "/readiness/ask")
    assert page.status_code == 200 and 'id="readiness-verdict"' in page.text and ">ready<" in page.text
    assert "/api/readiness/{journey}" in httpx.get(server.url + "/openapi.json").json()["paths"]


def test_bad_template_stops_the_server(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("disable: [everything]\n")
    assert "no built-in item 'everything'" in aisre_up_refused(tmp_path, "--setting", f"readiness_template={bad}")
