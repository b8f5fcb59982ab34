"""The "needs attention" strip every page shows under its header: open incidents with their
severity, firing page alerts, and error budgets in danger, each linking to its page.

The strip is built once per page view (and once per live refresh, which re-fetches the page),
and served alone at ``/ui/attention`` for pages that have no live refresh of their own.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from aisre.core.rows import AlertEpisode, Incident
from aisre.present.api.context import AppContext
from aisre.present.ui import format as fmt

log = logging.getLogger(__name__)

# An error budget with this share or less left is "in danger" (the UI's red level too).
DANGER_REMAINING = 0.1
MAX_ITEMS = 8  # the rest is summarised as "+N more" linking to the list pages
_SEVERITY_ORDER = ("sev1", "sev2", "sev3", "sev4")


def _item(kind: str, level: str, label: str, href: str, title: str) -> dict[str, str]:
    return {"kind": kind, "level": level, "label": label, "href": href, "title": title}


def _incident_items(incidents: list[Incident]) -> list[dict[str, str]]:
    def rank(i: Incident) -> tuple[int, int]:
        sev = str(i.get("severity"))
        return (_SEVERITY_ORDER.index(sev) if sev in _SEVERITY_ORDER else len(_SEVERITY_ORDER), -int(i.get("opened_ns") or 0))

    items = []
    for i in sorted(incidents, key=rank):
        sev = str(i.get("severity") or "?")
        level = "bad" if sev in ("sev1", "sev2") else "warn"
        state = str(i.get("state") or "open")
        items.append(_item(
            "incident", level, f"{sev} #{i['id']} {i.get('title') or ''}".strip(), f"/incidents/{i['id']}",
            f"incident #{i['id']}, {sev}, {state}" + (f", journey {i['journey']}" if i.get("journey") else ""),
        ))
    return items


def _alert_items(alerts: list[AlertEpisode]) -> list[dict[str, str]]:
    items = []
    for a in alerts:
        if a.get("state") != "firing" or a.get("severity") != "page":
            continue
        name = str(a.get("slo") or "")
        if name.startswith("budget:"):  # cost-budget episodes share the alerts table
            href, label = "/cost", f"page: cost {name.removeprefix('budget:')}"
        else:
            href, label = f"/slos/{quote(name, safe='')}", f"page: {name}"
        items.append(_item("page", "bad", label, href, str(a.get("summary") or label)))
    return items


def _budget_items(statuses: list[dict[str, Any]]) -> list[dict[str, str]]:
    items = []
    for doc in statuses:
        remaining = (doc.get("error_budget") or {}).get("remaining_ratio")
        exhausted = doc.get("status") == "exhausted"
        if not exhausted and (remaining is None or not math.isfinite(remaining) or remaining > DANGER_REMAINING):
            continue
        left = "exhausted" if exhausted or remaining is None or remaining <= 0 else f"{fmt.budget(remaining)} left"
        name = str(doc.get("name"))
        items.append(_item(
            "budget", "bad" if "exhausted" in left else "warn", f"budget {name}: {left}",
            f"/slos/{quote(name, safe='')}", f"error budget of SLO {name}: {left}",
        ))
    return items


def collect(ctx: AppContext, tenant: str) -> dict[str, Any]:
    """What needs attention now for ``tenant`` (blocking: run it in a thread)."""
    # Store rows, not incident documents: the strip needs no evidence or formatted times.
    incidents = ctx.incidents.store.list_incidents(tenant, "active", None, None, None, 50) if ctx.incidents is not None else []
    alerts = ctx.store.list_alerts(tenant, "firing", None, 200)
    statuses = ctx.slos.statuses(tenant)
    # One entry per thing: an incident already names its page alert and budget.
    covered = {str(i.get("slo")) for i in incidents if i.get("slo")}
    pages = [a for a in alerts if str(a.get("slo")) not in covered]
    paged = {str(a.get("slo")) for a in pages if a.get("state") == "firing" and a.get("severity") == "page"}
    budgets = [d for d in statuses if str(d.get("name")) not in covered | paged]
    items = [*_incident_items(incidents), *_alert_items(pages), *_budget_items(budgets)]
    return {
        "items": items[:MAX_ITEMS],
        "more": max(0, len(items) - MAX_ITEMS),
        "counts": {
            "incidents": len(incidents),
            "pages": sum(1 for a in alerts if a.get("state") == "firing" and a.get("severity") == "page"),
            "budgets": len(_budget_items(statuses)),
        },
        "at_ns": time.time_ns(),
    }


async def for_request(request: Request) -> dict[str, Any] | None:
    """The strip's content for this request's tenant; None (no strip) if it cannot be had."""
    ctx: AppContext = request.app.state.ctx
    try:
        tenant = ctx.tenant_for(request)
        return await run_in_threadpool(collect, ctx, tenant)
    except Exception:  # the strip must never take a page down with it
        log.warning("attention strip unavailable", exc_info=True)
        return None
