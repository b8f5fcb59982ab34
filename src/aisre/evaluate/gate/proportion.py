"""Rate metrics judged as proportions: Fisher's exact test over per-run counts.

The failure rate of runs, and any metric whose per-run values are all 0 or 1 (a guardrail trip, a
thumbs-down, a hallucination flag), is a proportion. A rank test sees such a sample as two tied
blocks, and ratios per batch of runs hide rare events (1 % against 4 % leaves most batches at 0),
so these metrics are judged on the 2×2 table of runs with and without the event, with
``scipy.stats.fisher_exact`` one-sided in each direction.

Mapped into Kayenta's classes so the scorer's weights and criticality hold: a side whose one-sided
p-value is below ``(1 − confidence) / 2`` — the same error per side as the two-sided rank-sum
interval at ``confidence`` — and whose effect size (rate ratio, or CLES) reaches
``allowed_increase``/``allowed_decrease`` is **High**/**Low**; ``direction`` limits which of the two
can fail, and critical thresholds work as in :mod:`aisre.evaluate.gate.classifier`. Kayenta's
``tolerance`` belongs to the rank-sum interval and plays no part here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from aisre.core.lazy import scipy_stats
from aisre.evaluate.gate import mannwhitney
from aisre.evaluate.gate.classifier import (
    Classification,
    Direction,
    EffectSize,
    MetricClassification,
    MetricSettings,
    RateEvidence,
    clean,
    missing,
)


def is_binary(*samples: NDArray[np.float64]) -> bool:
    """Whether every value (NaNs aside) of every sample is 0 or 1, with at least one value."""
    seen = False
    for sample in samples:
        v = sample[~np.isnan(sample)]
        if len(v) and not bool(np.all((v == 0.0) | (v == 1.0))):
            return False
        seen = seen or len(v) > 0
    return seen


def one_sided_p(candidate: tuple[int, int], baseline: tuple[int, int]) -> tuple[float, float]:
    """Fisher's exact p-values (candidate rate higher, candidate rate lower) from (events, runs) pairs."""
    kc, nc = candidate
    kb, nb = baseline
    table = [[kc, nc - kc], [kb, nb - kb]]
    higher = float(scipy_stats().fisher_exact(table, alternative="greater").pvalue)
    lower = float(scipy_stats().fisher_exact(table, alternative="less").pvalue)
    return min(higher, 1.0), min(lower, 1.0)


@dataclass(frozen=True)
class FisherClassifier:
    """Pass/High/Low for a proportion metric, at the judge's confidence."""

    confidence: float = 0.98

    def classify(
        self,
        name: str,
        control: Sequence[float] | NDArray[np.float64],
        experiment: Sequence[float] | NDArray[np.float64],
        settings: MetricSettings | None = None,
    ) -> MetricClassification:
        """Classify the candidate's 0/1 sample ``experiment`` against the baseline's ``control``."""
        s = settings or MetricSettings()
        c = clean(control, s.nan_strategy)
        e = clean(experiment, s.nan_strategy)
        if len(c) == 0 or len(e) == 0:
            return missing(name, s)
        if not is_binary(c, e):
            raise ValueError(f"{name} has values other than 0 and 1; a proportion test needs per-run flags")
        kb, nb, kc, nc = int(c.sum()), len(c), int(e.sum()), len(e)
        p_high, p_low = one_sided_p((kc, nc), (kb, nb))
        alpha = (1.0 - self.confidence) / 2
        rates = RateEvidence(kb, nb, kc, nc, p_high, p_low, alpha)
        deviation = mannwhitney.mean_ratio(e, c)
        if nb == nc and kb == kc:
            return MetricClassification(
                Classification.PASS, "The candidate and baseline data are identical", 1.0, False, rates=rates
            )
        effect = mannwhitney.cles(e, c) if s.effect_size is EffectSize.CLES else deviation
        nan_effect = math.isnan(effect)
        high = (
            s.direction in (Direction.INCREASE, Direction.EITHER)
            and p_high < alpha
            and (nan_effect or effect >= s.allowed_increase)
        )
        low = (
            s.direction in (Direction.DECREASE, Direction.EITHER)
            and p_low < alpha
            and (nan_effect or effect <= s.allowed_decrease)
        )
        if not (high or low):
            return MetricClassification(Classification.PASS, None, deviation, False, effect, rates=rates)
        label = Classification.HIGH if high else Classification.LOW
        critical = s.critical and (
            (high and (nan_effect or effect >= s.critical_increase))
            or (low and (nan_effect or effect <= s.critical_decrease))
        )
        reason = (
            f"The metric {name} was classified as {label.value}" + (" (Critical)" if critical else "")
            + f": {kc}/{nc} ({kc / nc:.2%}) against {kb}/{nb} ({kb / nb:.2%}), Fisher's exact "
            f"p = {p_high if high else p_low:.2g}"
        )
        return MetricClassification(label, reason, deviation, critical, effect, rates=rates)
