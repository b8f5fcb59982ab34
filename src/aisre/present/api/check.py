"""``/api/check``: the telemetry checker over what the caller's tenant sent in a period."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.core.errors import PermanentError
from aisre.core.model import SpanSampleQuery
from aisre.core.timefmt import parse_time
from aisre.derive.check import Requirement, check_store
from aisre.present.api import models
from aisre.present.api.context import AppContext
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _int_param

CHECK_REQUIRED_KEY = "check_required"
DEFAULT_SINCE = "1h"
SAMPLE_LIMIT = 50_000
MAX_SAMPLE_LIMIT = 200_000


def server_requirements(ctx: AppContext) -> list[Requirement]:
    """The required-attributes file the server was started with (setting check_required)."""
    found = ctx.extra.get(CHECK_REQUIRED_KEY)
    return [r for r in found if isinstance(r, Requirement)] if isinstance(found, list) else []


def check_query(request: Request, tenant: str, since: str | None = None, limit: int = SAMPLE_LIMIT) -> SpanSampleQuery:
    """The period and filters of a check from query parameters (since defaults to 1h; 'all' has no bound)."""
    q = request.query_params
    now = time.time_ns()
    raw_since = (q.get("since") or since or DEFAULT_SINCE).strip()
    since_ns = None if raw_since == "all" else parse_time(raw_since, now, "since")
    until_ns = parse_time(q["until"], now, "until") if q.get("until") else None
    if since_ns is not None and until_ns is not None and until_ns <= since_ns:
        raise PermanentError("until must be after since")
    if not 1 <= limit <= MAX_SAMPLE_LIMIT:
        raise PermanentError(f"limit must be between 1 and {MAX_SAMPLE_LIMIT}; got {limit}")
    return SpanSampleQuery(
        tenant=tenant, since_ns=since_ns, until_ns=until_ns,
        service=(q.get("service") or "").strip() or None, journey=(q.get("journey") or "").strip() or None,
        limit=limit,
    )


async def run_check(request: Request, since: str | None = None) -> dict[str, Any]:
    """The check document for this request's tenant and parameters (the API and the page share it)."""
    ctx = _ctx(request)
    query = check_query(request, ctx.tenant_for(request), since, _int_param(request, "limit", SAMPLE_LIMIT))
    return await run_in_threadpool(check_store, ctx.store, query, server_requirements(ctx))


@operation("check", models.CheckReport)
async def check_get(request: Request) -> Response:
    """
    summary: Telemetry check of what the tenant sent in a period; findings shaped like OTel Weaver's live-check
    description: >
      For each service and journey, which spans lack what aisre and the team need (model, provider,
      token usage, prompt version, service.version, deployment.environment.name, journey attribution,
      user/session id, error.type on failed calls, content capture, renamed attributes, and the
      server's required-attributes file, setting check_required), with a count, an exemplar span and a
      coverage score per service. It reads the newest whole traces of the period up to `limit` spans:
      `sampled` says how many spans were checked of `spans_seen` in the period. Levels:
      violation | improvement | information (docs/check.md).
    parameters:
      - {name: since, in: query, schema: {type: string, default: 1h}, description: "RFC 3339 time, look-back (e.g. 1h, 7d) or 'all'"}
      - {name: until, in: query, schema: {type: string}, description: "RFC 3339 time or look-back (default now)"}
      - {name: service, in: query, schema: {type: string}, description: only spans of this service.name}
      - {name: journey, in: query, schema: {type: string}, description: only runs of this journey}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 200000, default: 50000}, description: most spans checked}
    responses:
      200: {description: "{since, until, service, journey, sampled, spans_seen, sample_limit, spans, runs, coverage: {service: share}, findings: [{id, level, signal, attribute, message, service, journey, count, exemplar: {trace_id, span_id, name}}]}"}
      400: {description: Bad parameter.}
    """
    return ORJSONResponse(await run_check(request))


CHECK_ROUTES = [Route("/api/check", check_get, methods=["GET"])]
