"""``GET /api/scorecards``, its facts export and ``aisre scorecard`` against a real server fed
over OTLP and the changes and incidents APIs; a bad rules file stops the server at start."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from aisre.act.scorecards import period_containing
from aisre.app import run_server
from aisre.core.timefmt import rfc3339
from aisre.present.cli.main import build_cli
from tests.act.incident_data import MINUTE, S, runs_request
from tests.conftest import ServerProcess, aisre_up_refused, wait_for
from tests.present.ui_helpers import post_request

runner = CliRunner()
cli = build_cli(run_server)

SLOS = """slos:
  - name: ask-success
    journey: ask
    service: support-bot
    objective: 90
    sli: {kind: outcome}
    owner: search-team
    runbook: https://runbooks.example/ask
"""
RULES = """levels: [bronze, silver]
rules:
  - {name: slos-defined, level: bronze, fact: slo_count, op: ">=", value: 1}
  - {name: no-pages, level: silver, fact: pages, op: "<=", value: 0}
"""


def _post(server: ServerProcess, path: str, body: Any, status: int = 201) -> Any:
    response = httpx.post(server.url + path, json=body, timeout=30)
    assert response.status_code == status, response.text
    return response.json()


def start_fed(server_factory: Any, tmp_path: Path) -> tuple[ServerProcess, str]:
    """A server with one SLO and the rules above, fed 20 ask runs (5 fail), a deploy and an
    incident after it; returns it and the label of the month the runs fell in."""
    (tmp_path / "slos.yaml").write_text(SLOS)
    (tmp_path / "rules.yaml").write_text(RULES)
    server = server_factory(None, "--slos", str(tmp_path / "slos.yaml"), "--setting", f"scorecard_rules={tmp_path / 'rules.yaml'}")
    t0 = (time.time_ns() - 30 * MINUTE) // S * S
    label = period_containing("month", datetime.fromtimestamp(t0 / 1e9, UTC).date()).label
    post_request(server, runs_request(20, t0, fails=lambda i: i % 4 == 0)[0])
    _post(server, "/api/changes", {"kind": "deploy", "summary": "support-bot 1.5", "journeys": ["ask"],
                                   "services": ["support-bot"], "at": rfc3339(t0 + MINUTE), "who": "alice"})
    _post(server, "/api/incidents", {"title": "answers rejected", "by": "bob", "journey": "ask", "severity": "sev2"})
    wait_for(lambda: httpx.get(server.url + "/api/scorecards", params={"period": label}).json()
             ["scorecards"][0]["slos"][0]["total"] == 20, 20, "20 runs in the scorecard")
    return server, label


def test_scorecards_api_cli_and_export(server_factory: Any, tmp_path: Path) -> None:
    server, label = start_fed(server_factory, tmp_path)
    doc = httpx.get(server.url + "/api/scorecards", params={"period": label}).json()
    assert doc["levels"] == ["bronze", "silver"] and doc["rules_source"].endswith("rules.yaml")
    [card] = doc["scorecards"]
    f, slo = card["facts"], card["slos"][0]
    assert (card["name"], slo["good"], slo["total"]) == ("ask", 15, 20)
    assert slo["attainment"] == pytest.approx(0.75) and slo["budget_remaining"] == pytest.approx(1 - 5 / (0.1 * 20))
    assert (f["runs"], f["successful_runs"], f["changes"], f["failed_changes"], f["change_failure_rate"]) == (20, 15, 1, 1, 1.0)
    assert (f["incidents"], f["sev2"], f["deployments"], f["pages"]) == (1, 1, 1, 0)
    assert card["level"] == "silver" and len(card["trend"]["periods"]) == 6 and card["trend"]["periods"][-1] == label

    team = httpx.get(server.url + "/api/scorecards", params={"period": label, "scope": "team"}).json()
    assert [c["name"] for c in team["scorecards"]] == ["search-team"]
    service = httpx.get(server.url + "/api/scorecards", params={"period": label, "scope": "service", "name": "support-bot"}).json()
    assert service["scorecards"][0]["facts"]["changes"] == 1

    facts = httpx.get(server.url + "/api/scorecards/facts", params={"period": label}).json()
    [entity] = facts["entities"]
    assert entity["entityRef"] == "system:default/ask" and entity["level"] == "silver"
    assert entity["facts"]["change_failure_rate"] == 1.0 and entity["checks"] == {"slos-defined": True, "no-pages": True}

    bad = httpx.get(server.url + "/api/scorecards", params={"period": "2026-13"})
    assert bad.status_code == 400 and "period must be" in bad.json()["error"]
    missing = httpx.get(server.url + "/api/scorecards", params={"name": "nope"})
    assert missing.status_code == 404
    assert {"/api/scorecards", "/api/scorecards/facts"} <= set(httpx.get(server.url + "/openapi.json").json()["paths"])

    out = runner.invoke(cli, ["scorecard", "--url", server.url, "--period", label])
    assert out.exit_code == 0, out.output
    assert "ask  [SILVER]" in out.output
    assert "SLO ask-success" in out.output and "75.00% of 90.0%" in out.output and "MISSED" in out.output
    assert "change failure rate 100.0%" in out.output
    assert max(len(line) for line in out.output.splitlines()) <= 80
    export = tmp_path / "facts.json"
    out = runner.invoke(cli, ["scorecard", "--url", server.url, "--period", label, "--format", "json", "--export", str(export)])
    assert out.exit_code == 0 and orjson.loads(out.output)["scorecards"][0]["level"] == "silver"
    assert orjson.loads(export.read_bytes())["entities"][0]["entityRef"] == "system:default/ask"


def test_rules_file_checked_by_cli_and_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("levels: [bronze]\nrules:\n  - {name: x, level: gold, fact: pages, op: '<=', value: 0}\n")
    out = runner.invoke(cli, ["scorecard", "--check-rules", str(bad)])
    assert out.exit_code == 2 and f"{bad}:3: rules[0].level: unknown level 'gold'" in out.output.replace("\n", "")
    good = tmp_path / "good.yaml"
    good.write_text(RULES)
    out = runner.invoke(cli, ["scorecard", "--check-rules", str(good)])
    assert out.exit_code == 0 and "2 rules over levels bronze, silver" in out.output
    printed = aisre_up_refused(tmp_path, "--setting", f"scorecard_rules={bad}")
    assert "unknown level 'gold'" in printed
