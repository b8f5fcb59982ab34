"""Journey SLOs evaluated from the store's per-minute counts: status, budget, burn rates,
alert pairs and burn-down, for the API, CLI and UI."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from aisre.core.auth import check_tenant
from aisre.core.errors import NotFound, PermanentError
from aisre.core.model import SliRule
from aisre.core.series import parse_selector
from aisre.core.slo import (
    CostSli,
    DeadlineSli,
    FreshnessSli,
    HistogramSli,
    LatencySli,
    OutcomeSli,
    PipelineSli,
    PrometheusSli,
    RatioSli,
    ScoreSli,
    SloSpec,
    SloWindow,
    StepSli,
    ThresholdSli,
    format_duration,
)
from aisre.core.timefmt import rfc3339, span_text
from aisre.evaluate.budget import (
    MINUTE_NS,
    BudgetStatus,
    MinuteSeries,
    burn_down,
    error_ratio_series,
    evaluate,
    replay,
    timeslices,
)
from aisre.evaluate.minute_cache import MinuteCache, SloMinuteSource
from aisre.evaluate.prometheus import unsupported_reason
from aisre.evaluate.windows import windows_for


class SloCounts(SloMinuteSource, Protocol):
    def set_sli_rules(self, tenant: str, rules: list[SliRule]) -> None: ...


def not_counted_reason(spec: SloSpec, prometheus: bool = False) -> str:
    """Why ``spec`` is not evaluated (``sli_rule`` gave None), said so its owner can act."""
    sli = spec.sli
    if isinstance(sli, PrometheusSli):
        reason = unsupported_reason(sli)
        if reason is not None:
            return reason
        if not prometheus:
            return "Prometheus SLIs are read only from the server the prometheus_url setting names; it is not set"
    return f"aisre does not count {spec.sli.kind!r} SLIs from traces yet"


def sli_rule(spec: SloSpec, prometheus: bool = False) -> SliRule | None:
    """What the store must count for ``spec``; None for SLIs it cannot count yet. With
    ``prometheus`` (a Prometheus server is configured), Prometheus SLIs of the shapes it
    reads (events, threshold, histogram) are counted too: their minutes are read from it
    (evaluate/prometheus.py), not recounted."""
    sli = spec.sli
    if isinstance(sli, PrometheusSli):
        if prometheus and unsupported_reason(sli) is None:
            return SliRule(spec.id, spec.journey or "", "prometheus")
        return None
    if isinstance(sli, RatioSli):
        return SliRule(spec.id, spec.journey or "", "ratio", total=parse_selector(sli.total),
                       good=parse_selector(sli.good) if sli.good else None,
                       bad=parse_selector(sli.bad) if sli.bad else None)
    if isinstance(sli, ThresholdSli):
        return SliRule(spec.id, spec.journey or "", "threshold", total=parse_selector(sli.metric),
                       min_value=sli.min, max_value=sli.max, aggregate=sli.aggregate)
    if isinstance(sli, HistogramSli):
        return SliRule(spec.id, spec.journey or "", "histogram", total=parse_selector(sli.metric), le=sli.le)
    if isinstance(sli, FreshnessSli) and sli.dataset is not None:
        return SliRule(spec.id, spec.journey or "", "dataset_freshness", dataset=sli.dataset,
                       max_value=sli.max_age.total_seconds())
    if isinstance(sli, FreshnessSli) and sli.metric is not None:
        return SliRule(spec.id, spec.journey or "", "freshness", total=parse_selector(sli.metric),
                       max_value=sli.max_age.total_seconds())
    if isinstance(sli, PipelineSli):
        return SliRule(spec.id, spec.journey or "", "pipeline", pipeline=sli.pipeline)
    if isinstance(sli, DeadlineSli):
        return SliRule(spec.id, spec.journey or "", "deadline", pipeline=sli.pipeline,
                       deadline_at_ns=int(sli.at.total_seconds()) * 10**9,
                       period_ns=int(sli.every.total_seconds()) * 10**9)
    if isinstance(sli, ScoreSli) and sli.subject is not None:
        return SliRule(spec.id, spec.journey or "", "score", score=sli.score, min_value=sli.min,
                       max_value=sli.max, subject=sli.subject)
    if spec.journey is None:
        return None
    if isinstance(sli, OutcomeSli):
        latency = int(sli.latency_ms * 1e6) if sli.latency_ms is not None else None
        return SliRule(spec.id, spec.journey, "outcome", latency_ns=latency)
    if isinstance(sli, LatencySli):
        return SliRule(spec.id, spec.journey, "latency", latency_ns=int(sli.latency_ms * 1e6))
    if isinstance(sli, CostSli):
        return SliRule(spec.id, spec.journey, "cost", max_cost_usd=sli.max_usd)
    if isinstance(sli, ScoreSli):
        return SliRule(spec.id, spec.journey, "score", score=sli.score, min_value=sli.min, max_value=sli.max)
    if isinstance(sli, StepSli):
        latency = int(sli.latency_ms * 1e6) if sli.latency_ms is not None else None
        return SliRule(spec.id, spec.journey, "step", latency_ns=latency, operation=sli.operation)
    return None


MAX_REPLAY_NS = 400 * 86400 * 10**9
# Bucket lengths (minutes) of an SLO's SLI chart: the first giving at most the points asked for.
_BUCKET_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)


@dataclass
class SloEngine:
    """The SLOs of each tenant, kept in step with what the store counts."""

    store: SloCounts
    prometheus: bool = False  # a Prometheus server is read for Prometheus SLIs

    def __post_init__(self) -> None:
        self._specs: dict[str, dict[str, SloSpec]] = {}
        # Per tenant, SLO -> why its SLI could not be read from its source in the last pass.
        self._source_errors: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._minutes = MinuteCache(self.store)

    def apply(self, tenant: str, specs: list[SloSpec]) -> None:
        """Replace the tenant's SLOs (already validated); new ones are backfilled."""
        rules = [rule for spec in specs if (rule := sli_rule(spec, self.prometheus)) is not None]
        self.store.set_sli_rules(tenant, rules)
        with self._lock:
            self._specs[tenant] = {spec.id: spec for spec in specs}

    def set_source_errors(self, tenant: str, errors: dict[str, str]) -> None:
        """Note the SLOs whose SLI the last read of an outside source (Prometheus) refused."""
        with self._lock:
            self._source_errors[tenant] = dict(errors)

    def tenants(self) -> list[str]:
        """Tenants that have SLOs (the alert evaluator walks them all)."""
        with self._lock:
            return [tenant for tenant, specs in self._specs.items() if specs]

    def specs(self, tenant: str) -> list[SloSpec]:
        check_tenant(tenant)
        with self._lock:
            return list(self._specs.get(tenant, {}).values())

    def status(self, tenant: str, name: str, now_ns: int | None = None, burn_down_points: int = 0) -> dict[str, Any]:
        """One SLO's document for the API; NotFound for an unknown name."""
        check_tenant(tenant)
        with self._lock:
            spec = self._specs.get(tenant, {}).get(name)
        if spec is None:
            raise NotFound(f"no SLO named {name!r}")
        return self._documents(tenant, [spec], now_ns or time.time_ns(), burn_down_points)[0]

    def chart(
        self, tenant: str, name: str, range_ns: int, points: int = 120, now_ns: int | None = None
    ) -> dict[str, Any]:
        """The SLO over the last ``range_ns`` (no further back than its window or its first
        event): the remaining budget at ``points`` moments, and bad/total events per bucket
        (a whole number of minutes giving about ``points`` buckets) for the SLI chart."""
        check_tenant(tenant)
        with self._lock:
            spec = self._specs.get(tenant, {}).get(name)
        if spec is None:
            raise NotFound(f"no SLO named {name!r}")
        if sli_rule(spec, self.prometheus) is None or windows_for(spec.window.duration) is None:
            return {"burn_down": [], "sli_series": [], "bucket_s": 60}
        now = now_ns or time.time_ns()
        bounds = self._live_bounds(spec, now)
        counts = self._minutes.read(tenant, {spec.id: bounds})
        first = self._minutes.first_minutes(tenant, [spec.id]).get(spec.id)
        series = self._as_budgeted(spec, MinuteSeries(bounds[0], *counts[spec.id], first_ns=first))
        end = series.minutes
        since = max(0, end - max(1, range_ns // MINUTE_NS))
        budget_minutes = None
        if not spec.window.rolling:
            budget_minutes = (series.start_ns + end * MINUTE_NS - calendar_start(spec.window, now)) // MINUTE_NS
        if first is not None:
            since = max(since, (first - series.start_ns) // MINUTE_NS)
        shown = max(1, end - since)
        bucket = next((b for b in _BUCKET_MINUTES if shown / b <= points), _BUCKET_MINUTES[-1])
        down = burn_down(series, spec.objective, spec.window.duration, end, points, budget_minutes, since=since)
        rows = error_ratio_series(series, since, end, bucket)
        return {
            "burn_down": [{"time": rfc3339(t), "remaining_ratio": r} for t, r in down],
            "sli_series": [
                {"time": rfc3339(t), "bad": b, "total": n, "error_ratio": (b / n) if n else None} for t, b, n in rows
            ],
            "bucket_s": bucket * 60,
            "objective": spec.objective,
        }

    def statuses(self, tenant: str, now_ns: int | None = None) -> list[dict[str, Any]]:
        """Every SLO of the tenant, evaluated at one moment."""
        return self._documents(tenant, self.specs(tenant), now_ns or time.time_ns(), 0)

    def replay(self, tenant: str, name: str, since_ns: int | None, until_ns: int | None) -> list[dict[str, Any]]:
        """When page and ticket would have fired over [since, until) (default: the SLO window)."""
        check_tenant(tenant)
        with self._lock:
            spec = self._specs.get(tenant, {}).get(name)
        if spec is None:
            raise NotFound(f"no SLO named {name!r}")
        windows = windows_for(spec.window.duration)
        if sli_rule(spec, self.prometheus) is None or windows is None:
            return []
        until = until_ns or time.time_ns()
        period_ns = int(spec.window.duration / timedelta(minutes=1)) * MINUTE_NS
        since = since_ns if since_ns is not None else until - period_ns
        if since >= until:
            raise PermanentError("replay needs since before until")
        if until - since > MAX_REPLAY_NS:
            # The replay holds a count per minute of the period: bound what one request may ask.
            raise PermanentError(
                f"replay covers at most {MAX_REPLAY_NS // (86400 * 10**9)} days; "
                f"asked for {(until - since) / (86400 * 10**9):,.0f}"
            )
        # Start one window early so the first minutes are judged with full windows behind them.
        series = self._range(tenant, spec, since - 3 * 86400 * 10**9, until)
        return [
            {"severity": a.severity, "start": rfc3339(a.start_ns), "end": rfc3339(a.end_ns), "peak_burn": a.peak_burn}
            for a in replay(series, spec.objective, spec.window.duration, windows, spec.alert_guard)
            if (a.end_ns is None or a.end_ns > since) and a.start_ns < until
        ]

    def _documents(self, tenant: str, specs: list[SloSpec], now_ns: int, points: int) -> list[dict[str, Any]]:
        """Evaluate ``specs`` at ``now_ns``, each SLO with dependencies given their state."""
        docs = self._evaluated(tenant, specs, now_ns, points)
        if not any(spec.depends_on for spec in specs):
            return docs
        by_id = {doc["name"]: doc for doc in docs}
        with self._lock:
            known = dict(self._specs.get(tenant, {}))
        missing = [known[d] for spec in specs for d in spec.depends_on if d not in by_id and d in known]
        if missing:
            unique = list({spec.id: spec for spec in missing}.values())
            by_id.update({doc["name"]: doc for doc in self._evaluated(tenant, unique, now_ns, 0)})
        for spec, doc in zip(specs, docs, strict=True):
            if spec.depends_on:
                doc.update(dependency_document(doc, [by_id.get(d) or {"name": d, "status": "unknown"}
                                                     for d in spec.depends_on]))
        return docs

    def _evaluated(self, tenant: str, specs: list[SloSpec], now_ns: int, points: int) -> list[dict[str, Any]]:
        """Evaluate ``specs`` at ``now_ns`` from one read of the cached minute counts."""
        ranges = {
            spec.id: self._live_bounds(spec, now_ns)
            for spec in specs
            if sli_rule(spec, self.prometheus) is not None and windows_for(spec.window.duration) is not None
        }
        counts = self._minutes.read(tenant, ranges)
        first = self._minutes.first_minutes(tenant, list(ranges)) if ranges else {}
        docs = []
        for spec in specs:
            doc = _spec_document(spec)
            docs.append(doc)
            if not spec.runbook:
                # Its alerts and incidents will reach on-call without a runbook.
                doc["warnings"] = ["no runbook: alerts and incidents of this SLO will reach on-call without one"]
            if sli_rule(spec, self.prometheus) is None:
                doc["status"] = "unsupported"
                doc["reason"] = not_counted_reason(spec, self.prometheus)
                continue
            with self._lock:
                source_error = self._source_errors.get(tenant, {}).get(spec.id)
            if source_error is not None:
                # Its minutes could not be read (the last pass): what is shown is what was read before.
                doc.setdefault("warnings", []).append(f"reading its SLI from Prometheus failed: {source_error}")
            windows = windows_for(spec.window.duration)
            if windows is None:
                doc["status"] = "unsupported"
                doc["reason"] = "the SLO window is shorter than the longest alert window (3d)"
                continue
            start, _ = ranges[spec.id]
            series = self._as_budgeted(spec, MinuteSeries(start, *counts[spec.id], first_ns=first.get(spec.id)))
            budget_minutes = None
            if not spec.window.rolling:
                begin = calendar_start(spec.window, now_ns)
                budget_minutes = (series.start_ns + series.minutes * MINUTE_NS - begin) // MINUTE_NS
                doc["period_start"] = rfc3339(begin)
            status = evaluate(
                series, spec.objective, spec.window.duration, windows,
                burn_down_points=points, budget_minutes=budget_minutes, guard=spec.alert_guard,
            )
            doc.update(_status_document(status, spec))
        return docs

    def _live_bounds(self, spec: SloSpec, now_ns: int) -> tuple[int, int]:
        """Minutes to evaluate at ``now_ns``: the rolling window (and the whole calendar
        period when that reaches further back)."""
        end = (now_ns // MINUTE_NS + 1) * MINUTE_NS
        start = end - int(spec.window.duration / timedelta(minutes=1)) * MINUTE_NS
        if not spec.window.rolling:
            start = min(start, calendar_start(spec.window, now_ns))
        return self._bounds(spec, start, now_ns)

    def _bounds(self, spec: SloSpec, start_ns: int, end_ns: int) -> tuple[int, int]:
        start = start_ns // MINUTE_NS * MINUTE_NS
        end = (end_ns // MINUTE_NS + 1) * MINUTE_NS
        # Align to whole slices for timeslice budgeting.
        slice_min = self._slice_minutes(spec)
        if slice_min > 1:
            start -= start % (slice_min * MINUTE_NS)
        return start, end

    def _as_budgeted(self, spec: SloSpec, series: MinuteSeries) -> MinuteSeries:
        method = spec.budgeting.method
        if method in ("timeslices", "ratio_timeslices"):
            objective = spec.budgeting.slice_objective if spec.budgeting.slice_objective is not None else spec.objective
            return timeslices(series, self._slice_minutes(spec), objective, ratio=method == "ratio_timeslices")
        return series

    def _range(self, tenant: str, spec: SloSpec, start_ns: int, end_ns: int) -> MinuteSeries:
        """Counts read straight from the store (replays of past periods bypass the cache)."""
        start, end = self._bounds(spec, start_ns, end_ns)
        minutes = (end - start) // MINUTE_NS
        good = np.zeros(minutes, dtype=np.int64)
        total = np.zeros(minutes, dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        m, g, t = self.store.slo_minute_arrays(tenant, start, end, spec.id).get(spec.id, (empty, empty, empty))
        idx = (np.asarray(m, dtype=np.int64) - start) // MINUTE_NS
        keep = (idx >= 0) & (idx < minutes)
        good[idx[keep]] = np.asarray(g, dtype=np.int64)[keep]
        total[idx[keep]] = np.asarray(t, dtype=np.int64)[keep]
        first = self._minutes.first_minutes(tenant, [spec.id]).get(spec.id)
        return self._as_budgeted(spec, MinuteSeries(start, good, total, first_ns=first))

    @staticmethod
    def _slice_minutes(spec: SloSpec) -> int:
        if spec.budgeting.method == "occurrences" or spec.budgeting.slice_length is None:
            return 1
        return max(1, round(spec.budgeting.slice_length / timedelta(minutes=1)))


def calendar_start(window: SloWindow, now_ns: int) -> int:
    """Start of the calendar week/month/quarter/year containing ``now_ns``, in its time zone."""
    zone = ZoneInfo(window.timezone or "UTC")
    now = datetime.fromtimestamp(now_ns / 1e9, tz=zone)
    unit = window.calendar or "month"
    if unit == "week":
        day = (now - timedelta(days=now.weekday())).date()
        begin = datetime(day.year, day.month, day.day, tzinfo=zone)
    elif unit == "month":
        begin = datetime(now.year, now.month, 1, tzinfo=zone)
    elif unit == "quarter":
        begin = datetime(now.year, 3 * ((now.month - 1) // 3) + 1, 1, tzinfo=zone)
    else:
        begin = datetime(now.year, 1, 1, tzinfo=zone)
    return int(begin.timestamp()) * 10**9


def _spec_document(spec: SloSpec) -> dict[str, Any]:
    return {
        "name": spec.id,
        "journey": spec.journey,
        "objective": spec.objective,
        "window": _human(spec.window.duration),
        # The SLI definition; "sli" is the measured ratio once evaluated.
        "indicator": {"kind": spec.sli.kind, **{k: format_duration(v) if isinstance(v, timedelta) else v
                                                for k, v in vars(spec.sli).items() if v is not None}},
        "tier": spec.tier,
        "owner": spec.owner,
        "runbook": spec.runbook,
        "diagnostic": spec.diagnostic,
        "carries_budget": spec.carries_budget,
        "description": spec.description,
        "depends_on": list(spec.depends_on),
    }


# The pair whose long window says "burning now": the fastest page pair's (1h for 30d).
BURN_PAIR = "page_quick"


def alert_window_burn(doc: dict[str, Any]) -> tuple[float | None, str | None]:
    """An evaluated SLO's burn rate over its fastest page pair's long window, and that window."""
    for alert in doc.get("alerts") or ():
        if alert.get("name") == BURN_PAIR:
            return alert.get("long_burn"), alert.get("long_window")
    return None, None


def dependency_document(doc: dict[str, Any], deps: list[dict[str, Any]]) -> dict[str, Any]:
    """An SLO's dependencies' burn and budget state, highest burn first, and the ones burning
    (burn rate over the alert window above 1) when the SLO itself burns."""
    rows = []
    for dep in deps:
        burn, window = alert_window_burn(dep)
        budget = dep.get("error_budget") or {}
        rows.append({
            "slo": dep["name"], "journey": dep.get("journey"), "kind": (dep.get("indicator") or {}).get("kind"),
            "status": dep.get("status"), "burn_rate": burn, "window": window,
            "remaining_ratio": budget.get("remaining_ratio"), "burning": burn is not None and burn > 1,
        })
    rows.sort(key=lambda r: -(r["burn_rate"] or 0.0))
    own, _ = alert_window_burn(doc)
    burning = (own is not None and own > 1) or doc.get("status") in ("page", "ticket")
    because = [
        {**r, "text": f"{r['slo']} SLO, burn {r['burn_rate']:.1f}×"} for r in rows if burning and r["burning"]
    ]
    return {"dependencies": rows, "burning_because": because}


def _status_document(status: BudgetStatus, spec: SloSpec) -> dict[str, Any]:
    min_events, min_bad = spec.alert_guard
    if status.page and not spec.diagnostic:
        state = "page"
    elif status.page or status.ticket:
        state = "ticket"
    elif status.total == 0:
        state = "no_data"
    elif status.remaining_ratio <= 0:
        state = "exhausted"
    elif status.total < min_events:
        state = "insufficient_data"
    else:
        state = "ok"
    severity = "ticket" if spec.diagnostic else None
    doc: dict[str, Any] = {
        "status": state,
        "data": _data_document(status, min_events),
        "sli": status.sli,
        "good": status.good,
        "total": status.total,
        "error_budget": {
            "total_events": status.budget_events,
            "spent_events": status.spent_events,
            "remaining_ratio": status.remaining_ratio,
            "time_to_exhaustion_s": status.time_to_exhaustion.total_seconds() if status.time_to_exhaustion else None,
        },
        "burn_rates": status.burn_rates,
        "alerts": [
            {
                "name": c.name,
                # Diagnostic SLOs are evaluated and alerted, but only as tickets.
                "severity": severity or c.severity,
                "factor": c.factor,
                "short_window": _human(c.short_window),
                "long_window": _human(c.long_window),
                "short_burn": c.short_burn,
                "long_burn": c.long_burn,
                "firing": c.firing,
                # Burning past the factor but held back by the guard (too few events).
                "held": c.burning and not c.enough_data,
                "long_events": c.long_events,
                "long_bad_events": c.long_bad_events,
                "long_observed_s": c.long_observed.total_seconds(),
                "min_events": c.min_events,
                "min_bad_events": c.min_bad_events,
            }
            for c in status.conditions
        ],
        "burn_down": [{"time": rfc3339(t), "remaining_ratio": r} for t, r in status.burn_down],
    }
    if state == "insufficient_data":
        doc["reason"] = (f"{status.total} events in the window; alerts need at least {min_events} "
                         f"(and {min_bad} bad) in a pair's long window")
    return doc


def _data_document(status: BudgetStatus, min_events: int) -> dict[str, Any]:
    """How much data the figures stand on, in numbers and in one sentence."""
    basis = status.data
    if basis is None:
        return {}
    observed_s, span_s = basis.observed.total_seconds(), basis.span.total_seconds()
    if basis.first_ns is None:
        note = f"no events in the last {_human(basis.span)}"
    elif basis.complete:
        note = f"{basis.events:,} events over the whole {_human(basis.span)}"
    else:
        note = (f"{span_text(basis.observed.total_seconds())} of {_human(basis.span)} observed ({basis.events:,} events): "
                f"the budget is measured against the {basis.projected_events:,.0f} events the "
                f"{_human(basis.span)} holds at the observed rate")
    return {
        "first_event": rfc3339(basis.first_ns) if basis.first_ns is not None else None,
        "observed_s": observed_s,
        "span_s": span_s,
        "coverage": observed_s / span_s if span_s else 0.0,
        "complete": basis.complete,
        "events": basis.events,
        "projected_events": basis.projected_events,
        "enough_events": basis.events >= min_events,
        "note": note,
    }




def _human(window: timedelta) -> str:
    minutes = int(window / timedelta(minutes=1))
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"
