"""Capacity forecasts over saturation gauges (evaluate/capacity.py) as a route."""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.core.errors import PermanentError
from aisre.evaluate.capacity import capacity
from aisre.present.api import models
from aisre.present.api.cost import parse_duration_ns
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _time_param


@operation("slos", models.Capacity)
async def capacity_forecast(request: Request) -> Response:
    """
    summary: When each selected saturation gauge (GPU utilisation, KV-cache use, queue depth) reaches a threshold at current growth, with an 80 % band
    parameters:
      - {name: metric, in: query, required: true, schema: {type: string}, description: 'a series selector, e.g. gpu.utilization{pool="a100"}'}
      - {name: threshold, in: query, required: true, schema: {type: number}, description: the level that means no headroom left}
      - {name: lookback, in: query, schema: {type: string}, description: history the trend is fit on (default 1d)}
      - {name: horizon, in: query, schema: {type: string}, description: how far ahead to look (default 7d)}
      - {name: now, in: query, schema: {type: string}, description: forecast as of this time (RFC 3339 or look-back; default now)}
    responses:
      200: {description: One forecast per series, soonest crossing first.}
      400: {description: A missing or malformed parameter.}
    """
    params = request.query_params
    metric = params.get("metric")
    if not metric:
        raise PermanentError("metric is required: a series selector such as gpu.utilization{pool=\"a100\"}")
    try:
        threshold = float(params.get("threshold", ""))
    except ValueError:
        raise PermanentError(f"threshold must be a number; got {params.get('threshold')!r}") from None
    lookback = parse_duration_ns(params.get("lookback", "1d"), "lookback")
    horizon = parse_duration_ns(params.get("horizon", "7d"), "horizon")
    now = _time_param(request, "now") or time.time_ns()
    ctx = _ctx(request)
    try:
        items = await run_in_threadpool(capacity, ctx.store, ctx.tenant_for(request), metric, threshold, now, lookback, horizon)
    except ValueError as exc:  # a malformed selector
        raise PermanentError(f"metric: {exc}") from None
    return ORJSONResponse({"items": items})


CAPACITY_ROUTES = [Route("/api/capacity", capacity_forecast, methods=["GET"])]
