"""A store in two parts: spans, runs and rollups in the span store (DuckDB or ClickHouse),
the control plane in PostgreSQL, behind the one ``Store`` protocol.

Routing is by port, in one place (the tables below): a method of a control-plane port goes
to the control store, every other method to the span store. What needs both planes is
composed here, explicitly:

- ``incidents.detect_changes``: the span store reads which versions, models and prompts
  first appeared in runs received since a mark; the control store keeps the mark, what
  was seen, and the changes, in one transaction under a per-tenant lock.
- ``retention`` / ``set_retention``: the setting is kept in the control store (every node
  reads it there); the span store applies it (and answers the defaults: rollup retention,
  dedup window).
- ``cost.reprice`` is a span-store write; the prices it applies are built by
  evaluate/cost from the catalog and the control store's overrides, so it needs nothing
  of the control store itself.
- ``put_slo_minutes`` (Prometheus SLI minutes, written by the evaluator): a span-store
  write made while the control store holds the pass's lease term (store/fencing.py).
- ``incidents.run_minutes``, ``impact`` and triage reads go to the span store; the
  incident rows they explain live in the control store.
- Agent policy: sets, decision records, violations and the judged marks live in the
  control store (``PolicyControl``); the other runs' calls, the runs themselves and each
  judged run's policy scores in the span store (``PolicySpanReads``). ``runs_to_judge``
  reads the span store's runs received since the tenant's judging cursor (kept in the
  control store, less an overlap for nodes whose commits land out of order) and keeps those
  the control store has not judged in that state; ``save_policy_run`` writes the scores first, then the marks (a crash
  between the two leaves the run unjudged, so it is judged again); inside a judging pass
  both writes happen while the control store holds the pass's lease term, like
  ``put_slo_minutes``, and the cursor and the marks are fenced control-store writes; ``expire`` and
  ``expire_policy_records`` expire the control store's policy records past the span
  store's rollup retention and count them in the span store's expiry figures.

The tenant guard wraps a split store as it wraps any backend.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from aisre.store import protocol
from aisre.store.change_detection import DETECTION_OVERLAP_NS
from aisre.store.retention import check_days

log = logging.getLogger(__name__)


def methods_of(*ports: type) -> frozenset[str]:
    """The public method names the protocol classes ``ports`` declare (their own, not inherited)."""
    return frozenset(
        name for port in ports for name, value in vars(port).items() if not name.startswith("_") and callable(value)
    )


# --- the routing, in one place -----------------------------------------------------------
# Store methods served by the control store.
CONTROL_PORTS: tuple[type, ...] = (
    protocol.KeyTables, protocol.AuditLog, protocol.AlertStore, protocol.GateVerdicts, protocol.PolicyControl,
    protocol.CapacityLevelTables,
)
# ``store.incidents`` methods served by the span store (all others: the control store).
INCIDENT_DATA_PORTS: tuple[type, ...] = (protocol.TriageStore, protocol.IncidentRunReads)
INCIDENT_CONTROL_METHODS = frozenset({"list_changes"})  # declared on TriageStore, kept with the changes
# ``store.cost`` methods served by the control store (all others: the span store).
COST_CONTROL_PORTS: tuple[type, ...] = (protocol.CostSettings,)
# Composed from both planes (below).
COMPOSED = frozenset({
    "retention", "set_retention", "close", "detect_changes", "put_slo_minutes", "runs_to_judge", "save_policy_run",
    "expire_policy_records", "expire",
})
# How far before the judging cursor runs_to_judge looks again (commits of several ingest
# nodes land out of received order by about a commit interval).
JUDGE_OVERLAP_NS = DETECTION_OVERLAP_NS
# Runs read per page when looking for runs not yet judged.
JUDGE_PAGE = 1000
# Policy records deleted per expiry transaction.
POLICY_EXPIRY_STEP = 5000

CONTROL_METHODS = methods_of(*CONTROL_PORTS)
INCIDENT_DATA_METHODS = methods_of(*INCIDENT_DATA_PORTS) - INCIDENT_CONTROL_METHODS
COST_CONTROL_METHODS = methods_of(*COST_CONTROL_PORTS)


def _forward(port_method: Callable[..., Any], target: str, name: str) -> Callable[..., Any]:
    """A method calling ``getattr(self.<target>, name)``, with the port's signature (what the
    tenant guard inspects)."""

    @functools.wraps(port_method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(getattr(self, target), name)(*args, **kwargs)

    return call


def _declared(ports: tuple[type, ...], name: str) -> Callable[..., Any]:
    for port in ports:
        if name in vars(port):
            return vars(port)[name]  # type: ignore[no-any-return,unused-ignore]
    raise KeyError(name)


class _Part:
    """Methods not routed explicitly go to ``_default``."""

    _default: Any

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._default, name)


class SplitIncidents(_Part):
    """``store.incidents``: incident tables in the control store, run reads in the span store."""

    def __init__(self, data: Any, control: Any) -> None:
        self._data = data
        self._control = control
        self._default = control

    def detect_changes(self, tenant: str) -> list[dict[str, Any]]:
        """New versions, models and prompts in the span store's runs, recorded as changes in
        the control store (see the module docstring)."""
        return list(self._control.detect_changes_from(tenant, self._data.run_appearances))


class SplitCost(_Part):
    """``store.cost``: figures and repricing in the span store, prices and budgets in the control store."""

    def __init__(self, data: Any, control: Any) -> None:
        self._data = data
        self._control = control
        self._default = data


class SplitStore(_Part):
    """One ``Store``: the span store ``data`` and the control store ``control``."""

    def __init__(self, data: Any, control: Any) -> None:
        self._data = data
        self._control = control
        self._default = data
        self.backend = f"{data.backend}+{control.backend}"
        self.incidents = SplitIncidents(data.incidents, control.incidents)
        self.cost = SplitCost(data.cost, control.cost)
        # Every node applies the retention settings kept in the control store.
        for tenant, days in control.retention_settings().items():
            self._apply_retention(tenant, days)

    def retention(self, tenant: str) -> dict[str, Any]:
        """The span store's answer (defaults, rollup retention, dedup window), with the
        setting the control store keeps for the tenant."""
        out = dict(self._data.retention(tenant))
        days = self._control.retention_setting(tenant)
        if days is not None:
            out.update(retention_days=days, source="api")
        return out

    def set_retention(self, tenant: str, days: float | None) -> dict[str, Any]:
        """Keep the tenant's retention in the control store and apply it to the span store."""
        value = check_days(days) if days is not None else None
        self._control.put_retention(tenant, value)
        self._apply_retention(tenant, value)
        return self.retention(tenant)

    def _apply_retention(self, tenant: str, days: float | None) -> None:
        try:
            self._data.set_retention(tenant, days)
        except NotImplementedError:
            log.debug("the span store applies no per-tenant retention yet; kept in the control store only")

    def put_slo_minutes(self, tenant: str, slo: str, start_ns: int, end_ns: int, rows: list[tuple[int, int, int]]) -> None:
        """Prometheus SLI minutes into the span store; inside an evaluation pass only while the
        pass's lease term holds (checked and held in the control store: store/fencing.py)."""
        self._control.fenced_call(lambda: self._data.put_slo_minutes(tenant, slo, start_ns, end_ns, rows))

    def runs_to_judge(self, tenant: str, limit: int = 500) -> list[dict[str, Any]]:
        """Runs with a root never judged, or changed since they were: the span store's runs
        received since the tenant's judging cursor (less JUDGE_OVERLAP_NS), without those the
        control store judged in the same state. The cursor then moves to the oldest run
        still to judge (or past every run read), so each call reads only the recent runs."""
        cursor = self._control.policy_cursor(tenant)
        since = -(2**62) if cursor is None else cursor - JUDGE_OVERLAP_NS
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        last = cursor
        while len(found) < limit:
            page = self._data.policy_candidate_runs(tenant, since, JUDGE_PAGE)
            marks = self._control.policy_marks(tenant, [str(r["trace_id"]) for r in page])
            for run in page:
                trace_id = str(run["trace_id"])
                if trace_id in seen:
                    continue
                seen.add(trace_id)
                last = max(last or 0, int(run["last_received_ns"]))
                mark = marks.get(trace_id)
                if mark is None or int(run["last_received_ns"]) > mark:
                    found.append({k: run[k] for k in ("trace_id", "journey", "run_start_ns", "root_service",
                                                      "last_received_ns")})
            if len(page) < JUDGE_PAGE or int(page[-1]["last_received_ns"]) == since:
                break
            since = int(page[-1]["last_received_ns"])
        found = found[:limit]
        move = int(found[0]["last_received_ns"]) if found else last
        if move is not None and move != cursor:
            self._control.put_policy_cursor(tenant, move)
        return found

    def save_policy_run(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """The run's policy scores in the span store, then its violations and judged mark in
        the control store; inside a judging pass both only while the pass's lease term holds
        (checked and held across the two writes: store/fencing.py), so a node that lost the
        lease has neither applied."""

        def both() -> None:
            self._data.put_policy_scores(row, any(v["effect"] == "deny" for v in rows))
            self._control.save_policy_marks(row, rows)  # checks the fence again: a share lock, granted

        self._control.fenced_call(both)

    def expire_policy_records(self, cutoff_ns: int, max_rows: int = 5000) -> dict[str, int]:
        """One bounded step of the control store's policy expiry, counted in the span store's
        expiry figures."""
        deleted: dict[str, int] = self._control.expire_policy_records(cutoff_ns, max_rows)
        self._data.expiry.count_policy(deleted)
        return deleted

    def expire(self, now_ns: int | None = None, max_steps: int = 1_000_000) -> Any:
        """The span store's expiry, then the control store's policy records past the rollup
        retention, in bounded steps; returns the span store's running totals."""
        stats = self._data.expire(now_ns, max_steps)
        cutoff = self._data.rollup_cutoff(now_ns)
        if cutoff is not None:
            for _ in range(max_steps):
                if max(self.expire_policy_records(cutoff, POLICY_EXPIRY_STEP).values()) < POLICY_EXPIRY_STEP:
                    break
        return stats

    def close(self) -> None:
        """Close the span store (drains its writer), then the control store."""
        try:
            self._data.close()
        finally:
            self._control.close()


for _name in CONTROL_METHODS:
    setattr(SplitStore, _name, _forward(_declared(CONTROL_PORTS, _name), "_control", _name))
for _name in INCIDENT_DATA_METHODS:
    setattr(SplitIncidents, _name, _forward(_declared(INCIDENT_DATA_PORTS, _name), "_data", _name))
for _name in COST_CONTROL_METHODS:
    setattr(SplitCost, _name, _forward(_declared(COST_CONTROL_PORTS, _name), "_control", _name))
