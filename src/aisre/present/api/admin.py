"""Keys and the audit log over REST (admin role only; see auth.required_role)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.core.auth import parse_expiry
from aisre.core.errors import PermanentError
from aisre.core.timefmt import rfc3339
from aisre.present.api import models
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _int_param, _time_param


def key_status(row: Mapping[str, Any], now_ns: int) -> str:
    """active, expired or revoked."""
    if row.get("revoked_ns") is not None:
        return "revoked"
    expires = row.get("expires_ns")
    return "expired" if expires is not None and expires <= now_ns else "active"


def _key_document(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "key_id": row["key_id"],
        "tenant": row["tenant"],
        "role": row["role"],
        "name": row["name"],
        "status": key_status(row, time.time_ns()),
        "created": rfc3339(row.get("created_ns")),
        "created_by": row.get("created_by"),
        "expires": rfc3339(row.get("expires_ns")),
        "revoked": rfc3339(row.get("revoked_ns")),
        "revoked_by": row.get("revoked_by"),
    }


@operation("admin", models.KeyList)
async def key_list(request: Request) -> Response:
    """
    summary: The caller's tenant's API keys (ids, roles, names, status active|expired|revoked, expiry; never the secrets)
    responses:
      200: {description: "{items: [...]}"}
    """
    ctx = _ctx(request)
    rows = await run_in_threadpool(ctx.store.list_keys, ctx.tenant_for(request))
    return ORJSONResponse({"items": [_key_document(r) for r in rows]})


@operation("admin", models.NewApiKey, status=201)
async def key_create(request: Request) -> Response:
    """
    summary: Create an API key in the caller's tenant; the secret is in this answer only
    description: >
      expires_at (RFC 3339, optional) makes the key stop working at that time (401 saying it
      expired). The store's first key must be an admin key: creating it turns auth on for good.
    requestBody:
      content:
        application/json: {schema: {type: object, required: [role], properties: {role: {type: string, enum: [ingest, read, admin]}, name: {type: string}, expires_at: {type: string, format: date-time}}}}
    responses:
      201: {description: "{key, key_id, tenant, role, name, expires}"}
      400: {description: Bad role, body or expiry.}
      409: {description: The first key of a store must be an admin key.}
    """
    ctx = _ctx(request)
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise PermanentError(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise PermanentError("body must be a JSON object: {role, name}")
    role, name, expires = body.get("role"), body.get("name", ""), body.get("expires_at")
    if not isinstance(role, str) or not isinstance(name, str):
        raise PermanentError("role and name must be strings")
    if expires is not None and not isinstance(expires, str):
        raise PermanentError("expires_at must be an RFC 3339 time such as 2027-01-31T00:00:00Z")
    expires_ns = parse_expiry(expires, time.time_ns(), "expires_at") if expires else None
    secret, record = await run_in_threadpool(
        ctx.keys.create_over_api, ctx.tenant_for(request), role, name, ctx.actor(request), expires_ns
    )
    public = {k: v for k, v in record.items() if k != "expires_ns"}
    return ORJSONResponse({"key": secret, **public, "expires": rfc3339(expires_ns)}, status_code=201)


@operation("admin", models.ApiKey)
async def key_revoke(request: Request) -> Response:
    """
    summary: Revoke an API key of the caller's tenant (takes effect at once)
    description: >
      The tenant's last admin key that is neither revoked nor expired cannot be revoked here
      (409): create another admin key first. Other tenants' admin keys do not count. Offline,
      with the server stopped, `aisre keys revoke --db FILE` can still revoke it.
    parameters:
      - {name: key_id, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: The revoked key.}
      404: {description: No such key in this tenant.}
      409: {description: The tenant's last usable admin key.}
    """
    ctx = _ctx(request)
    row = await run_in_threadpool(
        ctx.keys.revoke, ctx.tenant_for(request), request.path_params["key_id"], ctx.actor(request), True
    )
    return ORJSONResponse(_key_document(row))


@operation("admin", models.AuditList)
async def audit_list(request: Request) -> Response:
    """
    summary: Audit records of control-plane changes (actor, time, before/after), newest first
    parameters:
      - {name: action, in: query, schema: {type: string}, description: "an action (slo.apply) or a family (slo)"}
      - {name: since, in: query, schema: {type: string}, description: RFC 3339 time or look-back such as 24h}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
    responses:
      200: {description: "{items: [...]}"}
    """
    ctx = _ctx(request)
    limit = _int_param(request, "limit", 100)
    if not 1 <= limit <= 1000:
        raise PermanentError(f"limit must be between 1 and 1000; got {limit}")
    rows = await run_in_threadpool(
        ctx.store.list_audit, ctx.tenant_for(request), request.query_params.get("action") or None,
        _time_param(request, "since"), limit,
    )
    items = [{**{k: v for k, v in row.items() if k != "at_ns"}, "at": rfc3339(row["at_ns"])} for row in rows]
    return ORJSONResponse({"items": items})


@operation("admin", models.Retention)
async def retention_get(request: Request) -> Response:
    """
    summary: The caller's tenant's retention (raw spans and traces, minute rollups) and the exactly-once window
    responses:
      200: {description: "{tenant, retention_days, source: api|file|default, rollup_retention_days, dedup_window_s}"}
    """
    ctx = _ctx(request)
    return ORJSONResponse(await run_in_threadpool(ctx.store.retention, ctx.tenant_for(request)))


@operation("admin", models.Retention)
async def retention_put(request: Request) -> Response:
    """
    summary: Set how many days the caller's tenant's raw spans and traces are kept (audited)
    description: >
      Spans and traces whose trace ended longer ago than this are deleted in the background, a
      bounded step at a time; minute rollups, SLO counts, alerts, incidents and verdicts are
      kept. {"retention_days": null} goes back to retention_file or retention_days.
    requestBody:
      content:
        application/json: {schema: {type: object, required: [retention_days], properties: {retention_days: {type: number, nullable: true, minimum: 0, maximum: 36500}}}}
    responses:
      200: {description: The tenant's retention as it now stands.}
      400: {description: Not a number of days from 0 to 36500 (0 keeps raw spans for ever).}
    """
    ctx = _ctx(request)
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise PermanentError(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict) or "retention_days" not in body:
        raise PermanentError('body must be a JSON object: {"retention_days": DAYS}')
    tenant = ctx.tenant_for(request)
    before = await run_in_threadpool(ctx.store.retention, tenant)
    after = await run_in_threadpool(ctx.store.set_retention, tenant, body["retention_days"])
    await ctx.audit(request, "retention.set", tenant, before, after)
    return ORJSONResponse(after)


ADMIN_ROUTES = [
    Route("/api/retention", retention_get, methods=["GET"]),
    Route("/api/retention", retention_put, methods=["PUT"]),
    Route("/api/keys", key_list, methods=["GET"]),
    Route("/api/keys", key_create, methods=["POST"]),
    Route("/api/keys/{key_id}", key_revoke, methods=["DELETE"]),
    Route("/api/audit", audit_list, methods=["GET"]),
]
