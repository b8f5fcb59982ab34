"""Capacity forecasts for saturation gauges (GPU utilisation, KV-cache use, queue depth) and
for provider rate limits (token throughput against the limit, and the headroom left under it):
when a series crosses its threshold at current growth, with a band. A rising series (use)
crosses its warning level from below; a falling one (headroom) reaches its floor from above.

Each tenant may set its own warning level per resource, or turn a resource off
(``parse_levels``, kept in the control plane: ``CapacityLevelTables``); ``tenant_resources``
applies them to the built-in ``RESOURCES``, which every resource without a level of the
tenant's keeps. A rate-limited model's warning share is its rate limit's ``warn_at``.

The trend is a least-squares line (scipy.stats.linregress) over the per-minute means of the
look-back; its 80 % band is the line's confidence interval (Student-t on n − 2 degrees of
freedom), which widens with distance from the data. Crossings are found on the same hourly
steps and with the same interpolation as the spend forecasts (evaluate/cost/forecast.py):
the mean line gives the expected crossing, the band's upper edge the earliest and its lower
edge the latest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from aisre.core.errors import PermanentError
from aisre.core.lazy import scipy_stats
from aisre.core.rows import CapacityLevel
from aisre.core.schema import MINUTE_NS
from aisre.core.series import parse_selector
from aisre.core.timefmt import rfc3339
from aisre.evaluate.cost.forecast import LEVEL, crossing, steps
from aisre.store.protocol import CapacityLevelTables, CostStore, MetricReads

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
    level_source: str = "built-in"  # where ``threshold`` comes from: built-in, tenant (its own level), query


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


_BY_METRIC = {r.metric: r for r in RESOURCES}
_LEVEL_FIELDS = ("metric", "threshold", "enabled")


def _bounds_text(unit: str) -> str:
    return {"ratio": "a ratio, above 0 and at most 1 (90 % is 0.9)", "%": "a percentage, above 0 and at most 100"}.get(
        unit, f"a positive number of {unit}")


def parse_levels(data: Any) -> list[dict[str, Any]]:
    """A tenant's warning levels from a ``PUT /api/capacity/levels`` body
    (``{"levels": [{"metric", "threshold"?, "enabled"?}, …]}``), checked: known resources only,
    each once, a threshold within its unit's range (null or left out: the built-in level); the
    rows to keep (none for a resource at its built-in level and watched)."""
    if not isinstance(data, dict) or set(data) != {"levels"} or not isinstance(data["levels"], list):
        raise PermanentError('the body is {"levels": [{"metric": …, "threshold": …, "enabled": …}, …]}; '
                             "an empty list puts every resource back to its built-in level")
    known = ", ".join(_BY_METRIC)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(data["levels"]):
        where = f"levels[{i}]"
        if not isinstance(item, dict):
            raise PermanentError(f"{where}: an object with metric, and threshold and/or enabled; got {item!r}")
        unknown = sorted(set(item) - set(_LEVEL_FIELDS))
        if unknown:
            raise PermanentError(f"{where}: unknown field {', '.join(map(repr, unknown))}; the fields are metric, threshold, enabled")
        metric = item.get("metric")
        resource = _BY_METRIC.get(metric) if isinstance(metric, str) else None
        if resource is None or not isinstance(metric, str):
            raise PermanentError(f"{where}.metric: {metric!r} is not a watched resource; known: {known}")
        if metric in seen:
            raise PermanentError(f"{where}.metric: {metric!r} is given twice")
        seen.add(metric)
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            raise PermanentError(f"{where}.enabled: true or false; got {enabled!r}")
        threshold = item.get("threshold")
        if threshold is not None:
            bad = isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold)
            top = {"ratio": 1.0, "%": 100.0}.get(resource.unit, math.inf)
            if bad or not 0 < threshold <= top:
                raise PermanentError(f"{where}.threshold: {metric} ({resource.name}) is {_bounds_text(resource.unit)}; "
                                     f"got {threshold!r}")
            threshold = float(threshold)
        if threshold is None and enabled:
            continue  # watched at its built-in level: what no row means
        out.append({"metric": metric, "threshold": threshold, "enabled": enabled})
    return out


def tenant_resources(
    levels: Sequence[Mapping[str, Any]], resources: Sequence[SaturationResource] = RESOURCES,
) -> tuple[SaturationResource, ...]:
    """``resources`` with a tenant's levels applied: its own threshold where it set one, and
    the resources it turned off left out."""
    by_metric = {lv["metric"]: lv for lv in levels}
    out = []
    for r in resources:
        lv = by_metric.get(r.metric)
        if lv is None:
            out.append(r)
        elif lv["enabled"]:
            out.append(r if lv["threshold"] is None else dataclasses.replace(r, threshold=float(lv["threshold"]),
                                                                             level_source="tenant"))
    return tuple(out)


def levels_of(store: CapacityLevelTables, tenant: str) -> list[CapacityLevel]:
    """The tenant's own levels; none on a store without a control plane (ClickHouse alone)."""
    try:
        return store.capacity_levels(tenant)
    except NotImplementedError:
        return []


def resources_for(store: CapacityLevelTables, tenant: str) -> tuple[SaturationResource, ...]:
    """The resources the tenant watches, at its levels (the built-in ones where it set none)."""
    return tenant_resources(levels_of(store, tenant))


def levels_document(levels: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every built-in resource with the level in force for the tenant: its own (source tenant),
    or the built-in one; ``enabled`` false when the tenant turned it off."""
    by_metric = {lv["metric"]: lv for lv in levels}
    out = []
    for r in RESOURCES:
        lv = by_metric.get(r.metric)
        own = lv is not None and lv["threshold"] is not None
        out.append({
            "resource": r.name, "metric": r.metric, "unit": r.unit, "direction": "falling" if r.falling else "rising",
            "default": r.threshold, "threshold": float(lv["threshold"]) if own and lv is not None else r.threshold,
            "enabled": lv is None or bool(lv["enabled"]), "source": "tenant" if lv is not None else "built-in",
            "updated_ns": lv["updated_ns"] if lv is not None else None,
        })
    return out


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
                    "direction": "falling" if r.falling else "rising", "level_source": r.level_source,
                    "worst": _headline(rows, r.falling), "series": rows})
    out.sort(key=_resource_order)
    return out


TOKENS_METRIC = "tokens per minute"  # input + output tokens of a model's calls, from the cost minutes
HEADROOM_METRIC = "rate-limit headroom"  # 1 − the most-used share of a model's limits, per minute


def _rate_limits(cost: CostStore, tenant: str) -> dict[str, Any]:
    """The tenant's rate limits by model; none on a data plane alone (ClickHouse without
    PostgreSQL), which has no rate limits."""
    try:
        return {r["model"]: r for r in cost.list_rate_limits(tenant)}
    except NotImplementedError:
        return {}


def _model_minutes(
    cost: CostStore, tenant: str, models: Mapping[str, Any], since_ns: int, until_ns: int,
) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]], dict[str, str | None]]:
    """Per model of ``models`` with calls in [since, until): its tokens (input + output) and
    calls per busy minute, and its provider."""
    tokens: dict[str, dict[int, float]] = {}
    calls: dict[str, dict[int, float]] = {}
    providers: dict[str, str | None] = {}
    for b in cost.breakdown(tenant, since_ns, until_ns, by=("model", "provider"), bucket_ns=MINUTE_NS):
        model = b.get("model")
        if model is None or model not in models:
            continue
        providers.setdefault(model, b.get("provider"))
        minute = int(b["bucket_ns"])
        tokens.setdefault(model, {})[minute] = tokens.get(model, {}).get(minute, 0.0) + b["input_tokens"] + b["output_tokens"]
        calls.setdefault(model, {})[minute] = calls.get(model, {}).get(minute, 0.0) + b["calls"]
    return tokens, calls, providers


def _used(tokens: float, calls: float, tpm: float | None, rpm: float | None) -> float:
    """The most-used share of a model's limits in one minute."""
    return max(tokens / tpm if tpm else 0.0, calls / rpm if rpm else 0.0)


def rate_limit_forecasts(
    cost: CostStore, tenant: str, now_ns: int, lookback_ns: int = DAY_NS, horizon_ns: int = 7 * DAY_NS,
    history: bool = True,
) -> list[dict[str, Any]]:
    """Per model with a configured rate limit (``CostSettings.list_rate_limits``): its token
    throughput per minute rising towards the warning share of its tokens-per-minute limit, and
    its headroom (1 − the larger of tokens/limit and calls/limit) falling towards zero; the
    same forecast, band and not-enough-data rule as the gauges; soonest crossing first."""
    limits = _rate_limits(cost, tenant)
    if not limits:
        return []
    # Whole minutes only: the current minute is still filling and would read as a drop.
    until = (now_ns // MINUTE_NS) * MINUTE_NS
    since = ((now_ns - lookback_ns) // MINUTE_NS) * MINUTE_NS
    tokens, calls, providers = _model_minutes(cost, tenant, limits, since, until)
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
                        "unit": "tokens/min", "direction": "rising", "level_source": "rate limit", "worst": row,
                        "series": [row]})
        used = [(m + MINUTE_NS // 2, _used(seen.get(m, 0.0), calls[model].get(m, 0.0), tpm, rpm)) for m in minutes]
        row = forecast_row(HEADROOM_METRIC, labels, [(t, 1.0 - u) for t, u in used], 0.0, now_ns, horizon_ns,
                           history, falling=True)
        out.append({"resource": f"Rate-limit headroom ({model})", "kind": "rate_limit", "metric": HEADROOM_METRIC,
                    "model": model, "limit": tpm, "requests_limit": rpm, "warn_at": limit["warn_at"], "threshold": 0.0,
                    "unit": "ratio", "direction": "falling", "level_source": "rate limit", "worst": row,
                    "series": [row]})
    out.sort(key=_resource_order)
    return out


def capacity_review(
    store: MetricReads, tenant: str, start_ns: int, end_ns: int, now_ns: int,
    resources: Sequence[SaturationResource] = RESOURCES, cost: CostStore | None = None,
) -> list[dict[str, Any]]:
    """The reliability review's capacity section: per resource, its level now, growth per day,
    the forecast crossing of its warning level (a headroom: of its floor) with the band, and its
    daily peak over the period (a headroom: its daily low). With ``cost``, the rate-limited
    models' token throughput and headroom too, as on the capacity page."""
    days = max(1, (end_ns - start_ns) // DAY_NS)
    at = min(now_ns, end_ns)
    items = resource_forecasts(store, tenant, at, resources, history=False)
    daily: dict[str, list[float | None]] = {}
    if cost is not None:
        limited = rate_limit_forecasts(cost, tenant, at, history=False)
        items += limited
        items.sort(key=_resource_order)
        if limited:
            daily = _rate_limit_days(cost, tenant, limited, start_ns, end_ns, days)
    out = []
    for item in items:
        w = item["worst"]
        peaks = daily.get(item["resource"]) if item["kind"] == "rate_limit" else _gauge_days(
            store, tenant, item["metric"], start_ns, end_ns, days)
        row = {
            "resource": item["resource"], "kind": item["kind"], "direction": item["direction"], "metric": item["metric"],
            "threshold": item["threshold"], "unit": item["unit"], "series": len(item["series"]), "labels": w["labels"],
            "current": w["current"], "growth_per_day": w["slope_per_hour"] * 24, "crossing": w["crossing"],
            "earliest": w["earliest"], "latest": w["latest"], "enough_data": w["enough_data"], "minutes": w["minutes"],
            "daily_peak": peaks or [None] * days, "level_source": item.get("level_source", "rate limit"),
        }
        if item["kind"] == "rate_limit":
            row.update(model=item["model"], limit=item["limit"], warn_at=item["warn_at"])
        out.append(row)
    return out


def _gauge_days(store: MetricReads, tenant: str, metric: str, start_ns: int, end_ns: int, days: int) -> list[float | None]:
    """A gauge resource's highest minute of each day of the period, over all its series."""
    sel = parse_selector(metric)
    ids = [s["series_id"] for s in store.metric_series(tenant, sel.metric) if sel.matches(sel.metric, orjson.loads(s["labels"]))]
    peaks: list[float | None] = [None] * days
    for r in store.metric_minutes(tenant, ids, start_ns, end_ns):
        d = (r["minute_ns"] - start_ns) // DAY_NS
        if 0 <= d < days and r["points"] and r.get("max") is not None:
            peaks[d] = max(peaks[d] if peaks[d] is not None else float("-inf"), float(r["max"]))
    return peaks


def _rate_limit_days(
    cost: CostStore, tenant: str, items: Sequence[Mapping[str, Any]], start_ns: int, end_ns: int, days: int,
) -> dict[str, list[float | None]]:
    """Per rate-limit resource, by name: each day's busiest minute of token throughput, and
    each day's lowest headroom (over the minutes with calls; None on a day without)."""
    models = {i["model"]: i for i in items}
    tokens, calls, _ = _model_minutes(cost, tenant, models, start_ns, end_ns)
    out: dict[str, list[float | None]] = {}
    for item in items:
        model = item["model"]
        days_of: list[float | None] = [None] * days
        for minute, used_tokens in tokens.get(model, {}).items():
            d = (minute - start_ns) // DAY_NS
            if not 0 <= d < days:
                continue
            if item["direction"] == "falling":
                left = 1.0 - _used(used_tokens, calls[model].get(minute, 0.0), item["limit"], item.get("requests_limit"))
                days_of[d] = left if days_of[d] is None else min(days_of[d] or 0.0, left)
            else:
                days_of[d] = used_tokens if days_of[d] is None else max(days_of[d] or 0.0, used_tokens)
        out[item["resource"]] = days_of
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
