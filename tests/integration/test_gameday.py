"""Game days: ``aisre gameday run provider-outage`` drives the fault into the demo service against
a real server and reports detection within the SLO's page window, an incident, and the model
provider as the layer triage named; ``start``/``stop`` score a team's own drill."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.present.cli.main import build_cli

DEMO_SLOS = str(resources.files("aisre.demo").joinpath("slos.yaml"))
cli = build_cli(run_server)


@pytest.mark.slow
def test_provider_outage_game_day(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(tmp_path / "gameday.duckdb", "--slos", DEMO_SLOS, "--setting", "evaluation_interval_s=1",
                            "--setting", "evidence_interval_s=1")
    out = CliRunner().invoke(cli, ["gameday", "run", "provider-outage", "--url", server.url, "--minutes", "15",
                                   "--seconds", "8", "--rate", "20", "--wait", "60", "--format", "json"])
    doc = json.loads(out.output)
    assert out.exit_code == 0, doc
    assert doc["page_window_s"] == 3600  # the ask SLO's fast page pair: 1 h long window
    assert doc["detected_within_page_window"] is True and 0 < doc["time_to_first_page_s"] <= 3600
    assert doc["time_to_first_alert_s"] <= doc["time_to_first_page_s"]
    assert doc["incident_opened"] is True and doc["time_to_incident_s"] is not None
    assert (doc["named_layer"], doc["expected_layer"], doc["cause_named"]) == ("model provider", "model provider", True)
    assert doc["time_to_mitigate_s"] is None  # nobody mitigated during the drill
    table = CliRunner().invoke(cli, ["gameday", "run", "provider-outage", "--url", server.url, "--minutes", "15",
                                     "--seconds", "4", "--wait", "30"])
    assert "triage named: model provider (expected model provider: yes)" in table.output


def test_start_stop_scores_an_own_drill_recorded_on_the_server(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(tmp_path / "own.duckdb", "--slos", DEMO_SLOS)
    out = CliRunner().invoke(cli, ["gameday", "start", "--journey", "ask", "--expect", "retrieval", "--who", "alice",
                                   "--url", server.url])
    assert out.exit_code == 0 and "started on ask" in out.output, out.output
    # The drill lives on the server: no local file, and a second start on ask is refused.
    assert not list(Path.cwd().glob(".aisre-gameday*"))
    again = CliRunner().invoke(cli, ["gameday", "start", "--journey", "ask", "--url", server.url])
    assert again.exit_code == 2 and "already running on ask" in again.output
    running = httpx.get(server.url + "/api/gameday", params={"running": "true"}).json()["drills"]
    assert [(d["journey"], d["expected_layer"], d["running"], d["who"]) for d in running] == [("ask", "retrieval", True, "alice")]
    changes = httpx.get(server.url + "/api/changes").json()
    assert [c["kind"] for c in changes["items"]] == ["gameday"]
    # Stopped with nothing but the server's URL, as from another machine.
    out = CliRunner().invoke(cli, ["gameday", "stop", "--url", server.url, "--format", "json"])
    doc = json.loads(out.output)
    # Nothing was injected: no alert, no incident; the drill fails (exit 1) and says so.
    assert out.exit_code == 1
    assert (doc["incident_opened"], doc["time_to_first_page_s"], doc["expected_layer"], doc["passed"]) == (False, None, "retrieval", False)
    assert (doc["drill_id"], doc["running"]) == (running[0]["drill_id"], False)
    out = CliRunner().invoke(cli, ["gameday", "stop", "--url", server.url])
    assert out.exit_code == 2 and "no game day running" in out.output
    listed = CliRunner().invoke(cli, ["gameday", "list", "--url", server.url])
    assert listed.exit_code == 0 and "ask" in listed.output and "FAILED" in listed.output


@pytest.mark.slow
@pytest.mark.parametrize(("drill", "layer"), [
    ("retrieval-empty", "data"),  # empty searches are no span errors: triage reads them as the data layer
    ("latency-spike", "model provider"),  # timed-out chat calls
    ("rate-limit-storm", "model provider"),  # 429s past the service's retries
])
def test_new_game_days_page_and_name_their_layer(server_factory: Any, tmp_path: Path, drill: str, layer: str) -> None:
    server = server_factory(tmp_path / "drill.duckdb", "--slos", DEMO_SLOS, "--setting", "evaluation_interval_s=1",
                            "--setting", "evidence_interval_s=1")
    out = CliRunner().invoke(cli, ["gameday", "run", drill, "--url", server.url, "--minutes", "15",
                                   "--seconds", "8", "--rate", "20", "--wait", "60", "--format", "json"])
    doc = json.loads(out.output)
    assert out.exit_code == 0, doc
    assert doc["detected_within_page_window"] is True and 0 < doc["time_to_first_page_s"] <= 3600
    assert doc["incident_opened"] is True
    assert (doc["named_layer"], doc["expected_layer"], doc["cause_named"], doc["passed"]) == (layer, layer, True, True)
    drills = httpx.get(server.url + "/api/gameday").json()["drills"]
    assert [(d["drill_id"], d["scenario"], d["running"]) for d in drills] == [(doc["drill_id"], drill, False)]


@pytest.mark.slow
def test_runaway_agent_game_day_is_caught_by_the_policy(server_factory: Any, tmp_path: Path) -> None:
    policy = str(resources.files("aisre.demo").joinpath("policy.yaml"))
    server = server_factory(tmp_path / "agent.duckdb", "--slos", DEMO_SLOS, "--setting", f"policies={policy}",
                            "--setting", "policy_interval_s=1")
    out = CliRunner().invoke(cli, ["gameday", "run", "runaway-agent", "--url", server.url, "--minutes", "15",
                                   "--seconds", "6", "--rate", "20", "--wait", "60", "--format", "json"])
    doc = json.loads(out.output)
    assert out.exit_code == 0, doc
    # The drill hits the triage agent; it fails no run, so detection is the loop rule's verdicts.
    assert (doc["journey"], doc["scenario"], doc["detect"], doc["passed"]) == ("triage-agent", "runaway-agent", "policy", True)
    assert doc["policy_violations"] >= doc["violating_runs"] > 0
    assert 0 <= doc["time_to_first_violation_s"] <= 15 * 60
    [listed] = httpx.get(server.url + "/api/gameday").json()["drills"]
    assert (listed["drill_id"], listed["passed"]) == (doc["drill_id"], True)
