"""``/api/scorecards``: reliability scorecards per journey, service or team over a period,
and the same facts as a flat export for catalog tools."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.act.scorecards import (
    SCOPES,
    TREND_PERIODS,
    Rules,
    facts_export,
    load_rules,
    parse_period,
    scorecards,
)
from aisre.core.errors import PermanentError
from aisre.present.api import models
from aisre.present.api.context import AppContext
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _int_param

SCORECARD_RULES_KEY = "scorecard_rules"


def server_rules(ctx: AppContext) -> Rules:
    """The rules file the server was started with (setting scorecard_rules), else the shipped DORA tiers."""
    found = ctx.extra.get(SCORECARD_RULES_KEY)
    if isinstance(found, Rules):
        return found
    rules = load_rules()
    ctx.extra[SCORECARD_RULES_KEY] = rules
    return rules


async def scorecard_document(request: Request, trend: int | None = None) -> dict[str, Any]:
    """The scorecards for this request's tenant, period, scope and name (API and page share it)."""
    ctx = _ctx(request)
    q = request.query_params
    now = time.time_ns()
    period = parse_period(q.get("period") or "month", now)
    scope = (q.get("scope") or "journey").strip()
    if scope not in SCOPES:
        raise PermanentError(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}")
    points = trend if trend is not None else _int_param(request, "trend", TREND_PERIODS)
    if not 1 <= points <= 24:
        raise PermanentError(f"trend must be between 1 and 24 periods; got {points}")
    tenant = ctx.tenant_for(request)
    name = (q.get("name") or "").strip() or None
    return await run_in_threadpool(
        scorecards, ctx.store, tenant, ctx.slos.specs(tenant), server_rules(ctx), period, now, scope, name, points,
    )


@operation("scorecards", models.Scorecards)
async def scorecards_get(request: Request) -> Response:
    """
    summary: Reliability scorecards per journey, service or team over a week, month or quarter
    description: >
      For each journey (or service, or team: the SLO owners) over the period: SLO attainment and
      error budget left per SLO, alerts and pages, MTTD / MTTA / MTTR, incidents by severity,
      change failure rate (changes followed within the rules' window by an incident or a failed
      gate verdict), deployment frequency, cost per 1K successful runs and its change from the
      previous period, open action items and their age; a level (bronze / silver / gold by
      default, the DORA 2023 clusters) from the server's rules file (setting scorecard_rules),
      each rule's outcome, and a trend of the headline facts over the last `trend` periods
      (docs/scorecards.md).
    parameters:
      - {name: period, in: query, schema: {type: string, default: month}, description: "week, month, quarter (the one holding now) or a label: 2026-11, 2026-W47, 2026-Q4"}
      - {name: scope, in: query, schema: {type: string, enum: [journey, service, team], default: journey}}
      - {name: name, in: query, schema: {type: string}, description: only this journey, service or team}
      - {name: trend, in: query, schema: {type: integer, minimum: 1, maximum: 24, default: 6}, description: periods in each trend, ending with this one}
    responses:
      200: {description: "{period, scope, levels, scorecards: [{scope, name, journeys, level, facts, slos, rules, trend}]}"}
      400: {description: Bad parameter.}
      404: {description: No journey, service or team of that name.}
    """
    return ORJSONResponse(await scorecard_document(request))


@operation("scorecards", models.ScorecardFacts)
async def scorecard_facts(request: Request) -> Response:
    """
    summary: The scorecards' facts as flat records per entity, for Backstage Tech Insights, Port or Cortex
    description: >
      One record per journey (entityRef system:default/NAME), service (component:) or team (group:):
      its level, every fact and each rule's outcome, time-stamped at the period's end.
    parameters:
      - {name: period, in: query, schema: {type: string, default: month}, description: "week, month, quarter or a label: 2026-11, 2026-W47, 2026-Q4"}
      - {name: scope, in: query, schema: {type: string, enum: [journey, service, team], default: journey}}
      - {name: name, in: query, schema: {type: string}, description: only this journey, service or team}
    responses:
      200: {description: "{version, generator, period, entities: [{entityRef, scope, name, timestamp, level, facts, checks}]}"}
      400: {description: Bad parameter.}
      404: {description: No journey, service or team of that name.}
    """
    return ORJSONResponse(facts_export(await scorecard_document(request, trend=2)))


SCORECARD_ROUTES = [
    Route("/api/scorecards", scorecards_get, methods=["GET"]),
    Route("/api/scorecards/facts", scorecard_facts, methods=["GET"]),
]
