"""Capacity forecasts over saturation gauges and provider rate limits (evaluate/capacity.py)
as a route."""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.core.errors import PermanentError
from aisre.core.jsonbody import parse_json
from aisre.evaluate.capacity import (
    DAY_NS,
    capacity,
    levels_document,
    levels_of,
    parse_levels,
    resources_for,
    watched_resources,
)
from aisre.evaluate.cost import CostEngine
from aisre.present.api import models
from aisre.present.api.cost import parse_duration_ns
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _time_param


@operation("slos", models.Capacity)
async def capacity_forecast(request: Request) -> Response:
    """
    summary: When each selected saturation gauge (GPU utilisation, KV-cache use, queue depth) reaches a threshold at current growth, with an 80 % band; without metric, every watched resource (gauges, rate-limited token throughput and headroom)
    parameters:
      - {name: metric, in: query, schema: {type: string}, description: 'a series selector, e.g. gpu.utilization{pool="a100"}; without it the answer is every watched resource, as on /capacity'}
      - {name: threshold, in: query, schema: {type: number}, description: 'the level that means no headroom left (required with metric)'}
      - {name: direction, in: query, schema: {type: string, enum: [rising, falling]}, description: 'rising (default): a use that grows to the threshold; falling: a headroom that falls to it'}
      - {name: lookback, in: query, schema: {type: string}, description: 'history the trend is fit on (default 1d; without metric at most 28d)'}
      - {name: horizon, in: query, schema: {type: string}, description: 'how far ahead to look (default 7d; without metric at most 90d)'}
      - {name: now, in: query, schema: {type: string}, description: forecast as of this time (RFC 3339 or look-back; default now)}
    responses:
      200: {description: 'One forecast per series, soonest crossing first (items); without metric, per watched resource its series and headline (resources), at the tenant''s warning levels (GET /api/capacity/levels).'}
      400: {description: A missing or malformed parameter.}
    """
    params = request.query_params
    metric = params.get("metric")
    lookback = parse_duration_ns(params.get("lookback", "1d"), "lookback")
    horizon = parse_duration_ns(params.get("horizon", "7d"), "horizon")
    now = _time_param(request, "now") or time.time_ns()
    ctx = _ctx(request)
    if not metric:
        if params.get("threshold") is not None:
            raise PermanentError("metric is required with threshold: a series selector such as gpu.utilization{pool=\"a100\"}")
        # Every watched resource is forecast at once: bound the minutes read and the steps ahead.
        if lookback > 28 * DAY_NS or horizon > 90 * DAY_NS:
            raise PermanentError("without metric, lookback is at most 28d and horizon at most 90d")
        found = ctx.extra.get("cost")
        cost = found.db if isinstance(found, CostEngine) else None
        tenant = ctx.tenant_for(request)
        watched = await run_in_threadpool(resources_for, ctx.store, tenant)  # at the tenant's levels
        resources = await run_in_threadpool(watched_resources, ctx.store, cost, tenant, now, watched,
                                            lookback_ns=lookback, horizon_ns=horizon, history=False)
        return ORJSONResponse({"resources": resources})
    direction = params.get("direction", "rising")
    if direction not in ("rising", "falling"):
        raise PermanentError(f"direction must be rising or falling; got {direction!r}")
    try:
        threshold = float(params.get("threshold", ""))
    except ValueError:
        raise PermanentError(f"threshold must be a number; got {params.get('threshold')!r}") from None
    try:
        items = await run_in_threadpool(capacity, ctx.store, ctx.tenant_for(request), metric, threshold, now, lookback,
                                        horizon, False, direction == "falling")
    except ValueError as exc:  # a malformed selector
        raise PermanentError(f"metric: {exc}") from None
    return ORJSONResponse({"items": items})


@operation("slos", models.CapacityWarningLevels)
async def capacity_levels_get(request: Request) -> Response:
    """
    summary: The warning level of each watched saturation resource for the caller's tenant (its own, or the built-in one), and which it turned off
    responses:
      200: {description: 'Every built-in resource: its metric, unit, built-in level (default), the level in force (threshold), enabled, and source (tenant or built-in).'}
    """
    ctx = _ctx(request)
    levels = await run_in_threadpool(levels_of, ctx.store, ctx.tenant_for(request))
    return ORJSONResponse({"levels": levels_document(levels)})


@operation("slos", models.CapacityWarningLevels)
async def capacity_levels_put(request: Request) -> Response:
    """
    summary: Set the caller's tenant's own warning levels of the saturation resources, or turn resources off (replaces the tenant's levels; audited)
    description: >
      Each item names a watched resource by its metric (GET /api/capacity/levels lists them) with
      its warning level in the metric's unit (a ratio such as 0.85 for GPU utilisation, a count
      for queue depth), and/or enabled false to leave the resource out of the capacity page,
      GET /api/capacity and the review. Resources not listed keep their built-in level, so
      {"levels": []} puts every resource back. A rate-limited model's warning share is its rate
      limit's warn_at (PUT /api/cost/rate-limits).
    requestBody:
      content:
        application/json: {schema: {type: object, required: [levels], properties: {levels: {type: array, items: {type: object, required: [metric], properties: {metric: {type: string}, threshold: {type: number, nullable: true, exclusiveMinimum: true, minimum: 0}, enabled: {type: boolean}}}}}}}
    responses:
      200: {description: The tenant's levels as they now stand.}
      400: {description: 'Not {"levels": [...]}, an unknown metric or field, a metric given twice, or a threshold outside its unit''s range.'}
    """
    ctx = _ctx(request)
    rows = parse_levels(parse_json(await request.body()))
    tenant = ctx.tenant_for(request)
    before = await run_in_threadpool(levels_of, ctx.store, tenant)
    await run_in_threadpool(ctx.store.put_capacity_levels, tenant, rows)
    after = await run_in_threadpool(levels_of, ctx.store, tenant)
    await ctx.audit(request, "capacity_levels.put", tenant,
                    [{k: r[k] for k in ("metric", "threshold", "enabled")} for r in before], rows)
    return ORJSONResponse({"levels": levels_document(after)})


CAPACITY_ROUTES = [
    Route("/api/capacity", capacity_forecast, methods=["GET"]),
    Route("/api/capacity/levels", capacity_levels_get, methods=["GET"]),
    Route("/api/capacity/levels", capacity_levels_put, methods=["PUT"]),
]
