"""Cost observability (DESIGN §5): prices per tenant, attribution, spike explanations,
budgets with forecasts, and rate-limit headroom, over the store's cost rollups."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from aisre.core.errors import NotFound, PermanentError
from aisre.core.schema import MINUTE_NS
from aisre.core.timefmt import rfc3339
from aisre.derive.cost import breakdown_document
from aisre.evaluate.cost.explain import Evidence, Minimums, ModelUse, Window, explain
from aisre.evaluate.cost.forecast import (
    HOUR_NS,
    SEASONAL_MIN_HOURS,
    crossing,
    forecast_run_rate,
    forecast_seasonal,
    no_spend,
)
from aisre.normalize.prices import (
    PriceCatalog,
    PriceOverride,
    TenantCatalog,
    default_catalog,
    parse_override,
    price_segments,
)
from aisre.store.protocol import CostStore

PERIODS = ("week", "month")
DEFAULT_THRESHOLDS = (0.8, 1.0)


class CostEngine:
    """Everything the cost API, UI and CLI ask for, for any tenant."""

    def __init__(self, db: CostStore, catalog: PriceCatalog | None = None, minimums: Minimums | None = None) -> None:
        self.db = db
        self.minimums = minimums or Minimums()
        self.catalog = catalog if catalog is not None else default_catalog()
        self._shipped = catalog is None
        self._lock = threading.Lock()
        self._overrides: dict[str, list[PriceOverride]] = {}
        self._catalogs: dict[str, TenantCatalog] = {}
        for row in db.list_overrides():
            self._overrides.setdefault(row["tenant"], []).append(_override(row))

    # -- prices ------------------------------------------------------------------------

    def catalog_for(self, tenant: str) -> PriceCatalog | None:
        """The prices a tenant's spans are costed with at ingest (None: the shipped catalog)."""
        overrides = self._overrides.get(tenant)
        if not overrides:
            return None if self._shipped else self.catalog
        with self._lock:
            found = self._catalogs.get(tenant)
            if found is None:
                found = self._catalogs[tenant] = TenantCatalog(self.catalog, overrides)
            return found

    def pricing(self, tenant: str) -> PriceCatalog:
        return self.catalog_for(tenant) or self.catalog

    def prices_document(self, tenant: str, now_ns: int | None = None) -> dict[str, Any]:
        """The catalog version in force, every listed model, and the tenant's overrides."""
        now = now_ns or time.time_ns()
        version = self.catalog.version_at(now)
        return {
            "version": version.id,
            "effective": rfc3339(version.effective_ns),
            "versions": [{"id": v.id, "effective": rfc3339(v.effective_ns)} for v in self.catalog.versions],
            "models": [
                {"provider": p.provider, "model": p.model, "input": p.input, "output": p.output, "cached_input": p.cached_input}
                for p in sorted(version.prices.values(), key=lambda p: (p.provider, p.model))
            ],
            "overrides": [
                {"model": o.model, "provider": o.provider, "input": o.input, "output": o.output,
                 "cached_input": o.cached_input, "effective": rfc3339(o.effective_ns), "version": o.version_id}
                for o in self._overrides.get(tenant, [])
            ],
        }

    def set_override(self, tenant: str, data: Any, effective_ns: int) -> PriceOverride:
        """Price one model for this tenant from ``effective_ns`` on (new spans; reprice for old ones)."""
        override = parse_override(data, effective_ns)
        self.db.put_override({
            "tenant": tenant, "model": override.model, "provider": override.provider, "input": override.input,
            "output": override.output, "cached_input": override.cached_input, "effective_ns": override.effective_ns,
        })
        self._reload(tenant)
        return override

    def delete_override(self, tenant: str, model: str) -> None:
        self.db.delete_override(tenant, model.strip().lower())
        self._reload(tenant)

    def reload_overrides(self) -> None:
        """Re-read every tenant's price overrides: another node sharing the control store may
        have changed them (a tenant's catalog is rebuilt only when its overrides changed)."""
        fresh: dict[str, list[PriceOverride]] = {}
        for row in self.db.list_overrides():
            fresh.setdefault(row["tenant"], []).append(_override(row))
        with self._lock:
            for tenant in set(fresh) | set(self._overrides):
                if fresh.get(tenant) != self._overrides.get(tenant):
                    self._catalogs.pop(tenant, None)
            self._overrides = fresh

    def _reload(self, tenant: str) -> None:
        rows = self.db.list_overrides(tenant)
        with self._lock:
            self._overrides[tenant] = [_override(r) for r in rows]
            self._catalogs.pop(tenant, None)

    def reprice(self, tenant: str, since_ns: int, until_ns: int | None = None) -> dict[str, Any]:
        """Recompute the cost of every model call in [since, until) with today's prices."""
        until = until_ns if until_ns is not None else time.time_ns() + 3600 * 10**9
        if until <= since_ns:
            raise PermanentError("reprice: 'until' must be after 'since'")
        pricing = self.pricing(tenant)
        rows: dict[str, list[Any]] = {
            k: [] for k in ("provider", "model", "from_ns", "to_ns", "version", "input", "output", "cached_input", "cache_write_input")
        }
        unpriced: set[str] = set()
        for provider, model in self.db.priced_models(tenant, since_ns, until):
            for start, end, price, version in price_segments(pricing, provider, model, since_ns, until):
                rows["provider"].append(provider)
                rows["model"].append(model)
                rows["from_ns"].append(start)
                rows["to_ns"].append(end)
                rows["version"].append(version)
                rows["input"].append(price.input if price else 0.0)
                rows["output"].append(price.output if price else 0.0)
                rows["cached_input"].append(price.cached_input if price else 0.0)
                write = 0.0 if price is None else price.input if price.cache_write_input is None else price.cache_write_input
                rows["cache_write_input"].append(write)
                if price is None and model:
                    unpriced.add(model)
        table = pa.table({
            "provider": pa.array(rows["provider"], pa.string()), "model": pa.array(rows["model"], pa.string()),
            "from_ns": pa.array(rows["from_ns"], pa.int64()), "to_ns": pa.array(rows["to_ns"], pa.int64()),
            "version": pa.array(rows["version"], pa.string()), "input": pa.array(rows["input"], pa.float64()),
            "output": pa.array(rows["output"], pa.float64()), "cached_input": pa.array(rows["cached_input"], pa.float64()),
            "cache_write_input": pa.array(rows["cache_write_input"], pa.float64()),
        })
        result = self.db.reprice(tenant, since_ns, until, table)
        return {**result, "since": rfc3339(since_ns), "until": rfc3339(until), "unpriced_models": sorted(unpriced)}

    # -- attribution ---------------------------------------------------------------------

    def breakdown(
        self, tenant: str, since_ns: int | None, until_ns: int | None, by: Sequence[str] = ("journey",),
        bucket_ns: int | None = None, journey: str | None = None, model: str | None = None,
    ) -> dict[str, Any]:
        return breakdown_document(self.db, tenant, since_ns, until_ns, by, bucket_ns, journey, model)

    def unpriced(self, tenant: str, since_ns: int | None, until_ns: int | None) -> list[dict[str, Any]]:
        return [
            {**r, "first_seen": rfc3339(r.pop("first_minute_ns")), "last_seen": rfc3339(r.pop("last_minute_ns"))}
            for r in self.db.unpriced(tenant, since_ns, until_ns)
        ]

    # -- explanation ---------------------------------------------------------------------

    def explain(self, tenant: str, journey: str, baseline: tuple[int, int], current: tuple[int, int]) -> dict[str, Any]:
        """Why the journey's cost changed from ``baseline`` to ``current`` ([from, to) in ns);
        with too little data in either window, ``status: insufficient_data`` and no cause."""
        for label, (a, b) in (("baseline", baseline), ("current", current)):
            if b <= a:
                raise PermanentError(f"{label}: the end must be after the start")
            if (b - a) < MINUTE_NS:
                raise PermanentError(f"{label}: a window must be at least one minute long")
        windows = [Window(*baseline), Window(*current)]
        for row in self.db.run_windows(tenant, journey, [baseline, current]):
            w = windows[row["w"]]
            w.runs, w.failures, w.retries = int(row["runs"]), int(row["failures"]), int(row["retries"])
        for row in self.db.model_windows(tenant, journey, [baseline, current]):
            w = windows[row["w"]]
            w.models.setdefault(row["model"], ModelUse(row["provider"], row["model"])).add(row)
            w.prompts.setdefault(row["prompt_version"], ModelUse("", row["prompt_version"])).add(row)
            w.releases.setdefault(row["service_version"], ModelUse("", row["service_version"])).add(row)
        if not windows[0].runs and not windows[1].runs:
            raise NotFound(f"journey {journey!r} has no runs in either window")
        pricing = self.pricing(tenant)
        refs = {m: pricing.lookup(use.provider or None, m or None, current[1] - 1)[0]
                for w in windows for m, use in w.models.items()}
        start, end = current
        db = self.db
        n = max(5, self.minimums.exemplars)  # enough to tell whether a cause has its minimum

        def exemplars(kind: str, hints: Mapping[str, Any]) -> list[str]:
            if kind == "retries":
                return db.exemplars(tenant, journey, start, end, "retries", limit=n)
            if kind == "prompt":
                versions = list(hints.get("prompt_versions") or [])
                if versions:
                    return db.exemplars(tenant, journey, start, end, "input_tokens", prompt_versions=versions, limit=n)
                releases = list(hints.get("service_versions") or [])
                return db.exemplars(tenant, journey, start, end, "input_tokens", service_versions=releases, limit=n)
            if kind == "model" and hints.get("models"):
                return db.model_exemplars(tenant, journey, start, end, hints["models"][0], limit=n)
            if kind == "recent":
                return db.exemplars(tenant, journey, start, end, "recent", limit=n)
            return db.exemplars(tenant, journey, start, end, "cost", limit=n)

        ev = Evidence(
            first_seen_prompt=db.version_first_seen(tenant, journey, "prompt_version", end),
            first_seen_release=db.version_first_seen(tenant, journey, "service_version", end),
            exemplars=exemplars,
        )
        doc = explain(journey, windows[0], windows[1], refs, ev, self.minimums)
        for side in ("baseline", "current"):
            doc[side]["from"] = rfc3339(doc[side]["from"])
            doc[side]["to"] = rfc3339(doc[side]["to"])
        for cause in doc["causes"]:
            for v in (cause["evidence"].get("versions") or {}).values():
                v["first_seen"] = rfc3339(v.pop("first_seen_ns", None))
        return doc

    # -- budgets ---------------------------------------------------------------------------

    def put_budget(self, tenant: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise PermanentError("a budget must be an object with 'name', 'period' and 'amount_usd'")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise PermanentError("a budget needs a 'name'")
        period = data.get("period", "month")
        if period not in PERIODS:
            raise PermanentError(f"budget {name!r}: period must be one of {', '.join(PERIODS)}; got {period!r}")
        amount = data.get("amount_usd")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
            raise PermanentError(f"budget {name!r}: amount_usd must be a positive number; got {amount!r}")
        thresholds = data.get("thresholds", list(DEFAULT_THRESHOLDS))
        if not isinstance(thresholds, list) or not thresholds or not all(
            isinstance(t, int | float) and not isinstance(t, bool) and 0 < t <= 10 for t in thresholds
        ):
            raise PermanentError(f"budget {name!r}: thresholds must be a list of shares such as [0.8, 1.0]")
        journey = data.get("journey") or ""
        if not isinstance(journey, str):
            raise PermanentError(f"budget {name!r}: journey must be a journey name")
        row = {"tenant": tenant, "name": name.strip(), "journey": journey, "period": period,
               "amount_usd": float(amount), "thresholds": sorted(float(t) for t in thresholds)}
        self.db.put_budget(row)
        return row

    def delete_budget(self, tenant: str, name: str) -> None:
        self.db.delete_budget(tenant, name)

    def budget_tenants(self) -> list[str]:
        return self.db.budget_tenants()

    def budgets(self, tenant: str, now_ns: int | None = None) -> list[dict[str, Any]]:
        now = now_ns or time.time_ns()
        return [self.budget_status(tenant, row, now) for row in self.db.list_budgets(tenant)]

    def budget(self, tenant: str, name: str, now_ns: int | None = None) -> dict[str, Any]:
        rows = [r for r in self.db.list_budgets(tenant) if r["name"] == name]
        if not rows:
            raise NotFound(f"no cost budget named {name!r}")
        return self.budget_status(tenant, rows[0], now_ns or time.time_ns(), series=True)

    def budget_status(self, tenant: str, row: Mapping[str, Any], now_ns: int, series: bool = False) -> dict[str, Any]:
        """Spend so far this period, forecast at period end, projected exhaustion."""
        now_ns = now_ns // 1000 * 1000  # as_of round-trips through RFC 3339 (microseconds)
        start, end = period_bounds(row["period"], now_ns)
        journey = row["journey"] or None
        hour_now = (now_ns // HOUR_NS) * HOUR_NS
        history_start = max(start - 28 * 86400 * 10**9, hour_now - 28 * 86400 * 10**9)
        rows = self.db.breakdown(tenant, history_start, now_ns + 1, by=(), bucket_ns=HOUR_NS, journey=journey)
        by_hour = {int(r["bucket_ns"]): float(r["cost_usd"] or 0.0) for r in rows if r["cost_usd"]}
        spent = sum(v for h, v in by_hour.items() if h >= start)
        first_hour = min(by_hour, default=None)
        complete = list(range(first_hour, hour_now, HOUR_NS)) if first_hour is not None else []
        since: int | None = first_hour
        if first_hour is None:
            fc = no_spend(now_ns, end)
        elif len(complete) >= SEASONAL_MIN_HOURS:
            fc = forecast_seasonal(first_hour, [by_hour.get(h, 0.0) for h in complete], now_ns, end,
                                   by_hour.get(hour_now, 0.0))
        else:
            # Young history: the run rate, on the minutes since the first one with spend
            # (whole hours would leave the first, partial one out and see no history at all).
            minute_rows = self.db.breakdown(tenant, first_hour, now_ns + 1, by=(), bucket_ns=MINUTE_NS, journey=journey)
            by_minute = {int(r["bucket_ns"]): float(r["cost_usd"] or 0.0) for r in minute_rows if r["cost_usd"]}
            calls = {int(r["bucket_ns"]): int(r["billed_calls"] or 0) for r in minute_rows}
            since = min(by_minute, default=first_hour)
            fc = forecast_run_rate(since, by_minute, now_ns, end, calls)
        forecast_total = spent + sum(fc.mean)
        amount = float(row["amount_usd"])
        exhaustion = crossing(now_ns, spent, fc.ends_ns, fc.mean, amount)
        crossed = [t for t in row["thresholds"] if forecast_total >= t * amount]
        basis = {**fc.basis, "since": rfc3339(since)}
        doc: dict[str, Any] = {
            "name": row["name"], "journey": row["journey"] or None, "period": row["period"],
            "amount_usd": amount, "thresholds": list(row["thresholds"]),
            "period_start": rfc3339(start), "period_end": rfc3339(end), "as_of": rfc3339(now_ns),
            "spent_usd": spent, "spent_share": spent / amount,
            "forecast_usd": forecast_total, "forecast_share": forecast_total / amount,
            "forecast_low_usd": spent + sum(fc.low), "forecast_high_usd": spent + sum(fc.high),
            "forecast_model": fc.model,
            "forecast_basis": basis,
            "projected_exhaustion": rfc3339(exhaustion) if exhaustion is not None and exhaustion < end else None,
            "alert": max(crossed) if crossed else None,
        }
        if series:
            # Points as objects with RFC 3339 times, like every time the API shows.
            cumulative, total = [], 0.0
            for h in range(start, hour_now + HOUR_NS, HOUR_NS):
                total += by_hour.get(h, 0.0)
                cumulative.append({"hour_start": rfc3339(h), "cumulative_usd": total})
            doc["spent_series"] = cumulative
            ahead, total = [], spent
            for h, v, lo, hi in zip(fc.ends_ns, fc.mean, fc.low, fc.high, strict=True):
                total += v
                ahead.append({"time": rfc3339(h), "cumulative_usd": total, "step_low_usd": lo, "step_high_usd": hi})
            doc["forecast_series"] = ahead
        return doc

    # -- rate-limit headroom -------------------------------------------------------------------

    def put_rate_limit(self, tenant: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("model"), str) or not data["model"].strip():
            raise PermanentError("a rate limit needs a 'model' and requests_per_min and/or tokens_per_min")
        row: dict[str, Any] = {"tenant": tenant, "model": data["model"].strip()}
        for key in ("requests_per_min", "tokens_per_min"):
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                raise PermanentError(f"rate limit for {row['model']!r}: {key} must be a positive number; got {value!r}")
            row[key] = float(value) if value is not None else None
        if row["requests_per_min"] is None and row["tokens_per_min"] is None:
            raise PermanentError(f"rate limit for {row['model']!r}: give requests_per_min and/or tokens_per_min")
        warn = data.get("warn_at", 0.8)
        if isinstance(warn, bool) or not isinstance(warn, int | float) or not 0 < warn <= 1:
            raise PermanentError(f"rate limit for {row['model']!r}: warn_at must be a share in (0, 1]; got {warn!r}")
        row["warn_at"] = float(warn)
        self.db.put_rate_limit(row)
        return row

    def headroom(self, tenant: str, since_ns: int, until_ns: int) -> list[dict[str, Any]]:
        """Per model: peak calls and tokens in one minute, against its configured limits."""
        limits = {r["model"]: r for r in self.db.list_rate_limits(tenant)}
        out = []
        seen = set()
        for r in self.db.peak_minutes(tenant, since_ns, until_ns):
            seen.add(r["model"])
            limit: Mapping[str, Any] = limits.get(r["model"], {})
            doc = {
                "model": r["model"], "provider": r["provider"],
                "peak_requests_per_min": int(r["peak_rpm"]), "peak_requests_at": rfc3339(r["peak_rpm_minute_ns"]),
                "peak_tokens_per_min": int(r["peak_tpm"]), "peak_tokens_at": rfc3339(r["peak_tpm_minute_ns"]),
                "avg_requests_per_active_min": r["calls"] / max(1, r["active_minutes"]),
                "requests_per_min_limit": limit.get("requests_per_min"),
                "tokens_per_min_limit": limit.get("tokens_per_min"),
                "warn_at": limit.get("warn_at"),
            }
            doc["requests_headroom"] = _headroom(doc["peak_requests_per_min"], doc["requests_per_min_limit"])
            doc["tokens_headroom"] = _headroom(doc["peak_tokens_per_min"], doc["tokens_per_min_limit"])
            used = [1 - h for h in (doc["requests_headroom"], doc["tokens_headroom"]) if h is not None]
            doc["peak_share"] = max(used) if used else None
            doc["warning"] = (
                f"peak minute used {doc['peak_share'] * 100:.0f}% of the {r['model']} limit (warn at {limit['warn_at'] * 100:.0f}%)"
                if used and limit and max(used) >= limit["warn_at"] else None
            )
            out.append(doc)
        for model, limit in limits.items():
            if model not in seen:
                # The same fields as a model with calls, so clients read one shape.
                out.append({"model": model, "provider": None, "peak_requests_per_min": 0, "peak_requests_at": None,
                            "peak_tokens_per_min": 0, "peak_tokens_at": None, "avg_requests_per_active_min": None,
                            "requests_per_min_limit": limit["requests_per_min"], "tokens_per_min_limit": limit["tokens_per_min"],
                            "warn_at": limit["warn_at"], "requests_headroom": 1.0 if limit["requests_per_min"] else None,
                            "tokens_headroom": 1.0 if limit["tokens_per_min"] else None, "peak_share": 0.0, "warning": None})
        return out


def _headroom(peak: float, limit: float | None) -> float | None:
    return None if not limit else 1 - peak / limit


def _override(row: Mapping[str, Any]) -> PriceOverride:
    return PriceOverride(row["model"], row["input"], row["output"], row["cached_input"], row["effective_ns"], row["provider"])


def period_bounds(period: str, now_ns: int) -> tuple[int, int]:
    """[start, end) of the calendar week (Monday, UTC) or month holding ``now_ns``."""
    now = dt.datetime.fromtimestamp(now_ns / 1e9, tz=dt.UTC)
    if period == "week":
        start = (now - dt.timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(days=7)
    elif period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + dt.timedelta(days=32)).replace(day=1)
    else:
        raise PermanentError(f"period must be one of {', '.join(PERIODS)}; got {period!r}")
    return int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9
