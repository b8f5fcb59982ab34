"""Kayenta's weighted-sum scorer and the score → verdict rules.

Each metric belongs to one or more groups. A group scores ``100 × pass / (pass + high + low +
nodata-fail)``; Nodata metrics are left out, and a group with nothing left is "no data" (score 0,
counted as 100 in the summary so missing data alone does not fail a release). The summary is the
weighted sum of group scores: groups without an explicit weight share what is left of 100 equally;
rounded to 2 decimals, half up. Any critical metric that is not Pass, or Nodata metrics making up
half or more of all metrics, set the summary to 0. Muted metrics are removed before scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from aisre.evaluate.gate.classifier import Classification


class Verdict(StrEnum):
    """What the gate says about a candidate."""

    PASS = "pass"
    MARGINAL = "marginal"
    FAIL = "fail"
    INSUFFICIENT = "insufficient_data"


@dataclass(frozen=True)
class ScoredMetric:
    """A classified metric as the scorer sees it."""

    name: str
    classification: Classification
    groups: tuple[str, ...]
    critical: bool = False
    muted: bool = False


@dataclass(frozen=True)
class GroupScore:
    """One group's score and its classification counts."""

    name: str
    score: float
    no_data: bool
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreResult:
    """The summary score, each group's score and why the summary was forced to 0, if it was."""

    summary: float
    groups: tuple[GroupScore, ...]
    reason: str | None = None


def _group_score(name: str, labels: Sequence[Classification]) -> GroupScore:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label.value] = counts.get(label.value, 0) + 1
    passed = counts.get(Classification.PASS.value, 0)
    total = passed + sum(
        counts.get(c.value, 0) for c in (Classification.HIGH, Classification.LOW, Classification.NODATA_FAIL)
    )
    if total == 0:
        return GroupScore(name, 0.0, True, counts)
    return GroupScore(name, passed / total * 100, False, counts)


def round_half_up(value: float, places: int = 2) -> float:
    """Round as Java's BigDecimal HALF_UP does on the decimal text of the double."""
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def score(metrics: Sequence[ScoredMetric], group_weights: Mapping[str, float] | None = None) -> ScoreResult:
    """Kayenta's WeightedSumScorer over classified metrics."""
    weights = dict(group_weights or {})
    active = [m for m in metrics if not m.muted]
    by_group: dict[str, list[Classification]] = {}
    for m in active:
        for group in m.groups:
            by_group.setdefault(group, []).append(m.classification)
    groups = tuple(_group_score(name, labels) for name, labels in by_group.items())
    unweighted = [g.name for g in groups if g.name not in weights]
    share = (100.0 - sum(weights.values())) / len(unweighted) if unweighted else 0.0
    summary = 0.0
    for g in groups:
        effective = 100.0 if g.no_data else g.score
        summary += effective * (weights.get(g.name, share) / 100)
    summary = round_half_up(summary)

    critical = [m.name for m in active if m.critical and m.classification is not Classification.PASS]
    if critical:
        return ScoreResult(0.0, groups, f"Canary Failed: critical metric(s) {', '.join(critical)} not Pass")
    nodata = sum(1 for m in active if m.classification is Classification.NODATA)
    if active and nodata / len(active) >= 0.5:
        return ScoreResult(0.0, groups, f"Canary Failed: {nodata} of {len(active)} metrics have no data")
    return ScoreResult(summary, groups)


def verdict(summary: float, pass_threshold: float, marginal_threshold: float) -> Verdict:
    """The judge's rule: ≥ pass → Pass; else ≥ marginal → Marginal; else Fail."""
    if summary >= pass_threshold:
        return Verdict.PASS
    if summary >= marginal_threshold:
        return Verdict.MARGINAL
    return Verdict.FAIL


def aggregated_judgement(
    summary: float, pass_threshold: float | None, marginal_threshold: float | None
) -> tuple[bool, str]:
    """Kayenta's standalone (multi-interval) judgement: a score at the marginal threshold fails."""
    if marginal_threshold is None and pass_threshold is None:
        return True, "No score thresholds were specified."
    if marginal_threshold is not None and summary <= marginal_threshold:
        return False, f"Final canary score {summary} is not above the marginal score threshold."
    if pass_threshold is None:
        return True, "No score thresholds were specified."
    if summary < pass_threshold:
        return False, f"Final canary score {summary} is below the pass score threshold."
    return True, f"Final canary score {summary} met or exceeded the pass score threshold."
