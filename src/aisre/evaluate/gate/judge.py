"""The canary judge: baseline vs candidate runs of a journey, metric by metric, into one verdict.

Metrics: ``outcome`` (failure ratio per batch of consecutive runs, since a rank test on 0/1 values
cannot see a rate change), ``latency`` (ms per run), ``cost`` (USD per run), ``tokens`` (per run),
and every score that either side carries (per-run mean). Each is classified with Kayenta's
Mann-Whitney rule, scored by group, and the summary score meets the pass/marginal thresholds. The
error-budget policy runs first: a blocked release fails whatever its metrics say. Too few runs on
either side is "not enough data", never a verdict.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aisre.core.timefmt import rfc3339
from aisre.derive.populations import population, selector_text
from aisre.evaluate.gate.classifier import (
    Classification,
    MannWhitneyClassifier,
    MetricClassification,
)
from aisre.evaluate.gate.config import GateConfig, MetricConfig
from aisre.evaluate.gate.mannwhitney import ShiftInterval, p_value
from aisre.evaluate.gate.policy import PolicyResult, apply_policy
from aisre.evaluate.gate.scorer import ScoredMetric, Verdict, score, verdict
from aisre.store.gate import GateStore, Population, RunSelector

EXIT_CODES = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.MARGINAL: 2, Verdict.NO_DATA: 3}
UNITS = {"outcome": "failure ratio", "latency": "ms", "cost": "USD", "tokens": "tokens"}
HISTOGRAM_BINS = 20


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


def outcome_batches(failed: NDArray[np.float64], batch: int) -> NDArray[np.float64]:
    """Failure ratio of each full batch of ``batch`` consecutive runs."""
    full = len(failed) // batch
    if full == 0:
        return np.empty(0, dtype=np.float64)
    return np.asarray(failed[: full * batch].reshape(full, batch).mean(axis=1), dtype=np.float64)


def samples(pop: Population, metric: str, config: GateConfig) -> NDArray[np.float64]:
    """The observations of one metric in one population."""
    if metric == "outcome":
        return outcome_batches(pop.failed, config.outcome_batch)
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


def _histogram(base: NDArray[np.float64], cand: NDArray[np.float64]) -> dict[str, Any] | None:
    b, c = base[~np.isnan(base)], cand[~np.isnan(cand)]
    both = np.concatenate((b, c))
    if len(both) == 0:
        return None
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


def _metric_document(
    name: str, mc: MetricConfig, result: MetricClassification, base: NDArray[np.float64], cand: NDArray[np.float64]
) -> dict[str, Any]:
    s = mc.settings
    b, c = base[~np.isnan(base)], cand[~np.isnan(cand)]
    pv = None
    if len(b) and len(c) and not (np.all(b == b[0]) and np.all(c == b[0])):
        pv = _finite(p_value(c, b))
    kind = name.split(":", 1)[0]
    return {
        "name": name.removeprefix("score:"),
        "kind": "score" if kind == "score" else name,
        "unit": UNITS.get(name, "score"),
        "group": mc.group,
        "classification": result.classification.value,
        "reason": result.reason,
        "critical": result.critical,
        "direction": s.direction.value,
        "is_critical_metric": s.critical,
        "must_have_data": s.must_have_data,
        "muted": mc.muted,
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
        "p_value": pv,
        "baseline": _stats(base),
        "candidate": _stats(cand),
        "distribution": _histogram(base, cand),
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


def compare(base: Population, cand: Population, config: GateConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Classify and score every metric; returns (metric documents, score document)."""
    clf = MannWhitneyClassifier(tolerance=config.tolerance, confidence=config.confidence)
    docs: list[dict[str, Any]] = []
    scored: list[ScoredMetric] = []
    for name in _metric_names(base, cand):
        mc = config.score_config(name[6:]) if name.startswith("score:") else config.metrics[name]
        b, c = samples(base, name, config), samples(cand, name, config)
        display = name.removeprefix("score:")
        factor = _scale(b, c)
        try:
            result = clf.classify(display, b * factor, c * factor, mc.settings)
            if factor != 1.0 and result.interval is not None:
                i = result.interval
                result = replace(result, interval=ShiftInterval(i.lower / factor, i.upper / factor, i.estimate / factor))
        except ValueError as exc:  # e.g. a degenerate sample the interval cannot be computed for
            result = MetricClassification(Classification.ERROR, f"Metric classification failed: {exc}", math.nan, False)
        docs.append(_metric_document(name, mc, result, b, c))
        scored.append(ScoredMetric(display, result.classification, (mc.group,), result.critical, mc.muted))
    result_score = score(scored, config.group_weights)
    return docs, {
        "summary": result_score.summary,
        "reason": result_score.reason,
        "groups": [
            {"name": g.name, "score": g.score, "no_data": g.no_data, "counts": dict(g.counts)}
            for g in result_score.groups
        ],
    }


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
    metrics: list[dict[str, Any]] = []
    score_doc: dict[str, Any] = {"summary": None, "reason": None, "groups": []}
    short = [
        f"{side} has {pop.runs} run{'s' if pop.runs != 1 else ''}; at least {config.min_runs} needed"
        for side, pop in (("baseline", base), ("candidate", cand))
        if pop.runs < config.min_runs
    ]
    if not short:
        metrics, score_doc = compare(base, cand, config)
    failing = [
        m["name"] for m in metrics
        if not m["muted"] and m["classification"] in ("High", "Low", "NodataFailMetric", "Error")
    ]
    if policy.blocked:
        result = Verdict.FAIL
    elif short:
        result = Verdict.NO_DATA
        reasons.extend(short)
    else:
        result = verdict(score_doc["summary"], config.pass_threshold, config.marginal_threshold)
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
    return {
        "journey": request.journey,
        "verdict": result.value,
        "exit_code": EXIT_CODES[result],
        "score": score_doc["summary"],
        "thresholds": {"pass": config.pass_threshold, "marginal": config.marginal_threshold},
        "failed_metrics": failing,
        "reasons": reasons,
        "fix": request.fix,
        "window": {"since": rfc3339(since), "until": rfc3339(until)},
        "baseline": _side(request.baseline, base),
        "candidate": _side(request.candidate, cand),
        "min_runs": config.min_runs,
        "judge": {"confidence": config.confidence, "tolerance": config.tolerance, "config": config.source},
        "metrics": metrics,
        "groups": score_doc["groups"],
        "policy": {
            "blocked": policy.blocked,
            "findings": [
                {
                    "rule": f.rule, "slo": f.slo, "journey": f.journey, "remaining_ratio": f.remaining_ratio,
                    "status": f.status, "outcome": f.outcome, "message": f.message,
                }
                for f in policy.findings
            ],
        },
        "decided_at": rfc3339(now),
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
