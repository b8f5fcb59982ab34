"""The aisre command against a live server, and its refusals at start-up."""

from __future__ import annotations

import json

import httpx
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.present.cli.main import build_cli
from tests.conftest import ServerProcess, capture_files, wait_for
from tests.otlp_factory import journey_request

runner = CliRunner()
cli = build_cli(run_server)


def _load(server: ServerProcess) -> None:
    for path in capture_files("otel-genai"):
        httpx.post(server.url + "/v1/traces", content=path.read_bytes(),
                   headers={"Content-Type": "application/x-protobuf"}).raise_for_status()


def test_up_refuses_public_bind_and_bad_settings() -> None:
    result = runner.invoke(cli, ["up", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 1
    assert "refusing to listen on '0.0.0.0'" in result.output
    result = runner.invoke(cli, ["up", "--setting", "no_such=1"])
    assert result.exit_code == 2 and "unknown setting 'no_such'" in result.output
    result = runner.invoke(cli, ["up", "--setting", "commit_max_spans=lots"])
    assert result.exit_code == 2 and "must be int" in result.output


def test_runs_and_trace_commands(server: ServerProcess) -> None:
    _load(server)
    result = runner.invoke(cli, ["journeys", "runs", "--url", server.url, "--outcome", "failure", "--format", "json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)["items"]
    assert len(runs) == 1 and runs[0]["journey"] == "ask"
    result = runner.invoke(cli, ["traces", "show", runs[0]["trace_id"], "--url", server.url])
    assert result.exit_code == 0, result.output
    for text in ("POST /ask", "chat gpt-4o-mini", "vector_search docs", "Error code: 500"):
        assert text in result.output
    result = runner.invoke(cli, ["journeys", "list", "--url", server.url, "--since", "10000d", "--format", "json"])
    assert {j["journey"]: j["runs"] for j in json.loads(result.output)["items"]} == {"ask": 20, "triage-agent": 5}


def test_runs_table_fits_80_columns_with_pasteable_ids(server: ServerProcess) -> None:
    _load(server)
    in_flight, (open_id,) = journey_request(1, include_roots=False)  # children only: still in flight
    httpx.post(server.url + "/v1/traces", content=in_flight.SerializeToString(),
               headers={"Content-Type": "application/x-protobuf"}).raise_for_status()
    wait_for(lambda: len(_runs_json(server)) == 26, 30, "26 runs listed")
    runs = _runs_json(server)
    failed = next(r for r in runs if r["outcome"] == "failure")
    result = runner.invoke(cli, ["journeys", "runs", "--url", server.url, "--since", "10000d", "--limit", "30"],
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    assert lines[0].split() == ["time", "journey", "outcome", "took", "cost", "failure", "reason", "trace"]
    rows = [line for line in lines[2:] if line.strip()]
    assert len(rows) == 26
    # Completed runs first (newest first), the one still in flight last and marked.
    assert "in flight" in rows[-1] and rows[-1].endswith(open_id[:12])
    assert not any("in flight" in row for row in rows[:-1])
    failed_row = next(row for row in rows if row.endswith(failed["trace_id"][:12]))
    assert "failure" in failed_row and failed["failure_reason"][:12] in failed_row and "$" in failed_row
    # The short id pastes into traces show; --wide shows the whole id and reason.
    shown = runner.invoke(cli, ["traces", "show", failed["trace_id"][:12], "--url", server.url])
    assert shown.exit_code == 0 and failed["trace_id"] in shown.output, shown.output
    wide = runner.invoke(cli, ["journeys", "runs", "--url", server.url, "--since", "10000d", "--limit", "30", "--wide"],
                         env={"COLUMNS": "80"})
    assert failed["trace_id"] in wide.output and failed["failure_reason"] in wide.output


def _runs_json(server: ServerProcess) -> list[dict]:
    result = runner.invoke(cli, ["journeys", "runs", "--url", server.url, "--since", "10000d", "--limit", "30",
                                 "--format", "json"])
    return list(json.loads(result.output)["items"])


def test_errors_are_one_clear_line(server: ServerProcess) -> None:
    result = runner.invoke(cli, ["traces", "show", "ab" * 16, "--url", server.url])
    assert result.exit_code == 1 and "404: no trace with id" in result.output
    result = runner.invoke(cli, ["traces", "show", "abababab", "--url", server.url])
    assert result.exit_code == 1 and "404: no trace id starts with 'abababab'" in result.output
    result = runner.invoke(cli, ["traces", "show", "abab", "--url", server.url])
    assert result.exit_code == 1 and "400: trace id must be 32 hex digits (or a unique prefix of 8 or more)" in result.output
    result = runner.invoke(cli, ["journeys", "runs", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach aisre" in result.output


def test_demo_help_lists_every_scenario_with_its_description() -> None:
    from aisre.demo.scenarios import SCENARIOS

    result = runner.invoke(cli, ["demo", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "Scenarios (--scenario):" in text
    for scenario in SCENARIOS.values():
        assert f"{scenario.name}: {scenario.description}" in text, scenario.name
