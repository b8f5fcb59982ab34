"""``/api/readiness/{journey}``: the launch-readiness checklist of a journey, evaluated from facts;
GET uses the server's template (setting readiness_template), POST the template in the body."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.act.readiness import Context, Template, evaluate_readiness, parse_template
from aisre.evaluate.gate.config import GateConfig
from aisre.present.api import models
from aisre.present.api.check import server_requirements
from aisre.present.api.context import AppContext
from aisre.present.api.gate import GATE_CONFIG_KEY
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx

READINESS_TEMPLATE_KEY = "readiness_template"
RECEIVERS_KEY = "receivers"


def readiness_context(ctx: AppContext) -> Context:
    """What the server was started with: receivers taking new incidents, its gate file and policy."""
    receivers = ctx.extra.get(RECEIVERS_KEY)
    gate = ctx.extra.get(GATE_CONFIG_KEY)
    opened = [r for r in receivers if "opened" in getattr(r, "events", ())] if isinstance(receivers, list) else []
    return Context(receivers=len(opened), gate_configured=isinstance(gate, GateConfig),
                   policy_rules=len(gate.policy) if isinstance(gate, GateConfig) else 0,
                   requirements=tuple(server_requirements(ctx)))


async def readiness_document(request: Request, template: Template | None = None) -> dict[str, Any]:
    """The checklist for the path's journey (API and page share it)."""
    ctx = _ctx(request)
    journey = request.path_params["journey"]
    tenant = ctx.tenant_for(request)
    if template is None:
        found = ctx.extra.get(READINESS_TEMPLATE_KEY)
        template = found if isinstance(found, Template) else Template()
    return await run_in_threadpool(
        evaluate_readiness, ctx.store, tenant, journey, ctx.slos.specs(tenant), readiness_context(ctx), template,
    )


@operation("readiness", models.Readiness)
async def readiness_get(request: Request) -> Response:
    """
    summary: Launch-readiness checklist of a journey, evaluated from facts (never ticked by hand)
    description: >
      Each item compares a fact with a value: SLOs defined with owner, tier and runbook; alerts
      routed to a receiver; runs seen; a release gate configured and a verdict on record; no
      telemetry-check violation in the journey's spans; a cost budget; a load test recorded (a
      change of kind loadtest); an error-budget policy. `ready` is true when every required item
      passes. The server's template (setting readiness_template) adds items and switches built-ins
      off (docs/readiness.md).
    parameters:
      - {name: journey, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: "{journey, ready, passed, total, failed_required, items: [{id, title, required, passed, fact, op, expected, value, fix}], facts, detail}"}
    """
    return ORJSONResponse(await readiness_document(request))


@operation("readiness", models.Readiness)
async def readiness_post(request: Request) -> Response:
    """
    summary: Launch-readiness checklist with the checklist template (YAML) in the body
    parameters:
      - {name: journey, in: path, required: true, schema: {type: string}}
      - {name: template_name, in: query, schema: {type: string}, description: file name shown in errors}
    requestBody:
      required: true
      content:
        application/yaml: {schema: {type: string}}
    responses:
      200: {description: The checklist, as GET answers it.}
      400: {description: "The template has errors: each with file, line and field."}
    """
    body = await request.body()
    template = await run_in_threadpool(parse_template, body, request.query_params.get("template_name", "request body"))
    return ORJSONResponse(await readiness_document(request, template))


@operation("readiness", models.GamedayScore)
async def gameday_score(request: Request) -> Response:
    """
    summary: "Score a game day: detection, incident, the layer triage named, mitigation, false alarms"
    description: >
      For a fault injected into `journey` over [start, end): time to the first alert and page (and
      whether the page came within the SLO's page window), whether an incident opened, the layer
      its triage named against the expected one (from `expect`, or the demo `scenario`), time to
      mitigate, and alerts of other journeys that fired meanwhile.
    parameters:
      - {name: journey, in: query, required: true, schema: {type: string}}
      - {name: start, in: query, required: true, schema: {type: string}, description: RFC 3339 time the fault began}
      - {name: end, in: query, schema: {type: string}, description: RFC 3339 time it ended (default now)}
      - {name: scenario, in: query, schema: {type: string}, description: the demo scenario injected}
      - {name: expect, in: query, schema: {type: string}, description: "the layer triage should name, e.g. model provider"}
    responses:
      200: {description: The score.}
      400: {description: Bad parameter.}
    """
    import time

    from aisre.act.gameday import score
    from aisre.core.errors import PermanentError
    from aisre.core.timefmt import parse_time

    ctx = _ctx(request)
    q = request.query_params
    now = time.time_ns()
    journey = (q.get("journey") or "").strip()
    if not journey or not q.get("start"):
        raise PermanentError("journey and start are required")
    start = parse_time(q["start"], now, "start")
    end = parse_time(q["end"], now, "end") if q.get("end") else now
    tenant = ctx.tenant_for(request)
    doc = await run_in_threadpool(score, ctx.store, tenant, journey, start, end, ctx.slos.specs(tenant),
                                  q.get("expect") or None, q.get("scenario") or None)
    return ORJSONResponse(doc)


READINESS_ROUTES = [
    Route("/api/gameday/score", gameday_score, methods=["GET"]),
    Route("/api/readiness/{journey}", readiness_get, methods=["GET"]),
    Route("/api/readiness/{journey}", readiness_post, methods=["POST"]),
]
