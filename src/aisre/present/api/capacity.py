"""Capacity forecasts over saturation gauges and provider rate limits (evaluate/capacity.py)
as a route."""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.core.errors import PermanentError
from aisre.evaluate.capacity import DAY_NS, capacity, watched_resources
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
      200: {description: 'One forecast per series, soonest crossing first (items); without metric, per watched resource its series and headline (resources).'}
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
        resources = await run_in_threadpool(watched_resources, ctx.store, cost, ctx.tenant_for(request), now,
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


CAPACITY_ROUTES = [Route("/api/capacity", capacity_forecast, methods=["GET"])]
