"""The ASGI application: OTLP/HTTP, REST API, UI and /metrics on one port."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aisre.core.auth import Forbidden, Unauthenticated
from aisre.core.errors import Conflict, NotFound, PayloadTooLarge, PermanentError, RetryableError
from aisre.core.pipeline import TracesConsumer
from aisre.present.api.admin import ADMIN_ROUTES
from aisre.present.api.auth import AuthMiddleware
from aisre.present.api.capacity import CAPACITY_ROUTES
from aisre.present.api.catalog import CATALOG_ROUTES
from aisre.present.api.check import CHECK_ROUTES
from aisre.present.api.context import AppContext
from aisre.present.api.cost import COST_ROUTES
from aisre.present.api.events import EVENT_ROUTES
from aisre.present.api.gate import GATE_ROUTES
from aisre.present.api.incidents import INCIDENT_ROUTES
from aisre.present.api.metric_series import METRIC_SERIES_ROUTES
from aisre.present.api.platform_scores import PLATFORM_SCORE_ROUTES
from aisre.present.api.policy import POLICY_ROUTES
from aisre.present.api.readiness import READINESS_ROUTES
from aisre.present.api.routes import API_ROUTES, ORJSONResponse
from aisre.present.api.scorecards import SCORECARD_ROUTES
from aisre.receive.otlp_http import metrics_endpoint, traces_endpoint

log = logging.getLogger(__name__)


async def _permanent(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PermanentError)
    status = 400
    if isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, Conflict):
        status = 409
    elif isinstance(exc, PayloadTooLarge):
        status = 413
    body: dict[str, object] = {"error": exc.message}
    details = getattr(exc, "errors", None)
    if isinstance(details, list):  # e.g. every error of an SLO spec set, with file and line
        body["errors"] = [
            dataclasses.asdict(e) if dataclasses.is_dataclass(e) and not isinstance(e, type) else str(e)
            for e in details
        ]
    return ORJSONResponse(body, status_code=status)


async def _retryable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RetryableError)
    return ORJSONResponse(
        {"error": exc.message}, status_code=503, headers={"Retry-After": str(max(1, round(exc.retry_after)))}
    )


async def _denied(request: Request, exc: Exception) -> Response:
    # A store-level tenant check that fired: the route asked for another tenant's data.
    assert isinstance(exc, Unauthenticated | Forbidden)
    return ORJSONResponse({"error": exc.message}, status_code=401 if isinstance(exc, Unauthenticated) else 403)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return ORJSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return ORJSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


def api_routes(otlp: Any, otlp_metrics: Any = None) -> list[BaseRoute]:
    """Every API route (what /openapi.json describes), with ``otlp`` as POST /v1/traces
    and ``otlp_metrics`` as POST /v1/metrics."""
    metrics_route = [Route("/v1/metrics", otlp_metrics, methods=["POST"])] if otlp_metrics is not None else []
    return [
        Route("/v1/traces", otlp, methods=["POST"]),
        *metrics_route,
        *API_ROUTES,
        *ADMIN_ROUTES,
        *GATE_ROUTES,
        *INCIDENT_ROUTES,
        *COST_ROUTES,
        *CAPACITY_ROUTES,
        *METRIC_SERIES_ROUTES,
        *CHECK_ROUTES,
        *SCORECARD_ROUTES,
        *CATALOG_ROUTES,
        *READINESS_ROUTES,
        *POLICY_ROUTES,
        *PLATFORM_SCORE_ROUTES,
        *EVENT_ROUTES,
    ]


def build_asgi(
    ctx: AppContext,
    consumer: TracesConsumer,
    *,
    ui_routes: Sequence[BaseRoute] = (),
    lifespan: Any = None,
    metrics_consumer: TracesConsumer | None = None,
) -> Starlette:
    """Assemble routes and error handling (a layer, not try/except in every handler)."""
    otlp = traces_endpoint(
        consumer,
        max_body_bytes=ctx.settings.max_body_bytes,
        tenant_for=ctx.tenant_for,
        metrics=ctx.ingest_metrics,
    )
    otlp_metrics = metrics_endpoint(
        metrics_consumer,
        max_body_bytes=ctx.settings.max_body_bytes,
        tenant_for=ctx.tenant_for,
        metrics=ctx.ingest_metrics,
    ) if metrics_consumer is not None else None
    routes: list[BaseRoute] = [*api_routes(otlp, otlp_metrics), *ui_routes]
    app = Starlette(
        routes=routes,
        exception_handlers={
            PermanentError: _permanent,
            RetryableError: _retryable,
            Unauthenticated: _denied,
            Forbidden: _denied,
            HTTPException: _http,
            Exception: _unexpected,
        },
        lifespan=lifespan,
        middleware=[Middleware(AuthMiddleware, keys=ctx.keys)],
    )
    app.state.ctx = ctx
    app.state.traces_consumer = consumer  # POST /api/events ingests its spans through it
    return app

