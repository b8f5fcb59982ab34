"""Launch readiness: a checklist for a journey evaluated from facts aisre holds, never ticked by
hand: SLOs with owner, tier and runbook, alerts routed to a receiver, runs seen (its pages
exist), a release gate configured and used, telemetry the checker passes, a cost budget, a load
test on record and an error-budget policy. A template file adds items and switches built-ins off.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisre.core.model import SpanSampleQuery
from aisre.core.slo import SloSpec, SpecError, SpecValidationError
from aisre.core.timefmt import rfc3339
from aisre.derive.check import Requirement, check_store
from aisre.evaluate._yaml import LineDict, View, parse_documents, read_documents
from aisre.store.protocol import ReadinessStore

DAY_NS = 86_400 * 10**9
LOOKBACK_DAYS = 30
OPS = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}


@dataclass(frozen=True)
class Item:
    """One checklist item: a fact compared with a value; ``required`` items decide the exit code."""

    id: str
    title: str
    fact: str
    op: str
    value: float
    required: bool = True
    fix: str = ""
    line: int = 0

    def passes(self, facts: dict[str, Any]) -> bool:
        value = facts.get(self.fact)
        return value is not None and bool(OPS[self.op](float(value), self.value))


BUILTIN = (
    Item("slo-defined", "SLOs defined: at least one budget-carrying SLO for the journey", "slos", ">=", 1,
         fix="add an SLO with journey: JOURNEY to the SLO spec (docs/slos)"),
    Item("slo-owner", "every SLO names an owner", "slos_without_owner", "==", 0, fix="set owner: on each SLO"),
    Item("slo-tier", "every SLO names a tier", "slos_without_tier", "==", 0, fix="set tier: on each SLO"),
    Item("slo-runbook", "every SLO links a runbook", "slos_without_runbook", "==", 0, fix="set runbook: on each SLO"),
    Item("alerts-routed", "alerts are routed to a receiver (pages reach someone)", "receivers", ">=", 1,
         fix="start the server with --setting receivers=receivers.yaml (webhook, Slack, PagerDuty)"),
    Item("runs-seen", "the journey's runs arrive (its journey, SLO and cost pages have data)", "runs", ">=", 1,
         fix="send traces whose spans carry aisre.journey"),
    Item("gate-configured", "rollback path: a release gate file is configured", "gate_configured", ">=", 1,
         fix="start the server with --gate-config gate.yaml (docs/gate.md)"),
    Item("gate-history", "canary plan: the gate has judged a release of this journey", "gate_verdicts", ">=", 1,
         fix="run `aisre gate --journey JOURNEY --baseline … --candidate …` in the release pipeline"),
    Item("telemetry", "telemetry coverage: the checker finds no violation in the journey's spans", "telemetry_violations", "==", 0,
         fix="run `aisre check --journey JOURNEY` and fix what it reports"),
    Item("budget-set", "a cost budget covers the journey", "cost_budgets", ">=", 1,
         fix="aisre cost budget set NAME --journey JOURNEY --amount … --period month"),
    Item("loadtest", "a load-test baseline is recorded (a change of kind loadtest with its figures)", "loadtests", ">=", 1,
         fix="aisre change record --kind loadtest --journey JOURNEY --meta rps=… --meta p95_ms=…"),
    Item("policy", "an error-budget policy is in force for releases", "policy_rules", ">=", 1,
         fix="keep the gate file's policy: section (or its defaults) on"),
)
FACTS = ("slos", "slos_without_owner", "slos_without_tier", "slos_without_runbook", "receivers", "runs",
         "gate_configured", "gate_verdicts", "telemetry_spans", "telemetry_violations", "telemetry_coverage_min",
         "cost_budgets", "loadtests", "policy_rules")


@dataclass(frozen=True)
class Template:
    """Built-in items minus those switched off, plus the team's own."""

    items: tuple[Item, ...] = BUILTIN
    source: str = "(built-in)"


def load_template(path: Path) -> Template:
    """Read a checklist template; every problem with file, line and field."""
    errors: list[SpecError] = []
    return _finish(read_documents(path, errors), str(path), errors)


def parse_template(text: str | bytes, file: str = "<readiness template>") -> Template:
    """Like :func:`load_template` for text already read."""
    errors: list[SpecError] = []
    return _finish(parse_documents(text, file, errors), file, errors)


def _finish(docs: list[tuple[Any, int]], file: str, errors: list[SpecError]) -> Template:
    out = Template()
    if not errors:
        if len(docs) != 1 or not isinstance(docs[0][0], LineDict):
            errors.append(SpecError(file, docs[0][1] if docs else 0, "", "expected one YAML mapping (disable, items)"))
        else:
            out = _read(View(docs[0][0], "", file, errors))
    if errors:
        raise SpecValidationError(errors)
    return out


def _read(v: View) -> Template:
    v.check_keys(("disable", "items"))
    known = {i.id for i in BUILTIN}
    off: set[str] = set()
    for item, path, line in v.items("disable"):
        if item not in known:
            v.errors.append(SpecError(v.file, line, path, f"no built-in item {item!r}; built-in: {', '.join(sorted(known))}"))
        else:
            off.add(item)
    items = [i for i in BUILTIN if i.id not in off]
    for raw, path, line in v.items("items"):
        r = v.as_view(raw, path, line)
        if r is None:
            continue
        r.check_keys(("id", "title", "fact", "op", "value", "required", "fix"))
        ident, fact, op, value = r.text("id", True), r.text("fact", True), r.text("op", True), r.number("value", True)
        if ident is not None and any(i.id == ident for i in items):
            r.error("id", f"item {ident!r} is defined twice (or is a built-in: disable it first)")
        if fact is not None and fact not in FACTS:
            r.error("fact", f"unknown fact {fact!r}; facts: {', '.join(FACTS)}")
        if op is not None and op not in OPS:
            r.error("op", f"unknown operator {op!r}; use one of {' '.join(OPS)}")
        required = r.boolean("required", True)
        if None not in (ident, fact, op, value):
            items.append(Item(str(ident), r.text("title") or str(ident), str(fact), str(op), float(value or 0),
                              required, r.text("fix") or "", line))
    return Template(tuple(items), v.file)


@dataclass(frozen=True)
class Context:
    """What the server was started with that readiness reads."""

    receivers: int = 0
    gate_configured: bool = False
    policy_rules: int = 0
    requirements: tuple[Requirement, ...] = ()


def facts(store: ReadinessStore, tenant: str, journey: str, specs: Sequence[SloSpec], ctx: Context,
          now_ns: int | None = None, lookback_days: int = LOOKBACK_DAYS) -> dict[str, Any]:
    """The facts the checklist reads for ``journey`` (runs, verdicts and telemetry over the look-back)."""
    now = now_ns if now_ns is not None else time.time_ns()
    since = now - lookback_days * DAY_NS
    mine = [s for s in specs if s.journey == journey and not s.diagnostic]
    every = [s for s in specs if s.journey == journey]
    runs = store.cost.run_counts(tenant, since, now, journey=journey)
    verdicts = store.list_gate_verdicts(tenant, journey, limit=1000)
    changes = store.incidents.list_changes(tenant, journey=journey, kind="loadtest", limit=1000)
    budgets = [b for b in store.cost.list_budgets(tenant) if b["journey"] in (journey, "")]
    check = check_store(store, SpanSampleQuery(tenant=tenant, since_ns=since, until_ns=now, journey=journey, limit=20_000),
                        ctx.requirements)
    return {
        "slos": len(mine),
        "slos_without_owner": sum(1 for s in every if not s.owner) if every else None,
        "slos_without_tier": sum(1 for s in every if s.tier is None) if every else None,
        "slos_without_runbook": sum(1 for s in every if not s.runbook) if every else None,
        "receivers": ctx.receivers,
        "runs": int(runs[0]["runs"]) if runs else 0,
        "gate_configured": int(ctx.gate_configured),
        "gate_verdicts": len(verdicts),
        "telemetry_spans": check["spans"],
        "telemetry_violations": sum(f["count"] for f in check["findings"] if f["level"] == "violation") if check["spans"] else None,
        "telemetry_coverage_min": min(check["coverage"].values(), default=None),
        "cost_budgets": len(budgets),
        "loadtests": len([c for c in changes if journey in (c.get("journeys") or [])]),
        "policy_rules": ctx.policy_rules,
        "_detail": {
            "slos": [{"slo": s.id, "owner": s.owner, "tier": s.tier, "runbook": s.runbook, "diagnostic": s.diagnostic} for s in every],
            "last_verdict": ({"verdict": verdicts[0]["verdict"], "decided": rfc3339(verdicts[0]["decided_ns"])} if verdicts else None),
            "telemetry_coverage": check["coverage"],
            "last_loadtest": ({"summary": changes[0]["summary"], "at": rfc3339(changes[0]["at_ns"]), "metadata": changes[0].get("metadata")}
                              if changes else None),
        },
    }


def evaluate_readiness(store: ReadinessStore, tenant: str, journey: str, specs: Sequence[SloSpec], ctx: Context,
                       template: Template | None = None, now_ns: int | None = None) -> dict[str, Any]:
    """The checklist for ``journey``: each item passed or not with its value and how to fix it;
    ``ready`` when every required item passes."""
    template = template or Template()
    found = facts(store, tenant, journey, specs, ctx, now_ns)
    detail = found.pop("_detail")
    items = []
    for item in template.items:
        ok = item.passes(found)
        items.append({"id": item.id, "title": item.title, "required": item.required, "passed": ok,
                      "fact": item.fact, "op": item.op, "expected": item.value, "value": found.get(item.fact),
                      "fix": "" if ok else item.fix.replace("JOURNEY", journey)})
    failed = [i for i in items if i["required"] and not i["passed"]]
    return {"journey": journey, "ready": not failed, "passed": sum(1 for i in items if i["passed"]), "total": len(items),
            "failed_required": [i["id"] for i in failed], "items": items, "facts": found, "detail": detail,
            "template": template.source, "lookback_days": LOOKBACK_DAYS}
