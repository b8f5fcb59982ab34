"""Reliability scorecards: per journey, service or team over a week, month or quarter, the
facts a reliability review reads (SLO attainment and budget, alerts and pages, MTTD/MTTA/MTTR,
incidents by severity, change failure rate, deployment frequency, cost per 1K successful runs,
open action items, policy violations and guardrail trips, telemetry coverage) and a level (bronze/silver/gold) from rules in a YAML file.

Everything is read from what the store already holds; nothing here writes. The default rules
are the DORA performance clusters as published (docs/scorecards.md names the source).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aisre.act.incidents import summarize_times
from aisre.core.errors import NotFound, PermanentError
from aisre.core.model import SpanSampleQuery
from aisre.core.rows import Change
from aisre.core.slo import SloSpec, SpecError, SpecValidationError
from aisre.core.timefmt import rfc3339
from aisre.derive.check import check_store
from aisre.evaluate._yaml import LineDict, View, parse_documents, read_documents
from aisre.store.protocol import ScorecardStore

DAY_NS = 86_400 * 10**9
KINDS = ("week", "month", "quarter")
SCOPES = ("journey", "service", "team")
OPS = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}
# Change kinds that count as deployments for deployment frequency (DORA counts production deploys).
DEPLOY_KINDS = ("deploy",)
# Load tests and game days are rehearsals, not changes to production.
NOT_CHANGES = ("loadtest", "gameday")
TREND_PERIODS = 6


# ---------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class Period:
    """A calendar week (ISO, Monday first), month or quarter in UTC: [start_ns, end_ns)."""

    kind: str
    label: str
    start: date
    end: date

    @property
    def start_ns(self) -> int:
        return _ns(self.start)

    @property
    def end_ns(self) -> int:
        return _ns(self.end)

    @property
    def days(self) -> float:
        return (self.end - self.start).days

    def previous(self) -> Period:
        """The period of the same kind just before this one."""
        return period_containing(self.kind, self.start - timedelta(days=1))

    def document(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "start": rfc3339(self.start_ns), "end": rfc3339(self.end_ns)}


def _ns(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 10**9


def period_containing(kind: str, day: date) -> Period:
    """The week, month or quarter holding ``day``."""
    if kind == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return Period(kind, f"{year}-W{week:02d}", start, start + timedelta(days=7))
    if kind == "month":
        start = day.replace(day=1)
        end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        return Period(kind, f"{start.year}-{start.month:02d}", start, end)
    if kind == "quarter":
        q = (day.month - 1) // 3
        start = date(day.year, 3 * q + 1, 1)
        end = date(day.year + (q == 3), (3 * q + 3) % 12 + 1, 1)
        return Period(kind, f"{day.year}-Q{q + 1}", start, end)
    raise PermanentError(f"period must be one of {', '.join(KINDS)} or a label such as 2026-11, 2026-W47, 2026-Q4; got {kind!r}")


_LABELS = (
    (re.compile(r"^(\d{4})-(\d{2})$"), "month"),
    (re.compile(r"^(\d{4})-W(\d{2})$"), "week"),
    (re.compile(r"^(\d{4})-Q([1-4])$"), "quarter"),
)


def parse_period(text: str, now_ns: int) -> Period:
    """``week``/``month``/``quarter`` (the one holding now), or a label: ``2026-11``, ``2026-W47``, ``2026-Q4``."""
    text = (text or "month").strip()
    today = datetime.fromtimestamp(now_ns / 1e9, UTC).date()
    if text in KINDS:
        return period_containing(text, today)
    for pattern, kind in _LABELS:
        m = pattern.match(text)
        if not m:
            continue
        year, n = int(m.group(1)), int(m.group(2))
        try:
            if kind == "month":
                return period_containing(kind, date(year, n, 1))
            if kind == "week":
                return period_containing(kind, date.fromisocalendar(year, n, 1))
            return period_containing(kind, date(year, 3 * (n - 1) + 1, 1))
        except ValueError:
            break
    raise PermanentError(f"period must be week, month, quarter or a label such as 2026-11, 2026-W47, 2026-Q4; got {text!r}")


# ---------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One check of a fact against a threshold, needed for ``level``."""

    name: str
    level: str
    fact: str
    op: str
    value: float
    missing: str = "fail"  # pass | fail: what a fact with no value (no incidents, no changes) scores
    description: str = ""
    line: int = 0

    def passes(self, facts: dict[str, Any]) -> bool | None:
        """True or False; None never (a missing fact scores as ``missing`` says)."""
        value = facts.get(self.fact)
        if value is None:
            return self.missing == "pass"
        return bool(OPS[self.op](float(value), self.value))


@dataclass(frozen=True)
class Rules:
    """Ordered levels (lowest first), the rules of each, and how long after a change an
    incident or a failed gate counts against it."""

    levels: tuple[str, ...]
    rules: tuple[Rule, ...]
    change_failure_window: timedelta = timedelta(days=1)
    source: str = ""


# Facts a rule may name (scorecard ``facts``).
FACTS = (
    "slo_count", "slos_met", "slos_met_ratio", "attainment_min", "budget_remaining_min",
    "alerts", "pages", "incidents", "sev1", "sev2", "sev3", "sev4",
    "mttd_s", "mtta_s", "mttr_s", "changes", "failed_changes", "change_failure_rate",
    "deployments", "deployments_per_day", "runs", "successful_runs", "cost_usd",
    "cost_per_1k_successful_usd", "cost_per_1k_change", "open_action_items",
    "oldest_action_item_age_s", "mean_action_item_age_s",
    "policy_runs_judged", "policy_violating_runs", "policy_violation_rate", "policy_warned_runs",
    "policy_violations", "guardrail_checks", "guardrail_trips", "guardrail_trip_rate",
    "telemetry_runs", "telemetry_violations", "telemetry_coverage_min",
)
# Spans the telemetry checker samples per journey for a scorecard (its newest whole traces).
TELEMETRY_SAMPLE = 20_000
RULE_KEYS = ("name", "level", "fact", "op", "value", "missing", "description")
DEFAULT_RULES = Path(__file__).with_name("scorecard_rules.yaml")


def load_rules(path: Path | None = None) -> Rules:
    """Read a rules file (default: the DORA tiers shipped with aisre); every problem with file:line."""
    path = path or DEFAULT_RULES
    errors: list[SpecError] = []
    return _rules(read_documents(path, errors), str(path), errors)


def parse_rules(text: str | bytes, file: str = "<scorecard rules>") -> Rules:
    """Like :func:`load_rules` for text already read."""
    errors: list[SpecError] = []
    return _rules(parse_documents(text, file, errors), file, errors)


def _rules(docs: list[tuple[Any, int]], file: str, errors: list[SpecError]) -> Rules:
    out = Rules((), (), source=file)
    if not errors:
        if len(docs) != 1 or not isinstance(docs[0][0], LineDict):
            errors.append(SpecError(file, docs[0][1] if docs else 0, "", "expected one YAML mapping with levels and rules"))
        else:
            out = _read_rules(View(docs[0][0], "", file, errors))
    if errors:
        raise SpecValidationError(errors)
    return out


def _read_rules(v: View) -> Rules:
    v.check_keys(("levels", "rules", "change_failure_window"))
    levels: list[str] = []
    for item, path, line in v.items("levels", required=True):
        if not isinstance(item, str) or not item.strip():
            v.errors.append(SpecError(v.file, line, path, "a level is a name such as bronze"))
        elif item in levels:
            v.errors.append(SpecError(v.file, line, path, f"level {item!r} is listed twice"))
        else:
            levels.append(item)
    window = v.duration("change_failure_window") or timedelta(days=1)
    rules: list[Rule] = []
    names: set[str] = set()
    for item, path, line in v.items("rules", required=True):
        r = v.as_view(item, path, line)
        if r is None:
            continue
        r.check_keys(RULE_KEYS)
        name, level, fact, op = r.text("name", True), r.text("level", True), r.text("fact", True), r.text("op", True)
        value = r.number("value", True)
        missing = r.text("missing") or "fail"
        if name is not None and name in names:
            r.error("name", f"rule {name!r} is defined twice")
        if level is not None and level not in levels:
            r.error("level", f"unknown level {level!r}; levels: {', '.join(levels) or '(none)'}")
        if fact is not None and fact not in FACTS:
            r.error("fact", f"unknown fact {fact!r}; facts: {', '.join(FACTS)}")
        if op is not None and op not in OPS:
            r.error("op", f"unknown operator {op!r}; use one of {' '.join(OPS)}")
        if missing not in ("pass", "fail"):
            r.error("missing", f"must be pass or fail; got {missing!r}")
        if None not in (name, level, fact, op, value):
            names.add(str(name))
            rules.append(Rule(str(name), str(level), str(fact), str(op), float(value or 0), missing,
                              r.text("description") or "", line))
    return Rules(tuple(levels), tuple(rules), window, v.file)


def grade(facts: dict[str, Any], rules: Rules) -> tuple[str | None, list[dict[str, Any]]]:
    """The highest level whose rules pass together with every lower level's (None: not even
    the first), and each rule's outcome."""
    results = [{"name": r.name, "level": r.level, "fact": r.fact, "op": r.op, "threshold": r.value,
                "value": facts.get(r.fact), "passed": r.passes(facts), "description": r.description}
               for r in rules.rules]
    achieved: str | None = None
    for level in rules.levels:
        if all(x["passed"] for x in results if x["level"] == level):
            achieved = level
        else:
            break
    return achieved, results


# ---------------------------------------------------------------------------- entities


@dataclass
class Entity:
    """What a scorecard is about: a journey, a service or a team, and the journeys it covers."""

    scope: str
    name: str
    journeys: set[str] = field(default_factory=set)
    slos: list[SloSpec] = field(default_factory=list)


def entities(scope: str, specs: Sequence[SloSpec], changes: Iterable[Change] = ()) -> list[Entity]:
    """Every journey (from SLOs), service (an SLO's service or a change naming services and
    journeys) or team (SLO owners), with the journeys and SLOs each covers."""
    if scope not in SCOPES:
        raise PermanentError(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}")
    found: dict[str, Entity] = {}

    def add(name: str | None, journey: str | None, spec: SloSpec | None) -> None:
        if not name:
            return
        e = found.setdefault(name, Entity(scope, name))
        if journey:
            e.journeys.add(journey)
        if spec is not None and spec not in e.slos:
            e.slos.append(spec)

    for spec in specs:
        key = {"journey": spec.journey, "service": spec.service, "team": spec.owner}[scope]
        add(key, spec.journey, spec)
    if scope == "service":
        for c in changes:
            for service in c.get("services") or ():
                for journey in c.get("journeys") or ():
                    add(service, journey, None)
        # A service's SLOs are those of the journeys it serves.
        for e in found.values():
            e.slos.extend(s for s in specs if s.journey in e.journeys and s not in e.slos)
    return sorted(found.values(), key=lambda e: e.name)


# ---------------------------------------------------------------------------- facts


def slo_facts(store: ScorecardStore, tenant: str, specs: Sequence[SloSpec], period: Period) -> list[dict[str, Any]]:
    """Per SLO over the period: good, total, attainment (good/total), whether it met the
    objective, and the share of the period's error budget left (1 − bad / (allowed × total))."""
    arrays = store.slo_minute_arrays(tenant, period.start_ns, period.end_ns)
    out = []
    for spec in specs:
        _, good_a, total_a = arrays.get(spec.id, ((), (), ()))
        good, total = int(sum(int(x) for x in good_a)), int(sum(int(x) for x in total_a))
        bad, allowed = total - good, spec.error_budget
        attainment = good / total if total else None
        out.append({
            "slo": spec.id, "journey": spec.journey, "objective": spec.objective, "owner": spec.owner,
            "tier": spec.tier, "runbook": spec.runbook, "diagnostic": spec.diagnostic,
            "good": good, "total": total, "attainment": attainment,
            "met": None if attainment is None else attainment * 100 >= spec.objective,
            "budget_remaining": (1.0 - bad / (allowed * total)) if total else None,
        })
    return out


def _in(ns: int | None, period: Period) -> bool:
    return ns is not None and period.start_ns <= ns < period.end_ns


class ScorecardReader:
    """Scorecards for one tenant, read once per request: the period's rows are fetched once
    and shared by every entity."""

    def __init__(self, store: ScorecardStore, tenant: str, specs: Sequence[SloSpec], rules: Rules, now_ns: int) -> None:
        self.store, self.tenant, self.specs, self.rules, self.now_ns = store, tenant, list(specs), rules, now_ns
        self._alerts = store.list_alerts(tenant, limit=1_000_000)
        self._verdicts = store.list_gate_verdicts(tenant, limit=1_000_000)
        self._incidents = store.incidents.list_incidents(tenant, limit=1_000_000)
        self._items = store.incidents.action_items(tenant)
        self._changes = store.incidents.list_changes(tenant, limit=1_000_000)
        self._policy: dict[str, list[dict[str, Any]]] = {}

    def entities(self, scope: str) -> list[Entity]:
        return entities(scope, self.specs, self._changes)

    def facts(self, e: Entity, period: Period, telemetry: bool = True) -> dict[str, Any]:
        """The flat facts of one entity over one period (what rules and the export read);
        ``telemetry=False`` skips the checker's sample (trend periods do not chart it)."""
        journeys = e.journeys
        slos = slo_facts(self.store, self.tenant, e.slos, period)
        measured = [s for s in slos if s["total"]]
        met = sum(1 for s in measured if s["met"])
        alerts = [a for a in self._alerts if a.get("journey") in journeys and _in(a.get("started_ns"), period)]
        incidents = [i for i in self._incidents if i.get("journey") in journeys and _in(i["opened_ns"], period)]
        times = summarize_times(incidents)
        # A load test or a game day is a rehearsal, not a change to production: it neither fails nor counts.
        changes = [c for c in self._changes if _in(c["at_ns"], period) and self._covers(e, c) and c["kind"] not in NOT_CHANGES]
        failed = [c for c in changes if self.change_failed(c)]
        deploys = [c for c in changes if c["kind"] in DEPLOY_KINDS]
        runs = self._runs(journeys, period)
        items = self._open_items(journeys, period)
        ages = [period_end_or_now(period, self.now_ns) - i["created_ns"] for i in items]
        facts: dict[str, Any] = {
            "slo_count": len(slos), "slos_met": met,
            "slos_met_ratio": met / len(measured) if measured else None,
            "attainment_min": min((s["attainment"] for s in measured), default=None),
            "budget_remaining_min": min((s["budget_remaining"] for s in measured if not s["diagnostic"]), default=None),
            "alerts": len(alerts), "pages": sum(1 for a in alerts if a["severity"] == "page"),
            "incidents": len(incidents), **{s: n for s, n in times["by_severity"].items()},
            "mttd_s": times["mttd_s"], "mtta_s": times["mtta_s"], "mttr_s": times["mttr_s"],
            "changes": len(changes), "failed_changes": len(failed),
            "change_failure_rate": len(failed) / len(changes) if changes else None,
            "deployments": len(deploys), "deployments_per_day": len(deploys) / period.days,
            **runs,
            "open_action_items": len(items),
            "oldest_action_item_age_s": max(ages) / 1e9 if ages else None,
            "mean_action_item_age_s": sum(ages) / len(ages) / 1e9 if ages else None,
            **self._policy_facts(journeys, period),
            **(self._telemetry_facts(journeys, period) if telemetry else dict.fromkeys(TELEMETRY_FACTS)),
        }
        return {"facts": facts, "slos": slos, "failed_change_ids": [c["id"] for c in failed]}

    def _policy_facts(self, journeys: set[str], period: Period) -> dict[str, Any]:
        """Runs the policy engine judged in the period, those with a deny (or only a warn)
        violation, and guardrail checks and trips; all None when no run was judged (no policy)."""
        if period.label not in self._policy:
            self._policy[period.label] = self.store.policy_totals(self.tenant, period.start_ns, period.end_ns)
        mine = [r for r in self._policy[period.label] if r["journey"] in journeys]
        judged = sum(int(r["judged"]) for r in mine)
        if not judged:
            return dict.fromkeys(POLICY_FACTS)
        denied = sum(int(r["denied_runs"]) for r in mine)
        checked = sum(int(r["checked_runs"]) for r in mine)
        return {
            "policy_runs_judged": judged, "policy_violating_runs": denied, "policy_violation_rate": denied / judged,
            "policy_warned_runs": sum(int(r["warned_runs"]) for r in mine),
            "policy_violations": sum(int(r["violations"]) for r in mine),
            "guardrail_checks": sum(int(r["guardrail_checks"]) for r in mine),
            "guardrail_trips": sum(int(r["guardrail_trips"]) for r in mine),
            "guardrail_trip_rate": sum(int(r["tripped_runs"]) for r in mine) / checked if checked else None,
        }

    def _telemetry_facts(self, journeys: set[str], period: Period) -> dict[str, Any]:
        """The telemetry checker over each journey's newest traces in the period: runs checked,
        violation-level findings, and the lowest per-service coverage (share of checks passed)."""
        runs, violations, coverage = 0, 0, []
        for journey in sorted(journeys):
            q = SpanSampleQuery(tenant=self.tenant, since_ns=period.start_ns, until_ns=period.end_ns,
                                journey=journey, limit=TELEMETRY_SAMPLE)
            doc = check_store(self.store, q)
            runs += int(doc["runs"])
            violations += sum(int(f["count"]) for f in doc["findings"] if f["level"] == "violation")
            coverage.extend(doc["coverage"].values())
        if not runs:
            return dict.fromkeys(TELEMETRY_FACTS)
        return {"telemetry_runs": runs, "telemetry_violations": violations,
                "telemetry_coverage_min": min(coverage, default=None)}

    def _covers(self, e: Entity, change: Change) -> bool:
        if e.scope == "service" and e.name in (change.get("services") or ()):
            return True
        return bool(set(change.get("journeys") or ()) & e.journeys)

    def change_failed(self, change: Change) -> bool:
        """Followed, within the rules' window, by an incident on one of its journeys or a
        failed gate verdict for one of them."""
        start, end = change["at_ns"], change["at_ns"] + int(self.rules.change_failure_window.total_seconds() * 1e9)
        journeys = set(change.get("journeys") or ())
        if any(i.get("journey") in journeys and start <= i["opened_ns"] < end for i in self._incidents):
            return True
        return any(v["journey"] in journeys and v["verdict"] == "fail" and start <= v["decided_ns"] < end
                   for v in self._verdicts)

    def _runs(self, journeys: set[str], period: Period) -> dict[str, Any]:
        rows = self.store.cost.run_counts(self.tenant, period.start_ns, period.end_ns, by_journey=True)
        mine = [r for r in rows if r["journey"] in journeys]
        runs = sum(int(r["runs"]) for r in mine)
        ok = runs - sum(int(r["failures"]) for r in mine)
        cost = sum(float(r["run_cost_usd"]) for r in mine)
        return {"runs": runs, "successful_runs": ok, "cost_usd": cost,
                "cost_per_1k_successful_usd": cost / ok * 1000 if ok else None}

    def _open_items(self, journeys: set[str], period: Period) -> list[dict[str, Any]]:
        """Action items of these journeys' incidents still open at the period's end."""
        ids = {i["id"] for i in self._incidents if i.get("journey") in journeys}
        end = period_end_or_now(period, self.now_ns)
        return [i for i in self._items if i["incident_id"] in ids and i["created_ns"] < end
                and (i["status"] != "done" or (i.get("done_ns") or 0) >= end)]

    def scorecard(self, e: Entity, period: Period, trend: int = TREND_PERIODS) -> dict[str, Any]:
        """One entity's scorecard: facts, SLOs, level and rule outcomes, and a trend of the
        headline facts over the ``trend`` periods ending with this one (oldest first)."""
        now = self.facts(e, period)
        history: list[tuple[Period, dict[str, Any]]] = []
        p = period
        for _ in range(max(0, trend - 1)):
            p = p.previous()
            history.insert(0, (p, self.facts(e, p, telemetry=False)["facts"]))
        facts = now["facts"]
        prev = history[-1][1] if history else None
        if prev and prev.get("cost_per_1k_successful_usd") and facts["cost_per_1k_successful_usd"] is not None:
            facts["cost_per_1k_change"] = facts["cost_per_1k_successful_usd"] / prev["cost_per_1k_successful_usd"] - 1
        else:
            facts["cost_per_1k_change"] = None
        level, results = grade(facts, self.rules)
        series = [*history, (period, facts)]
        return {
            "scope": e.scope, "name": e.name, "journeys": sorted(e.journeys), "period": period.document(),
            "level": level, "levels": list(self.rules.levels), "facts": facts, "slos": now["slos"],
            "failed_change_ids": now["failed_change_ids"], "rules": results,
            "trend": {
                "periods": [p.label for p, _ in series],
                **{k: [f.get(k) for _, f in series] for k in TREND_FACTS},
            },
        }


POLICY_FACTS = ("policy_runs_judged", "policy_violating_runs", "policy_violation_rate", "policy_warned_runs",
                "policy_violations", "guardrail_checks", "guardrail_trips", "guardrail_trip_rate")
TELEMETRY_FACTS = ("telemetry_runs", "telemetry_violations", "telemetry_coverage_min")
TREND_FACTS = ("attainment_min", "budget_remaining_min", "incidents", "pages", "change_failure_rate",
               "deployments", "cost_per_1k_successful_usd",
               "policy_violation_rate", "guardrail_trip_rate")


def period_end_or_now(period: Period, now_ns: int) -> int:
    """Ages are measured at the period's end, or now while it is still running."""
    return min(period.end_ns, now_ns)


def scorecards(
    store: ScorecardStore, tenant: str, specs: Sequence[SloSpec], rules: Rules, period: Period, now_ns: int,
    scope: str = "journey", name: str | None = None, trend: int = TREND_PERIODS,
) -> dict[str, Any]:
    """Every entity of ``scope`` (or the one named) scored over ``period``."""
    reader = ScorecardReader(store, tenant, specs, rules, now_ns)
    found = reader.entities(scope)
    if name is not None:
        found = [e for e in found if e.name == name]
        if not found:
            raise NotFound(f"no {scope} named {name!r} (scopes come from the SLO specs and recorded changes)")
    return {
        "period": period.document(), "scope": scope, "rules_source": rules.source,
        "levels": list(rules.levels), "change_failure_window_s": rules.change_failure_window.total_seconds(),
        "scorecards": [reader.scorecard(e, period, trend) for e in found],
    }


def facts_export(doc: dict[str, Any]) -> dict[str, Any]:
    """The facts as one flat record per entity, keyed the way catalog tools (Backstage Tech
    Insights, Port, Cortex custom data) ingest them: an entity reference, a timestamp, facts."""
    kinds = {"journey": "system", "service": "component", "team": "group"}
    return {
        "version": 1, "period": doc["period"], "generator": "aisre",
        "entities": [
            {"entityRef": f"{kinds[c['scope']]}:default/{c['name']}", "scope": c["scope"], "name": c["name"],
             "timestamp": doc["period"]["end"], "level": c["level"],
             "facts": {**c["facts"], "level": c["level"]},
             "checks": {r["name"]: r["passed"] for r in c["rules"]}}
            for c in doc["scorecards"]
        ],
    }
