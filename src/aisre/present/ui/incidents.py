"""Incident pages: the list (with MTTD/MTTA/MTTR and recent changes), one incident
(timeline, triage evidence, suspects, exemplar traces, action items, notifications, and
buttons to acknowledge, mitigate and resolve) and its postmortem."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from aisre.act.postmortem import render_html
from aisre.core.errors import NotFound, PermanentError
from aisre.core.timefmt import rfc3339
from aisre.present.ui.pages import REFRESH_SECONDS, _ctx, _error, _page, _render, own_form

METRICS_DAYS = 30


async def incidents_page(request: Request) -> Response:
    """Incidents newest first, the period's MTTD/MTTA/MTTR, and the latest changes."""
    manager = _ctx(request).incidents
    tenant = _ctx(request).tenant_for(request)
    state = request.query_params.get("state") or None
    since = time.time_ns() - METRICS_DAYS * 86400 * 10**9
    items = await run_in_threadpool(manager.list_incidents, state, None, None, None, 200, tenant)
    metrics = await run_in_threadpool(manager.metrics, since, None, tenant)
    changes = await run_in_threadpool(manager.store.list_changes, tenant, since, None, None, None, 15)
    context = {
        "nav": "incidents", "incidents": items, "metrics": metrics, "state": state or "",
        "changes": [dict(c, at=rfc3339(c["at_ns"])) for c in changes], "days": METRICS_DAYS,
        "refresh": REFRESH_SECONDS,
    }
    return _render(request, "incidents.html", context)


def _incident_id(request: Request) -> int:
    raw = request.path_params["id"]
    if not raw.isdigit():
        raise PermanentError(f"incident id must be a number; got {raw!r}")
    return int(raw)


ACTION_DUE_DAYS = 14  # the action-item form's default due date, from today


def _kept(ctx: Any, tenant: str, trace_ids: list[str]) -> dict[str, bool]:
    """Which exemplar traces the store still holds (the others expired past retention)."""
    out = {}
    for trace_id in trace_ids:
        try:
            ctx.store.get_trace(tenant, trace_id)
            out[trace_id] = True
        except NotFound:
            out[trace_id] = False
    return out


def parse_due(text: str, field: str = "due") -> int | None:
    """A due date from a form: '2026-12-20' (midnight UTC) or a full RFC 3339 time; '' is none."""
    value = text.strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 10**9
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PermanentError(f"{field} must be a date such as 2026-12-20 (or an RFC 3339 time); got {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 10**9)


async def incident_page(request: Request) -> Response:
    """One incident."""
    ctx = _ctx(request)
    tenant = ctx.tenant_for(request)
    doc = await run_in_threadpool(ctx.incidents.get, _incident_id(request), tenant)
    evidence = doc.get("evidence") or {}
    kept = await run_in_threadpool(_kept, ctx, tenant, list(evidence.get("exemplars") or []))
    context = {"nav": "incidents", "i": doc, "evidence": evidence, "kept": kept,
               "due_default": (datetime.now(UTC).date() + timedelta(days=ACTION_DUE_DAYS)).isoformat(),
               "today": datetime.now(UTC).date().isoformat(),
               "message": request.query_params.get("message"), "refresh": REFRESH_SECONDS}
    return _render(request, "incident.html", context)


async def incident_action(request: Request) -> Response:
    """Form posts from the incident page: acknowledge, mitigate, resolve, or add a note."""
    form = await own_form(request)
    if isinstance(form, Response):
        return form
    incident_id = _incident_id(request)
    action = form.get("action", "")
    by = form.get("by", "")
    manager = _ctx(request).incidents
    tenant = _ctx(request).tenant_for(request)
    try:
        if action == "note":
            await run_in_threadpool(manager.note, incident_id, by, form.get("text", ""), tenant)
            message = "note added"
        elif action == "action_item":
            due = parse_due(form.get("due", ""))
            await run_in_threadpool(manager.add_action_item, incident_id, by, form.get("title", ""),
                                    form.get("owner", "").strip() or None, due, tenant)
            message = "action item added"
        else:
            doc = await run_in_threadpool(manager.transition, incident_id, action, by, form.get("note") or None, tenant)
            message = f"now {doc['state']}"
    except PermanentError as exc:
        return _error(request, 400, "Not done", exc.message, nav="incidents")
    return RedirectResponse(f"/incidents/{incident_id}?message={message.replace(' ', '+')}", status_code=303)


async def postmortem_page(request: Request) -> Response:
    """The postmortem, generated now, rendered from its Markdown."""
    ctx = _ctx(request)
    incident_id = _incident_id(request)
    text = await run_in_threadpool(ctx.postmortems.markdown, incident_id, ctx.tenant_for(request))
    # markdown-it runs with raw HTML off: everything from traces and people is escaped.
    context = {"nav": "incidents", "incident_id": incident_id, "body": Markup(render_html(text))}
    return _render(request, "postmortem.html", context)


def incident_ui_routes() -> list[BaseRoute]:
    """Routes of the incident pages."""
    return [
        Route("/incidents", _page(incidents_page), methods=["GET"], include_in_schema=False),
        Route("/incidents/{id}", _page(incident_page), methods=["GET"], include_in_schema=False),
        Route("/incidents/{id}/act", _page(incident_action), methods=["POST"], include_in_schema=False),
        Route("/incidents/{id}/postmortem", _page(postmortem_page), methods=["GET"], include_in_schema=False),
    ]
