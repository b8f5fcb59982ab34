"""Incident notifications: a generic JSON webhook, Slack incoming webhooks and the
PagerDuty Events API v2, configured in a receivers file.

```yaml
receivers:
  - name: oncall-hook          # generic webhook: {"version": "1", "event": ..., "incident": {...}}
    type: webhook
    url: https://hooks.example/aisre
    headers: {Authorization: Bearer s3cret}
  - name: sre-slack
    type: slack
    url: https://hooks.slack.com/services/T000/B000/XXXX
    events: [opened, escalated, resolved]   # default: every event
  - name: pagerduty
    type: pagerduty
    routing_key: 0123456789abcdef0123456789abcdef
    # url: https://events.pagerduty.com/v2/enqueue (the default)
```

Each receiver has its own thread and bounded queue, so a slow or dead receiver delays
nobody else and never the caller (alert evaluation, the API, ingest). A message is retried
with exponential backoff on 5xx, 429, timeouts and connection errors; every attempt is
recorded.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from aisre.core.errors import PermanentError
from aisre.core.textfile import utf8_text

log = logging.getLogger(__name__)

EVENTS = ("opened", "escalated", "acknowledged", "resolved")
RECEIVER_TYPES = ("webhook", "slack", "pagerduty")
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_SEVERITY = {"sev1": "critical", "sev2": "error", "sev3": "warning", "sev4": "info"}
QUEUE_LIMIT = 1000
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class Receiver:
    """One configured destination."""

    name: str
    type: str
    url: str
    routing_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    events: tuple[str, ...] = EVENTS


def load_receivers(path: str) -> list[Receiver]:
    """Read and check a receivers file; PermanentError names the file, entry and field."""
    try:
        doc = yaml.safe_load(utf8_text(Path(path).read_bytes(), str(path)))
    except OSError as exc:
        raise PermanentError(f"cannot read receivers file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PermanentError(f"receivers file {path} is not valid YAML: {exc}") from None
    items = doc.get("receivers") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise PermanentError(f"{path}: expected a top-level 'receivers:' list")
    out: list[Receiver] = []
    for index, item in enumerate(items):
        where = f"{path}: receivers[{index}]"
        if not isinstance(item, dict):
            raise PermanentError(f"{where}: must be a mapping")
        unknown = sorted(set(item) - {"name", "type", "url", "routing_key", "headers", "events"})
        if unknown:
            raise PermanentError(f"{where}: unknown field(s) {', '.join(unknown)}")
        kind = item.get("type")
        if kind not in RECEIVER_TYPES:
            raise PermanentError(f"{where}.type: must be one of {', '.join(RECEIVER_TYPES)}; got {kind!r}")
        name = item.get("name") or f"{kind}-{index}"
        url = item.get("url") or (PAGERDUTY_URL if kind == "pagerduty" else None)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise PermanentError(f"{where}.url: an http(s) URL is required; got {url!r}")
        key = item.get("routing_key")
        if kind == "pagerduty" and (not isinstance(key, str) or not key.strip()):
            raise PermanentError(f"{where}.routing_key: PagerDuty needs the integration's routing key")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise PermanentError(f"{where}.headers: must map header names to strings")
        events = item.get("events") or list(EVENTS)
        if not isinstance(events, list) or any(e not in EVENTS for e in events):
            raise PermanentError(f"{where}.events: a list of {', '.join(EVENTS)}; got {events!r}")
        if any(r.name == name for r in out):
            raise PermanentError(f"{where}.name: {name!r} is used twice")
        out.append(Receiver(str(name), kind, url, key, {str(k): v for k, v in headers.items()}, tuple(events)))
    return out


# -- payloads ---------------------------------------------------------------------------

def _public(incident: dict[str, Any]) -> dict[str, Any]:
    """The incident as notifications carry it (no evidence blobs, no timeline)."""
    keep = ("id", "title", "summary", "state", "severity", "journey", "slo", "source", "commander", "owner", "tier", "runbook",
            "url", "opened", "impact_start", "first_alert", "acknowledged", "acknowledged_by", "mitigated",
            "resolved", "resolved_by", "time_to_detect_s", "time_to_acknowledge_s", "time_to_restore_s",
            "points_at", "warnings")
    out = {k: incident.get(k) for k in keep}
    top = incident.get("top_suspect")
    out["top_suspect"] = None if not top else {
        "summary": top["summary"], "change_id": top["change_id"], "bad_share": top["bad_share"],
        "good_share": top["good_share"]}
    return out


def webhook_payload(event: str, incident: dict[str, Any]) -> dict[str, Any]:
    """Generic webhook body."""
    return {"version": "1", "event": f"incident.{event}", "incident": _public(incident)}


def slack_payload(event: str, incident: dict[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook body: a plain ``text`` fallback plus Block Kit blocks."""
    head = f"[{event.upper()}] {incident['severity'].upper()} incident #{incident['id']}: {incident['title']}"
    runbook = incident.get("runbook")
    fields = [
        ("Severity", incident["severity"]), ("State", incident["state"]),
        ("Journey", incident.get("journey") or "-"), ("Owner", incident.get("owner") or "-"),
        ("Tier", "-" if incident.get("tier") is None else str(incident["tier"])),
        ("Runbook", f"<{runbook}|runbook>" if runbook else "none linked"),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields]},
    ]
    top = incident.get("top_suspect")
    if top:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*Top suspect:* {top['summary']} — carried by {top['bad_share'] * 100:.0f} % of failing runs, "
            f"{top['good_share'] * 100:.0f} % of good ones")}})
    blocks.append({"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "Open incident"}, "url": incident["url"]}]})
    return {"text": f"{head} <{incident['url']}|open>", "blocks": blocks}


def pagerduty_dedup_key(tenant: str, incident_id: int) -> str:
    """Stable per incident: trigger, acknowledge and resolve all name the same alert."""
    return f"aisre/{tenant}/incident/{incident_id}"


def pagerduty_payload(event: str, incident: dict[str, Any], routing_key: str, tenant: str) -> dict[str, Any]:
    """PagerDuty Events API v2 body: trigger (opened, escalated), acknowledge or resolve."""
    dedup = pagerduty_dedup_key(tenant, incident["id"])
    if event in ("acknowledged", "resolved"):
        action = "acknowledge" if event == "acknowledged" else "resolve"
        return {"routing_key": routing_key, "event_action": action, "dedup_key": dedup}
    links = [{"href": incident["url"], "text": f"aisre incident #{incident['id']}"}]
    if incident.get("runbook"):
        links.append({"href": incident["runbook"], "text": "Runbook"})
    details = {k: v for k, v in _public(incident).items() if v is not None and k not in ("title", "url")}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": incident["title"][:1024],
            "source": f"aisre:{incident.get('journey') or incident.get('slo') or 'aisre'}",
            "severity": PAGERDUTY_SEVERITY.get(incident["severity"], "warning"),
            "timestamp": incident["opened"],
            "component": incident.get("journey"),
            "group": incident.get("owner"),
            "class": incident["source"],
            "custom_details": details,
        },
        "links": links,
        "client": "aisre",
        "client_url": incident["url"],
    }


def payload_for(receiver: Receiver, event: str, incident: dict[str, Any], tenant: str) -> dict[str, Any]:
    if receiver.type == "slack":
        return slack_payload(event, incident)
    if receiver.type == "pagerduty":
        return pagerduty_payload(event, incident, receiver.routing_key or "", tenant)
    return webhook_payload(event, incident)


# -- delivery ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Message:
    incident_id: int
    event: str
    body: dict[str, Any]
    message_id: str


Recorder = Callable[[dict[str, Any]], None]


class _Worker:
    def __init__(self, receiver: Receiver, owner: Notifier) -> None:
        self.receiver = receiver
        self._owner = owner
        self.queue: queue.Queue[_Message | None] = queue.Queue(QUEUE_LIMIT)
        self.thread = threading.Thread(target=self._run, name=f"aisre-notify-{receiver.name}", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=self._owner.timeout_s) as client:
            while True:
                message = self.queue.get()
                if message is None:
                    return
                try:
                    self._deliver(client, message)
                except Exception:  # a bug in one delivery must not end the receiver
                    log.exception("notification to %s failed", self.receiver.name)

    def _deliver(self, client: httpx.Client, message: _Message) -> None:
        owner = self._owner
        for attempt in range(1, owner.max_attempts + 1):
            started = time.monotonic()
            status: int | None = None
            error: str | None = None
            retry_after: float | None = None
            try:
                response = client.post(self.receiver.url, json=message.body, headers=self.receiver.headers)
                status = response.status_code
                if status >= 300:
                    error = response.text[:300] or f"HTTP {status}"
                    header = response.headers.get("retry-after", "")
                    retry_after = float(header) if header.replace(".", "", 1).isdigit() else None
            except httpx.TimeoutException as exc:
                error = f"timeout: {type(exc).__name__}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            ok = status is not None and 200 <= status < 300
            retryable = not ok and (status is None or status >= 500 or status == 429)
            final = ok or not retryable or attempt == owner.max_attempts or owner.stopping.is_set()
            owner.record({
                "tenant": owner.tenant, "incident_id": message.incident_id, "receiver": self.receiver.name,
                "receiver_type": self.receiver.type, "event": message.event, "message_id": message.message_id,
                "attempt": attempt, "at_ns": time.time_ns(), "duration_ms": (time.monotonic() - started) * 1000,
                "status_code": status, "ok": ok, "final": final, "error": error,
            })
            if final:
                if not ok:
                    log.warning("notification %s to %s gave up after %d attempt(s): %s",
                                message.event, self.receiver.name, attempt, error)
                return
            delay = min(MAX_BACKOFF_S, owner.backoff_s * 2 ** (attempt - 1)) * (0.75 + 0.5 * random.random())
            if retry_after is not None:
                delay = min(MAX_BACKOFF_S, max(delay, retry_after))
            if owner.stopping.wait(delay):
                return


class Notifier:
    """Queues incident events to every receiver that wants them; delivery is asynchronous."""

    def __init__(
        self,
        receivers: list[Receiver],
        record: Recorder,
        tenant: str,
        timeout_s: float = 5.0,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
    ) -> None:
        self.tenant = tenant
        self.record = record
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.stopping = threading.Event()
        self._workers = [_Worker(r, self) for r in receivers]
        self._started = False
        self._lock = threading.Lock()

    @property
    def receivers(self) -> list[Receiver]:
        return [w.receiver for w in self._workers]

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                for worker in self._workers:
                    worker.thread.start()

    def notify(self, event: str, incident: dict[str, Any]) -> None:
        """Queue ``event`` for every receiver subscribed to it; never blocks."""
        if event not in EVENTS:
            raise ValueError(f"unknown incident event {event!r}")
        self.start()
        for worker in self._workers:
            if event not in worker.receiver.events:
                continue
            message = _Message(incident["id"], event, payload_for(worker.receiver, event, incident, self.tenant),
                               uuid.uuid4().hex)
            try:
                worker.queue.put_nowait(message)
            except queue.Full:
                self.record({
                    "tenant": self.tenant, "incident_id": incident["id"], "receiver": worker.receiver.name,
                    "receiver_type": worker.receiver.type, "event": event, "message_id": message.message_id,
                    "attempt": 0, "at_ns": time.time_ns(), "duration_ms": 0.0, "status_code": None, "ok": False,
                    "final": True, "error": f"dropped: {QUEUE_LIMIT} messages already waiting for this receiver",
                })

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop retrying, let in-flight attempts finish, end the threads. Idempotent."""
        self.stopping.set()
        for worker in self._workers:
            if worker.thread.is_alive():
                with contextlib.suppress(queue.Full):
                    worker.queue.put_nowait(None)
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            if worker.thread.is_alive():
                worker.thread.join(max(0.0, deadline - time.monotonic()))
