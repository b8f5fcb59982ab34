"""The Check page: the telemetry checker over what the tenant sent in a period, per service."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aisre.present.api.check import DEFAULT_SINCE, run_check
from aisre.present.ui.pages import SINCE_CHOICES, _page, _render

LEVELS = ("violation", "improvement", "information")


def service_views(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per service (worst coverage first): coverage, finding totals per level, and its findings."""
    names = sorted(set(doc["coverage"]) | {f["service"] for f in doc["findings"]})
    views = []
    for name in names:
        findings = [f for f in doc["findings"] if f["service"] == name]
        totals = {level: sum(f["count"] for f in findings if f["level"] == level) for level in LEVELS}
        views.append({"service": name, "coverage": doc["coverage"].get(name), "totals": totals, "findings": findings})
    return sorted(views, key=lambda v: (v["coverage"] if v["coverage"] is not None else 2.0, v["service"]))


async def check_page(request: Request) -> Response:
    """Coverage per service and its findings over the chosen period (default the last hour)."""
    doc = await run_check(request, DEFAULT_SINCE)
    since = (request.query_params.get("since") or DEFAULT_SINCE).strip()
    totals = {level: sum(f["count"] for f in doc["findings"] if f["level"] == level) for level in LEVELS}
    context = {
        "nav": "check", "doc": doc, "services": service_views(doc), "totals": totals,
        "since": since, "since_choices": SINCE_CHOICES,
        "service": request.query_params.get("service") or None, "journey": request.query_params.get("journey") or None,
    }
    return _render(request, "check.html", context)


def check_ui_routes() -> list[BaseRoute]:
    """Routes of the Check page."""
    return [Route("/check", _page(check_page), methods=["GET"], include_in_schema=False)]
