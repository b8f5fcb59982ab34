"""Notifications to real HTTP receivers on loopback: exact webhook, Slack and PagerDuty v2
payloads; retries with backoff on 5xx until delivered once; no retry on 4xx; bad receiver
files refused with the field named."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from aisre.act.notify import Notifier, Receiver, load_receivers
from aisre.core.errors import PermanentError
from tests.act.receivers import receiving

INCIDENT: dict[str, Any] = {
    "id": 7, "title": "ask: ask-success: burning 20.0x over 1h", "summary": "ask-success: burning 20.0x over 1h",
    "state": "open", "severity": "sev1",
    "journey": "ask", "slo": "ask-success", "source": "slo", "commander": None, "owner": "search-team", "tier": 0,
    "runbook": "https://runbooks.example/ask", "url": "http://aisre.example/incidents/7",
    "opened": "2026-11-23T09:05:00.000000Z", "impact_start": "2026-11-23T09:01:17.000000Z",
    "first_alert": "2026-11-23T09:05:00.000000Z", "acknowledged": None, "acknowledged_by": None, "mitigated": None,
    "resolved": None, "resolved_by": None, "time_to_detect_s": 223.0, "time_to_acknowledge_s": None,
    "time_to_restore_s": None, "points_at": "service code", "warnings": [],
    "top_suspect": {"change_id": 3, "summary": "prompt ask-answer v3 → v5 in ask", "bad_share": 0.92,
                    "good_share": 0.03, "score": 0.88, "kind": "prompt"},
    "evidence": {"not": "sent"},
}

PUBLIC = {k: v for k, v in INCIDENT.items() if k not in ("evidence", "top_suspect")} | {
    "top_suspect": {"summary": "prompt ask-answer v3 → v5 in ask", "change_id": 3, "bad_share": 0.92, "good_share": 0.03}}


def _notifier(receivers: list[Receiver], attempts: list[dict[str, Any]], **kw: Any) -> Notifier:
    return Notifier(receivers, attempts.append, "default", timeout_s=2.0, **kw)


def test_exact_payloads_of_webhook_slack_and_pagerduty() -> None:
    attempts: list[dict[str, Any]] = []
    with receiving() as rx:
        notifier = _notifier([
            Receiver("hook", "webhook", rx.url + "/hook", headers={"Authorization": "Bearer s3cret"}),
            Receiver("slack", "slack", rx.url + "/slack"),
            Receiver("pd", "pagerduty", rx.url + "/pd", routing_key="R0UTINGKEY"),
        ], attempts)
        notifier.notify("opened", INCIDENT)
        rx.wait_for(3)
        acked = {**INCIDENT, "state": "acknowledged", "acknowledged": "2026-11-23T09:07:00.000000Z", "acknowledged_by": "bob"}
        notifier.notify("acknowledged", acked)
        notifier.notify("resolved", {**acked, "state": "resolved"})
        rx.wait_for(9)
        notifier.stop()
    assert rx.bodies("/hook")[0] == {"version": "1", "event": "incident.opened", "incident": PUBLIC}
    assert [r["headers"]["Authorization"] for r in rx.received if r["path"] == "/hook"] == ["Bearer s3cret"] * 3
    assert rx.bodies("/slack")[0] == {
        "text": "[OPENED] SEV1 incident #7: ask: ask-success: burning 20.0x over 1h <http://aisre.example/incidents/7|open>",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text",
                                        "text": "[OPENED] SEV1 incident #7: ask: ask-success: burning 20.0x over 1h"}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": "*Severity*\nsev1"}, {"type": "mrkdwn", "text": "*State*\nopen"},
                {"type": "mrkdwn", "text": "*Journey*\nask"}, {"type": "mrkdwn", "text": "*Owner*\nsearch-team"},
                {"type": "mrkdwn", "text": "*Tier*\n0"},
                {"type": "mrkdwn", "text": "*Runbook*\n<https://runbooks.example/ask|runbook>"}]},
            {"type": "section", "text": {"type": "mrkdwn", "text": (
                "*Top suspect:* prompt ask-answer v3 → v5 in ask — carried by 92 % of failing runs, 3 % of good ones")}},
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open incident"},
                                              "url": "http://aisre.example/incidents/7"}]},
        ],
    }
    dedup = "aisre/default/incident/7"
    pd = rx.bodies("/pd")
    assert pd[0] == {
        "routing_key": "R0UTINGKEY", "event_action": "trigger", "dedup_key": dedup,
        "payload": {
            "summary": "ask: ask-success: burning 20.0x over 1h", "source": "aisre:ask", "severity": "critical",
            "timestamp": "2026-11-23T09:05:00.000000Z", "component": "ask", "group": "search-team", "class": "slo",
            "custom_details": {k: v for k, v in PUBLIC.items() if v is not None and k not in ("title", "url")},
        },
        "links": [{"href": "http://aisre.example/incidents/7", "text": "aisre incident #7"},
                  {"href": "https://runbooks.example/ask", "text": "Runbook"}],
        "client": "aisre", "client_url": "http://aisre.example/incidents/7",
    }
    assert pd[1:] == [
        {"routing_key": "R0UTINGKEY", "event_action": "acknowledge", "dedup_key": dedup},
        {"routing_key": "R0UTINGKEY", "event_action": "resolve", "dedup_key": dedup},
    ]
    assert [b["event"] for b in rx.bodies("/hook")] == ["incident.opened", "incident.acknowledged", "incident.resolved"]
    assert len(attempts) == 9 and all(a["ok"] and a["final"] and a["attempt"] == 1 for a in attempts)


def test_500_twice_then_200_is_delivered_once_and_every_attempt_recorded() -> None:
    attempts: list[dict[str, Any]] = []
    with receiving([500, 503, 200]) as rx:
        notifier = _notifier([Receiver("hook", "webhook", rx.url + "/hook")], attempts, backoff_s=0.05)
        started = time.monotonic()
        notifier.notify("opened", INCIDENT)
        assert time.monotonic() - started < 0.05  # queued, not sent, by the caller
        rx.wait_for(3)
        time.sleep(0.3)  # nothing more arrives
        notifier.stop()
    assert [r["status"] for r in rx.received] == [500, 503, 200]
    assert sum(1 for r in rx.received if r["status"] == 200) == 1
    assert [(a["attempt"], a["status_code"], a["ok"], a["final"]) for a in attempts] == [
        (1, 500, False, False), (2, 503, False, False), (3, 200, True, True)]
    assert len({a["message_id"] for a in attempts}) == 1


def test_4xx_is_not_retried_and_a_dead_receiver_gives_up_after_max_attempts() -> None:
    attempts: list[dict[str, Any]] = []
    with receiving([400]) as rx:
        notifier = _notifier([Receiver("hook", "webhook", rx.url + "/hook"),
                              Receiver("dead", "slack", "http://127.0.0.1:9/nothing")], attempts,
                             backoff_s=0.01, max_attempts=3)
        notifier.notify("opened", INCIDENT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(1 for a in attempts if a["final"]) < 2:
            time.sleep(0.02)
        notifier.stop()
    hook = [a for a in attempts if a["receiver"] == "hook"]
    dead = [a for a in attempts if a["receiver"] == "dead"]
    assert [(a["status_code"], a["final"]) for a in hook] == [(400, True)]
    assert [(a["attempt"], a["status_code"], a["final"]) for a in dead] == [(1, None, False), (2, None, False), (3, None, True)]
    assert all("ConnectError" in a["error"] for a in dead)


def test_receivers_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "receivers.yaml"
    path.write_text("receivers:\n  - {name: pd, type: pagerduty}\n")
    with pytest.raises(PermanentError, match=r"receivers\[0\]\.routing_key: PagerDuty needs"):
        load_receivers(str(path))
    path.write_text("receivers:\n  - {type: teams, url: 'http://x'}\n")
    with pytest.raises(PermanentError, match=r"receivers\[0\]\.type: must be one of webhook, slack, pagerduty"):
        load_receivers(str(path))
    path.write_text("receivers:\n  - {type: slack, url: 'http://x', events: [opened, exploded]}\n")
    with pytest.raises(PermanentError, match=r"events: a list of"):
        load_receivers(str(path))
    path.write_text("receivers:\n  - {name: pd, type: pagerduty, routing_key: abc}\n  - {type: webhook, url: 'https://h.example'}\n")
    assert [(r.name, r.type, r.url) for r in load_receivers(str(path))] == [
        ("pd", "pagerduty", "https://events.pagerduty.com/v2/enqueue"), ("webhook-1", "webhook", "https://h.example")]
