"""Mann-Whitney U (Wilcoxon rank-sum) test with the confidence interval Kayenta's judge uses.

Kayenta ports R's ``wilcox.test(x, y, conf.int=TRUE, exact=FALSE, correct=TRUE)``: the normal
approximation with tie correction and a continuity correction of ``0.5 * sign(dz)``. The
interval bounds and the Hodges-Lehmann style location-shift estimate are the roots of
``wilcoxon_diff(mu, zq)`` for ``zq = ±z_{alpha/2}`` and ``zq = 0``, found by Brent's method with
an absolute tolerance of 1e-4 (R's ``uniroot``, i.e. Brent's ``zeroin``; the exact stopping point
matters because the statistic is a step function of ``mu``, so it is implemented here). ``x`` is the candidate (experiment), ``y`` the
baseline (control); the shift is candidate − baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from aisre.core.lazy import scipy_stats

ROOT_TOLERANCE = 1e-4  # R uniroot's tol in wilcox.test, kept by Kayenta's solver
MAX_ITERATIONS = 1000
_EPS = float(np.finfo(np.float64).eps)


class AllTiedError(ValueError):
    """Every observation is the same value: the rank test has no variance to work with."""


@dataclass(frozen=True)
class ShiftInterval:
    """Two-sided confidence interval and estimate for the location shift candidate − baseline."""

    lower: float
    upper: float
    estimate: float


def wilcoxon_diff(mu: float, zq: float, x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """Standardised rank-sum statistic of ``x - mu`` against ``y``, minus the quantile ``zq``."""
    nx, ny = float(len(x)), float(len(y))
    ranks = scipy_stats().rankdata(np.concatenate((x - mu, y)))
    dz = float(ranks[: len(x)].sum()) - nx * (nx + 1) / 2 - nx * ny / 2
    correction = math.copysign(0.5, dz) if dz != 0 else 0.0
    _, counts = np.unique(ranks, return_counts=True)
    ties = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    sigma = math.sqrt((nx * ny / 12) * ((nx + ny + 1) - ties / ((nx + ny) * (nx + ny - 1))))
    if sigma == 0:
        raise AllTiedError("cannot compute a confidence interval when all observations are tied")
    return (dz - correction) / sigma - zq


def _root(zq: float, x: NDArray[np.float64], y: NDArray[np.float64], mu_min: float, mu_max: float) -> float:
    f_lower = wilcoxon_diff(mu_min, zq, x, y)
    if f_lower <= 0:
        return mu_min
    f_upper = wilcoxon_diff(mu_max, zq, x, y)
    if f_upper >= 0:
        return mu_max
    return zeroin(lambda mu: wilcoxon_diff(mu, zq, x, y), mu_min, mu_max, f_lower, f_upper, ROOT_TOLERANCE)


def zeroin(
    f: Callable[[float], float], ax: float, bx: float, fa: float, fb: float, tol: float
) -> float:
    """Brent's root finder (Algorithms for Minimization Without Derivatives, ch. 4) as R's uniroot runs it."""
    a, b = ax, bx
    c, fc = a, fa
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    for _ in range(MAX_ITERATIONS + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            # b is kept as the best approximation so far.
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * _EPS * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:  # two distinct points: linear interpolation
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:  # inverse quadratic interpolation
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2) and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def shift_interval(experiment: NDArray[np.float64], control: NDArray[np.float64], confidence: float) -> ShiftInterval:
    """The confidence interval and estimate of the shift experiment − control (Kayenta/R semantics)."""
    x = np.asarray(experiment, dtype=np.float64)
    y = np.asarray(control, dtype=np.float64)
    alpha = 1.0 - confidence
    mu_min = float(x.min() - y.max())
    mu_max = float(x.max() - y.min())
    zq = float(scipy_stats().norm.ppf(1 - alpha / 2))
    lower = _root(zq, x, y, mu_min, mu_max)
    upper = _root(-zq, x, y, mu_min, mu_max)
    estimate = _root(0.0, x, y, mu_min, mu_max)
    return ShiftInterval(lower, upper, estimate)


def p_value(experiment: NDArray[np.float64], control: NDArray[np.float64]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, continuity-corrected)."""
    result = scipy_stats().mannwhitneyu(experiment, control, alternative="two-sided", method="asymptotic", use_continuity=True)
    return float(result.pvalue)


def cles(experiment: NDArray[np.float64], control: NDArray[np.float64]) -> float:
    """Common-language effect size: P(candidate > baseline), ties counted half (U / (m·n))."""
    x = np.asarray(experiment, dtype=np.float64)
    y = np.asarray(control, dtype=np.float64)
    ranks = scipy_stats().rankdata(np.concatenate((x, y)))
    u = float(ranks[: len(x)].sum()) - len(x) * (len(x) + 1) / 2
    return u / (len(x) * len(y))


def mean_ratio(experiment: NDArray[np.float64], control: NDArray[np.float64]) -> float:
    """Mean of the candidate over mean of the baseline; NaN when either mean is zero."""
    cm = float(np.mean(control))
    em = float(np.mean(experiment))
    if cm == 0.0 or em == 0.0:
        return math.nan
    return em / cm
