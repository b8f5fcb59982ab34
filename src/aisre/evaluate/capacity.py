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

from aisre.core.lazy import scipy_stats
from aisre.core.schema import MINUTE_NS
from aisre.core.series import parse_selector
from aisre.core.timefmt import rfc3339
from aisre.evaluate.cost.forecast import LEVEL, crossing, steps
from aisre.store.protocol import MetricReads

LINEAR = "linear trend"
HOUR_S = 3600.0
DAY_NS = 86_400 * 10**9
MIN_MINUTES = 30  # minutes with points a forecast needs before it is shown


@dataclass(frozen=True)
class SaturationResource:
    """A saturation signal the capacity page and report watch, and its warning level."""

    name: str
    metric: str  # a series selector
    threshold: float  # the warning level, in the metric's unit
    unit: str  # "ratio" (0-1, shown as %), "%", or a count unit such as "requests"


# The saturation metrics aisre knows by name (normalize/metrics.py KNOWN_METRICS and the OTel
# hardware conventions), with the warning levels platform teams usually page or plan at.
RESOURCES: tuple[SaturationResource, ...] = (
    SaturationResource("GPU utilisation", "hw.gpu.utilization", 0.9, "ratio"),
    SaturationResource("GPU utilisation (DCGM)", "DCGM_FI_DEV_GPU_UTIL", 90.0, "%"),
    SaturationResource("KV-cache use", "vllm.gpu_cache_usage_perc", 0.9, "ratio"),
    SaturationResource("KV-cache use (vLLM)", "vllm:gpu_cache_usage_perc", 0.9, "ratio"),
    SaturationResource("Queue depth", "vllm.num_requests_waiting", 10.0, "requests"),
    SaturationResource("Queue depth (vLLM)", "vllm:num_requests_waiting", 10.0, "requests"),
    SaturationResource("GPU memory used", "DCGM_FI_DEV_FB_USED", 72_000.0, "MiB"),
)


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
    fit = scipy_stats().linregress(t, y)
    n = y.size
    resid = y - (fit.intercept + fit.slope * t)
    s = math.sqrt(float(resid @ resid) / (n - 2))
    sxx = float(((t - t.mean()) ** 2).sum())
    q = float(scipy_stats().t.ppf(0.5 + LEVEL / 200, n - 2))
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
    lookback_ns: int = 24 * 3600 * 10**9, horizon_ns: int = 7 * 24 * 3600 * 10**9, history: bool = False,
) -> list[dict[str, Any]]:
    """A forecast per gauge series that ``selector`` picks, soonest crossing first; with
    ``history`` each also carries the per-minute levels it was fit on."""
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
            # A trend over a few minutes is noise: below MIN_MINUTES it is shown as not enough data.
            "minutes": len(pts), "enough_data": len(pts) >= MIN_MINUTES,
        })
        if history:
            out[-1]["history"] = [{"time": rfc3339(t - MINUTE_NS // 2), "time_ns": t, "value": v} for t, v in pts]
    out.sort(key=lambda d: (d["crossing_ns"] is None, d["crossing_ns"] or 0))
    return out


def resource_forecasts(
    store: MetricReads, tenant: str, now_ns: int, resources: Sequence[SaturationResource] = RESOURCES,
    lookback_ns: int = DAY_NS, horizon_ns: int = 7 * DAY_NS, history: bool = True,
) -> list[dict[str, Any]]:
    """Per resource with series: every series' forecast, and the one nearest its threshold
    (soonest crossing, else highest level) as the resource's headline; soonest first."""
    out: list[dict[str, Any]] = []
    for r in resources:
        rows = capacity(store, tenant, r.metric, r.threshold, now_ns, lookback_ns, horizon_ns, history=history)
        if not rows:
            continue
        worst = min(rows, key=lambda d: (d["crossing_ns"] is None, d["crossing_ns"] or 0, -(d["current"] or 0.0)))
        out.append({"resource": r.name, "metric": r.metric, "threshold": r.threshold, "unit": r.unit,
                    "worst": worst, "series": rows})
    out.sort(key=lambda d: (d["worst"]["crossing_ns"] is None, d["worst"]["crossing_ns"] or 0, d["resource"]))
    return out


def capacity_review(
    store: MetricReads, tenant: str, start_ns: int, end_ns: int, now_ns: int,
    resources: Sequence[SaturationResource] = RESOURCES,
) -> list[dict[str, Any]]:
    """The reliability review's capacity section: per resource, its level now, growth per day,
    the forecast crossing of its warning level with the band, and its daily peak over the period."""
    days = max(1, (end_ns - start_ns) // DAY_NS)
    out = []
    for item in resource_forecasts(store, tenant, min(now_ns, end_ns), resources, history=False):
        w = item["worst"]
        sel = parse_selector(item["metric"])
        ids = [s["series_id"] for s in store.metric_series(tenant, sel.metric)
               if sel.matches(sel.metric, orjson.loads(s["labels"]))]
        peaks: list[float | None] = [None] * days
        for r in store.metric_minutes(tenant, ids, start_ns, end_ns):
            d = (r["minute_ns"] - start_ns) // DAY_NS
            if 0 <= d < days and r["points"] and r.get("max") is not None:
                peaks[d] = max(peaks[d] if peaks[d] is not None else float("-inf"), float(r["max"]))
        out.append({
            "resource": item["resource"], "metric": item["metric"], "threshold": item["threshold"],
            "unit": item["unit"], "series": len(item["series"]), "labels": w["labels"], "current": w["current"],
            "growth_per_day": w["slope_per_hour"] * 24, "crossing": w["crossing"], "earliest": w["earliest"],
            "latest": w["latest"], "enough_data": w["enough_data"], "minutes": w["minutes"], "daily_peak": peaks,
        })
    return out
