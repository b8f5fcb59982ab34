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


async def _drill_body(request: Request) -> dict[str, Any]:
    from aisre.core.errors import PermanentError
    from aisre.core.jsonbody import parse_json

    raw = await request.body()
    doc = parse_json(raw) if raw.strip() else {}
    if not isinstance(doc, dict):
        raise PermanentError("the body must be a JSON object")
    unknown = sorted(set(doc) - {"journey", "scenario", "expect", "who", "at", "id"})
    if unknown:
        raise PermanentError(f"unknown field(s) {', '.join(unknown)}; known: at, expect, id, journey, scenario, who")
    for name in ("journey", "scenario", "expect", "who", "at"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise PermanentError(f"{name} must be a string")
    if doc.get("id") is not None and (not isinstance(doc["id"], int) or isinstance(doc["id"], bool)):
        raise PermanentError("id must be an integer")
    return doc


@operation("readiness", models.GamedayDrill)
async def gameday_start(request: Request) -> Response:
    """
    summary: "Start a game day: record on the server that a fault is being injected into a journey"
    description: >
      Records a change of kind `gameday` (metadata phase start) so the drill can be stopped and
      scored from any machine, and the review report lists it. Refused while a drill runs on the
      same journey.
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [journey]
            properties:
              journey: {type: string}
              scenario: {type: string, description: "the demo drill driven (e.g. provider-outage), if any"}
              expect: {type: string, description: "the layer triage should name, e.g. model provider"}
              who: {type: string}
              at: {type: string, description: RFC 3339 start (default now)}
    responses:
      201: {description: The drill as recorded.}
      400: {description: A field is wrong, or a drill already runs on the journey.}
    """
    import time

    from aisre.act.gameday import start_drill
    from aisre.core.timefmt import parse_time, rfc3339

    ctx = _ctx(request)
    doc = await _drill_body(request)
    now = time.time_ns()
    at = parse_time(doc["at"], now, "at") if doc.get("at") else None
    drill = await run_in_threadpool(start_drill, ctx.store, ctx.tenant_for(request), doc.get("journey") or "", now, at,
                                    doc.get("scenario"), doc.get("expect"), doc.get("who"))
    out = {**drill, "start": rfc3339(drill["start_ns"]), "end": None}
    await ctx.audit(request, "gameday.start", f"game day {drill['id']}", None, out)
    return ORJSONResponse(out, status_code=201)


@operation("readiness", models.GamedayScore)
async def gameday_stop(request: Request) -> Response:
    """
    summary: "Stop the running game day and score it"
    description: >
      Records the drill's end (a `gameday` change, phase stop) and answers its score. Name the
      journey (or the drill id) when drills run on several journeys.
    requestBody:
      content:
        application/json:
          schema:
            type: object
            properties:
              journey: {type: string}
              id: {type: integer}
              who: {type: string}
              at: {type: string, description: RFC 3339 end (default now)}
    responses:
      200: {description: The drill's score.}
      400: {description: A field is wrong, or drills run on several journeys.}
      404: {description: No drill is running.}
    """
    import time

    from aisre.act.gameday import score_drill, stop_drill
    from aisre.core.timefmt import parse_time

    ctx = _ctx(request)
    doc = await _drill_body(request)
    now = time.time_ns()
    tenant = ctx.tenant_for(request)
    at = parse_time(doc["at"], now, "at") if doc.get("at") else None
    drill = await run_in_threadpool(stop_drill, ctx.store, tenant, now, doc.get("journey"), doc.get("id"), at, doc.get("who"))
    await ctx.audit(request, "gameday.stop", f"game day {drill['id']}", None, {"id": drill["id"], "journey": drill["journey"]})
    result = await run_in_threadpool(score_drill, ctx.store, tenant, drill, ctx.slos.specs(tenant), now)
    return ORJSONResponse(result)


@operation("readiness", models.GamedayList)
async def gameday_list(request: Request) -> Response:
    """
    summary: "Game days recorded on the server, with their scores"
    parameters:
      - {name: since, in: query, schema: {type: string}, description: "RFC 3339 or a duration such as 30d (default 90d)"}
      - {name: running, in: query, schema: {type: boolean}, description: only drills still running}
    responses:
      200: {description: The drills, oldest first, each with its score.}
      400: {description: Bad parameter.}
    """
    import time

    from aisre.act.gameday import drills, score_drill
    from aisre.core.timefmt import parse_time

    ctx = _ctx(request)
    q = request.query_params
    now = time.time_ns()
    tenant = ctx.tenant_for(request)
    since = parse_time(q.get("since") or "90d", now, "since")
    running = (q.get("running") or "").lower() in ("1", "true", "yes")

    def load() -> list[dict[str, Any]]:
        specs = ctx.slos.specs(tenant)
        return [score_drill(ctx.store, tenant, d, specs, now) for d in drills(ctx.store, tenant, since)
                if not running or d["end_ns"] is None]

    return ORJSONResponse({"drills": await run_in_threadpool(load)})


READINESS_ROUTES = [
    Route("/api/gameday", gameday_list, methods=["GET"]),
    Route("/api/gameday/start", gameday_start, methods=["POST"]),
    Route("/api/gameday/stop", gameday_stop, methods=["POST"]),
    Route("/api/gameday/score", gameday_score, methods=["GET"]),
    Route("/api/readiness/{journey}", readiness_get, methods=["GET"]),
    Route("/api/readiness/{journey}", readiness_post, methods=["POST"]),
]
