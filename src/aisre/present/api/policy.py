"""``/api/policies`` and ``/api/policy/*``: agent policies, inline decisions, decision records
and violations found over traces (evaluate/policy/)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.core.errors import PermanentError
from aisre.core.jsonbody import parse_json
from aisre.core.timefmt import rfc3339
from aisre.evaluate.policy.service import PolicyService
from aisre.present.api import models
from aisre.present.api.context import AppContext
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _int_param, _time_param

POLICY_KEY = "policy"
MAX_LIMIT = 10_000


def _limit(request: Request, default: int) -> int:
    """``limit`` between 1 and MAX_LIMIT (400 otherwise)."""
    value = _int_param(request, "limit", default)
    if not 1 <= value <= MAX_LIMIT:
        raise PermanentError(f"limit must be between 1 and {MAX_LIMIT}; got {value}")
    return value


def service_of(ctx: AppContext) -> PolicyService:
    """The server's policy service (built by the composition root)."""
    found = ctx.extra.get(POLICY_KEY)
    if not isinstance(found, PolicyService):
        found = PolicyService(ctx.store)
        ctx.extra[POLICY_KEY] = found
    return found


@operation("policy", models.PolicyApplied)
async def policies_put(request: Request) -> Response:
    """
    summary: Replace the tenant's agent policies with the YAML in the body; nothing changes if any policy is invalid
    description: >
      The set gets a version (the content hash of its policies); applying the same content again
      changes nothing. Every change is in the audit log (policy.apply) with the set before and after.
    requestBody:
      content:
        application/yaml: {schema: {type: string}}
    responses:
      200: {description: "{bundle, changed, policies: [{name, version, rules}], before}"}
      400: {description: "Invalid policies: {error, errors: [{file, line, field, message}]}"}
    """
    ctx = _ctx(request)
    body = await request.body()
    doc = await run_in_threadpool(service_of(ctx).apply, ctx.tenant_for(request), body, ctx.actor(request))
    return ORJSONResponse(doc)


@operation("policy", models.PolicyList)
async def policies_get(request: Request) -> Response:
    """
    summary: The agent policies in force (rules, scope, versions) and the history of applied sets
    parameters:
      - {name: limit, in: query, schema: {type: integer, default: 50, minimum: 1, maximum: 10000}, description: Applied sets in the history}
    responses:
      200: {description: "{bundle, applied_at, policies: [...], history: [{bundle, applied_at, actor, policies}]}"}
      400: {description: A bad limit.}
    """
    ctx = _ctx(request)
    tenant = ctx.tenant_for(request)
    service = service_of(ctx)

    def read() -> dict[str, Any]:
        current = service.current(tenant)
        history = ctx.store.policy_sets(tenant, limit=_limit(request, 50))
        return {
            "bundle": current.bundle if current else None,
            "applied_at": rfc3339(current.applied_ns) if current else None,
            "policies": [] if current is None else [
                {"name": p.name, "version": p.version, "scope": {k: sorted(v) for k, v in (
                    ("journeys", p.scope.journeys), ("services", p.scope.services), ("agents", p.scope.agents))},
                 "rules": [{"name": r.name, "kind": r.kind, "effect": r.effect} for r in p.rules]}
                for p in current.policies],
            "history": [{"bundle": h["bundle"], "applied_at": rfc3339(h["applied_ns"]), "actor": h["actor"],
                         "policies": h["policies"]} for h in history],
        }

    return ORJSONResponse(await run_in_threadpool(read))


@operation("policy", models.PolicyDecision)
async def policy_decide(request: Request) -> Response:
    """
    summary: Decide whether an agent may make a tool or model call now, and record the decision
    description: >
      Body: {journey, service, agent, session_id, trace_id, span_id, run_start_ns, action: {type: tool|model, name,
      args, tokens, cost_usd, depth, start_ns, guarded}, history: [earlier actions of the run]}. The
      answer is allow or deny with every reason; the decision record keeps a keyed digest of the input
      and the input as the tenant's redaction leaves it; denies and warnings are also in the audit log
      (policy.decide.deny / policy.decide.allow, target decision:<id>). Needs an ingest (or admin) key.
    requestBody:
      content:
        application/json: {schema: {type: object}}
    responses:
      200: {description: "{id, result, reasons, policies, bundle, input_digest, undetermined}"}
      400: {description: The body is malformed; the message names the field.}
    """
    ctx = _ctx(request)
    body = parse_json(await request.body())
    service, tenant, actor = service_of(ctx), ctx.tenant_for(request), ctx.actor(request)
    if service.answers_from_memory(tenant, body):
        # The rules and the running counts are in memory and the record is queued: a fraction
        # of a millisecond, cheaper on the event loop than a hop to the thread pool. A session
        # or window whose counts must be read from the store first takes the thread pool.
        return ORJSONResponse(service.decide(tenant, body, actor=actor))
    return ORJSONResponse(await run_in_threadpool(service.decide, tenant, body, None, True, actor))


def _record(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("tenant", "at_ns")}
    out["at"] = rfc3339(row["at_ns"])
    return out


@operation("policy", models.PolicyDecisionList)
async def policy_decisions(request: Request) -> Response:
    """
    summary: Decision records, newest first (admin keys only, like the audit log)
    parameters:
      - {name: journey, in: query, schema: {type: string}}
      - {name: rule, in: query, schema: {type: string}, description: Only decisions a rule gave a reason in}
      - {name: result, in: query, schema: {type: string, enum: [allow, deny]}}
      - {name: since, in: query, schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, default: 100, minimum: 1, maximum: 10000}}
    responses:
      200: {description: "{items: [{id, at, source, journey, trace_id, span_id, result, bundle, policies, rules, reasons, input_digest, input}]}"}
      400: {description: A bad parameter.}
    """
    ctx = _ctx(request)
    q = request.query_params
    rows = await run_in_threadpool(
        ctx.store.list_decisions, ctx.tenant_for(request), q.get("journey") or None, q.get("rule") or None,
        q.get("result") or None, _time_param(request, "since"), _limit(request, 100),
    )
    return ORJSONResponse({"items": [_record(r) for r in rows]})


@operation("policy", models.PolicyViolationList)
async def policy_violations(request: Request) -> Response:
    """
    summary: Violations found over committed runs, newest run first
    parameters:
      - {name: trace_id, in: query, schema: {type: string}}
      - {name: journey, in: query, schema: {type: string}}
      - {name: rule, in: query, schema: {type: string}}
      - {name: since, in: query, schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, default: 100, minimum: 1, maximum: 10000}}
    responses:
      200: {description: "{items: [{trace_id, journey, run_start, policy, version, rule, kind, effect, message, count, span_id, span_ids, start}]}"}
      400: {description: A bad parameter.}
    """
    ctx = _ctx(request)
    q = request.query_params
    rows = await run_in_threadpool(
        ctx.store.list_violations, ctx.tenant_for(request), q.get("trace_id") or None, q.get("journey") or None,
        q.get("rule") or None, _time_param(request, "since"), _limit(request, 100),
    )
    items = []
    for r in rows:
        doc = {k: v for k, v in r.items() if k not in ("run_start_ns", "start_ns")}
        doc["run_start"], doc["start"] = rfc3339(r["run_start_ns"]), rfc3339(r["start_ns"])
        items.append(doc)
    return ORJSONResponse({"items": items})


POLICY_ROUTES = [
    Route("/api/policies", policies_put, methods=["PUT"]),
    Route("/api/policies", policies_get, methods=["GET"]),
    Route("/api/policy/decide", policy_decide, methods=["POST"]),
    Route("/api/policy/decisions", policy_decisions, methods=["GET"]),
    Route("/api/policy/violations", policy_violations, methods=["GET"]),
]
