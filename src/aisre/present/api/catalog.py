"""``/api/catalog``: the service catalog discovered from the caller's spans, merged with the
server's catalog file, as JSON or Backstage ``catalog-info.yaml``."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from aisre.act.catalog import CatalogFile, backstage_yaml, catalog
from aisre.core.errors import PermanentError
from aisre.core.timefmt import parse_time
from aisre.present.api import models
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx

CATALOG_FILE_KEY = "catalog_file"
DEFAULT_SINCE = "7d"


async def catalog_document(request: Request, since: str | None = None) -> dict[str, Any]:
    """The catalog for this request's tenant and period (API, CLI and page share it)."""
    ctx = _ctx(request)
    q = request.query_params
    now = time.time_ns()
    raw = (q.get("since") or since or DEFAULT_SINCE).strip()
    since_ns = None if raw == "all" else parse_time(raw, now, "since")
    until_ns = parse_time(q["until"], now, "until") if q.get("until") else None
    if since_ns is not None and until_ns is not None and until_ns <= since_ns:
        raise PermanentError("until must be after since")
    declared = ctx.extra.get(CATALOG_FILE_KEY)
    tenant = ctx.tenant_for(request)
    return await run_in_threadpool(
        catalog, ctx.store, tenant, declared if isinstance(declared, CatalogFile) else None, ctx.slos.specs(tenant),
        since_ns, until_ns,
    )


@operation("catalog", models.Catalog, media_type=("application/json", "application/yaml"))
async def catalog_get(request: Request) -> Response:
    """
    summary: Service catalog from the traces, merged with the declared catalog file; JSON or Backstage YAML
    description: >
      Every service that sent spans in the period (or is declared in the server's catalog file,
      setting catalog_file): its journeys, owner, tier, runbook, on-call and SLOs, and what it calls:
      models (by provider), vector stores, tools, databases, downstream HTTP hosts and other traced
      services, each with calls, errors, error rate and latency (mean, p50, p95). With
      format=backstage the same as Backstage catalog-info.yaml entities (Component per service,
      Resource per dependency, System per journey, Group per owner). See docs/catalog.md.
    parameters:
      - {name: since, in: query, schema: {type: string, default: 7d}, description: "RFC 3339 time, look-back (e.g. 7d) or 'all'"}
      - {name: until, in: query, schema: {type: string}, description: "RFC 3339 time or look-back (default now)"}
      - {name: format, in: query, schema: {type: string, enum: [json, backstage], default: json}}
    responses:
      200: {description: "{services: [{name, journeys, owner, tier, runbook, on_call, slos, seen, declared, spans, errors, dependencies: [{kind, provider, name, calls, errors, error_rate, mean_ms, p50_ms, p95_ms, journeys}]}], journeys: [{name, services, slos, owner}]}"}
      400: {description: Bad parameter.}
    """
    doc = await catalog_document(request)
    fmt = (request.query_params.get("format") or "json").strip()
    if fmt == "backstage":
        return PlainTextResponse(backstage_yaml(doc), media_type="application/yaml")
    if fmt != "json":
        raise PermanentError(f"format must be json or backstage; got {fmt!r}")
    return ORJSONResponse(doc)


CATALOG_ROUTES = [Route("/api/catalog", catalog_get, methods=["GET"])]
