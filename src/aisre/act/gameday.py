"""Game days that score detection: for a fault injected into a journey over [start, end), how
long until the first alert and the first page, whether an incident opened, whether triage named
the injected cause's layer, how long until mitigation, and what fired elsewhere that should not
have."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from aisre.core.slo import SloSpec
from aisre.core.timefmt import rfc3339
from aisre.evaluate.windows import windows_for
from aisre.store.protocol import IncidentStore

# The layer triage should name for each demo scenario's fault (evaluate/triage.py's layers).
EXPECTED_LAYER = {
    "provider-outage": "model provider", "retry-storm": "model provider", "model-fallback": "model provider",
    "bad-prompt-rollout": "service code",
}
GRACE_NS = 30 * 60 * 10**9  # detection may come after the fault ended, but not long after


class GamedayStore(Protocol):
    def list_alerts(self, tenant: str, state: str | None = None, slo: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    @property
    def incidents(self) -> IncidentStore: ...


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
    """The drill's score from the alerts and incidents the fault produced."""
    expected = expected_layer or (EXPECTED_LAYER.get(scenario) if scenario else None)
    until = end_ns + GRACE_NS
    alerts = [a for a in store.list_alerts(tenant, limit=1_000_000)
              if a.get("started_ns") is not None and start_ns <= a["started_ns"] < until]
    mine = sorted((a for a in alerts if a.get("journey") == journey), key=lambda a: a["started_ns"])
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
    to_page = (pages[0]["started_ns"] - start_ns) / 1e9 if pages else None
    return {
        "journey": journey, "scenario": scenario, "start": rfc3339(start_ns), "end": rfc3339(end_ns),
        "time_to_first_alert_s": (mine[0]["started_ns"] - start_ns) / 1e9 if mine else None,
        "time_to_first_page_s": to_page, "page_window_s": window,
        "detected_within_page_window": None if window is None else (to_page is not None and to_page <= window),
        "incident_opened": incident is not None, "incident_id": incident["id"] if incident else None,
        "time_to_incident_s": (incident["opened_ns"] - start_ns) / 1e9 if incident else None,
        "named_layer": named, "expected_layer": expected,
        "cause_named": None if expected is None else named == expected,
        "time_to_mitigate_s": ((incident["mitigated_ns"] - start_ns) / 1e9
                               if incident and incident.get("mitigated_ns") else None),
        "alerts": len(mine), "pages": len(pages), "should_not_have_fired": others,
    }
