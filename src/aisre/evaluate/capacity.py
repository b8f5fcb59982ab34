"""Capacity forecasts for saturation gauges (GPU utilisation, KV-cache use, queue depth,
rate-limit headroom): when a series crosses its threshold at current growth, with a band.

The trend is a least-squares line (scipy.stats.linregress) over the per-minute means of the
look-back; its 80 % band is the line's confidence interval (Student-t on n − 2 degrees of
freedom), which widens with distance from the data. Crossings are found on the same hourly
steps and with the same interpolation as the spend forecasts (evaluate/cost/forecast.py):
the mean line gives the expected crossing, the band's upper edge the earliest and its lower
edge the latest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from scipy import stats

from aisre.core.schema import MINUTE_NS
from aisre.core.series import parse_selector
from aisre.core.timefmt import rfc3339
from aisre.evaluate.cost.forecast import LEVEL, crossing, steps
from aisre.store.protocol import MetricReads

LINEAR = "linear trend"
HOUR_S = 3600.0


@dataclass(frozen=True)
class CapacityForecast:
    """One series' level now, its growth, and when it reaches ``threshold`` (None: not
    within the horizon, or not growing)."""

    threshold: float
    current: float | None
    slope_per_hour: float
    crossing_ns: int | None
    earliest_ns: int | None
    latest_ns: int | None
    ends_ns: list[int] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    model: str = LINEAR
    basis: dict[str, Any] = field(default_factory=dict)


def _level_crossing(now_ns: int, level_now: float, ends: Sequence[int], levels: Sequence[float], line: float) -> int | None:
    # crossing() walks cumulative amounts: a level path is its starting value plus its steps.
    amounts = np.diff(np.concatenate([[level_now], np.asarray(levels, dtype=float)])).tolist()
    return crossing(now_ns, level_now, ends, amounts, line)


def forecast_capacity(
    times_ns: Sequence[int], values: Sequence[float], now_ns: int, threshold: float, horizon_ns: int
) -> CapacityForecast:
    """Fit the trend of ``values`` (per-minute levels at ``times_ns``) and find when it
    reaches ``threshold`` within ``horizon_ns`` of ``now_ns``."""
    t = (np.asarray(times_ns, dtype=np.float64) - now_ns) / 1e9 / HOUR_S  # hours relative to now
    y = np.asarray(values, dtype=np.float64)
    basis = {"points": int(y.size), "observed_s": float((t.max() - t.min()) * HOUR_S) if y.size else 0.0}
    if y.size < 3 or np.ptp(t) == 0:
        current = float(y[-1]) if y.size else None
        return CapacityForecast(threshold, current, 0.0, now_ns if current is not None and current >= threshold else None,
                                None, None, basis=basis)
    fit = stats.linregress(t, y)
    n = y.size
    resid = y - (fit.intercept + fit.slope * t)
    s = math.sqrt(float(resid @ resid) / (n - 2))
    sxx = float(((t - t.mean()) ** 2).sum())
    q = float(stats.t.ppf(0.5 + LEVEL / 200, n - 2))
    ends = steps(now_ns, now_ns + horizon_ns)
    h = (np.asarray(ends, dtype=np.float64) - now_ns) / 1e9 / HOUR_S
    mean = fit.intercept + fit.slope * h
    half = q * s * np.sqrt(1 / n + (h - t.mean()) ** 2 / sxx)
    current = float(fit.intercept)  # the trend's level now, not one noisy minute
    half_now = q * s * math.sqrt(1 / n + float(t.mean()) ** 2 / sxx)
    return CapacityForecast(
        threshold=threshold, current=current, slope_per_hour=float(fit.slope),
        crossing_ns=_level_crossing(now_ns, current, ends, mean.tolist(), threshold),
        earliest_ns=_level_crossing(now_ns, current + half_now, ends, (mean + half).tolist(), threshold),
        latest_ns=_level_crossing(now_ns, current - half_now, ends, (mean - half).tolist(), threshold),
        ends_ns=ends, mean=mean.tolist(), low=(mean - half).tolist(), high=(mean + half).tolist(),
        basis={**basis, "r2": float(fit.rvalue**2), "stderr_per_hour": float(fit.stderr)},
    )


def capacity(
    store: MetricReads, tenant: str, selector: str, threshold: float, now_ns: int,
    lookback_ns: int = 24 * 3600 * 10**9, horizon_ns: int = 7 * 24 * 3600 * 10**9,
) -> list[dict[str, Any]]:
    """A forecast per gauge series that ``selector`` picks, soonest crossing first."""
    sel = parse_selector(selector)
    series = [s for s in store.metric_series(tenant, sel.metric) if sel.matches(sel.metric, orjson.loads(s["labels"]))]
    rows = store.metric_minutes(tenant, [s["series_id"] for s in series], now_ns - lookback_ns, now_ns + 1)
    by_series: dict[int, list[tuple[int, float]]] = {}
    for r in rows:
        if r["points"]:
            # A minute's level is the mean of its points, at the middle of the minute.
            by_series.setdefault(r["series_id"], []).append((r["minute_ns"] + MINUTE_NS // 2, r["value"] / r["points"]))
    out = []
    for s in series:
        pts = by_series.get(s["series_id"], [])
        f = forecast_capacity([p[0] for p in pts], [p[1] for p in pts], now_ns, threshold, horizon_ns)
        out.append({
            "metric": s["metric"], "labels": orjson.loads(s["labels"]), "threshold": threshold,
            "current": f.current, "slope_per_hour": f.slope_per_hour, "model": f.model, "basis": f.basis,
            "crossing": rfc3339(f.crossing_ns) if f.crossing_ns is not None else None,
            "crossing_ns": f.crossing_ns, "earliest_ns": f.earliest_ns, "latest_ns": f.latest_ns,
            "earliest": rfc3339(f.earliest_ns) if f.earliest_ns is not None else None,
            "latest": rfc3339(f.latest_ns) if f.latest_ns is not None else None,
            "series": [{"time": rfc3339(e), "mean": m, "low": lo, "high": hi}
                       for e, m, lo, hi in zip(f.ends_ns, f.mean, f.low, f.high, strict=True)],
        })
    out.sort(key=lambda d: (d["crossing_ns"] is None, d["crossing_ns"] or 0))
    return out
