"""The Readiness page: a journey's launch checklist, evaluated from facts, with how to fix each gap."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aisre.present.api.readiness import readiness_document
from aisre.present.api.routes import _ctx
from aisre.present.ui.pages import _page, _render


async def readiness_page(request: Request) -> Response:
    """One journey's checklist."""
    doc = await readiness_document(request)
    return _render(request, "readiness.html", {"nav": "scorecards", "doc": doc})


async def readiness_index(request: Request) -> Response:
    """Every journey with an SLO, linking to its checklist."""
    ctx = _ctx(request)
    journeys = sorted({s.journey for s in ctx.slos.specs(ctx.tenant_for(request)) if s.journey})
    return _render(request, "readiness.html", {"nav": "scorecards", "doc": None, "journeys": journeys})


def readiness_ui_routes() -> list[BaseRoute]:
    """Routes of the Readiness pages."""
    return [
        Route("/readiness", _page(readiness_index), methods=["GET"], include_in_schema=False),
        Route("/readiness/{journey}", _page(readiness_page), methods=["GET"], include_in_schema=False),
    ]
