"""Spend forecasts to the end of a budget period.

Two models, chosen by how much history there is:

- **run rate** while there are fewer than ``SEASONAL_MIN_HOURS`` complete hours of spend:
  spend per second over the observed span (first minute with spend → now, the current
  partial minute included) carried forward. Its 80 % interval comes from the per-minute
  variability of the spend, s² (the sample variance over the n complete minutes, and at
  least the Poisson variance of the billed calls that made it: a minute's spend² over its
  calls): the future total over h minutes has variance ``s²·h²/n`` (the rate is estimated
  from n minutes) ``+ s²·h`` (the future minutes vary too), with a Student-t quantile on
  n − 1 degrees of freedom. With under two complete minutes there is no variability to
  measure, and a coefficient of variation of 1 per minute stands in for it. A journey is
  forecast from its first minutes.
- **MSTL** (statsforecast; daily seasonality, AutoETS trend) over hourly spend once there
  are two days of complete hours; the library's hourly 80 % interval comes back with it,
  clipped at zero (spend never goes negative). statsforecast is imported on first use (it
  pulls in pandas).

Both answer on the same steps: the rest of the current hour, then every hour to the end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aisre.core.schema import MINUTE_NS

HOUR_NS = 3600 * 10**9
SEASONAL_MIN_HOURS = 48  # complete hours of history before the seasonal model takes over
LEVEL = 80  # percent, the interval reported
RUN_RATE = "run rate"
SEASONAL = "MSTL(24h) + AutoETS"
NO_SPEND = "no spend yet"


@dataclass(frozen=True)
class Forecast:
    """Spend expected in each step [previous end (now for the first), end)."""

    ends_ns: list[int]
    mean: list[float]
    # The 80 % band as per-step amounts: their running sum, added to the spend so far, is
    # the band of the cumulative spend (run rate) or the hourly intervals summed (MSTL).
    low: list[float]
    high: list[float]
    model: str
    basis: dict[str, Any] = field(default_factory=dict)  # observed_s, buckets, bucket_s


def steps(now_ns: int, end_ns: int) -> list[int]:
    """Ends of the forecast steps: the next hour boundary, then every hour, up to ``end_ns``."""
    if end_ns <= now_ns:
        return []
    first = (now_ns // HOUR_NS + 1) * HOUR_NS
    return [*range(first, end_ns, HOUR_NS), end_ns] if first < end_ns else [end_ns]


def no_spend(now_ns: int, end_ns: int) -> Forecast:
    """Nothing spent in the history: nothing to carry forward."""
    ends = steps(now_ns, end_ns)
    zeros = [0.0] * len(ends)
    return Forecast(ends, zeros, zeros, zeros, NO_SPEND, {"observed_s": 0, "buckets": 0, "bucket_s": 60})


def forecast_run_rate(
    first_ns: int, minutes: Mapping[int, float], now_ns: int, end_ns: int, calls: Mapping[int, int] | None = None,
) -> Forecast:
    """Carry the spend rate since ``first_ns`` forward to ``end_ns``, with its interval.

    ``minutes``: spend per minute (minute start → USD) from ``first_ns`` (a minute start)
    up to and including the current, partial minute; ``calls``: billed calls per minute.
    """
    from scipy import stats

    observed_ns = max(now_ns - first_ns, MINUTE_NS // 60)
    total = sum(v for m, v in minutes.items() if first_ns <= m <= now_ns)
    rate = total / observed_ns  # USD per ns
    now_minute = now_ns // MINUTE_NS * MINUTE_NS
    grid = range(first_ns, now_minute, MINUTE_NS)
    complete = np.array([minutes.get(m, 0.0) for m in grid], dtype=float)
    n = len(complete)
    if n >= 2:
        variance = float(np.var(complete, ddof=1))
        if calls:
            # Spend comes in calls: even a perfectly even minute-by-minute stream carries the
            # Poisson noise of its call count (a minute's spend² over its calls).
            poisson = [minutes.get(m, 0.0) ** 2 / max(calls.get(m, 1), 1) for m in grid]
            variance = max(variance, float(np.mean(poisson)))
        sd = math.sqrt(variance)
        q = float(stats.t.ppf(0.5 + LEVEL / 200, n - 1))
    else:
        sd = rate * MINUTE_NS  # no variability to measure yet: a coefficient of variation of 1
        q = float(stats.norm.ppf(0.5 + LEVEL / 200))
    ends = steps(now_ns, end_ns)
    mean, low, high = [], [], []
    prev_mean = prev_low = prev_high = 0.0
    for end in ends:
        h = (end - now_ns) / MINUTE_NS  # minutes ahead
        cum = rate * (end - now_ns)
        half = q * sd * math.sqrt(h * h / max(n, 1) + h)
        # The cumulative band never falls back: spend only adds up.
        cum_low = max(prev_low, cum - half, 0.0)
        cum_high = max(prev_high, cum + half)
        mean.append(cum - prev_mean)
        low.append(cum_low - prev_low)
        high.append(cum_high - prev_high)
        prev_mean, prev_low, prev_high = cum, cum_low, cum_high
    basis = {"observed_s": round(observed_ns / 1e9, 3), "buckets": n, "bucket_s": 60}
    return Forecast(ends, mean, low, high, RUN_RATE, basis)


def forecast_seasonal(start_ns: int, values: Sequence[float], now_ns: int, end_ns: int, current_partial: float) -> Forecast:
    """MSTL over complete hours from ``start_ns``; the current hour's spend so far
    (``current_partial``) is taken off its forecast, so the first step is the rest of it."""
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS

    ends = steps(now_ns, end_ns)
    basis = {"observed_s": len(values) * 3600, "buckets": len(values), "bucket_s": 3600}
    if not ends:
        return Forecast([], [], [], [], SEASONAL, basis)
    model: Any = MSTL(season_length=24, trend_forecaster=AutoETS(model="ZZN"))
    frame = pd.DataFrame({
        "unique_id": "spend",
        "ds": pd.to_datetime(np.arange(len(values), dtype=np.int64) * HOUR_NS + start_ns, utc=True).tz_localize(None),
        "y": np.asarray(values, dtype=float),
    })
    result = StatsForecast(models=[model], freq="h").forecast(df=frame, h=len(ends), level=[LEVEL])
    label = type(model).__name__
    mean = np.clip(result[label].to_numpy(), 0, None).tolist()
    low = np.clip(result[f"{label}-lo-{LEVEL}"].to_numpy(), 0, None).tolist()
    high = np.clip(result[f"{label}-hi-{LEVEL}"].to_numpy(), 0, None).tolist()
    mean[0] = max(0.0, mean[0] - current_partial)
    return Forecast(ends, mean, low, high, SEASONAL, basis)


def crossing(now_ns: int, spent: float, ends_ns: Sequence[int], amounts: Sequence[float], line: float) -> int | None:
    """When cumulative spend (``spent`` at ``now_ns``, then ``amounts`` per step) reaches
    ``line``: interpolated inside the step that crosses it (spend is even within a step)."""
    if spent >= line:
        return now_ns
    at, running = now_ns, spent
    for end, amount in zip(ends_ns, amounts, strict=True):
        if amount > 0 and running + amount >= line:
            return at + int((end - at) * (line - running) / amount)
        at, running = end, running + amount
    return None
