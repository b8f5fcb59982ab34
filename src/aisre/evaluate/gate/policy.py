"""The error-budget policy: which SLOs must have budget left for a release of a journey to go on.

A rule covers SLOs by tier and/or name (only SLOs that carry a budget, of the gated journey or of
the rule's ``journeys``). A covered SLO whose remaining budget is at or below
``min_budget_remaining`` blocks the release, unless the release is marked as a fix and the rule
allows fixes (a fix is how a budget gets back on track). SLOs without data never block.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SloSelector:
    """SLOs by tier and/or by name (either matches)."""

    tiers: tuple[int, ...] = ()
    names: tuple[str, ...] = ()

    def matches(self, slo: Mapping[str, Any]) -> bool:
        return slo.get("tier") in self.tiers or slo.get("name") in self.names


@dataclass(frozen=True)
class PolicyRule:
    """One rule of the policy file."""

    name: str
    slos: SloSelector
    journeys: tuple[str, ...] = ()  # empty: the journey being gated
    min_budget_remaining: float = 0.0  # ratio of the budget
    allow_fix: bool = True
    description: str = ""
    where: str = ""


@dataclass(frozen=True)
class PolicyFinding:
    """What one rule said about one SLO."""

    rule: str
    slo: str
    journey: str | None
    remaining_ratio: float | None
    status: str
    outcome: str  # ok | blocked | waived (fix) | no_data
    message: str


@dataclass(frozen=True)
class PolicyResult:
    """The policy step: blocked or not, and every finding behind it."""

    blocked: bool
    findings: tuple[PolicyFinding, ...]

    @property
    def reasons(self) -> list[str]:
        return [f.message for f in self.findings if f.outcome == "blocked"]


def apply_policy(
    rules: Iterable[PolicyRule], journey: str, slo_statuses: Iterable[Mapping[str, Any]], fix: bool = False
) -> PolicyResult:
    """Judge the SLO statuses (SloEngine documents) against every rule."""
    statuses = [s for s in slo_statuses if s.get("carries_budget", True)]
    findings: list[PolicyFinding] = []
    for rule in rules:
        journeys = rule.journeys or (journey,)
        for slo in statuses:
            if slo.get("journey") not in journeys or not rule.slos.matches(slo):
                continue
            budget = slo.get("error_budget") or {}
            remaining = budget.get("remaining_ratio")
            status = str(slo.get("status", "unknown"))
            name = str(slo.get("name"))
            if status in ("no_data", "unsupported") or remaining is None:
                outcome, msg = "no_data", f"{name}: no data yet, not blocking"
            elif remaining > rule.min_budget_remaining:
                outcome, msg = "ok", f"{name}: {remaining:.1%} of the error budget left"
            elif fix and rule.allow_fix:
                outcome = "waived"
                msg = f"{name}: error budget {_left(remaining)}, but the release is marked as a fix"
            else:
                outcome = "blocked"
                need = f" (rule needs more than {rule.min_budget_remaining:.0%})" if rule.min_budget_remaining else ""
                msg = f"policy {rule.name!r}: {name} (tier {slo.get('tier')}) error budget {_left(remaining)}{need}"
            findings.append(PolicyFinding(rule.name, name, slo.get("journey"), remaining, status, outcome, msg))
    return PolicyResult(any(f.outcome == "blocked" for f in findings), tuple(findings))


def _left(remaining: float) -> str:
    return f"exhausted ({remaining:.1%} left)" if remaining <= 0 else f"at {remaining:.1%}"
