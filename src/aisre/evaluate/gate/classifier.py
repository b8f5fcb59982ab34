"""Per-metric classification with Kayenta's Mann-Whitney rule (NetflixACAJudge semantics).

A metric compares the candidate (experiment) sample with the baseline (control) sample:

1. NaNs are removed or replaced by 0 (``nan_strategy``).
2. No data on either side: ``Nodata`` (critical when the metric is), ``NodataFailMetric`` when the
   metric must have data but is not critical, or ``Pass`` when NaNs are replaced.
3. Identical samples, or one distinct value overall, pass (deviation 1.0).
4. Otherwise the rank-sum confidence interval for the shift candidate − baseline decides: ``High``
   when its lower end is above ``tolerance × |estimate|`` and the effect size reaches
   ``allowed_increase``; ``Low`` mirrored. ``direction`` limits which of the two can fail.
5. A critical metric that is High/Low beyond ``critical_increase``/``critical_decrease`` is
   marked critical: it fails the whole comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from aisre.evaluate.gate import mannwhitney


class Classification(StrEnum):
    """Kayenta's metric classifications."""

    PASS = "Pass"
    HIGH = "High"
    LOW = "Low"
    NODATA = "Nodata"
    NODATA_FAIL = "NodataFailMetric"
    ERROR = "Error"
    # aisre's, not Kayenta's: fewer runs with a value than the judge needs; never scored as such.
    INSUFFICIENT = "InsufficientData"


class Direction(StrEnum):
    """Which change of a metric counts against the candidate."""

    INCREASE = "increase"
    DECREASE = "decrease"
    EITHER = "either"


class NanStrategy(StrEnum):
    """What happens to NaN observations before the test."""

    REMOVE = "remove"
    REPLACE = "replace"


class EffectSize(StrEnum):
    """How the size of a change is measured: ratio of means, or common-language effect size."""

    MEAN_RATIO = "meanRatio"
    CLES = "cles"


@dataclass(frozen=True)
class MetricSettings:
    """How one metric is judged (Kayenta's ``analysisConfigurations.canary``)."""

    direction: Direction = Direction.EITHER
    nan_strategy: NanStrategy = NanStrategy.REMOVE
    critical: bool = False
    must_have_data: bool = False
    allowed_increase: float = 1.0
    allowed_decrease: float = 1.0
    critical_increase: float = 1.0
    critical_decrease: float = 1.0
    effect_size: EffectSize = EffectSize.MEAN_RATIO


@dataclass(frozen=True)
class MetricClassification:
    """The outcome for one metric, with the statistics behind it."""

    classification: Classification
    reason: str | None
    deviation: float  # mean ratio candidate / baseline (NaN when a mean is 0)
    critical: bool
    effect_size: float = math.nan
    interval: mannwhitney.ShiftInterval | None = None
    rates: RateEvidence | None = None  # proportion metrics: the counts and the test behind them


@dataclass(frozen=True)
class RateEvidence:
    """Per-run counts of a 0/1 metric on both sides and the one-sided exact tests over them."""

    baseline_count: int
    baseline_runs: int
    candidate_count: int
    candidate_runs: int
    p_increase: float  # P-value that the candidate's rate is higher than the baseline's
    p_decrease: float
    alpha: float  # each one-sided test's level

    @property
    def baseline_rate(self) -> float:
        return self.baseline_count / self.baseline_runs if self.baseline_runs else math.nan

    @property
    def candidate_rate(self) -> float:
        return self.candidate_count / self.candidate_runs if self.candidate_runs else math.nan


@dataclass(frozen=True)
class MannWhitneyClassifier:
    """Kayenta's MannWhitneyClassifier; the judge itself runs it with tolerance 0.25 and confidence 0.98."""

    tolerance: float = 0.25
    confidence: float = 0.95
    settings_default: MetricSettings = field(default_factory=MetricSettings)

    def classify(
        self,
        name: str,
        control: Sequence[float] | NDArray[np.float64],
        experiment: Sequence[float] | NDArray[np.float64],
        settings: MetricSettings | None = None,
    ) -> MetricClassification:
        """Classify the candidate sample ``experiment`` against the baseline ``control``."""
        s = settings or self.settings_default
        c = clean(control, s.nan_strategy)
        e = clean(experiment, s.nan_strategy)
        if len(c) == 0 or len(e) == 0:
            return missing(name, s)
        cs, es = np.sort(c), np.sort(e)
        if len(cs) == len(es) and bool(np.array_equal(cs, es)):
            return MetricClassification(Classification.PASS, "The candidate and baseline data are identical", 1.0, False)
        if cs[0] == cs[-1] == es[0] == es[-1]:
            return MetricClassification(Classification.PASS, None, 1.0, False)

        deviation = mannwhitney.mean_ratio(e, c)
        effect = mannwhitney.cles(e, c) if s.effect_size is EffectSize.CLES else deviation
        if cs[0] == cs[-1] and es[0] == es[-1]:
            # Both samples constant but different: Kayenta adds Gaussian noise (stdev value*1e-5) so
            # the rank test can run; the samples are then fully separated and the interval is the
            # difference itself, which is what is used here without the randomness.
            diff = float(es[0] - cs[0])
            interval = mannwhitney.ShiftInterval(diff, diff, diff)
        else:
            interval = mannwhitney.shift_interval(e, c, self.confidence)
        bound = self.tolerance * abs(interval.estimate)
        nan_effect = math.isnan(effect)
        high = (
            s.direction in (Direction.INCREASE, Direction.EITHER)
            and interval.lower > bound
            and (nan_effect or effect >= s.allowed_increase)
        )
        low = (
            s.direction in (Direction.DECREASE, Direction.EITHER)
            and interval.upper < -bound
            and (nan_effect or effect <= s.allowed_decrease)
        )
        if not (high or low):
            return MetricClassification(Classification.PASS, None, deviation, False, effect, interval)
        label = Classification.HIGH if high else Classification.LOW
        critical = s.critical and (
            (high and (nan_effect or effect >= s.critical_increase))
            or (low and (nan_effect or effect <= s.critical_decrease))
        )
        reason = f"The metric {name} was classified as {label.value}" + (" (Critical)" if critical else "")
        return MetricClassification(label, reason, deviation, critical, effect, interval)


@dataclass(frozen=True)
class MeanInequalityClassifier:
    """Kayenta's simplest classifier: High/Low by the sign of the difference of means."""

    def classify(
        self,
        name: str,
        control: Sequence[float] | NDArray[np.float64],
        experiment: Sequence[float] | NDArray[np.float64],
        settings: MetricSettings | None = None,
    ) -> MetricClassification:
        """Classify by comparing means only."""
        s = settings or MetricSettings()
        c = clean(control, s.nan_strategy)
        e = clean(experiment, s.nan_strategy)
        if len(c) == 0 or len(e) == 0:
            return MetricClassification(Classification.NODATA, f"Missing data for {name}", 1.0, s.critical)
        cm, em = float(np.mean(c)), float(np.mean(e))
        ratio = mannwhitney.mean_ratio(e, c)
        if em > cm:
            return MetricClassification(Classification.HIGH, f"The metric {name} was classified as High", ratio, False)
        if em < cm:
            return MetricClassification(Classification.LOW, f"The metric {name} was classified as Low", ratio, False)
        return MetricClassification(Classification.PASS, None, ratio, False)


def missing(name: str, s: MetricSettings) -> MetricClassification:
    """Kayenta's answer for a metric with no data on a side."""
    if s.nan_strategy is NanStrategy.REMOVE:
        reason = f"Missing data for {name}"
        if s.must_have_data and not s.critical:
            return MetricClassification(Classification.NODATA_FAIL, reason, 1.0, False)
        return MetricClassification(Classification.NODATA, reason, 1.0, s.critical)
    return MetricClassification(Classification.PASS, None, 1.0, False)


def clean(values: Sequence[float] | NDArray[np.float64], strategy: NanStrategy) -> NDArray[np.float64]:
    """Apply the NaN strategy: drop NaNs, or replace them with 0."""
    arr = np.asarray(values, dtype=np.float64)
    nan = np.isnan(arr)
    if strategy is NanStrategy.REMOVE:
        return arr[~nan]
    return np.where(nan, 0.0, arr)
