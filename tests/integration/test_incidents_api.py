"""Incidents through a live server: Alertmanager v4 webhooks open, join and calm incidents;
changes are recorded and refused with clear errors; the CLI lists, shows, acknowledges,
resolves and writes the postmortem."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.core.timefmt import rfc3339
from aisre.present.cli.main import build_cli
from tests.act.incident_data import MINUTE, S, runs_request
from tests.conftest import ServerProcess
from tests.otlp_factory import journey_request
from tests.present.ui_helpers import post_request, wait_for_runs

runner = CliRunner()
cli = build_cli(run_server)


def am_payload(status: str, alerts: list[dict[str, Any]], group_key: str = '{}:{alertname="AskErrors"}') -> dict[str, Any]:
    """An Alertmanager webhook body, version 4, as Alertmanager sends it."""
    return {
        "version": "4", "groupKey": group_key, "truncatedAlerts": 0, "status": status, "receiver": "aisre",
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093", "alerts": alerts,
    }


def am_alert(name: str, status: str, fingerprint: str, journey: str | None = "ask", severity: str = "critical",
             ends: str = "0001-01-01T00:00:00Z") -> dict[str, Any]:
    labels = {"alertname": name, "severity": severity, "team": "search-team"}
    if journey:
        labels["journey"] = journey
    return {
        "status": status, "labels": labels,
        "annotations": {"summary": f"{name} is burning", "runbook_url": "https://runbooks.example/ask-errors"},
        "startsAt": "2026-11-23T09:00:00.123456789Z", "endsAt": ends,
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up", "fingerprint": fingerprint,
    }


def _post(server: ServerProcess, path: str, body: Any, status: int = 200) -> Any:
    response = httpx.post(server.url + path, json=body, timeout=30)
    assert response.status_code == status, response.text
    return response.json()


def test_alertmanager_changes_and_cli(server: ServerProcess, tmp_path: Path) -> None:
    bad = _post(server, "/api/alertmanager", {"version": "3", "alerts": []}, 400)
    assert "only Alertmanager webhook version \"4\"" in bad["error"]
    bad = _post(server, "/api/alertmanager", am_payload("firing", [{**am_alert("A", "firing", "f1"), "startsAt": "soon"}]), 400)
    assert "alerts[0].startsAt must be an RFC 3339 time" in bad["error"]

    opened = _post(server, "/api/alertmanager", am_payload("firing", [am_alert("AskErrors", "firing", "f1")]))
    assert opened["alerts"] == 1 and len(opened["incidents"]) == 1
    first = opened["incidents"][0]
    assert (first["state"], first["severity"], first["journey"], first["owner"], first["runbook"], first["source"]) == (
        "open", "sev2", "ask", "search-team", "https://runbooks.example/ask-errors", "alertmanager")
    assert first["first_alert"] == "2026-11-23T09:00:00.123456Z"

    # Alertmanager repeats the group with every notification: the known alert is not new;
    # a second alert on the same journey joins the open incident.
    again = _post(server, "/api/alertmanager", am_payload("firing", [
        am_alert("AskErrors", "firing", "f1"), am_alert("AskLatency", "firing", "f2", severity="warning")]))
    assert [d["id"] for d in again["incidents"]] == [first["id"]]
    other = _post(server, "/api/alertmanager", am_payload(
        "firing", [am_alert("DiskFull", "firing", "f3", journey=None, severity="warning")], group_key="{}:{alertname=\"DiskFull\"}"))
    assert other["incidents"][0]["id"] != first["id"] and other["incidents"][0]["severity"] == "sev3"
    incidents = httpx.get(server.url + "/api/incidents", params={"state": "active"}).json()["items"]
    assert len(incidents) == 2

    calmed = _post(server, "/api/alertmanager", am_payload("resolved", [
        am_alert("AskErrors", "resolved", "f1", ends="2026-11-23T09:20:00Z"),
        am_alert("AskLatency", "resolved", "f2", severity="warning", ends="2026-11-23T09:21:00Z")]))
    assert calmed["incidents"][0]["state"] == "mitigated"
    detail = httpx.get(server.url + f"/api/incidents/{first['id']}").json()
    assert [(a["name"], a["ended"]) for a in detail["alerts"]] == [
        ("AskErrors", "2026-11-23T09:20:00.000000Z"), ("AskLatency", "2026-11-23T09:21:00.000000Z")]
    assert [e["kind"] for e in detail["timeline"] if e["kind"] != "impact"][:5] == [
        "opened", "alert", "alert_resolved", "alert_resolved", "state"]

    # Changes: refused with the field named; accepted ones listed.
    bad = _post(server, "/api/changes", {"kind": "rollout", "summary": "x"}, 400)
    assert bad["error"] == "kind must be one of deploy, model, prompt, config, flag, loadtest, gameday; got 'rollout'"
    bad = _post(server, "/api/changes", {"kind": "deploy", "version": "1.5", "link": "javascript:alert(1)"}, 400)
    assert "link must be an http(s) URL" in bad["error"]

    result = runner.invoke(cli, ["change", "record", "--kind", "deploy", "--version", "1.5.0", "--journey", "ask",
                                 "--meta", "pr=1234", "--by", "alice", "--url", server.url, "--format", "json"])
    assert result.exit_code == 0, result.output
    change = json.loads(result.output)
    assert (change["summary"], change["who"], change["metadata"], change["source"]) == (
        "deploy 1.5.0", "alice", {"pr": "1234"}, "api")
    result = runner.invoke(cli, ["change", "list", "--url", server.url])
    assert result.exit_code == 0 and "deploy 1.5.0" in result.output

    # CLI: list, show, acknowledge (twice: refused), resolve, postmortem.
    result = runner.invoke(cli, ["incident", "list", "--url", server.url, "--format", "json"])
    assert [d["id"] for d in json.loads(result.output)["items"]] == [other["incidents"][0]["id"], first["id"]]
    second = other["incidents"][0]["id"]
    result = runner.invoke(cli, ["incident", "ack", str(second), "--by", "alice", "--url", server.url])
    assert result.exit_code == 0 and "acknowledged" in result.output, result.output
    result = runner.invoke(cli, ["incident", "ack", str(second), "--by", "bob", "--url", server.url])
    assert result.exit_code == 1 and "already acknowledged (by alice" in result.output
    result = runner.invoke(cli, ["incident", "note", str(second), "disk cleaned", "--by", "alice", "--url", server.url])
    assert result.exit_code == 0
    result = runner.invoke(cli, ["incident", "resolve", str(second), "--by", "alice", "--url", server.url])
    assert result.exit_code == 0 and "resolved" in result.output
    result = runner.invoke(cli, ["incident", "show", str(second), "--url", server.url])
    assert result.exit_code == 0
    for text in ("DiskFull", "open → acknowledged", "disk cleaned", "acknowledged → resolved"):
        assert text in result.output, text
    # A due date is a day (due at its end, UTC); one already past is refused with the reason.
    result = runner.invoke(cli, ["incident", "action", str(first["id"]), "Page sooner", "--due", "2020-01-31",
                                 "--by", "bob", "--url", server.url])
    assert result.exit_code == 1 and "due 2020-01-31 is in the past" in result.output, result.output
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    result = runner.invoke(cli, ["incident", "action", str(first["id"]), "Page on AskErrors sooner", "--owner",
                                 "search-team", "--due", tomorrow, "--by", "bob", "--url", server.url])
    assert result.exit_code == 0, result.output
    items = httpx.get(server.url + f"/api/incidents/{first['id']}").json()["action_items"]
    assert [i["due"] for i in items] == [f"{tomorrow}T23:59:59.999999Z"]
    out = tmp_path / "pm.md"
    result = runner.invoke(cli, ["incident", "postmortem", str(first["id"]), "-o", str(out), "--url", server.url])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert f"# Postmortem: incident #{first['id']}" in text and "Page on AskErrors sooner" in text
    assert "Remediation: 0 of 1 done (0 %)." in text
    html = httpx.get(server.url + f"/api/incidents/{first['id']}/postmortem", params={"format": "html"})
    assert html.headers["content-type"].startswith("text/html") and "<h2>Timeline</h2>" in html.text
    metrics = httpx.get(server.url + "/api/incidents/metrics").json()
    assert metrics["incidents"] == 2 and metrics["by_state"] == {
        "open": 0, "acknowledged": 0, "mitigated": 1, "resolved": 1}
    assert httpx.get(server.url + "/api/incidents/999").status_code == 404
    result = runner.invoke(cli, ["incident", "resolve", "999", "--by", "bob", "--url", server.url])
    assert result.exit_code == 1 and "404: no incident 999" in result.output


NOTIFY_TIMEOUT_S = 12


def test_dead_receiver_does_not_slow_ingest_or_the_api(server_factory: Any, tmp_path: Path) -> None:
    # A listener that never accepts: connections hang until the notifier's timeout.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        receivers = tmp_path / "receivers.yaml"
        receivers.write_text(
            f"receivers:\n  - {{name: dead-hook, type: webhook, url: 'http://127.0.0.1:{blackhole.getsockname()[1]}/'}}\n")
        server = server_factory(
            tmp_path / "dead.duckdb", "--setting", f"receivers={receivers}", "--setting", f"notify_timeout_s={NOTIFY_TIMEOUT_S}",
            "--setting", "notify_max_attempts=2", "--setting", "notify_backoff_s=0.1")
        slowest_api = 0.0
        ids = []
        for n in range(5):
            started = time.monotonic()
            ids.append(_post(server, "/api/incidents", {"title": f"outage {n}", "by": "alice"}, 201)["id"])
            slowest_api = max(slowest_api, time.monotonic() - started)
        slowest_ingest = 0.0
        for _ in range(20):
            request, _ = journey_request(20)
            started = time.monotonic()
            response = httpx.post(server.url + "/v1/traces", content=request.SerializeToString(),
                                  headers={"Content-Type": "application/x-protobuf"}, timeout=30)
            slowest_ingest = max(slowest_ingest, time.monotonic() - started)
            assert response.status_code == 200
        # Each delivery blocks for NOTIFY_TIMEOUT_S per attempt: a caller that waited for one
        # would take at least that long, however fast the machine (half of it is the bound).
        assert slowest_api < NOTIFY_TIMEOUT_S / 2 and slowest_ingest < NOTIFY_TIMEOUT_S / 2, (slowest_api, slowest_ingest)
        deadline = time.monotonic() + 4 * NOTIFY_TIMEOUT_S
        attempts: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(attempts) < 2:
            attempts = httpx.get(server.url + f"/api/incidents/{ids[0]}").json()["notifications"]
            time.sleep(0.2)
        assert [(a["receiver"], a["attempt"], a["ok"], a["final"]) for a in attempts] == [
            ("dead-hook", 1, False, False), ("dead-hook", 2, False, True)]
        assert all(a["error"].startswith("timeout") for a in attempts)


def test_changes_after_impact_are_listed_apart_in_api_cli_page_and_postmortem(server: ServerProcess) -> None:
    # Healthy runs, a flag flipped 10 minutes before every run starts failing, a config
    # change 3 minutes after they began; an Alertmanager alert opens the incident.
    now = time.time_ns() // S * S
    impact = now - 6 * MINUTE
    post_request(server, runs_request(96, now - 22 * MINUTE, step_ns=10 * S)[0])
    post_request(server, runs_request(30, impact, step_ns=10 * S, failed=True, user_prefix="f")[0])
    wait_for_runs(server, {"ask": 126})
    before = _post(server, "/api/changes", {"kind": "flag", "summary": "answer-cache off", "journeys": ["ask"],
                                            "at": rfc3339(impact - 10 * MINUTE), "who": "alice"}, 201)
    after = _post(server, "/api/changes", {"kind": "config", "summary": "raise validator timeout", "journeys": ["ask"],
                                           "at": rfc3339(impact + 3 * MINUTE), "who": "bob"}, 201)
    alert = {**am_alert("AskErrors", "firing", "c1"), "startsAt": rfc3339(now - MINUTE)}
    [opened] = _post(server, "/api/alertmanager", am_payload("firing", [alert]))["incidents"]

    detail = httpx.get(server.url + f"/api/incidents/{opened['id']}").json()
    assert detail["impact_start"] == rfc3339(impact) and detail["impact"]["method"] == "journey", detail["impact"]
    evidence = detail["evidence"]
    assert [(s["change_id"], s["minutes_before_impact"]) for s in evidence["suspects"]] == [(before["id"], 10.0)]
    assert [(c["change_id"], c["minutes_after_impact"]) for c in evidence["changed_during"]] == [(after["id"], 3.0)]
    assert detail["top_suspect"]["change_id"] == before["id"]

    result = runner.invoke(cli, ["incident", "show", str(opened["id"]), "--url", server.url], terminal_width=200)
    assert result.exit_code == 0, result.output
    shown_suspects, shown_during = result.output.split("Changed during the incident")
    # (Rich wraps long cells onto a second line.)
    assert "answer-cache" in shown_suspects and "raise validator" not in shown_suspects
    assert "raise validator" in shown_during.split("Timeline")[0] and "3.0 min" in shown_during
    assert "impact start: first of" in result.output

    page = httpx.get(server.url + f"/incidents/{opened['id']}").text
    suspects_html, during_html = page.split('class="grid changed-during"')
    assert f'class="suspect" data-change="{before["id"]}"' in suspects_html and "raise validator timeout" not in suspects_html
    assert f'class="during" data-change="{after["id"]}"' in during_html
    assert 'id="impact-found">Impact start: first of' in page

    postmortem = httpx.get(server.url + f"/api/incidents/{opened['id']}/postmortem").text
    assert "| raise validator timeout (config, api) |" in postmortem.split("### Changed during the incident")[1]


def test_ids_too_large_to_exist_are_404_not_500(server: ServerProcess) -> None:
    """A path id past 64 bits names nothing that can be stored: 404, and the store is not asked."""
    huge = str(2**63)
    for method, path in (("GET", f"/api/incidents/{huge}"), ("PATCH", f"/api/action-items/{huge}"),
                         ("GET", f"/api/gate/verdicts/{huge}")):
        response = httpx.request(method, server.url + path, json={"by": "alice", "status": "done"})
        assert response.status_code == 404, (path, response.text)
    assert httpx.get(server.url + "/api/incidents/x1").status_code == 400
