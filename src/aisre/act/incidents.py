"""Incidents: alerts open them (deduplicated and grouped by journey), people move them
open → acknowledged → mitigated → resolved, and every step is an audited timeline entry.

Firing SLO alerts and Alertmanager alerts take the same path: an alert whose group
(its journey, else its SLO or Alertmanager group) has an unresolved incident joins it;
otherwise it opens one. When every alert of an incident has resolved the incident is
marked mitigated (a person still resolves it); an alert that fires again on a mitigated
incident sends it back to open. Triage evidence is computed at open and refreshed until
resolve.

Impact start is the first minute of the sustained bad stretch that led to an alert
(evaluate/impact.py), refined to the first failing run in it; each joining alert may find
an earlier stretch (or the first one, when the opening alert had none). Times: time to
detect = first alert at or after impact start − impact start; time to acknowledge =
acknowledged − opened; time to restore = (mitigated, else resolved) − impact start.

The title and summary follow the incident's worst alert: highest severity, then highest
burn reached; a person's own title stays. The timeline keeps each alert's own numbers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aisre.act.alerts import BUDGET_PREFIX, is_budget_alert
from aisre.core.errors import PermanentError, StaleState
from aisre.core.rows import AlertEpisode, Change, Incident
from aisre.core.schema import MINUTE_NS
from aisre.core.slo import SloSpec
from aisre.core.timefmt import rfc3339
from aisre.evaluate.impact import LOOKBACK_MIN, MAX_GAP_MIN, MIN_BAD_EVENTS, REACH_MIN, find_stretch
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.triage import LOOKBACK_NS, triage
from aisre.receive.alertmanager import ExternalAlert
from aisre.store.lease import LeaseGate
from aisre.store.protocol import IncidentStore

log = logging.getLogger(__name__)

STATES = ("open", "acknowledged", "mitigated", "resolved")
SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
SYSTEM = "aisre"
# Keys of the evidence JSON the manager owns (triage refreshes the rest).
# Evidence the incident writes itself (triage's refresh keeps it): the burning dependencies
# are as they stood when the incident opened.
OWN_EVIDENCE = ("impact", "headline", "burning_dependencies")

# action → (states it may start from, state it leads to, time column, actor column)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "acknowledge": (("open",), "acknowledged", "acknowledged_ns", "acknowledged_by"),
    "mitigate": (("open", "acknowledged"), "mitigated", "mitigated_ns", "mitigated_by"),
    "resolve": (("open", "acknowledged", "mitigated"), "resolved", "resolved_ns", "resolved_by"),
}
_AM_SEVERITY = {"critical": "sev2", "page": "sev2", "high": "sev2", "error": "sev3", "warning": "sev3",
                "ticket": "sev3", "low": "sev4", "info": "sev4", "none": "sev4"}


class Notifications(Protocol):
    def notify(self, event: str, incident: dict[str, Any]) -> None: ...


class _Silent:
    def notify(self, event: str, incident: dict[str, Any]) -> None:
        return None


@dataclass(frozen=True)
class AlertIn:
    """An alert as incidents see it, whatever sent it."""

    key: str
    source: str  # slo | alertmanager
    name: str
    severity: str  # incident severity it asks for (sev1..sev4)
    group_key: str
    journey: str | None
    slo: str | None
    firing: bool
    started_ns: int
    ended_ns: int | None
    summary: str
    owner: str | None = None
    tier: int | None = None
    runbook: str | None = None
    objective: float | None = None
    labels: dict[str, str] | None = None
    burn: float | None = None  # highest burn rate the alert reached (SLO and budget alerts)
    pair_severity: str = "page"  # page | ticket: which burn-rate pairs fired it (its reach back)


def impact_start(minutes: list[tuple[int, int, int]], threshold: float, alert_ns: int) -> int | None:
    """First minute of the sustained bad stretch that reaches the alert (evaluate/impact.py).
    ``minutes`` are (minute_ns, total, bad)."""
    stretch = find_stretch(minutes, threshold, alert_ns)
    return None if stretch is None else stretch.start_ns


def alert_rank(severity: str, burn: float | None) -> tuple[int, float]:
    """Sort key of alerts, worst first: highest severity, then highest burn."""
    return (severity_rank(severity), -(burn or 0.0))


def headline(alert: AlertIn) -> dict[str, Any]:
    """What the incident's title and summary are made of: its worst alert."""
    return {"alert_key": alert.key, "alert": alert.name, "severity": alert.severity, "burn": alert.burn,
            "summary": alert.summary}


def headline_title(journey: str | None, summary: str) -> str:
    return (f"{journey}: {summary}" if journey else summary)[:300]


def duration_s(start_ns: int | None, end_ns: int | None) -> float | None:
    return None if start_ns is None or end_ns is None else round((end_ns - start_ns) / 1e9, 3)


def incident_times(row: Mapping[str, Any]) -> dict[str, float | None]:
    """Time to detect, acknowledge, mitigate, restore and resolve, in seconds."""
    impact = row.get("impact_start_ns")
    restored = row.get("mitigated_ns") or row.get("resolved_ns")
    return {
        "time_to_detect_s": duration_s(impact, row.get("first_alert_ns")),
        "time_to_acknowledge_s": duration_s(row["opened_ns"], row.get("acknowledged_ns")),
        "time_to_mitigate_s": duration_s(row["opened_ns"], row.get("mitigated_ns")),
        "time_to_restore_s": duration_s(impact if impact is not None else row["opened_ns"], restored),
        "time_to_resolve_s": duration_s(row["opened_ns"], row.get("resolved_ns")),
    }


def summarize_times(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """MTTD, MTTA and MTTR (means, and medians) over incidents, plus counts."""
    rows = list(rows)
    out: dict[str, Any] = {"incidents": len(rows), "by_state": {s: 0 for s in STATES},
                           "by_severity": {s: 0 for s in SEVERITIES}}
    times = [incident_times(r) for r in rows]
    for r in rows:
        out["by_state"][r["state"]] = out["by_state"].get(r["state"], 0) + 1
        out["by_severity"][r["severity"]] = out["by_severity"].get(r["severity"], 0) + 1
    for short, key in (("mttd", "time_to_detect_s"), ("mtta", "time_to_acknowledge_s"),
                       ("mttr", "time_to_restore_s"), ("mtt_resolve", "time_to_resolve_s")):
        values = sorted(v for t in times if (v := t[key]) is not None)
        out[f"{short}_s"] = round(sum(values) / len(values), 3) if values else None
        out[f"{short}_median_s"] = values[len(values) // 2] if values else None
        out[f"{short}_count"] = len(values)
    return out


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def slo_alert(row: Mapping[str, Any], spec: SloSpec | None) -> AlertIn:
    """An SLO alert episode row (act/alerts.py) as an incident alert."""
    if is_budget_alert(row["slo"]):
        return budget_alert(row)
    if row["severity"] == "page":
        severity = "sev1" if spec is not None and spec.tier == 0 else "sev2"
    else:
        severity = "sev3"
    journey = row.get("journey")
    return AlertIn(
        key=f"slo:{row['slo']}:{row['severity']}:{row['pending_since_ns']}",
        source="slo", name=f"{row['slo']} {row['severity']}", severity=severity,
        group_key=f"journey:{journey}" if journey else f"slo:{row['slo']}",
        journey=journey, slo=row["slo"], firing=row["state"] == "firing",
        started_ns=row.get("started_ns") or row["pending_since_ns"], ended_ns=row.get("ended_ns"),
        summary=row["summary"],
        owner=spec.owner if spec else None, tier=spec.tier if spec else None,
        runbook=spec.runbook if spec else None, objective=spec.objective if spec else None,
        burn=_float(row.get("peak_burn")), pair_severity=row["severity"],
    )


def budget_alert(row: Mapping[str, Any]) -> AlertIn:
    """A cost-budget alert episode (act/cost_alerts.py): a ticket (sev4) below 100 %, sev3 at or above.
    Grouped per budget, not per journey: overspending is not an outage of the journey."""
    budget = row["slo"][len(BUDGET_PREFIX):].rsplit("@", 1)[0]
    return AlertIn(
        key=f"{row['slo']}:{row['severity']}:{row['pending_since_ns']}",
        source="budget", name=row["slo"], severity="sev3" if row["severity"] == "page" else "sev4",
        group_key=f"{BUDGET_PREFIX}{budget}", journey=row.get("journey"), slo=None,
        firing=row["state"] == "firing", started_ns=row.get("started_ns") or row["pending_since_ns"],
        ended_ns=row.get("ended_ns"), summary=row["summary"], burn=_float(row.get("peak_burn")),
    )


def external_alert(alert: ExternalAlert) -> AlertIn:
    """An Alertmanager alert as an incident alert."""
    severity = alert.severity if alert.severity in SEVERITIES else _AM_SEVERITY.get(alert.severity, "sev3")
    tier = alert.labels.get("tier")
    return AlertIn(
        key=alert.key, source="alertmanager", name=alert.name, severity=severity, group_key=alert.group_key,
        journey=alert.journey, slo=alert.labels.get("slo"), firing=alert.status == "firing",
        started_ns=alert.starts_ns, ended_ns=alert.ends_ns, summary=alert.summary,
        owner=alert.labels.get("owner") or alert.labels.get("team"),
        tier=int(tier) if tier and tier.isdigit() else None, runbook=alert.runbook, labels=alert.labels,
    )


class IncidentManager:
    """Opens, joins and moves incidents; refreshes their evidence; sends notifications."""

    # Passes run only while this node holds the evaluator lease (app.py sets it; always, by default).
    gate: LeaseGate = LeaseGate()

    def __init__(
        self,
        store: IncidentStore,
        slos: SloEngine | None,
        tenant: str,
        notifier: Notifications | None = None,
        public_url: str = "",
        interval_s: float = 15.0,
        evidence_interval_s: float = 60.0,
        clock: Callable[[], int] = time.time_ns,
        slo_minutes: Callable[[str, int, int, str], dict[str, tuple[Any, Any, Any]]] | None = None,
    ) -> None:
        self.store = store
        self._slos = slos
        self._tenant = tenant
        self._notifier: Notifications = notifier or _Silent()
        self._public_url = public_url.rstrip("/")
        self._interval = interval_s
        self._evidence_interval_ns = int(evidence_interval_s * 1e9)
        self._clock = clock
        self._slo_minutes = slo_minutes
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- documents --------------------------------------------------------------------

    def url(self, incident_id: int) -> str:
        return f"{self._public_url}/incidents/{incident_id}"

    def document(self, row: Incident) -> dict[str, Any]:
        """An incident as the API, notifications and pages show it."""
        evidence = row.get("evidence") or {}
        doc: dict[str, Any] = {
            "id": row["id"], "title": row["title"], "state": row["state"], "severity": row["severity"],
            "journey": row.get("journey"), "slo": row.get("slo"), "source": row["source"],
            "commander": row.get("commander"), "owner": row.get("owner"), "tier": row.get("tier"),
            "runbook": row.get("runbook"), "url": self.url(row["id"]),
            "opened": rfc3339(row["opened_ns"]), "impact_start": rfc3339(row.get("impact_start_ns")),
            "first_alert": rfc3339(row.get("first_alert_ns")),
            "acknowledged": rfc3339(row.get("acknowledged_ns")), "acknowledged_by": row.get("acknowledged_by"),
            "mitigated": rfc3339(row.get("mitigated_ns")), "mitigated_by": row.get("mitigated_by"),
            "resolved": rfc3339(row.get("resolved_ns")), "resolved_by": row.get("resolved_by"),
            "updated": rfc3339(row["updated_ns"]),
            **incident_times(row),
        }
        top = evidence.get("headline")
        doc["summary"] = top["summary"] if top else None
        doc["impact"] = _impact_document(evidence.get("impact"))
        # Both keys always, null until triage has run: one shape for API clients.
        triaged = any(k not in OWN_EVIDENCE for k in evidence)
        doc["points_at"] = evidence.get("points_at") if triaged else None
        doc["top_suspect"] = evidence.get("top_suspect") if triaged else None
        # The journey SLO's platform dependencies that burned with it when the incident opened.
        doc["burning_dependencies"] = evidence.get("burning_dependencies") or []
        warnings = []
        if not row.get("runbook"):
            warnings.append("no runbook linked: the alert's SLO (or Alertmanager rule) names none")
        doc["warnings"] = warnings
        return doc

    def get(self, incident_id: int, tenant: str | None = None) -> dict[str, Any]:
        """The full incident: document, alerts, timeline, evidence, action items, notifications."""
        tenant = tenant or self._tenant
        row = self.store.get_incident(tenant, incident_id)
        doc = self.document(row)
        triaged = {k: v for k, v in (row.get("evidence") or {}).items() if k not in OWN_EVIDENCE}
        doc["evidence"] = triaged or None
        doc["evidence_computed"] = rfc3339(row.get("evidence_ns"))
        doc["alerts"] = [
            {"key": a["alert_key"], "source": a["source"], "name": a["name"], "severity": a["severity"],
             "started": rfc3339(a["started_ns"]), "ended": rfc3339(a["ended_ns"]), "summary": a["summary"],
             "labels": a.get("labels")}
            for a in self.store.alerts(tenant, incident_id)
        ]
        doc["timeline"] = self.timeline(row)
        doc["action_items"] = [self._item_document(i) for i in self.store.action_items(tenant, incident_id)]
        doc["notifications"] = [
            {"receiver": n["receiver"], "type": n["receiver_type"], "event": n["event"], "attempt": n["attempt"],
             "at": rfc3339(n["at_ns"]), "status_code": n["status_code"], "ok": n["ok"], "final": n["final"],
             "error": n["error"], "duration_ms": n["duration_ms"]}
            for n in self.store.notification_attempts(tenant, incident_id)
        ]
        return doc

    def timeline(self, row: Incident) -> list[dict[str, Any]]:
        """Timeline entries and the changes around the incident, in time order."""
        items = [
            {"time": rfc3339(e["at_ns"]), "at_ns": e["at_ns"], "kind": e["kind"], "actor": e["actor"],
             "message": e["message"], "data": e.get("data")}
            for e in self.store.events(row["tenant"], row["id"])
        ]
        start = (row.get("impact_start_ns") or row["opened_ns"]) - LOOKBACK_NS // 24
        end = row.get("resolved_ns") or self._clock()
        for change in self.store.list_changes(row["tenant"], since_ns=start, until_ns=end + 1, journey=row.get("journey")):
            items.append({
                "time": rfc3339(change["at_ns"]), "at_ns": change["at_ns"], "kind": "change",
                "actor": change.get("who") or change["source"], "message": change["summary"],
                "data": {"change_id": change["id"], "kind": change["kind"], "version": change.get("version"),
                         "link": change.get("link")},
            })
        if row.get("impact_start_ns") is not None:
            found = (row.get("evidence") or {}).get("impact") or {}
            items.append({"time": rfc3339(row["impact_start_ns"]), "at_ns": row["impact_start_ns"], "kind": "impact",
                          "actor": SYSTEM, "message": "impact began: " + (found.get("summary") or found.get("explanation") or "start of the bad minutes"),
                          "data": None})
        items.sort(key=lambda i: i["at_ns"])
        for item in items:
            del item["at_ns"]  # sorted by it; the document's time is the RFC 3339 one
        return items

    @staticmethod
    def _item_document(item: dict[str, Any]) -> dict[str, Any]:
        return {"id": item["id"], "incident_id": item["incident_id"], "title": item["title"], "owner": item.get("owner"),
                "due": rfc3339(item.get("due_ns")), "status": item["status"], "created": rfc3339(item["created_ns"]),
                "done": rfc3339(item.get("done_ns"))}

    def list_incidents(self, state: str | None = None, journey: str | None = None, since_ns: int | None = None,
             until_ns: int | None = None, limit: int = 100, tenant: str | None = None) -> list[dict[str, Any]]:
        if state is not None and state not in (*STATES, "active"):
            raise PermanentError(f"state must be one of {', '.join((*STATES, 'active'))}; got {state!r}")
        rows = self.store.list_incidents(tenant or self._tenant, state, journey, since_ns, until_ns, limit, with_evidence=True)
        return [self.document(r) for r in rows]

    def metrics(self, since_ns: int | None = None, until_ns: int | None = None, tenant: str | None = None) -> dict[str, Any]:
        """MTTD/MTTA/MTTR over incidents opened in [since, until), and action-item completion."""
        tenant = tenant or self._tenant
        rows = self.store.list_incidents(tenant, None, None, since_ns, until_ns, 100_000)
        out = summarize_times(rows)
        ids = {r["id"] for r in rows}
        items = [i for i in self.store.action_items(tenant) if i["incident_id"] in ids]
        done = sum(1 for i in items if i["status"] == "done")
        now = self._clock()
        out["action_items"] = {
            "total": len(items), "done": done,
            "completion_rate": round(done / len(items), 4) if items else None,
            "overdue": sum(1 for i in items if i["status"] != "done" and i.get("due_ns") and i["due_ns"] < now),
        }
        out["since"], out["until"] = rfc3339(since_ns), rfc3339(until_ns)
        return out

    def alert_context(self, rows: Sequence[AlertEpisode], tenant: str | None = None) -> list[dict[str, Any]]:
        """For SLO alert episode rows: the SLO's owner, tier and runbook (flagged when
        missing) and the incident each alert opened or joined, with its link."""
        tenant = tenant or self._tenant
        specs = {s.id: s for s in self._slos.specs(tenant)} if self._slos else {}
        keys = [slo_alert(r, None).key for r in rows]
        linked = self.store.incidents_for_alert_keys(tenant, keys)
        out = []
        for row, key in zip(rows, keys, strict=True):
            spec = specs.get(row["slo"])
            incident = linked.get(key)
            out.append({
                "owner": spec.owner if spec else None, "tier": spec.tier if spec else None,
                "runbook": spec.runbook if spec else None, "runbook_missing": not (spec and spec.runbook),
                "incident": incident, "incident_url": self.url(incident) if incident is not None else None,
            })
        return out

    # -- alerts in --------------------------------------------------------------------

    def on_slo_alerts(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Feed the alert rows an evaluation changed; returns incidents opened or changed."""
        out: list[dict[str, Any]] = []
        for tenant in sorted({r.get("tenant") or self._tenant for r in rows}):
            specs = {s.id: s for s in self._slos.specs(tenant)} if self._slos else {}
            alerts = [
                slo_alert(r, specs.get(r["slo"])) for r in rows
                if (r.get("tenant") or self._tenant) == tenant and r["state"] in ("firing", "resolved")
            ]
            out += self.ingest(alerts, tenant)
        return out

    def on_alertmanager(self, alerts: list[ExternalAlert], tenant: str | None = None) -> list[dict[str, Any]]:
        """Feed one Alertmanager webhook's alerts (in batches: see :meth:`ingest`)."""
        return self.ingest([external_alert(a) for a in alerts], tenant or self._tenant)

    def ingest(self, alerts: list[AlertIn], tenant: str) -> list[dict[str, Any]]:
        """Open, join or calm incidents with these alerts; idempotent for alerts seen before.

        An alert storm is handled in batches, not alert by alert: one lookup says which
        alerts are known; known firing alerts without a burn rate to follow change nothing and
        are skipped; new firing alerts join their group's incident in one update (a timeline
        entry each, one headline, impact and evidence judged once). Resolved alerts and SLO
        alerts that carry a burn rate go one by one."""
        touched: dict[int, Incident] = {}
        with self._lock:
            known = self.store.incidents_for_alert_keys(tenant, sorted({a.key for a in alerts})) if alerts else {}
            groups: dict[str, dict[str, AlertIn]] = {}
            singles: list[AlertIn] = []
            for alert in alerts:
                if not alert.firing and alert.key not in known:
                    continue  # the resolution of an alert no incident holds
                if alert.key in known:
                    if alert.firing and alert.burn is None:
                        continue  # seen before, and no burn for the headline to follow
                    singles.append(alert)
                else:
                    groups.setdefault(alert.group_key, {}).setdefault(alert.key, alert)
            # New alerts first: a known alert's burn is then judged against the headline they set.
            for group_key, batch in groups.items():
                joined = self._open_or_join(tenant, group_key, list(batch.values()))
                touched[joined["id"]] = joined
            for alert in singles:
                if alert.firing:
                    result = self._one(alert, tenant)
                    if result is not None:
                        touched[result["id"]] = result
            touched.update(self._resolve(tenant, [a for a in singles if not a.firing]))
        return [self.document(r) for r in touched.values()]

    def _open_or_join(self, tenant: str, group_key: str, alerts: list[AlertIn]) -> Incident:
        """New firing alerts of one group: the first opens the incident when none is open;
        the rest join it together."""
        now = self._clock()
        current = self.store.open_incident_for(tenant, group_key)
        if current is None:
            current = self._open(alerts[0], _link(alerts[0]), tenant, now)
            alerts = alerts[1:]
            if not alerts:
                return current
        return self._join(tenant, current, alerts, now)

    def _resolve(self, tenant: str, alerts: list[AlertIn]) -> dict[int, Incident]:
        """Resolved alerts calm their incidents: one update per incident with a timeline entry
        per alert; an incident all of whose alerts have resolved is mitigated."""
        now = self._clock()
        by_incident: dict[int, list[AlertIn]] = {}
        for alert in alerts:
            for incident in self.store.incidents_of_alert(tenant, alert.key):
                if incident["alert_ended_ns"] is None and incident["state"] != "resolved":
                    by_incident.setdefault(incident["id"], []).append(alert)
        out: dict[int, Incident] = {}
        for incident_id, ended in by_incident.items():
            events = [{"at_ns": now, "kind": "alert_resolved", "actor": a.source,
                       "message": f"alert {a.name} resolved", "data": {"alert": a.key}} for a in ended]
            links = [{**_link(a), "ended_ns": a.ended_ns or now} for a in ended]
            updated = self.store.update_incident(tenant, incident_id, {"updated_ns": now}, events, links)
            still = [a for a in self.store.alerts(tenant, incident_id) if a["ended_ns"] is None]
            if not still and updated["state"] in ("open", "acknowledged"):
                updated = self._move(tenant, updated, "mitigate", SYSTEM, "every alert has resolved", now)
            out[incident_id] = updated
        return out

    def _one(self, alert: AlertIn, tenant: str) -> Incident | None:
        now = self._clock()
        linked = self.store.incidents_of_alert(tenant, alert.key)
        link = _link(alert)
        if not alert.firing:
            out = None
            for incident in linked:
                if incident["alert_ended_ns"] is not None or incident["state"] == "resolved":
                    continue
                ended = alert.ended_ns or now
                event = {"at_ns": now, "kind": "alert_resolved", "actor": alert.source,
                         "message": f"alert {alert.name} resolved", "data": {"alert": alert.key}}
                out = self.store.update_incident(tenant, incident["id"], {"updated_ns": now}, [event],
                                                 [{**link, "ended_ns": ended}])
                still = [a for a in self.store.alerts(tenant, incident["id"]) if a["ended_ns"] is None]
                if not still and out["state"] in ("open", "acknowledged"):
                    out = self._move(tenant, out, "mitigate", SYSTEM, "every alert has resolved", now)
            return out
        if linked:  # seen before: only its numbers may have grown
            for incident in linked:
                if incident["alert_ended_ns"] is None and incident["state"] != "resolved":
                    self._follow_burn(tenant, incident["id"], alert, link, now)
            return None
        current = self.store.open_incident_for(tenant, alert.group_key)
        if current is None:
            return self._open(alert, link, tenant, now)
        return self._join(tenant, current, [alert], now)

    def _join(self, tenant: str, current: Incident, alerts: list[AlertIn], now: int) -> Incident:
        """New firing alerts join an open incident in one update: a timeline entry each; the
        worst becomes the headline, the most severe may escalate it, the earliest may move
        impact start; evidence is recomputed at most once."""
        changes: dict[str, Any] = {"updated_ns": now}
        events = [{"at_ns": now, "kind": "alert", "actor": alert.source,
                   "message": f"alert {alert.name} joined: {alert.summary}", "data": {"alert": alert.key}}
                  for alert in alerts]
        evidence = dict(current.get("evidence") or {})
        top = evidence.get("headline")
        worst = min(alerts, key=lambda a: alert_rank(a.severity, a.burn))  # the first of equals, as one by one
        if top is None or alert_rank(worst.severity, worst.burn) < alert_rank(top["severity"], top.get("burn")):
            evidence["headline"] = headline(worst)
            if not self._title_pinned(tenant, current["id"]):
                changes["title"] = headline_title(current.get("journey"), worst.summary)
        earliest = min(alerts, key=lambda a: a.started_ns)
        revised = self._revise_impact(tenant, current, earliest, evidence, changes,
                                      [a.started_ns for a in alerts])
        changes["evidence"] = evidence
        severest = min(alerts, key=lambda a: severity_rank(a.severity))
        escalated = severity_rank(severest.severity) < severity_rank(current["severity"])
        if escalated:
            changes["severity"] = severest.severity
            events.append({"at_ns": now, "kind": "severity", "actor": severest.source,
                           "message": f"escalated {current['severity']} → {severest.severity} by alert {severest.name}",
                           "data": {"from": current["severity"], "to": severest.severity}})
        regressed = current["state"] == "mitigated"
        if regressed:
            events.append({"at_ns": now, "kind": "state", "actor": alerts[0].source,
                           "message": "mitigated → open: an alert fired again", "data": {"from": "mitigated", "to": "open"}})
            changes.update(state="open", mitigated_ns=None, mitigated_by=None)
        for name in ("owner", "tier", "runbook"):
            found = next((getattr(a, name) for a in alerts if getattr(a, name) is not None), None)
            if current.get(name) is None and found is not None:
                changes[name] = found
        updated = self.store.update_incident(tenant, current["id"], changes, events, [_link(a) for a in alerts])
        if revised:  # suspects are judged against impact start: judge them again
            updated = self._refresh_evidence(updated, now) or updated
        if escalated or regressed:
            self._notifier.notify("escalated", self.document(updated))
        return updated

    def _follow_burn(self, tenant: str, incident_id: int, alert: AlertIn, link: dict[str, Any], now: int) -> None:
        """The incident's worst alert burns harder: title, summary and the alert's summary follow
        (no timeline entry: the timeline keeps the numbers each alert joined with)."""
        incident = self.store.get_incident(tenant, incident_id)
        evidence = dict(incident.get("evidence") or {})
        top = evidence.get("headline")
        if top is None or top["alert_key"] != alert.key or (alert.burn or 0.0) < (top.get("burn") or 0.0) + 0.05:
            return
        evidence["headline"] = headline(alert)
        changes: dict[str, Any] = {"evidence": evidence}
        if not self._title_pinned(tenant, incident_id):
            changes["title"] = headline_title(incident.get("journey"), alert.summary)
        self.store.update_incident(tenant, incident_id, changes, [], [link])

    def _title_pinned(self, tenant: str, incident_id: int) -> bool:
        """A person set the title: aisre no longer rewrites it."""
        return any(e["kind"] == "title" for e in self.store.events(tenant, incident_id))

    def _revise_impact(self, tenant: str, incident: Incident, alert: AlertIn, evidence: dict[str, Any],
                       changes: dict[str, Any], joining: list[int] | None = None) -> bool:
        """A joining alert's stretch moves impact start when it begins earlier, or when none was
        found before; detection is then the first alert at or after the new start."""
        found = self._find_impact(tenant, alert)
        if found is None or found.get("start_ns") is None:
            return False
        current = incident.get("impact_start_ns")
        if current is not None and found["start_ns"] >= current:
            return False
        before = evidence.get("impact")
        evidence["impact"] = {**found, "revised_from": rfc3339(current),
                              "revised_because": f"alert {alert.name} joined"} if before else found
        changes["impact_start_ns"] = found["start_ns"]
        starts = [a["started_ns"] for a in self.store.alerts(tenant, incident["id"])] + (joining or [alert.started_ns])
        changes["first_alert_ns"] = min((s for s in starts if s >= found["start_ns"]), default=alert.started_ns)
        return True

    def _open(self, alert: AlertIn, link: dict[str, Any], tenant: str, now: int) -> Incident:
        found = self._find_impact(tenant, alert)
        title = headline_title(alert.journey, alert.summary)
        evidence: dict[str, Any] = {"headline": headline(alert)}
        if found is not None:
            evidence["impact"] = found
        burning = self._burning_dependencies(tenant, alert.slo, now)
        if burning:
            evidence["burning_dependencies"] = burning
        row = {
            "tenant": tenant, "group_key": alert.group_key, "title": title, "journey": alert.journey,
            "slo": alert.slo, "severity": alert.severity, "state": "open", "owner": alert.owner, "tier": alert.tier,
            "runbook": alert.runbook, "source": alert.source, "impact_start_ns": found and found.get("start_ns"),
            "first_alert_ns": alert.started_ns, "opened_ns": now, "updated_ns": now, "evidence": evidence,
        }
        events = [{"at_ns": now, "kind": "opened", "actor": alert.source,
                   "message": f"opened by alert {alert.name}: {alert.summary}", "data": {"alert": alert.key}}]
        incident = self.store.create_incident(row, events, [link])
        if _joined(incident):
            # Another node opened this group's incident in the same instant (the control store
            # joined our alert to it): that node, the creator, sends "opened"; we send nothing.
            log.info("incident %s: alert %s joined the incident another node opened", incident["id"], alert.name)
            return incident
        try:  # so a rollout seen moments ago is among the suspects
            self.store.detect_changes(tenant)
        except Exception:
            log.exception("change detection failed")
        incident = self._refresh_evidence(incident, now) or incident
        self._notifier.notify("opened", self.document(incident))
        log.info("incident %s opened: %s", incident["id"], title)
        return incident

    def _burning_dependencies(self, tenant: str, slo: str | None, now: int) -> list[dict[str, Any]]:
        """The platform SLOs ``slo`` depends on that burn while it burns, highest burn first
        (its spec's ``depends_on``): where an on-call engineer looks first."""
        if slo is None or self._slos is None:
            return []
        try:
            doc = self._slos.status(tenant, slo, now)
        except Exception:  # evidence is a help; its failure must not stop the incident
            log.exception("dependency state of SLO %s failed", slo)
            return []
        return [{"slo": d["slo"], "burn_rate": d["burn_rate"], "window": d["window"], "status": d["status"],
                 "remaining_ratio": d["remaining_ratio"], "summary": d["text"]}
                for d in doc.get("burning_because") or ()]

    def _find_impact(self, tenant: str, alert: AlertIn) -> dict[str, Any] | None:
        """Where the impact behind ``alert`` began, and how that was found (evaluate/impact.py)."""
        if alert.journey is None:
            return None
        if alert.source == "budget":  # spend, not failures: the impact starts with the alert
            return {"start": rfc3339(alert.started_ns), "start_ns": alert.started_ns, "found": True, "method": "budget",
                    "alert": alert.name, "explanation": f"cost-budget alert {alert.name}: spend, so impact starts with the alert"}
        start = (alert.started_ns // MINUTE_NS - LOOKBACK_MIN) * MINUTE_NS
        end = (alert.started_ns // MINUTE_NS + 1) * MINUTE_NS
        minutes: list[tuple[int, int, int]]
        if alert.slo and self._slo_minutes is not None and alert.objective is not None:
            arrays = self._slo_minutes(tenant, start, end, alert.slo).get(alert.slo)
            minutes = [(int(m), int(t), int(t) - int(g)) for m, g, t in zip(*arrays, strict=True)] if arrays else []
            threshold = 1 - alert.objective / 100
            method, counts = "slo", f"SLO {alert.slo}'s good/total minutes"
            basis = f"the error rate objective {alert.objective:g} % allows"
        else:
            rows = self.store.run_minutes(tenant, alert.journey, start, end)
            minutes = [(r["minute_ns"], r["runs"], r["failures"]) for r in rows]
            baseline = [(t, b) for m, t, b in minutes if m < alert.started_ns - 3600 * 10**9]
            base_ratio = sum(b for _, b in baseline) / max(1, sum(t for t, _ in baseline))
            threshold = max(0.01, 2 * base_ratio)
            method, counts = "journey", f"journey {alert.journey}'s runs/failures per minute"
            basis = "twice the journey's failure ratio more than an hour before the alert, at least 1 %"
        stretch = find_stretch(minutes, threshold, alert.started_ns, reach=REACH_MIN.get(alert.pair_severity, MAX_GAP_MIN))
        out: dict[str, Any] = {"alert": alert.name, "method": method, "threshold": round(threshold, 6),
                               "threshold_basis": basis, "max_gap_minutes": MAX_GAP_MIN, "min_bad_events": MIN_BAD_EVENTS}
        if stretch is None:
            return {**out, "start": None, "start_ns": None, "found": False, "explanation": (
                f"no sustained stretch of minutes above {threshold * 100:.3g} % errors ({basis}) reaches alert "
                f"{alert.name} in {counts}; a stretch needs {MIN_BAD_EVENTS} or more bad events, so stray "
                "failures start nothing: impact start unknown")}
        first = self.store.first_failure(tenant, alert.journey, stretch.start_ns, stretch.start_ns + MINUTE_NS)
        start_ns = min(first if first is not None else stretch.start_ns, alert.started_ns)
        return {**out, "start": rfc3339(start_ns), "start_ns": start_ns, "found": True,
                "first_bad_minute": rfc3339(stretch.start_ns), "last_bad_minute": rfc3339(stretch.last_ns),
                "bad_minutes": stretch.bad_minutes, "bad_events": stretch.bad_events, "events": stretch.events,
                "error_ratio": round(stretch.error_ratio, 6), "first_failure_in_minute": first is not None,
                "summary": f"first of {stretch.bad_minutes} minutes above {threshold * 100:.3g} % errors before alert {alert.name}",
                "explanation": (
                    f"first of {stretch.bad_minutes} minutes above {threshold * 100:.3g} % errors ({basis}) in the "
                    f"stretch that reached alert {alert.name} ({stretch.bad_events} bad of {stretch.events} events, "
                    f"{stretch.error_ratio * 100:.1f} %; gaps of at most {MAX_GAP_MIN} quiet or good minutes), from "
                    f"{counts}" + ("; the first failing run in that minute" if first is not None else ""))}

    # -- evidence ---------------------------------------------------------------------

    def _refresh_evidence(self, incident: Incident, now: int) -> Incident | None:
        journey = incident.get("journey")
        if not journey:
            return None
        start = incident.get("impact_start_ns") or incident.get("first_alert_ns") or incident["opened_ns"]
        try:
            evidence = triage(self.store, incident["tenant"], journey, start, now)
        except Exception:  # evidence is a help; its failure must not stop the incident
            log.exception("triage of incident %s failed", incident["id"])
            return None
        events = []
        old_top = (incident.get("evidence") or {}).get("top_suspect")
        top = evidence.get("top_suspect")
        if top and (not old_top or old_top.get("change_id") != top["change_id"]):
            events.append({
                "at_ns": now, "kind": "evidence", "actor": SYSTEM,
                "message": f"top suspect: {top['summary']} ({top['bad_share'] * 100:.0f} % of failing runs carry it, "
                           f"{top['good_share'] * 100:.0f} % of good ones)",
                "data": {"change_id": top["change_id"]},
            })
        with self._lock:  # an alert may have moved the title or impact start meanwhile: keep what it wrote
            latest = self.store.get_incident(incident["tenant"], incident["id"]).get("evidence") or {}
            evidence.update({k: latest[k] for k in OWN_EVIDENCE if k in latest})
            return self.store.update_incident(incident["tenant"], incident["id"], {"evidence": evidence, "evidence_ns": now}, events)

    def refresh(self, incident_id: int, tenant: str | None = None) -> dict[str, Any]:
        """Recompute one incident's evidence now."""
        incident = self.store.get_incident(tenant or self._tenant, incident_id)
        updated = self._refresh_evidence(incident, self._clock()) or incident
        return self.document(updated)

    def tick(self) -> None:
        """Detect changes, then refresh the evidence of unresolved incidents that are due."""
        self.store.detect_changes(self._tenant)
        now = self._clock()
        for row in self.store.list_incidents(self._tenant, "active", with_evidence=True):
            if (seen := row["evidence_ns"]) is None or now - seen >= self._evidence_interval_ns:
                self._refresh_evidence(row, now)

    # -- people -----------------------------------------------------------------------

    def transition(self, incident_id: int, action: str, actor: str, note: str | None = None,
                   tenant: str | None = None) -> dict[str, Any]:
        """acknowledge | mitigate | resolve, by ``actor``; refused when the state does not allow it."""
        tenant = tenant or self._tenant
        if action not in TRANSITIONS:
            raise PermanentError(f"action must be one of {', '.join(TRANSITIONS)}; got {action!r}")
        with self._lock:
            incident = self.store.get_incident(tenant, incident_id)
            updated = self._move(tenant, incident, action, _actor(actor), note, self._clock())
        return self.document(updated)

    def _move(self, tenant: str, incident: Incident, action: str, actor: str, note: str | None, now: int) -> Incident:
        allowed, target, when, who = TRANSITIONS[action]
        state = incident["state"]
        if state not in allowed:
            if state == target:
                by = incident.get(who) or "someone"
                at = cast("int | None", incident.get(when))
                raise PermanentError(f"incident {incident['id']} is already {state} (by {by} at {rfc3339(at)})")
            raise PermanentError(
                f"incident {incident['id']} is {state}: it cannot be {target} (from {' or '.join(allowed)} only)")
        message = f"{state} → {target}" + (f": {note}" if note else "")
        events = [{"at_ns": now, "kind": "state", "actor": actor, "message": message,
                   "data": {"from": state, "to": target, "note": note}}]
        changes: dict[str, Any] = {"state": target, when: now, who: actor, "updated_ns": now}
        if action == "resolve" and incident.get("mitigated_ns") is None:
            changes["mitigated_ns"], changes["mitigated_by"] = None, None
        try:
            updated = self.store.update_incident(tenant, incident["id"], changes, events, expect_state=state)
        except StaleState as stale:
            raise PermanentError(f"incident {incident['id']} changed to {stale.state} meanwhile; nothing done") from None
        if action == "resolve" and incident.get("journey"):
            updated = self._refresh_evidence(updated, now) or updated  # the final evidence
        if action in ("acknowledge", "resolve"):
            self._notifier.notify("acknowledged" if action == "acknowledge" else "resolved", self.document(updated))
        return updated

    def declare(self, title: str, actor: str, journey: str | None = None, severity: str = "sev3",
                commander: str | None = None, tenant: str | None = None) -> dict[str, Any]:
        """Open an incident by hand (no alert)."""
        tenant = tenant or self._tenant
        if not title or not title.strip():
            raise PermanentError("title is required")
        _check_severity(severity)
        now = self._clock()
        with self._lock:
            key = f"journey:{journey}" if journey else f"manual:{now}"
            if journey and self.store.open_incident_for(tenant, key) is not None:
                raise PermanentError(f"journey {journey!r} already has an unresolved incident; add to it instead")
            row = {"tenant": tenant, "group_key": key, "title": title.strip()[:300], "journey": journey, "slo": None,
                   "severity": severity, "state": "open", "commander": commander, "source": "manual",
                   "impact_start_ns": None, "first_alert_ns": None, "opened_ns": now, "updated_ns": now}
            incident = self.store.create_incident(
                row, [{"at_ns": now, "kind": "opened", "actor": _actor(actor), "message": f"declared: {title.strip()}",
                       "data": None}], [])
            if _joined(incident):  # another node declared it in the same instant: it notifies
                return self.document(incident)
            incident = self._refresh_evidence(incident, now) or incident
        self._notifier.notify("opened", self.document(incident))
        return self.document(incident)

    def update(self, incident_id: int, actor: str, severity: str | None = None, commander: str | None = None,
               title: str | None = None, tenant: str | None = None) -> dict[str, Any]:
        """Change severity, commander or title; each change is a timeline entry."""
        tenant = tenant or self._tenant
        actor = _actor(actor)
        now = self._clock()
        with self._lock:
            incident = self.store.get_incident(tenant, incident_id)
            changes: dict[str, Any] = {}
            events = []
            if severity is not None and severity != incident["severity"]:
                _check_severity(severity)
                changes["severity"] = severity
                events.append({"at_ns": now, "kind": "severity", "actor": actor,
                               "message": f"severity {incident['severity']} → {severity}",
                               "data": {"from": incident["severity"], "to": severity}})
            if commander is not None and commander != incident.get("commander"):
                changes["commander"] = commander or None
                events.append({"at_ns": now, "kind": "commander", "actor": actor,
                               "message": f"commander: {commander or 'none'}", "data": {"commander": commander}})
            if title is not None and title.strip() and title.strip() != incident["title"]:
                changes["title"] = title.strip()[:300]
                events.append({"at_ns": now, "kind": "title", "actor": actor, "message": f"title: {title.strip()}",
                               "data": None})
            if not changes:
                return self.document(incident)
            changes["updated_ns"] = now
            updated = self.store.update_incident(tenant, incident_id, changes, events)
        if "severity" in changes and severity_rank(changes["severity"]) < severity_rank(incident["severity"]):
            self._notifier.notify("escalated", self.document(updated))
        return self.document(updated)

    def note(self, incident_id: int, actor: str, text: str, tenant: str | None = None) -> dict[str, Any]:
        if not isinstance(text, str) or not text.strip():
            raise PermanentError("a note needs text")
        now = self._clock()
        updated = self.store.update_incident(
            tenant or self._tenant, incident_id, {"updated_ns": now},
            [{"at_ns": now, "kind": "note", "actor": _actor(actor), "message": text.strip()[:5000], "data": None}])
        return self.document(updated)

    def add_action_item(self, incident_id: int, actor: str, title: str, owner: str | None = None,
                        due_ns: int | None = None, tenant: str | None = None) -> dict[str, Any]:
        tenant = tenant or self._tenant
        if not isinstance(title, str) or not title.strip():
            raise PermanentError("an action item needs a title")
        self.store.get_incident(tenant, incident_id)
        now = self._clock()
        item = self.store.add_action_item(
            {"incident_id": incident_id, "tenant": tenant, "title": title.strip()[:500], "owner": owner,
             "due_ns": due_ns, "created_ns": now},
            {"at_ns": now, "kind": "action_item", "actor": _actor(actor),
             "message": f"action item: {title.strip()}" + (f" (owner {owner})" if owner else ""), "data": None})
        return self._item_document(item)

    def update_action_item(self, item_id: int, actor: str, status: str | None = None, owner: str | None = None,
                           due_ns: int | None = None, tenant: str | None = None) -> dict[str, Any]:
        tenant = tenant or self._tenant
        changes: dict[str, Any] = {}
        if status is not None:
            if status not in ("open", "done"):
                raise PermanentError(f"status must be open or done; got {status!r}")
            changes["status"] = status
            changes["done_ns"] = self._clock() if status == "done" else None
        if owner is not None:
            changes["owner"] = owner or None
        if due_ns is not None:
            changes["due_ns"] = due_ns
        what = ", ".join(f"{k}={v}" for k, v in (("status", status), ("owner", owner)) if v is not None) or "due date"
        item = self.store.update_action_item(
            tenant, item_id, changes,
            {"at_ns": self._clock(), "kind": "action_item", "actor": _actor(actor),
             "message": f"action item {item_id}: {what}", "data": None})
        return self._item_document(item)

    def record_change(self, row: dict[str, Any]) -> Change:
        return self.store.add_change(row)

    # -- loop -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="aisre-incidents", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            if not self.gate.admit()[0]:
                continue  # another node holds the evaluator lease: it detects and refreshes
            try:
                with self.gate.fenced():  # refused once another node holds a newer lease term
                    self.tick()
            except Exception:  # one failed pass must not end change detection
                log.exception("incident pass failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


def _joined(incident: Incident) -> bool:
    """Whether ``create_incident`` joined an incident another node created meanwhile (a shared
    control store sets ``_joined``; the marker is taken off the row here)."""
    return bool(cast(dict[str, Any], incident).pop("_joined", False))


def _link(alert: AlertIn) -> dict[str, Any]:
    """The incident_alerts row of an alert."""
    return {"alert_key": alert.key, "source": alert.source, "name": alert.name, "severity": alert.severity,
            "started_ns": alert.started_ns, "ended_ns": alert.ended_ns, "summary": alert.summary,
            "labels": alert.labels}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _impact_document(found: dict[str, Any] | None) -> dict[str, Any] | None:
    """How impact start was found, as documents show it."""
    return None if not found else {k: v for k, v in found.items() if k != "start_ns"}


def _actor(actor: str | None) -> str:
    text = (actor or "").strip()
    if not text:
        raise PermanentError("who did it is required (by)")
    return text[:200]


def _check_severity(severity: str) -> None:
    if severity not in SEVERITIES:
        raise PermanentError(f"severity must be one of {', '.join(SEVERITIES)}; got {severity!r}")
