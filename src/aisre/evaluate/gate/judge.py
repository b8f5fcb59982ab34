"""The canary judge: baseline vs candidate runs of a journey, metric by metric, into one verdict.

Metrics: ``outcome`` (whether each run failed), ``latency`` (ms per run), ``cost`` (USD per run),
``tokens`` (per run), and every score that either side carries (per-run mean). A metric whose
per-run values are all 0 or 1 — the outcome always — is a proportion, judged with Fisher's exact
test over per-run counts (:mod:`aisre.evaluate.gate.proportion`); the others with Kayenta's
Mann-Whitney rule. Both give Kayenta's classes, scored by group, and the summary score meets the
pass/marginal thresholds. The error-budget policy runs first: a blocked release fails whatever its
metrics say.

Insufficient data is never a pass: too few runs on either side, or too few runs with a value of a
metric while that metric could still change the verdict (scored as Pass, then as failed, the
verdicts differ), answer ``insufficient_data`` with the counts there were and the counts needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aisre.core.population import Population, RunSelector
from aisre.core.timefmt import rfc3339
from aisre.derive.populations import population, selector_text
from aisre.evaluate.gate.classifier import (
    Classification,
    Direction,
    MannWhitneyClassifier,
    MetricClassification,
    clean,
    missing,
)
from aisre.evaluate.gate.config import DirectionFrom, GateConfig, MetricConfig, MetricTest
from aisre.evaluate.gate.mannwhitney import ShiftInterval, p_value
from aisre.evaluate.gate.policy import PolicyResult, apply_policy
from aisre.evaluate.gate.proportion import FisherClassifier, is_binary
from aisre.evaluate.gate.scorer import ScoredMetric, ScoreResult, Verdict, score, verdict
from aisre.store.protocol import GateStore

EXIT_CODES = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.MARGINAL: 2, Verdict.INSUFFICIENT: 3}
UNITS = {"outcome": "failure rate", "latency": "ms", "cost": "USD", "tokens": "tokens"}
HISTOGRAM_BINS = 20
FAILING = ("High", "Low", "NodataFailMetric", "Error")


@dataclass(frozen=True)
class GateRequest:
    """What to compare, and how."""

    tenant: str
    journey: str
    baseline: tuple[RunSelector, ...]
    candidate: tuple[RunSelector, ...]
    fix: bool = False
    since_ns: int | None = None
    until_ns: int | None = None


@dataclass(frozen=True)
class Judged:
    """One metric's classification, with the test that gave it and the runs it rests on."""

    name: str  # outcome, latency, cost, tokens, or score:<name>
    config: MetricConfig
    result: MetricClassification
    test: MetricTest | None  # None: not tested (too few runs with a value)
    baseline_n: int
    candidate_n: int
    needed: int

    @property
    def display(self) -> str:
        return self.name.removeprefix("score:")

    @property
    def insufficient(self) -> bool:
        return self.result.classification is Classification.INSUFFICIENT and not self.config.muted


def samples(pop: Population, metric: str) -> NDArray[np.float64]:
    """The per-run observations of one metric in one population (NaN: the run has no value)."""
    if metric == "outcome":
        return pop.failed
    if metric == "latency":
        return pop.duration_ms
    if metric == "cost":
        return pop.cost_usd
    if metric == "tokens":
        return pop.tokens
    name = metric.removeprefix("score:")
    return pop.scores.get(name, np.full(pop.runs, np.nan))


def _stats(values: NDArray[np.float64]) -> dict[str, Any]:
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "min": None, "max": None}
    return {
        "n": len(v),
        "mean": float(np.mean(v)),
        "p50": float(np.quantile(v, 0.5)),
        "p95": float(np.quantile(v, 0.95)),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def _histogram(base: NDArray[np.float64], cand: NDArray[np.float64], binary: bool = False) -> dict[str, Any] | None:
    b, c = base[~np.isnan(base)], cand[~np.isnan(cand)]
    both = np.concatenate((b, c))
    if len(both) == 0:
        return None
    if binary:
        edges = np.array([0.0, 0.5, 1.0])  # runs without the event, runs with it
    else:
        lo, hi = float(both.min()), float(both.max())
        if hi == lo:
            hi = lo + (abs(lo) or 1.0) * 1e-6
        edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    return {
        "edges": [float(e) for e in edges],
        "baseline": [int(n) for n in np.histogram(b, edges)[0]],
        "candidate": [int(n) for n in np.histogram(c, edges)[0]],
    }


def _finite(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else float(x)


def _better(direction: Direction) -> str | None:
    return {Direction.DECREASE: "higher", Direction.INCREASE: "lower"}.get(direction)


def _rates_document(j: Judged) -> dict[str, Any] | None:
    r = j.result.rates
    if r is None:
        return None
    return {
        "test": "Fisher's exact, one-sided per direction",
        "baseline": {"count": r.baseline_count, "runs": r.baseline_runs, "rate": _finite(r.baseline_rate)},
        "candidate": {"count": r.candidate_count, "runs": r.candidate_runs, "rate": _finite(r.candidate_rate)},
        "ratio": _finite(r.candidate_rate / r.baseline_rate) if r.baseline_rate else None,
        "p_increase": r.p_increase,
        "p_decrease": r.p_decrease,
        "alpha": r.alpha,
    }


def _p_value(j: Judged, b: NDArray[np.float64], c: NDArray[np.float64]) -> float | None:
    """The p-value behind the classification: Fisher's in the bad direction, or Mann-Whitney's two-sided."""
    r = j.result.rates
    if r is not None:
        direction = j.config.settings.direction
        if direction is Direction.INCREASE:
            return r.p_increase
        if direction is Direction.DECREASE:
            return r.p_decrease
        return min(r.p_increase, r.p_decrease)
    if j.test is not MetricTest.MANN_WHITNEY:
        return None
    if len(b) and len(c) and not (np.all(b == b[0]) and np.all(c == b[0])):
        return _finite(p_value(c, b))
    return None


def _metric_document(j: Judged, base: NDArray[np.float64], cand: NDArray[np.float64]) -> dict[str, Any]:
    mc, result = j.config, j.result
    s = mc.settings
    b, c = clean(base, s.nan_strategy), clean(cand, s.nan_strategy)
    kind = j.name.split(":", 1)[0]
    return {
        "name": j.display,
        "kind": "score" if kind == "score" else j.name,
        "unit": UNITS.get(j.name, "score"),
        "group": mc.group,
        "test": j.test.value if j.test else None,
        "classification": result.classification.value,
        "reason": result.reason,
        "critical": result.critical,
        "direction": s.direction.value,
        "better": _better(s.direction),
        "direction_from": mc.direction_from.value,
        "is_critical_metric": s.critical,
        "must_have_data": s.must_have_data,
        "muted": mc.muted,
        "counts": {"baseline": j.baseline_n, "candidate": j.candidate_n, "needed": j.needed},
        "deviation": _finite(result.deviation),
        "effect_size": _finite(result.effect_size),
        "effect_measure": s.effect_size.value,
        "allowed_increase": s.allowed_increase,
        "allowed_decrease": s.allowed_decrease,
        "interval": (
            {"lower": result.interval.lower, "upper": result.interval.upper, "estimate": result.interval.estimate}
            if result.interval
            else None
        ),
        "rates": _rates_document(j),
        "p_value": _p_value(j, b, c),
        "baseline": _stats(base),
        "candidate": _stats(cand),
        "distribution": _histogram(base, cand, binary=j.test is MetricTest.FISHER),
    }


def _scale(base: NDArray[np.float64], cand: NDArray[np.float64]) -> float:
    """A power of ten bringing small values (USD per run, 0..1 scores) to at least 1.

    The interval's root finder stops at an absolute 1e-4 (as in R and Kayenta), which is coarse
    for values of 1e-4 USD; the test itself does not depend on the unit, so it runs rescaled.
    """
    both = np.abs(np.concatenate((base, cand)))
    both = both[np.isfinite(both) & (both > 0)]
    if len(both) == 0:
        return 1.0
    top = float(both.max())
    return 1.0 if top >= 1 else float(10 ** -math.floor(math.log10(top)))


def _metric_names(base: Population, cand: Population) -> list[str]:
    score_names = sorted(set(base.scores) | set(cand.scores))
    return ["outcome", "latency", "cost", "tokens", *(f"score:{n}" for n in score_names)]


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def judge_metric(
    name: str, mc: MetricConfig, base: NDArray[np.float64], cand: NDArray[np.float64], config: GateConfig
) -> Judged:
    """Classify one metric: too few runs with a value, else Fisher for 0/1 values, else Mann-Whitney."""
    display = name.removeprefix("score:")
    s = mc.settings
    b, c = clean(base, s.nan_strategy), clean(cand, s.nan_strategy)
    need = mc.min_runs or config.min_runs
    if len(b) == 0 or len(c) == 0:
        absent = missing(display, s)
        if absent.classification is Classification.NODATA_FAIL:
            # The gate file says this metric must be there: its absence fails it, as in Kayenta.
            return Judged(name, mc, absent, None, len(b), len(c), need)
    if len(b) < need or len(c) < need:
        short = " and ".join(
            f"{side} has {_runs(n)} with a value" for side, n in (("baseline", len(b)), ("candidate", len(c))) if n < need
        )
        reason = f"{display}: {short}; at least {need} needed"
        result = MetricClassification(Classification.INSUFFICIENT, reason, math.nan, False)
        return Judged(name, mc, result, None, len(b), len(c), need)
    test = mc.test
    if test is MetricTest.AUTO:
        test = MetricTest.FISHER if is_binary(b, c) else MetricTest.MANN_WHITNEY
    try:
        if test is MetricTest.FISHER:
            result = FisherClassifier(confidence=config.confidence).classify(display, b, c, s)
        else:
            clf = MannWhitneyClassifier(tolerance=config.tolerance, confidence=config.confidence)
            factor = _scale(b, c)
            result = clf.classify(display, b * factor, c * factor, s)
            if factor != 1.0 and result.interval is not None:
                i = result.interval
                result = replace(result, interval=ShiftInterval(i.lower / factor, i.upper / factor, i.estimate / factor))
    except ValueError as exc:  # e.g. a degenerate sample the interval cannot be computed for
        result = MetricClassification(Classification.ERROR, f"Metric classification failed: {exc}", math.nan, False)
    return Judged(name, mc, result, test, len(b), len(c), need)


def score_judged(judged: Iterable[Judged], config: GateConfig, insufficient_as: Classification | None) -> ScoreResult:
    """The weighted-sum score, metrics without enough data left out (None) or scored as ``insufficient_as``."""
    scored: list[ScoredMetric] = []
    for j in judged:
        label, critical = j.result.classification, j.result.critical
        if label is Classification.INSUFFICIENT:
            if insufficient_as is None:
                continue
            label = insufficient_as
            critical = insufficient_as is not Classification.PASS and j.config.settings.critical
        scored.append(ScoredMetric(j.display, label, (j.config.group,), critical, j.config.muted))
    return score(scored, config.group_weights)


def _score_document(result: ScoreResult) -> dict[str, Any]:
    return {
        "summary": result.summary,
        "reason": result.reason,
        "groups": [
            {"name": g.name, "score": g.score, "no_data": g.no_data, "counts": dict(g.counts)}
            for g in result.groups
        ],
    }


def metric_config(config: GateConfig, name: str) -> MetricConfig:
    """The configuration a metric is judged with (a score's bad direction resolved by name)."""
    return config.score_config(name[6:]) if name.startswith("score:") else config.metrics[name]


def compare(base: Population, cand: Population, config: GateConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Classify and score every metric; returns (metric documents, score document)."""
    judged: list[Judged] = []
    docs: list[dict[str, Any]] = []
    for name in _metric_names(base, cand):
        mc = metric_config(config, name)
        b, c = samples(base, name), samples(cand, name)
        j = judge_metric(name, mc, b, c, config)
        judged.append(j)
        docs.append(_metric_document(j, b, c))
    doc = _score_document(score_judged(judged, config, None))
    if any(j.insufficient for j in judged):
        doc["range"] = {
            "low": score_judged(judged, config, Classification.HIGH).summary,
            "high": score_judged(judged, config, Classification.PASS).summary,
        }
    return docs, doc


def _insufficient_metric_docs(base: Population, cand: Population, config: GateConfig) -> list[dict[str, Any]]:
    """Every metric's evidence, untested, when a whole side has too few runs."""
    docs = []
    for name in _metric_names(base, cand):
        mc = metric_config(config, name)
        b, c = samples(base, name), samples(cand, name)
        nb, nc = len(clean(b, mc.settings.nan_strategy)), len(clean(c, mc.settings.nan_strategy))
        reason = f"not judged: fewer than {config.min_runs} runs on a side"
        result = MetricClassification(Classification.INSUFFICIENT, reason, math.nan, False)
        j = Judged(name, mc, result, None, nb, nc, mc.min_runs or config.min_runs)
        docs.append(_metric_document(j, b, c))
    return docs


def _side(selectors: tuple[RunSelector, ...], pop: Population) -> dict[str, Any]:
    return {
        "selector": selector_text(selectors),
        "runs": pop.runs,
        "first_run": rfc3339(int(pop.start_ns[0])) if pop.runs else None,
        "last_run": rfc3339(int(pop.start_ns[-1])) if pop.runs else None,
    }


def judge(
    store: GateStore,
    request: GateRequest,
    config: GateConfig,
    slo_statuses: Callable[[], Iterable[Mapping[str, Any]]] | None = None,
    now_ns: int | None = None,
) -> dict[str, Any]:
    """Compare the two populations and decide; the document the API, CLI and UI all show."""
    now = now_ns if now_ns is not None else time.time_ns()
    until = request.until_ns if request.until_ns is not None else now
    since = request.since_ns if request.since_ns is not None else until - int(config.window.total_seconds() * 1e9)
    base = population(store, request.tenant, request.journey, request.baseline, since, until)
    cand = population(store, request.tenant, request.journey, request.candidate, since, until)

    policy = PolicyResult(False, ())
    if config.policy and slo_statuses is not None:
        policy = apply_policy(config.policy, request.journey, slo_statuses(), fix=request.fix)

    reasons: list[str] = list(policy.reasons)
    notes: list[str] = list(config.notes)
    score_doc: dict[str, Any] = {"summary": None, "reason": None, "groups": []}
    short_sides = [(side, pop.runs) for side, pop in (("baseline", base), ("candidate", cand)) if pop.runs < config.min_runs]
    short = [f"{side} has {_runs(n)}; at least {config.min_runs} needed" for side, n in short_sides]
    if short:
        metrics = _insufficient_metric_docs(base, cand, config)
        insufficient = [{"metric": "runs", "baseline": base.runs, "candidate": cand.runs, "needed": config.min_runs}]
    else:
        metrics, score_doc = compare(base, cand, config)
        insufficient = [
            {"metric": m["name"], **m["counts"]}
            for m in metrics if m["classification"] == Classification.INSUFFICIENT.value and not m["muted"]
        ]
    failing = [m["name"] for m in metrics if not m["muted"] and m["classification"] in FAILING]
    summary: float | None = score_doc["summary"]
    if policy.blocked:
        result = Verdict.FAIL
    elif short:
        result = Verdict.INSUFFICIENT
        reasons.extend(short)
    else:
        result = verdict(score_doc["summary"], config.pass_threshold, config.marginal_threshold)
        lacking = [m["reason"] for m in metrics if m["name"] in {i["metric"] for i in insufficient}]
        if "range" in score_doc:
            low, high = score_doc["range"]["low"], score_doc["range"]["high"]
            worst = verdict(low, config.pass_threshold, config.marginal_threshold)
            best = verdict(high, config.pass_threshold, config.marginal_threshold)
            if worst is not best:
                # The metrics without enough data could still turn the verdict: no verdict yet.
                result, summary = Verdict.INSUFFICIENT, None
                reasons.extend(lacking)
                reasons.append(
                    f"with {'that metric' if len(lacking) == 1 else 'those metrics'} judged the verdict could be "
                    f"anything from {worst.value} (score {low:g}) to {best.value} (score {high:g})"
                )
            else:
                notes.extend(f"{r} (not judged; either way the verdict is {result.value})" for r in lacking)
        if result is not Verdict.INSUFFICIENT:
            if score_doc["reason"]:
                reasons.append(score_doc["reason"])
            for m in metrics:
                if m["name"] in failing:
                    reasons.append(m["reason"] or f"{m['name']} was classified as {m['classification']}")
            if result is not Verdict.PASS:
                reasons.append(
                    f"score {score_doc['summary']:g} is below the "
                    f"{'pass' if result is Verdict.MARGINAL else 'marginal'} threshold "
                    f"({config.pass_threshold if result is Verdict.MARGINAL else config.marginal_threshold:g})"
                )
    for m in metrics:
        if m["direction_from"] == DirectionFrom.ASSUMED.value:
            notes.append(
                f"score {m['name']!r}: direction not declared in the gate file and not a known score name; "
                f"assumed higher is better (set metrics.scores.{m['name']}.better: higher | lower)"
            )
    policy_doc = _policy_document(config, policy, evaluated=slo_statuses is not None)
    if not config.policy:
        notes.append(f"error-budget policy is off ({config.policy_source})")
    return {
        "journey": request.journey,
        "verdict": result.value,
        "exit_code": EXIT_CODES[result],
        "score": summary,
        "score_range": score_doc.get("range"),
        "thresholds": {"pass": config.pass_threshold, "marginal": config.marginal_threshold},
        "failed_metrics": failing,
        "insufficient_data": insufficient,
        "reasons": reasons,
        "notes": notes,
        "fix": request.fix,
        "window": {"since": rfc3339(since), "until": rfc3339(until)},
        "baseline": _side(request.baseline, base),
        "candidate": _side(request.candidate, cand),
        "min_runs": config.min_runs,
        "judge": {"confidence": config.confidence, "tolerance": config.tolerance, "config": config.source},
        "metrics": metrics,
        "groups": score_doc["groups"],
        "policy": policy_doc,
        "decided_at": rfc3339(now),
    }


def _policy_document(config: GateConfig, policy: PolicyResult, evaluated: bool) -> dict[str, Any]:
    """Which policy applied (and whether from the defaults), and what each rule found."""
    source = config.policy_source
    names = ", ".join(r.name for r in config.policy)
    return {
        "enabled": bool(config.policy),
        "source": source,
        "default": source == "defaults",
        "summary": f"{names} ({'defaults' if source == 'defaults' else source})" if config.policy else f"off ({source})",
        "evaluated": evaluated and bool(config.policy),
        "rules": [
            {
                "name": r.name, "tiers": list(r.slos.tiers), "slos": list(r.slos.names), "journeys": list(r.journeys),
                "min_budget_remaining": r.min_budget_remaining, "allow_fix": r.allow_fix, "description": r.description,
            }
            for r in config.policy
        ],
        "blocked": policy.blocked,
        "findings": [
            {
                "rule": f.rule, "slo": f.slo, "journey": f.journey, "remaining_ratio": f.remaining_ratio,
                "status": f.status, "outcome": f.outcome, "message": f.message,
            }
            for f in policy.findings
        ],
    }


def judge_and_record(
    store: GateStore,
    request: GateRequest,
    config: GateConfig,
    slo_statuses: Callable[[], Iterable[Mapping[str, Any]]] | None = None,
    now_ns: int | None = None,
) -> dict[str, Any]:
    """:func:`judge`, then keep the verdict in the journey's history (its id goes in the document)."""
    now = now_ns if now_ns is not None else time.time_ns()
    doc = judge(store, request, config, slo_statuses, now)
    doc["id"] = store.save_gate_verdict(
        {
            "tenant": request.tenant,
            "journey": request.journey,
            "baseline": doc["baseline"]["selector"],
            "candidate": doc["candidate"]["selector"],
            "verdict": doc["verdict"],
            "score": doc["score"],
            "baseline_runs": doc["baseline"]["runs"],
            "candidate_runs": doc["candidate"]["runs"],
            "decided_ns": now,
            "document": doc,
        }
    )
    return doc
