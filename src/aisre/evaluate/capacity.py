"""Capacity forecasts for saturation gauges (GPU utilisation, KV-cache use, queue depth) and
for provider rate limits (token throughput against the limit, and the headroom left under it):
when a series crosses its threshold at current growth, with a band. A rising series (use)
crosses its warning level from below; a falling one (headroom) reaches its floor from above.

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
from aisre.store.protocol import CostStore, MetricReads

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
    falling: bool = False  # a headroom that falls towards ``threshold`` (its floor), not a use that rises


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
    times_ns: Sequence[int], values: Sequence[float], now_ns: int, threshold: float, horizon_ns: int,
    falling: bool = False,
) -> CapacityForecast:
    """Fit the trend of ``values`` (per-minute levels at ``times_ns``) and find when it
    reaches ``threshold`` within ``horizon_ns`` of ``now_ns``: from below, or from above when
    ``falling`` (a headroom running down to its floor)."""
    if falling:
        # A fall to a floor is a rise of the negated series to the negated floor: the same fit,
        # band and crossings; the band's edges swap when turned back.
        f = forecast_capacity(times_ns, [-v for v in values], now_ns, -threshold, horizon_ns)
        return CapacityForecast(
            threshold=threshold, current=-f.current if f.current is not None else None,
            slope_per_hour=-f.slope_per_hour, crossing_ns=f.crossing_ns, earliest_ns=f.earliest_ns,
            latest_ns=f.latest_ns, ends_ns=f.ends_ns, mean=[-m for m in f.mean], low=[-h for h in f.high],
            high=[-lo for lo in f.low], model=f.model, basis=f.basis,
        )
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


def forecast_row(
    metric: str, labels: dict[str, Any], pts: Sequence[tuple[int, float]], threshold: float, now_ns: int,
    horizon_ns: int, history: bool = False, falling: bool = False,
) -> dict[str, Any]:
    """One series' forecast document (as /api/capacity shows it) from its per-minute levels
    ``pts`` (minute middle, level)."""
    f = forecast_capacity([p[0] for p in pts], [p[1] for p in pts], now_ns, threshold, horizon_ns, falling)
    row: dict[str, Any] = {
        "metric": metric, "labels": labels, "threshold": threshold, "direction": "falling" if falling else "rising",
        "current": f.current, "slope_per_hour": f.slope_per_hour, "model": f.model, "basis": f.basis,
        "crossing": rfc3339(f.crossing_ns) if f.crossing_ns is not None else None,
        "crossing_ns": f.crossing_ns, "earliest_ns": f.earliest_ns, "latest_ns": f.latest_ns,
        "earliest": rfc3339(f.earliest_ns) if f.earliest_ns is not None else None,
        "latest": rfc3339(f.latest_ns) if f.latest_ns is not None else None,
        "series": [{"time": rfc3339(e), "mean": m, "low": lo, "high": hi}
                   for e, m, lo, hi in zip(f.ends_ns, f.mean, f.low, f.high, strict=True)],
        # A trend over a few minutes is noise: below MIN_MINUTES it is shown as not enough data.
        "minutes": len(pts), "enough_data": len(pts) >= MIN_MINUTES,
    }
    if history:
        row["history"] = [{"time": rfc3339(t - MINUTE_NS // 2), "time_ns": t, "value": v} for t, v in pts]
    return row


def _soonest(rows: list[dict[str, Any]]) -> None:
    rows.sort(key=lambda d: (d["crossing_ns"] is None, d["crossing_ns"] or 0))


def capacity(
    store: MetricReads, tenant: str, selector: str, threshold: float, now_ns: int,
    lookback_ns: int = 24 * 3600 * 10**9, horizon_ns: int = 7 * 24 * 3600 * 10**9, history: bool = False,
    falling: bool = False,
) -> list[dict[str, Any]]:
    """A forecast per gauge series that ``selector`` picks, soonest crossing first; with
    ``history`` each also carries the per-minute levels it was fit on; ``falling``: the series
    is a headroom and ``threshold`` its floor."""
    sel = parse_selector(selector)
    series = [s for s in store.metric_series(tenant, sel.metric) if sel.matches(sel.metric, orjson.loads(s["labels"]))]
    rows = store.metric_minutes(tenant, [s["series_id"] for s in series], now_ns - lookback_ns, now_ns + 1)
    by_series: dict[int, list[tuple[int, float]]] = {}
    for r in rows:
        if r["points"]:
            # A minute's level is the mean of its points, at the middle of the minute.
            by_series.setdefault(r["series_id"], []).append((r["minute_ns"] + MINUTE_NS // 2, r["value"] / r["points"]))
    out = [forecast_row(s["metric"], orjson.loads(s["labels"]), by_series.get(s["series_id"], []), threshold, now_ns,
                        horizon_ns, history, falling) for s in series]
    _soonest(out)
    return out


def _headline(rows: list[dict[str, Any]], falling: bool) -> dict[str, Any]:
    """The series nearest its threshold: soonest crossing, else the highest use (lowest headroom)."""
    sign = 1.0 if falling else -1.0
    return min(rows, key=lambda d: (d["crossing_ns"] is None, d["crossing_ns"] or 0, sign * (d["current"] or 0.0)))


def _resource_order(item: dict[str, Any]) -> tuple[bool, int, str]:
    return (item["worst"]["crossing_ns"] is None, item["worst"]["crossing_ns"] or 0, item["resource"])


def resource_forecasts(
    store: MetricReads, tenant: str, now_ns: int, resources: Sequence[SaturationResource] = RESOURCES,
    lookback_ns: int = DAY_NS, horizon_ns: int = 7 * DAY_NS, history: bool = True,
) -> list[dict[str, Any]]:
    """Per resource with series: every series' forecast, and the one nearest its threshold
    (soonest crossing, else highest level) as the resource's headline; soonest first."""
    out: list[dict[str, Any]] = []
    for r in resources:
        rows = capacity(store, tenant, r.metric, r.threshold, now_ns, lookback_ns, horizon_ns, history=history,
                        falling=r.falling)
        if not rows:
            continue
        out.append({"resource": r.name, "kind": "gauge", "metric": r.metric, "threshold": r.threshold, "unit": r.unit,
                    "direction": "falling" if r.falling else "rising", "worst": _headline(rows, r.falling), "series": rows})
    out.sort(key=_resource_order)
    return out


TOKENS_METRIC = "tokens per minute"  # input + output tokens of a model's calls, from the cost minutes
HEADROOM_METRIC = "rate-limit headroom"  # 1 − the most-used share of a model's limits, per minute


def rate_limit_forecasts(
    cost: CostStore, tenant: str, now_ns: int, lookback_ns: int = DAY_NS, horizon_ns: int = 7 * DAY_NS,
    history: bool = True,
) -> list[dict[str, Any]]:
    """Per model with a configured rate limit (``CostSettings.list_rate_limits``): its token
    throughput per minute rising towards the warning share of its tokens-per-minute limit, and
    its headroom (1 − the larger of tokens/limit and calls/limit) falling towards zero; the
    same forecast, band and not-enough-data rule as the gauges; soonest crossing first."""
    try:
        limits = {r["model"]: r for r in cost.list_rate_limits(tenant)}
    except NotImplementedError:  # a data plane alone (ClickHouse without PostgreSQL) has no rate limits
        return []
    if not limits:
        return []
    # Whole minutes only: the current minute is still filling and would read as a drop.
    until = (now_ns // MINUTE_NS) * MINUTE_NS
    since = ((now_ns - lookback_ns) // MINUTE_NS) * MINUTE_NS
    tokens: dict[str, dict[int, float]] = {}
    calls: dict[str, dict[int, float]] = {}
    providers: dict[str, str | None] = {}
    for b in cost.breakdown(tenant, since, until, by=("model", "provider"), bucket_ns=MINUTE_NS):
        model = b.get("model")
        if model is None or model not in limits:
            continue
        providers.setdefault(model, b.get("provider"))
        minute = int(b["bucket_ns"])
        tokens.setdefault(model, {})[minute] = tokens.get(model, {}).get(minute, 0.0) + b["input_tokens"] + b["output_tokens"]
        calls.setdefault(model, {})[minute] = calls.get(model, {}).get(minute, 0.0) + b["calls"]
    out: list[dict[str, Any]] = []
    for model, limit in sorted(limits.items()):
        seen = tokens.get(model)
        if not seen:
            continue
        # A minute without calls used none of the limit: from the first busy minute on, every
        # minute counts, idle ones as zero.
        minutes = range(min(seen), until, MINUTE_NS)
        provider = providers.get(model)
        labels = {"model": model, **({"provider": provider} if provider else {})}
        tpm, rpm = limit["tokens_per_min"], limit["requests_per_min"]
        if tpm:
            pts = [(m + MINUTE_NS // 2, seen.get(m, 0.0)) for m in minutes]
            row = forecast_row(TOKENS_METRIC, labels, pts, tpm * limit["warn_at"], now_ns, horizon_ns, history)
            out.append({"resource": f"Token throughput ({model})", "kind": "rate_limit", "metric": TOKENS_METRIC,
                        "model": model, "limit": tpm, "warn_at": limit["warn_at"], "threshold": row["threshold"],
                        "unit": "tokens/min", "direction": "rising", "worst": row, "series": [row]})
        used = [(m + MINUTE_NS // 2, max(seen.get(m, 0.0) / tpm if tpm else 0.0,
                                         calls[model].get(m, 0.0) / rpm if rpm else 0.0)) for m in minutes]
        row = forecast_row(HEADROOM_METRIC, labels, [(t, 1.0 - u) for t, u in used], 0.0, now_ns, horizon_ns,
                           history, falling=True)
        out.append({"resource": f"Rate-limit headroom ({model})", "kind": "rate_limit", "metric": HEADROOM_METRIC,
                    "model": model, "limit": tpm, "requests_limit": rpm, "warn_at": limit["warn_at"], "threshold": 0.0,
                    "unit": "ratio", "direction": "falling", "worst": row, "series": [row]})
    out.sort(key=_resource_order)
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


def watched_resources(
    store: MetricReads, cost: CostStore | None, tenant: str, now_ns: int,
    resources: Sequence[SaturationResource] = RESOURCES, lookback_ns: int = DAY_NS, horizon_ns: int = 7 * DAY_NS,
    history: bool = True,
) -> list[dict[str, Any]]:
    """Every watched resource with data, as the capacity page shows them: the saturation gauges
    and, when cost is observed, the rate-limited models' throughput and headroom; soonest first."""
    out = resource_forecasts(store, tenant, now_ns, resources, lookback_ns, horizon_ns, history)
    if cost is not None:
        out += rate_limit_forecasts(cost, tenant, now_ns, lookback_ns, horizon_ns, history)
    out.sort(key=_resource_order)
    return out
