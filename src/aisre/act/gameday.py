"""Game days that score detection: for a fault injected into a journey over [start, end), how
long until the first alert and the first page, whether an incident opened, whether triage named
the injected cause's layer, how long until mitigation, and what fired elsewhere that should not
have.

A drill's start and stop are changes of kind ``gameday`` on the server (metadata ``phase``
start/stop, the stop naming its start), so any machine can stop and score a drill another
started, the review report lists the period's drills, and triage sees the drill as a change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from aisre.core.errors import NotFound, PermanentError
from aisre.core.rows import Change, fired_at
from aisre.core.slo import SloSpec
from aisre.core.timefmt import rfc3339
from aisre.evaluate.windows import windows_for
from aisre.store.protocol import GamedayStore


@dataclass(frozen=True)
class Drill:
    """A demo game day: the demo scenario it drives, the journey it hits, the layer triage
    should name (evaluate/triage.py's layers), and what detection means: a ``page`` (an SLO
    page and an incident) or a ``policy`` violation (an agent misbehaving without failing)."""

    name: str
    scenario: str
    journey: str
    expected_layer: str | None
    detect: str = "page"


DRILLS = {d.name: d for d in (
    Drill("provider-outage", "provider-outage", "ask", "model provider"),
    Drill("retry-storm", "retry-storm", "ask", "model provider"),
    Drill("model-fallback", "model-fallback", "ask", "model provider"),
    Drill("bad-prompt-rollout", "bad-prompt-rollout", "ask", "service code"),
    Drill("latency-spike", "latency-spike", "ask", "model provider"),
    Drill("rate-limit-storm", "rate-limit-storm", "ask", "model provider"),
    # An empty search is no error on its span; triage reads it as the "data" layer.
    Drill("retrieval-empty", "retrieval-empty", "ask", "data"),
    # A runaway agent fails no run: the policy engine's loop rule is what must catch it.
    Drill("runaway-agent", "agent-loop", "triage-agent", None, detect="policy"),
    Drill("agent-denied-tool", "agent-denied-tool", "triage-agent", None, detect="policy"),
)}
# The layer triage should name for each drill (kept for callers that pass a scenario name).
EXPECTED_LAYER = {name: d.expected_layer for name, d in DRILLS.items() if d.expected_layer}
CHANGE_KIND = "gameday"
GRACE_NS = 30 * 60 * 10**9  # detection may come after the fault ended, but not long after


def page_window_s(specs: Sequence[SloSpec], journey: str) -> float | None:
    """The long window of the fast page pair of the journey's budget-carrying SLOs (1 h for a
    30-day SLO): detection later than this misses what the alerting promises."""
    found = []
    for spec in specs:
        if spec.journey == journey and not spec.diagnostic:
            windows = windows_for(spec.window.duration)
            if windows is not None:
                found.append(windows.page_quick.long.total_seconds())
    return min(found) if found else None


def score(store: GamedayStore, tenant: str, journey: str, start_ns: int, end_ns: int, specs: Sequence[SloSpec],
          expected_layer: str | None = None, scenario: str | None = None) -> dict[str, Any]:
    """The drill's score from the alerts, incidents and policy violations the fault produced;
    ``passed`` says whether it was detected (and, where a layer is expected, named)."""
    drill = DRILLS.get(scenario or "")
    expected = expected_layer or (drill.expected_layer if drill else None)
    detect = drill.detect if drill else "page"
    until = end_ns + GRACE_NS
    alerts = [a for a in store.list_alerts(tenant, limit=1_000_000)
              if (started := a["started_ns"]) is not None and start_ns <= started < until]
    mine = sorted((a for a in alerts if a["journey"] == journey), key=fired_at)
    pages = [a for a in mine if a["severity"] == "page"]
    others = [{"slo": a["slo"], "journey": a["journey"], "severity": a["severity"], "started": rfc3339(a["started_ns"])}
              for a in alerts if a.get("journey") != journey]
    incidents = sorted(store.incidents.list_incidents(tenant, journey=journey, since_ns=start_ns, until_ns=until,
                                                      limit=100, with_evidence=True), key=lambda i: i["opened_ns"])
    incident = incidents[0] if incidents else None
    evidence = incident.get("evidence") if incident else None
    if isinstance(evidence, str | bytes):
        evidence = orjson.loads(evidence)
    named = (evidence or {}).get("points_at")
    window = page_window_s(specs, journey)
    to_page = (fired_at(pages[0]) - start_ns) / 1e9 if pages else None
    violations = [v for v in store.list_violations(tenant, journey=journey, since_ns=start_ns, limit=100_000)
                  if v["run_start_ns"] < until]
    first_violation = min((v["start_ns"] for v in violations), default=None)
    cause_named = None if expected is None else named == expected
    if detect == "policy":
        passed = bool(violations)
    else:
        passed = to_page is not None and incident is not None and cause_named is not False
    return {
        "journey": journey, "scenario": scenario, "start": rfc3339(start_ns), "end": rfc3339(end_ns),
        "time_to_first_alert_s": (fired_at(mine[0]) - start_ns) / 1e9 if mine else None,
        "time_to_first_page_s": to_page, "page_window_s": window,
        "detected_within_page_window": None if window is None else (to_page is not None and to_page <= window),
        "incident_opened": incident is not None, "incident_id": incident["id"] if incident else None,
        "time_to_incident_s": (incident["opened_ns"] - start_ns) / 1e9 if incident else None,
        "named_layer": named, "expected_layer": expected,
        "cause_named": cause_named,
        "time_to_mitigate_s": ((mitigated - start_ns) / 1e9
                               if incident and (mitigated := incident["mitigated_ns"]) else None),
        "alerts": len(mine), "pages": len(pages), "should_not_have_fired": others,
        "detect": detect, "policy_violations": len(violations),
        "violating_runs": len({v["trace_id"] for v in violations}),
        "time_to_first_violation_s": (first_violation - start_ns) / 1e9 if first_violation is not None else None,
        "passed": passed,
    }


# ---------------------------------------------------------------------------- drills on the server


def _meta(change: Change) -> dict[str, Any]:
    meta = change.get("metadata")
    if isinstance(meta, str | bytes):
        meta = orjson.loads(meta)
    return meta if isinstance(meta, dict) else {}


def drills(store: GamedayStore, tenant: str, since_ns: int | None = None, until_ns: int | None = None) -> list[dict[str, Any]]:
    """Drills recorded on the server, oldest first: id (the start change's), journey, scenario,
    expected layer, start and end (None while running), who started it. ``since``/``until``
    keep drills that started in [since, until)."""
    changes = store.incidents.list_changes(tenant, kind=CHANGE_KIND, limit=100_000)
    stops = {int(_meta(c).get("drill") or 0): c for c in changes if _meta(c).get("phase") == "stop"}
    out = []
    for c in changes:
        meta = _meta(c)
        if meta.get("phase") != "start":
            continue
        if (since_ns is not None and c["at_ns"] < since_ns) or (until_ns is not None and c["at_ns"] >= until_ns):
            continue
        stop = stops.get(int(c["id"]))
        out.append({"id": int(c["id"]), "journey": (c.get("journeys") or [""])[0], "scenario": meta.get("scenario"),
                    "expect": meta.get("expect"), "who": c.get("who"), "start_ns": c["at_ns"],
                    "end_ns": stop["at_ns"] if stop else None})
    return sorted(out, key=lambda d: (d["start_ns"], d["id"]))


def _change_row(tenant: str, journey: str, at_ns: int, now_ns: int, summary: str, who: str | None,
                meta: dict[str, Any]) -> dict[str, Any]:
    return {"tenant": tenant, "kind": CHANGE_KIND, "summary": summary, "who": who, "at_ns": at_ns, "services": [],
            "journeys": [journey], "version": None, "previous": None, "prompt_name": None, "link": None,
            "metadata": meta, "source": "api", "observed_ns": None, "created_ns": now_ns}


def start_drill(store: GamedayStore, tenant: str, journey: str, now_ns: int, at_ns: int | None = None,
                scenario: str | None = None, expect: str | None = None, who: str | None = None) -> dict[str, Any]:
    """Record a drill's start on ``journey``; refused while another drill runs on it."""
    journey = (journey or "").strip()
    if not journey:
        raise PermanentError("journey is required")
    running = [d for d in drills(store, tenant) if d["journey"] == journey and d["end_ns"] is None]
    if running:
        raise PermanentError(f"game day #{running[0]['id']} is already running on {journey} since "
                             f"{rfc3339(running[0]['start_ns'])}: stop it first")
    drill = DRILLS.get(scenario or "")
    expect = expect or (drill.expected_layer if drill else None)
    row = _change_row(tenant, journey, now_ns if at_ns is None else at_ns, now_ns,
                      f"game day started: {scenario or 'injected fault'} on {journey}", who,
                      {"phase": "start", "scenario": scenario, "expect": expect})
    change = store.incidents.add_change(row)
    return {"id": int(change["id"]), "journey": journey, "scenario": scenario, "expect": expect, "who": who,
            "start_ns": row["at_ns"], "end_ns": None}


def stop_drill(store: GamedayStore, tenant: str, now_ns: int, journey: str | None = None, drill_id: int | None = None,
               at_ns: int | None = None, who: str | None = None) -> dict[str, Any]:
    """Record the end of the running drill (on ``journey``, or with ``drill_id``); returns it."""
    running = [d for d in drills(store, tenant) if d["end_ns"] is None
               and (journey is None or d["journey"] == journey) and (drill_id is None or d["id"] == drill_id)]
    if not running:
        where = f" on {journey}" if journey else ""
        raise NotFound(f"no game day running{where}: start one with `aisre gameday start`")
    if len(running) > 1:
        raise PermanentError("game days run on " + ", ".join(sorted(d["journey"] for d in running)) + ": name the journey")
    drill = running[0]
    end = now_ns if at_ns is None else at_ns
    if end < drill["start_ns"]:
        raise PermanentError("a game day cannot stop before it started")
    store.incidents.add_change(_change_row(tenant, drill["journey"], end, now_ns,
                                           f"game day stopped: {drill['scenario'] or 'injected fault'} on {drill['journey']}",
                                           who, {"phase": "stop", "drill": drill["id"]}))
    return {**drill, "end_ns": end}


def score_drill(store: GamedayStore, tenant: str, drill: dict[str, Any], specs: Sequence[SloSpec], now_ns: int) -> dict[str, Any]:
    """A recorded drill's score (a running one is scored up to now)."""
    end = drill["end_ns"] if drill["end_ns"] is not None else now_ns
    doc = score(store, tenant, drill["journey"], drill["start_ns"], end, specs, drill.get("expect"), drill.get("scenario"))
    return {**doc, "drill_id": drill["id"], "running": drill["end_ns"] is None, "who": drill.get("who")}
