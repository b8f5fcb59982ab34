"""The tenant's metric series (derive/metric_series.py) as a route: what its Collector sent."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.derive.metric_series import SeriesQuery, list_series
from aisre.present.api import models
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _int_param


@operation("metrics", models.MetricSeriesPage)
async def metric_series(request: Request) -> Response:
    """
    summary: The metric series the tenant has sent, by name then labels, with the selector that picks each (to write metric SLIs against)
    parameters:
      - {name: metric, in: query, schema: {type: string}, description: 'a metric name, e.g. gen_ai.client.operation.duration'}
      - {name: match, in: query, schema: {type: string}, description: 'label matchers, {gpu="0",pool=~"a.*"}, or a whole selector name{...}'}
      - {name: service, in: query, schema: {type: string}, description: the service.name label}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
      - {name: cursor, in: query, schema: {type: string}, description: next_cursor from the previous page}
    responses:
      200: {description: "{items: [...], next_cursor: string|null}"}
      400: {description: A malformed matcher, limit or cursor.}
    """
    params = request.query_params
    ctx = _ctx(request)
    q = SeriesQuery(
        tenant=ctx.tenant_for(request),
        metric=params.get("metric") or None,
        match=params.get("match") or None,
        service=params.get("service") or None,
        limit=_int_param(request, "limit", 100),
        cursor=params.get("cursor") or None,
    )
    return ORJSONResponse(await run_in_threadpool(list_series, ctx.store, q))


METRIC_SERIES_ROUTES = [Route("/api/metrics/series", metric_series, methods=["GET"])]
