"""The bad-prompt-rollout demo end to end (accelerated clock): healthy traffic, then prompt v5
ships and answers hallucinate; aisre detects the rollout, the ask SLO pages, an incident opens
with the rollout as top suspect, and the postmortem shows an exemplar trace's prompt and tool
call."""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

import httpx
import pytest

from aisre.demo import runner
from aisre.demo.telemetry import SimClock
from tests.conftest import wait_for

DEMO_SLOS = str(resources.files("aisre.demo").joinpath("slos.yaml"))



@pytest.mark.slow
def test_bad_prompt_rollout_opens_incident_with_rollout_as_top_suspect(server_factory: Any, tmp_path: Any) -> None:
    server = server_factory(tmp_path / "rollout.duckdb", "--slos", DEMO_SLOS, "--setting", "evaluation_interval_s=1",
                            "--setting", "evidence_interval_s=1")
    # 42 simulated minutes in 14 real seconds, ending about now: 18 healthy minutes, then v5
    # fails about a quarter of runs; the 1 h window passes 13.44x some 17 minutes in.
    speed, seconds = 180, 14
    clock = SimClock(speed, start_ns=time.time_ns() - int(speed * seconds * 1e9))
    stats = runner.run(
        server.url + "/v1/traces", rate_per_s=30, duration_s=seconds, scenario="bad-prompt-rollout", rollout_after_s=6,
        time_scale=0.05, seed=11, export_delay_ms=200, clock=clock,
    )
    assert stats.failures["ask"] > 0

    def incident() -> dict[str, Any] | None:
        items = httpx.get(server.url + "/api/incidents", params={"journey": "ask"}).json()["items"]
        return items[0] if items and items[0].get("top_suspect") else None

    found = wait_for(incident, 30, "an ask incident with a suspect")
    top = found["top_suspect"]
    assert found["severity"] == "sev1" and found["owner"] == "search-team"  # tier-0 page
    assert top["summary"] == "prompt ask-answer v3 → v5 in ask", top
    assert top["bad_share"] > 0.9 and top["good_share"] < top["bad_share"]
    changes = httpx.get(server.url + "/api/changes", params={"journey": "ask"}).json()["items"]
    assert [(c["kind"], c["previous"], c["version"], c["source"]) for c in changes] == [("prompt", "v3", "v5", "detected")]

    detail = httpx.get(server.url + f"/api/incidents/{found['id']}").json()
    assert detail["time_to_detect_s"] is not None and detail["time_to_detect_s"] >= 0
    assert detail["evidence"]["points_at"] == "service code"  # the service's own validation refuses answers
    postmortem = httpx.get(server.url + f"/api/incidents/{found['id']}/postmortem").text
    exemplar = detail["evidence"]["exemplars"][0]
    trace = httpx.get(server.url + f"/api/traces/{exemplar}").json()
    assert trace["outcome"] == "failure" and trace["prompt_version"] == "v5"
    chat = next(s for s in trace["spans"] if s["operation"] == "chat" and s["genai"].get("input_messages"))
    system = chat["genai"]["input_messages"][0]
    prompt = system["parts"][0]["content"] if "parts" in system else system["content"]
    tool = next(s for s in trace["spans"] if s["operation"] == "execute_tool")
    assert f"### Trace `{exemplar}`" in postmortem
    assert prompt.splitlines()[0] in postmortem
    assert f"**Tool call** `{tool['tool_name']}`" in postmortem
    # The page alert names its SLO's owner, tier, runbook and the incident it opened.
    alerts = httpx.get(server.url + "/api/alerts", params={"slo": "ask-success"}).json()["items"]
    page = next(a for a in alerts if a["severity"] == "page")
    assert (page["owner"], page["tier"], page["runbook"], page["runbook_missing"], page["incident"]) == (
        "search-team", 0, "https://runbooks.example/ask", False, found["id"])
    assert page["incident_url"].endswith(f"/incidents/{found['id']}")
    # The rollout is marked on the SLO page's charts: the burn-down and the error rate below it.
    slo_page = httpx.get(server.url + "/slos/ask-success").text
    assert slo_page.count('class="change-marker kind-prompt"') == 2 and "prompt ask-answer v3 → v5 in ask" in slo_page
    for value in json.loads(tool["genai"]["tool_arguments"] if isinstance(tool["genai"]["tool_arguments"], str)
                            else json.dumps(tool["genai"]["tool_arguments"])).values():
        assert str(value) in postmortem
