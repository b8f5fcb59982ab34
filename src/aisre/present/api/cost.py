"""Cost routes: attribution, spike explanation, prices and reprice, budgets, headroom."""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.core.errors import PermanentError
from aisre.core.jsonbody import parse_json
from aisre.core.timefmt import parse_time
from aisre.evaluate.cost import CostEngine
from aisre.present.api import models
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _time_param

_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def engine(request: Request) -> CostEngine:
    found = _ctx(request).extra.get("cost")
    if not isinstance(found, CostEngine):
        raise PermanentError("cost observability is not configured on this server")
    return found


def _tenant(request: Request) -> str:
    return _ctx(request).tenant_for(request)


def parse_duration_ns(text: str, field: str) -> int:
    """'90s', '5m', '1h', '1d', '1w' → nanoseconds."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise PermanentError(f"{field} must be a duration such as 1m, 1h or 1d; got {text!r}")
    return int(match.group(1)) * _UNIT_S[match.group(2)] * 10**9


def parse_window(text: str | None, field: str, now_ns: int) -> tuple[int, int]:
    """'FROM..TO' (RFC 3339 or look-backs like 2d) → [from, to) in ns."""
    if not text or ".." not in text:
        raise PermanentError(f"{field} must be FROM..TO, e.g. 2026-11-20T00:00:00Z..2026-11-21T00:00:00Z; got {text!r}")
    a, b = text.split("..", 1)
    start, end = parse_time(a, now_ns, f"{field} start"), parse_time(b, now_ns, f"{field} end")
    if end <= start:
        raise PermanentError(f"{field}: the end must be after the start")
    return start, end


def budget_now(request: Request) -> int:
    """The ``now`` a budget is forecast at: ``?now=`` (RFC 3339 or a look-back) or the current time."""
    return _time_param(request, "now") or time.time_ns()


async def _json_body(request: Request) -> Any:
    return parse_json(await request.body())


@operation("cost", models.CostBreakdown)
async def cost_breakdown(request: Request) -> Response:
    """
    summary: Cost and tokens by journey, model, provider, prompt version or release
    parameters:
      - {name: since, in: query, schema: {type: string}, description: RFC 3339 or look-back (e.g. 7d)}
      - {name: until, in: query, schema: {type: string}}
      - {name: by, in: query, schema: {type: string}, description: "comma list of journey, model, provider, prompt_version, service_version (default journey)"}
      - {name: bucket, in: query, schema: {type: string}, description: "time bucket, e.g. 1h or 1d (none: whole range)"}
      - {name: journey, in: query, schema: {type: string}}
      - {name: model, in: query, schema: {type: string}}
    responses:
      200: {description: "Groups with cost, tokens, calls, cost per 1K runs, retry and failed-run cost shares, cache hit rate; totals; unpriced models."}
    """
    q = request.query_params
    by = tuple(x.strip() for x in (q.get("by") or "journey").split(",") if x.strip())
    bucket = parse_duration_ns(q["bucket"], "bucket") if q.get("bucket") else None
    doc = await run_in_threadpool(
        engine(request).breakdown, _tenant(request), _time_param(request, "since"), _time_param(request, "until"),
        by, bucket, q.get("journey") or None, q.get("model") or None,
    )
    for group in doc["groups"]:
        group.pop("bucket_ns", None)  # the UI's; the API's time is the RFC 3339 bucket
    return ORJSONResponse(doc)


@operation("cost", models.CostExplanation)
async def cost_explain(request: Request) -> Response:
    """
    summary: Why a journey's cost changed between a baseline and a current window
    parameters:
      - {name: journey, in: query, required: true, schema: {type: string}}
      - {name: baseline, in: query, required: true, schema: {type: string}, description: "FROM..TO (RFC 3339)"}
      - {name: current, in: query, required: true, schema: {type: string}, description: "FROM..TO (RFC 3339)"}
    responses:
      200: {description: "status explained: journey, baseline, current, delta_usd, causes (cause, share, evidence, exemplar_trace_ids) sorted by share, not_named, minimums and the decomposition. status insufficient_data (too few runs or billed model calls in a window): the counts of both windows (runs, billed_calls, cost_usd), minimums, shortfalls, and no cause."}
      400: {description: Bad windows.}
      404: {description: No runs of the journey in either window.}
    """
    q = request.query_params
    journey = q.get("journey")
    if not journey:
        raise PermanentError("journey is required")
    now = time.time_ns()
    baseline = parse_window(q.get("baseline"), "baseline", now)
    current = parse_window(q.get("current"), "current", now)
    doc = await run_in_threadpool(engine(request).explain, _tenant(request), journey, baseline, current)
    return ORJSONResponse(doc)


@operation("cost", models.PriceCatalog)
async def price_list(request: Request) -> Response:
    """
    summary: The price catalog in force and this tenant's overrides
    responses:
      200: {description: Catalog version, models with USD per 1M tokens, overrides.}
    """
    return ORJSONResponse(engine(request).prices_document(_tenant(request)))


@operation("cost", models.PriceOverride)
async def price_override(request: Request) -> Response:
    """
    summary: Set this tenant's price for a model (from 'effective' on, default now); reprice to apply it to past spans
    requestBody: {content: {application/json: {schema: {type: object, properties: {model: {type: string}, input: {type: number}, output: {type: number}, cached_input: {type: number}, provider: {type: string}, effective: {type: string}}}}}}
    responses:
      200: {description: The override as stored.}
      400: {description: Bad prices.}
    """
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise PermanentError("a price override must be a JSON object")
    now = time.time_ns()
    effective = parse_time(str(body["effective"]), now, "effective") if body.get("effective") else now
    data = {k: v for k, v in body.items() if k != "effective"}
    cost = engine(request)
    override = await run_in_threadpool(cost.set_override, _tenant(request), data, effective)
    doc = {"model": override.model, "version": override.version_id, "input": override.input,
           "output": override.output, "cached_input": override.cached_input}
    await _ctx(request).audit(request, "price.override", f"model {override.model}", None, doc)
    return ORJSONResponse(doc)


@operation("cost", models.Deleted)
async def price_override_delete(request: Request) -> Response:
    """
    summary: Remove this tenant's overrides of a model
    responses:
      200: {description: Removed.}
      404: {description: No override for the model.}
    """
    model = request.path_params["model"]
    await run_in_threadpool(engine(request).delete_override, _tenant(request), model)
    await _ctx(request).audit(request, "price.delete", f"model {model}", {"model": model}, None)
    return ORJSONResponse({"deleted": model})


@operation("cost", models.Repriced)
async def reprice(request: Request) -> Response:
    """
    summary: Recompute the cost of stored model calls since a time with the prices in force at each call's time (catalog versions and overrides)
    requestBody: {content: {application/json: {schema: {type: object, required: [since], properties: {since: {type: string}, until: {type: string}}}}}}
    responses:
      200: {description: "Spans and runs repriced, cost before and after, unpriced models."}
    """
    body = await _json_body(request)
    if not isinstance(body, dict) or not body.get("since"):
        raise PermanentError("reprice needs 'since' (RFC 3339 or a look-back such as 30d)")
    now = time.time_ns()
    since = parse_time(str(body["since"]), now, "since")
    until = parse_time(str(body["until"]), now, "until") if body.get("until") else None
    result = await run_in_threadpool(engine(request).reprice, _tenant(request), since, until)
    await _ctx(request).audit(request, "price.reprice", "spans", {"since": body["since"], "until": body.get("until")}, result)
    return ORJSONResponse(result)


@operation("cost", models.UnpricedList)
async def unpriced(request: Request) -> Response:
    """
    summary: Models with calls the catalog cannot price (costed at 0, never guessed)
    responses:
      200: {description: Models with their unpriced calls and tokens.}
    """
    rows = await run_in_threadpool(
        engine(request).unpriced, _tenant(request), _time_param(request, "since"), _time_param(request, "until")
    )
    return ORJSONResponse({"unpriced": rows})


@operation("cost", models.BudgetList)
async def budget_list(request: Request) -> Response:
    """
    summary: Cost budgets with spend so far, forecast at period end and projected exhaustion
    parameters:
      - {name: now, in: query, schema: {type: string}, description: "forecast as of this time (RFC 3339 or look-back; default now)"}
    responses:
      200: {description: "Budgets: spent, forecast (forecast_model and the history it stood on, forecast_basis), its 80 % band, projected_exhaustion, alert, as_of."}
    """
    budgets = await run_in_threadpool(engine(request).budgets, _tenant(request), budget_now(request))
    return ORJSONResponse({"budgets": budgets})


@operation("cost", models.BudgetStatus)
async def budget_put(request: Request) -> Response:
    """
    summary: Create or replace a weekly or monthly cost budget (per journey, or the whole tenant)
    requestBody: {content: {application/json: {schema: {type: object, required: [name, amount_usd], properties: {name: {type: string}, journey: {type: string}, period: {type: string, enum: [week, month]}, amount_usd: {type: number}, thresholds: {type: array, items: {type: number}}}}}}}
    responses:
      200: {description: The budget's status.}
      400: {description: Bad budget.}
    """
    body = await _json_body(request)
    cost = engine(request)
    tenant = _tenant(request)
    row = await run_in_threadpool(cost.put_budget, tenant, body)
    await _ctx(request).audit(request, "budget.put", f"budget {row['name']}", None, row)
    return ORJSONResponse(await run_in_threadpool(cost.budget, tenant, row["name"]))


@operation("cost", models.BudgetStatus)
async def budget_detail(request: Request) -> Response:
    """
    summary: One budget with its cumulative spend and forecast series
    parameters:
      - {name: now, in: query, schema: {type: string}, description: "forecast as of this time (RFC 3339 or look-back; default now)"}
    responses:
      200: {description: The budget.}
      404: {description: Unknown budget.}
    """
    doc = await run_in_threadpool(engine(request).budget, _tenant(request), request.path_params["name"], budget_now(request))
    return ORJSONResponse(doc)


@operation("cost", models.Deleted)
async def budget_delete(request: Request) -> Response:
    """
    summary: Delete a budget
    responses:
      200: {description: Deleted.}
      404: {description: Unknown budget.}
    """
    name = request.path_params["name"]
    await run_in_threadpool(engine(request).delete_budget, _tenant(request), name)
    await _ctx(request).audit(request, "budget.delete", f"budget {name}", {"name": name}, None)
    return ORJSONResponse({"deleted": name})


@operation("cost", models.Headroom)
async def headroom(request: Request) -> Response:
    """
    summary: Peak requests and tokens per minute per model against configured provider limits
    parameters:
      - {name: since, in: query, schema: {type: string}, description: default 1d}
      - {name: until, in: query, schema: {type: string}}
    responses:
      200: {description: Per model peaks, limits, headroom and warnings.}
    """
    now = time.time_ns()
    since = _time_param(request, "since") or now - 86400 * 10**9
    until = _time_param(request, "until") or now
    rows = await run_in_threadpool(engine(request).headroom, _tenant(request), since, until)
    return ORJSONResponse({"models": rows})


@operation("cost", models.RateLimit)
async def rate_limit_put(request: Request) -> Response:
    """
    summary: Set a provider rate limit for a model (requests and/or tokens per minute) and its warning share
    requestBody: {content: {application/json: {schema: {type: object, required: [model], properties: {model: {type: string}, requests_per_min: {type: number}, tokens_per_min: {type: number}, warn_at: {type: number}}}}}}
    responses:
      200: {description: The limit as stored.}
    """
    body = await _json_body(request)
    limit = await run_in_threadpool(engine(request).put_rate_limit, _tenant(request), body)
    await _ctx(request).audit(request, "rate_limit.put", f"model {body.get('model') if isinstance(body, dict) else '?'}", None, limit)
    return ORJSONResponse(limit)


COST_ROUTES = [
    Route("/api/cost/breakdown", cost_breakdown, methods=["GET"]),
    Route("/api/cost/explain", cost_explain, methods=["GET"]),
    Route("/api/cost/prices", price_list, methods=["GET"]),
    Route("/api/cost/prices", price_override, methods=["PUT"]),
    Route("/api/cost/prices/{model}", price_override_delete, methods=["DELETE"]),
    Route("/api/cost/reprice", reprice, methods=["POST"]),
    Route("/api/cost/unpriced", unpriced, methods=["GET"]),
    Route("/api/cost/budgets", budget_list, methods=["GET"]),
    Route("/api/cost/budgets", budget_put, methods=["PUT"]),
    Route("/api/cost/budgets/{name}", budget_detail, methods=["GET"]),
    Route("/api/cost/budgets/{name}", budget_delete, methods=["DELETE"]),
    Route("/api/cost/headroom", headroom, methods=["GET"]),
    Route("/api/cost/rate-limits", rate_limit_put, methods=["PUT"]),
]
