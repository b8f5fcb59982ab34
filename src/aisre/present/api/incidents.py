"""REST routes for changes, incidents, postmortems and the Alertmanager webhook."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.act.postmortem import render_html
from aisre.core.errors import PermanentError
from aisre.core.jsonbody import parse_json
from aisre.core.rows import Change
from aisre.core.timefmt import parse_due, rfc3339
from aisre.present.api import models
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _int_param, _time_param, path_id
from aisre.receive.alertmanager import parse_alertmanager
from aisre.receive.changes import CHANGE_KINDS, parse_change


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    doc = parse_json(raw)
    if not isinstance(doc, dict):
        raise PermanentError("the body must be a JSON object")
    return doc


def _id(request: Request, name: str = "id") -> int:
    return path_id(request, name, "action item" if name == "item_id" else "incident")


def _limit(request: Request, default: int = 100) -> int:
    limit = _int_param(request, "limit", default)
    if not 1 <= limit <= 1000:
        raise PermanentError(f"limit must be between 1 and 1000; got {limit}")
    return limit


def _str(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PermanentError(f"{name} must be a string")
    return value


def _due(doc: dict[str, Any]) -> int | None:
    raw = _str(doc, "due")
    return parse_due(raw, time.time_ns(), "due") if raw else None


def change_document(row: Change) -> dict[str, Any]:
    """A change as the API shows it."""
    return {
        "id": row["id"], "kind": row["kind"], "summary": row["summary"], "who": row.get("who"),
        "at": rfc3339(row["at_ns"]), "services": list(row.get("services") or []),
        "journeys": list(row.get("journeys") or []), "version": row.get("version"), "previous": row.get("previous"),
        "prompt_name": row.get("prompt_name"), "link": row.get("link"), "metadata": row.get("metadata"),
        "source": row["source"], "observed": rfc3339(row.get("observed_ns")),
    }


@operation("ingest", models.Change, status=201)
async def change_create(request: Request) -> Response:
    """
    summary: Record a change (deploy, model or prompt rollout, config or flag change)
    requestBody:
      content:
        application/json:
          schema:
            type: object
            required: [kind]
            properties:
              kind: {type: string, enum: [deploy, model, prompt, config, flag, loadtest, gameday]}
              summary: {type: string, description: What changed}
              who: {type: string}
              at: {type: string, description: "RFC 3339 (default: now)"}
              services: {type: array, items: {type: string}}
              journeys: {type: array, items: {type: string}}
              version: {type: string, description: The new service.version, model or prompt version}
              previous: {type: string}
              prompt_name: {type: string}
              link: {type: string}
              metadata: {type: object}
    responses:
      201: {description: The change as stored.}
      400: {description: A field is wrong; the message names it.}
    """
    ctx = _ctx(request)
    row = parse_change(await _body(request), ctx.tenant_for(request), time.time_ns())
    stored = await run_in_threadpool(_ctx(request).incidents.record_change, row)
    document = change_document(stored)
    await _ctx(request).audit(request, "change.record", f"change {document.get('id')}", None, document)
    return ORJSONResponse(document, status_code=201)


@operation("incidents", models.ChangeList)
async def change_list(request: Request) -> Response:
    """
    summary: Changes, newest first (recorded and detected)
    parameters:
      - {name: since, in: query, schema: {type: string}, description: "RFC 3339 time or look-back (e.g. 24h)"}
      - {name: until, in: query, schema: {type: string}}
      - {name: journey, in: query, schema: {type: string}, description: changes naming this journey or none}
      - {name: kind, in: query, schema: {type: string, enum: [deploy, model, prompt, config, flag, loadtest, gameday]}}
      - {name: limit, in: query, schema: {type: integer, default: 200}}
    responses:
      200: {description: "{items: [...]}"}
    """
    ctx = _ctx(request)
    kind = request.query_params.get("kind") or None
    if kind is not None and kind not in CHANGE_KINDS:
        raise PermanentError(f"kind must be one of {', '.join(CHANGE_KINDS)}; got {kind!r}")
    rows = await run_in_threadpool(
        _ctx(request).incidents.store.list_changes, ctx.tenant_for(request), _time_param(request, "since"),
        _time_param(request, "until"), request.query_params.get("journey") or None, kind, _limit(request, 200),
    )
    return ORJSONResponse({"items": [change_document(r) for r in rows]})


@operation("incidents", models.IncidentList)
async def incident_list(request: Request) -> Response:
    """
    summary: Incidents, newest first
    parameters:
      - {name: state, in: query, schema: {type: string, enum: [open, acknowledged, mitigated, resolved, active]}}
      - {name: journey, in: query, schema: {type: string}}
      - {name: since, in: query, schema: {type: string}}
      - {name: until, in: query, schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, default: 100}}
    responses:
      200: {description: "{items: [...]}"}
    """
    ctx = _ctx(request)
    items = await run_in_threadpool(
        _ctx(request).incidents.list_incidents, request.query_params.get("state") or None, request.query_params.get("journey") or None,
        _time_param(request, "since"), _time_param(request, "until"), _limit(request), ctx.tenant_for(request),
    )
    return ORJSONResponse({"items": items})


@operation("incidents", models.IncidentSummary, status=201)
async def incident_declare(request: Request) -> Response:
    """
    summary: Declare an incident by hand
    requestBody:
      content:
        application/json:
          schema:
            type: object
            required: [title, by]
            properties:
              title: {type: string}
              by: {type: string}
              journey: {type: string}
              severity: {type: string, enum: [sev1, sev2, sev3, sev4]}
              commander: {type: string}
    responses:
      201: {description: The incident.}
      400: {description: Bad field, or the journey already has an unresolved incident.}
    """
    doc = await _body(request)
    incident = await run_in_threadpool(
        lambda: _ctx(request).incidents.declare(
            _str(doc, "title") or "", _str(doc, "by") or "", _str(doc, "journey"), _str(doc, "severity") or "sev3",
            _str(doc, "commander"), _ctx(request).tenant_for(request)))
    await _ctx(request).audit(request, "incident.declare", f"incident {incident.get('id')}", None, _summary(incident))
    return ORJSONResponse(incident, status_code=201)


@operation("incidents", models.IncidentMetrics)
async def incident_metrics(request: Request) -> Response:
    """
    summary: MTTD, MTTA and MTTR (mean and median) over incidents opened in a period, and action-item completion
    parameters:
      - {name: since, in: query, schema: {type: string}, description: "RFC 3339 time or look-back (e.g. 30d)"}
      - {name: until, in: query, schema: {type: string}}
    responses:
      200: {description: Figures in seconds.}
    """
    out = await run_in_threadpool(
        _ctx(request).incidents.metrics, _time_param(request, "since"), _time_param(request, "until"),
        _ctx(request).tenant_for(request))
    return ORJSONResponse(out)


@operation("incidents", models.Incident)
async def incident_detail(request: Request) -> Response:
    """
    summary: One incident with its alerts, timeline, triage evidence, action items and notification attempts
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
    responses:
      200: {description: "The incident: title and summary of its worst alert, impact_start and how it was found (impact), times, alerts, timeline, evidence (suspects made before impact start; changed_during: changes made after it, not ranked), action items, notifications."}
      404: {description: Unknown incident.}
    """
    doc = await run_in_threadpool(_ctx(request).incidents.get, _id(request), _ctx(request).tenant_for(request))
    return ORJSONResponse(doc)


@operation("incidents", models.IncidentSummary)
async def incident_update(request: Request) -> Response:
    """
    summary: Change an incident's severity, commander or title (each change is a timeline entry)
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
    requestBody:
      content:
        application/json:
          schema: {type: object, required: [by], properties: {by: {type: string}, severity: {type: string}, commander: {type: string}, title: {type: string}}}
    responses:
      200: {description: The incident.}
    """
    doc = await _body(request)
    before = await _current(request)
    out = await run_in_threadpool(
        lambda: _ctx(request).incidents.update(_id(request), _str(doc, "by") or "", _str(doc, "severity"),
                                         _str(doc, "commander"), _str(doc, "title"), _ctx(request).tenant_for(request)))
    await _ctx(request).audit(request, "incident.update", f"incident {_id(request)}", before, _summary(out))
    return ORJSONResponse(out)


_AUDITED_FIELDS = ("id", "state", "severity", "commander", "title", "journey")


def _summary(incident: dict[str, Any]) -> dict[str, Any]:
    return {k: incident.get(k) for k in _AUDITED_FIELDS}


async def _current(request: Request) -> dict[str, Any]:
    """The incident as it stands before a change (for the audit record)."""
    return _summary(await run_in_threadpool(_ctx(request).incidents.get, _id(request), _ctx(request).tenant_for(request)))


_ACTIONS = {"acknowledge": "acknowledge", "ack": "acknowledge", "mitigate": "mitigate", "resolve": "resolve"}


@operation("incidents", models.IncidentSummary)
async def incident_transition(request: Request) -> Response:
    """
    summary: Acknowledge, mitigate or resolve an incident
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
      - {name: action, in: path, required: true, schema: {type: string, enum: [acknowledge, ack, mitigate, resolve]}}
    requestBody:
      content:
        application/json:
          schema: {type: object, required: [by], properties: {by: {type: string}, note: {type: string}}}
    responses:
      200: {description: The incident in its new state.}
      400: {description: "The state does not allow it (e.g. acknowledged twice, or already resolved)."}
      404: {description: Unknown incident.}
    """
    action = _ACTIONS.get(request.path_params["action"])
    if action is None:
        raise PermanentError(f"action must be one of {', '.join(_ACTIONS)}; got {request.path_params['action']!r}")
    doc = await _body(request)
    before = await _current(request)
    out = await run_in_threadpool(
        lambda: _ctx(request).incidents.transition(_id(request), action, _str(doc, "by") or "", _str(doc, "note"),
                                             _ctx(request).tenant_for(request)))
    await _ctx(request).audit(request, f"incident.{action}", f"incident {_id(request)}", before, _summary(out))
    return ORJSONResponse(out)


@operation("incidents", models.IncidentSummary, status=201)
async def incident_note(request: Request) -> Response:
    """
    summary: Add a note to an incident's timeline
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
    requestBody:
      content:
        application/json:
          schema: {type: object, required: [by, text], properties: {by: {type: string}, text: {type: string}}}
    responses:
      201: {description: The incident.}
    """
    doc = await _body(request)
    out = await run_in_threadpool(
        lambda: _ctx(request).incidents.note(_id(request), _str(doc, "by") or "", _str(doc, "text") or "",
                                       _ctx(request).tenant_for(request)))
    await _ctx(request).audit(request, "incident.note", f"incident {_id(request)}", None,
                 {"by": _str(doc, "by"), "text": _str(doc, "text")})
    return ORJSONResponse(out, status_code=201)


@operation("incidents", models.IncidentSummary)
async def incident_evidence(request: Request) -> Response:
    """
    summary: Recompute an incident's triage evidence now
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
    responses:
      200: {description: The incident.}
    """
    out = await run_in_threadpool(_ctx(request).incidents.refresh, _id(request), _ctx(request).tenant_for(request))
    return ORJSONResponse(out)


@operation("incidents", models.ActionItem, status=201)
async def action_item_create(request: Request) -> Response:
    """
    summary: Add a tracked action item (owner, due date) to an incident
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
    requestBody:
      content:
        application/json:
          schema: {type: object, required: [by, title], properties: {by: {type: string}, title: {type: string}, owner: {type: string}, due: {type: string}}}
    responses:
      201: {description: The action item.}
    """
    doc = await _body(request)
    due = _due(doc)
    out = await run_in_threadpool(
        lambda: _ctx(request).incidents.add_action_item(_id(request), _str(doc, "by") or "", _str(doc, "title") or "",
                                                  _str(doc, "owner"), due, _ctx(request).tenant_for(request)))
    await _ctx(request).audit(request, "action_item.create", f"incident {_id(request)}", None, out)
    return ORJSONResponse(out, status_code=201)


@operation("incidents", models.ActionItem)
async def action_item_update(request: Request) -> Response:
    """
    summary: Mark an action item done (or open again), or change its owner or due date
    parameters:
      - {name: item_id, in: path, required: true, schema: {type: integer}}
    requestBody:
      content:
        application/json:
          schema: {type: object, required: [by], properties: {by: {type: string}, status: {type: string, enum: [open, done]}, owner: {type: string}, due: {type: string}}}
    responses:
      200: {description: The action item.}
    """
    doc = await _body(request)
    due = _due(doc)
    out = await run_in_threadpool(
        lambda: _ctx(request).incidents.update_action_item(_id(request, "item_id"), _str(doc, "by") or "",
                                                     _str(doc, "status"), _str(doc, "owner"), due,
                                                     _ctx(request).tenant_for(request)))
    await _ctx(request).audit(request, "action_item.update", f"action item {_id(request, 'item_id')}", None, out)
    return ORJSONResponse(out)


@operation("incidents", media_type=("text/markdown", "text/html"))
async def incident_postmortem(request: Request) -> Response:
    """
    summary: The incident's postmortem, generated now, as Markdown (default) or HTML
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
      - {name: format, in: query, schema: {type: string, enum: [markdown, html]}}
    responses:
      200: {description: "text/markdown or text/html"}
      404: {description: Unknown incident.}
    """
    fmt = request.query_params.get("format") or "markdown"
    if fmt not in ("markdown", "html"):
        raise PermanentError(f"format must be markdown or html; got {fmt!r}")
    text = await run_in_threadpool(_ctx(request).postmortems.markdown, _id(request), _ctx(request).tenant_for(request))
    if fmt == "html":
        return Response(render_html(text), media_type="text/html; charset=utf-8")
    return Response(text, media_type="text/markdown; charset=utf-8")


@operation("ingest", models.AlertmanagerResult)
async def alertmanager_webhook(request: Request) -> Response:
    """
    summary: Alertmanager webhook receiver (payload version 4); firing alerts open or join incidents, resolved ones calm them
    requestBody:
      content:
        application/json: {schema: {type: object}}
    responses:
      200: {description: "{alerts, incidents: [...]}"}
      400: {description: Not a version 4 webhook payload; the message names the field.}
      413: {description: More alerts than alertmanager_max_alerts.}
    """
    ctx = _ctx(request)
    body = await request.body()
    # Off the event loop: a webhook near the limit is megabytes of JSON and thousands of alerts.
    alerts = await run_in_threadpool(
        lambda: parse_alertmanager(parse_json(body), ctx.settings.alertmanager_max_alerts)
    )
    touched = await run_in_threadpool(ctx.incidents.on_alertmanager, alerts, ctx.tenant_for(request))
    return ORJSONResponse({"alerts": len(alerts), "incidents": touched})


INCIDENT_ROUTES = [
    Route("/api/changes", change_create, methods=["POST"]),
    Route("/api/changes", change_list, methods=["GET"]),
    Route("/api/incidents", incident_list, methods=["GET"]),
    Route("/api/incidents", incident_declare, methods=["POST"]),
    Route("/api/incidents/metrics", incident_metrics, methods=["GET"]),
    Route("/api/incidents/{id}", incident_detail, methods=["GET"]),
    Route("/api/incidents/{id}", incident_update, methods=["PATCH"]),
    Route("/api/incidents/{id}/notes", incident_note, methods=["POST"]),
    Route("/api/incidents/{id}/evidence", incident_evidence, methods=["POST"]),
    Route("/api/incidents/{id}/action-items", action_item_create, methods=["POST"]),
    Route("/api/incidents/{id}/postmortem", incident_postmortem, methods=["GET"]),
    Route("/api/incidents/{id}/{action}", incident_transition, methods=["POST"]),
    Route("/api/action-items/{item_id}", action_item_update, methods=["PATCH"]),
    Route("/api/alertmanager", alertmanager_webhook, methods=["POST"]),
]
