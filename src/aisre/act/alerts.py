"""SLO alert state: the evaluator turns burn-rate conditions into alert episodes that go
pending → firing → resolved, stored with their times.

An episode is per (SLO, severity). With ``for_s`` = 0 (Sloth's rules have no ``for``)
a true condition fires at once; a longer ``for_s`` keeps it pending until the condition
has held that long, and a condition that clears while pending leaves no episode.
A firing episode resolves only once its condition has been clear for ``keep_firing_s``
(Prometheus's ``keep_firing_for``): a burn hovering at its factor would otherwise resolve
and fire again every few evaluations, and move its incident between open and mitigated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aisre.core.errors import LeaseLost
from aisre.evaluate.slo import SloEngine
from aisre.store.lease import LeaseGate
from aisre.store.protocol import AlertStore

log = logging.getLogger(__name__)

# Cost-budget alert episodes share the alerts table; their name starts with this
# (act/cost_alerts.py). The SLO evaluator leaves them alone.
BUDGET_PREFIX = "budget:"


def is_budget_alert(name: str) -> bool:
    return name.startswith(BUDGET_PREFIX)


@dataclass(frozen=True)
class Condition:
    """What one SLO's evaluation says about one severity at one moment."""

    slo: str
    journey: str | None
    severity: str
    active: bool
    burn: float
    summary: str


def conditions(doc: dict[str, Any]) -> list[Condition]:
    """Page and ticket conditions of an SLO status document (diagnostic SLOs only ticket)."""
    if doc.get("status") in (None, "unsupported"):
        return []
    out = []
    for severity in ("page", "ticket"):
        pairs = [a for a in doc["alerts"] if a["severity"] == severity]
        firing = [a for a in pairs if a["firing"]]
        burn = max((a["long_burn"] for a in firing), default=max((a["long_burn"] for a in pairs), default=0.0))
        worst = max(firing, key=lambda a: a["long_burn"], default=None)
        summary = (
            f"{doc['name']}: burning {worst['long_burn']:.1f}x over {worst['long_window']} and "
            f"{worst['short_burn']:.1f}x over {worst['short_window']} (threshold {worst['factor']:.3g}x)"
            if worst
            else f"{doc['name']}: within budget"
        )
        out.append(Condition(doc["name"], doc.get("journey"), severity, bool(firing), burn, summary))
    return out


def step(
    active: dict[tuple[str, str], dict[str, Any]], now_ns: int, conds: list[Condition], tenant: str, for_s: float = 0.0,
    keep_firing_s: float = 0.0,
) -> list[dict[str, Any]]:
    """Apply one evaluation to the active episodes; returns the rows to insert or update."""
    changed = []
    for cond in conds:
        key = (cond.slo, cond.severity)
        episode = active.get(key)
        if episode is None:
            if not cond.active:
                continue
            firing = for_s <= 0
            episode = {
                "id": None, "tenant": tenant, "slo": cond.slo, "journey": cond.journey,
                "severity": cond.severity, "state": "firing" if firing else "pending",
                "pending_since_ns": now_ns, "started_ns": now_ns if firing else None, "ended_ns": None,
                "peak_burn": cond.burn, "updated_ns": now_ns, "summary": cond.summary,
            }
            active[key] = episode
            changed.append(episode)
            continue
        episode = dict(episode)
        if cond.active:
            if episode["state"] == "pending" and now_ns - episode["pending_since_ns"] >= for_s * 1e9:
                episode["state"], episode["started_ns"] = "firing", now_ns
            episode["peak_burn"] = max(episode["peak_burn"], cond.burn)
            episode["summary"] = cond.summary
            episode.pop("clear_since_ns", None)
        elif episode["state"] == "firing" and now_ns - episode.setdefault("clear_since_ns", now_ns) < keep_firing_s * 1e9:
            active[key] = episode  # clear, but not for long enough: still firing
            continue
        elif episode["state"] == "firing":
            episode["state"], episode["ended_ns"] = "resolved", now_ns
        else:  # pending that cleared before it fired: drop it
            episode["state"], episode["ended_ns"] = "resolved", now_ns
            episode["summary"] = f"{cond.slo}: cleared before firing"
        episode["updated_ns"] = now_ns
        changed.append(episode)
        if episode["state"] == "resolved":
            del active[key]
        else:
            active[key] = episode
    return changed


class EpisodeEvaluator:
    """Turns conditions into stored alert episodes on a timer, for every tenant.
    Subclasses say which tenants to walk, which stored episodes are theirs, and what the
    conditions are now. start/stop idempotent."""

    thread_name = "aisre-alerts"

    def __init__(
        self, store: AlertStore, tenant: str, interval_s: float, for_s: float = 0.0,
        on_change: Callable[[list[dict[str, Any]]], Any] | None = None, keep_firing_s: float = 0.0,
    ) -> None:
        self._on_change = on_change  # e.g. incidents: told of every stored transition
        self._store = store
        self._tenant = tenant
        self._interval = interval_s
        self._for = for_s
        self._keep_firing = keep_firing_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Passes run only while this node holds the evaluator lease (always, by default).
        self.gate = LeaseGate()
        # Per tenant: open episodes by (name, severity); loaded from the store on first use.
        self._active: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}

    def _tenants(self) -> set[str]:
        raise NotImplementedError

    def _owns(self, name: str) -> bool:
        raise NotImplementedError

    def _conditions(self, tenant: str, now: int, active: dict[tuple[str, str], dict[str, Any]]) -> list[Condition]:
        """What holds now, including inactive conditions that close episodes gone stale."""
        raise NotImplementedError

    def evaluate_once(self, now_ns: int | None = None) -> list[dict[str, Any]]:
        """One evaluation for every tenant; returns the alert rows it changed."""
        now = now_ns or time.time_ns()
        changed: list[dict[str, Any]] = []
        for tenant in sorted({self._tenant, *self._tenants()}):
            changed += self._evaluate_tenant(tenant, now)
        if changed and self._on_change is not None:
            try:
                self._on_change(changed)
            except Exception:  # the alerts are stored; what listens must not undo that
                log.exception("alert listener failed")
        return changed

    def _evaluate_tenant(self, tenant: str, now: int) -> list[dict[str, Any]]:
        active = self._active.get(tenant)
        if active is None:  # resume episodes that were open when the server stopped
            # The evaluator keeps each episode as a mutable dict (the store writes its id back).
            active = {(a["slo"], a["severity"]): dict(a) for a in self._store.active_alerts(tenant) if self._owns(a["slo"])}
            self._active[tenant] = active
        changed = step(active, now, self._conditions(tenant, now, active), tenant, self._for, self._keep_firing)
        self._store.save_alerts(changed)
        for row in changed:
            log.info("alert %s/%s %s %s: %s", tenant, row["slo"], row["severity"], row["state"], row["summary"])
        return changed

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            run, fresh = self.gate.admit()
            if not run:
                continue  # another node holds the evaluator lease
            if fresh:  # the episodes may have moved on another node: read them again
                self._active.clear()
            try:
                with self.gate.fenced():  # its writes are refused once another node holds a newer term
                    self.evaluate_once()
            except LeaseLost as exc:  # paused past the lease: the new holder evaluates; ours is stale
                log.warning("alert evaluation refused: %s", exc)
                self._active.clear()
            except Exception:  # one failed evaluation must not end alerting
                log.exception("alert evaluation failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


class AlertEvaluator(EpisodeEvaluator):
    """SLO alert episodes from the engine's burn-rate conditions."""

    def __init__(
        self, engine: SloEngine, store: AlertStore, tenant: str, interval_s: float = 15.0, for_s: float = 0.0,
        on_change: Callable[[list[dict[str, Any]]], Any] | None = None, keep_firing_s: float = 0.0,
    ) -> None:
        super().__init__(store, tenant, interval_s, for_s, on_change, keep_firing_s)
        self._engine = engine

    def _tenants(self) -> set[str]:
        return set(self._engine.tenants())

    def _owns(self, name: str) -> bool:
        return not is_budget_alert(name)

    def _conditions(self, tenant: str, now: int, active: dict[tuple[str, str], dict[str, Any]]) -> list[Condition]:
        conds = [c for doc in self._engine.statuses(tenant, now) for c in conditions(doc)]
        known = {c.slo for c in conds}
        # An SLO that was removed or became unsupported closes its episodes.
        for (slo, severity), episode in list(active.items()):
            if slo not in known:
                conds.append(Condition(slo, episode.get("journey"), severity, False, 0.0, f"{slo}: no longer evaluated"))
        return conds
