"""The Policies page: the agent policies in force, violations per rule per day, the version
history, and (for admin keys) the newest decision records."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aisre.core.timefmt import rfc3339
from aisre.present.api.policy import service_of
from aisre.present.ui.pages import _ctx, _page, _render

DAY_NS = 86_400 * 10**9
DAYS = 7


def rule_rows(current: Any, counts: list[dict[str, Any]], today_ns: int) -> list[dict[str, Any]]:
    """Each rule of the set in force with its violating runs per day over the last DAYS days (oldest first)."""
    days = [today_ns - (DAYS - 1 - i) * DAY_NS for i in range(DAYS)]
    by_rule: dict[tuple[str, str], dict[int, int]] = {}
    for c in counts:
        by_rule.setdefault((c["policy"], c["rule"]), {})[int(c["bucket_ns"])] = int(c["runs"])
    rows = []
    for policy in current.policies if current is not None else ():
        for rule in policy.rules:
            per_day = [by_rule.get((policy.name, rule.name), {}).get(d, 0) for d in days]
            peak = max(per_day) or 1
            rows.append({"policy": policy.name, "version": policy.version, "rule": rule.name, "kind": rule.kind,
                         "effect": rule.effect, "total": sum(per_day),
                         "days": [{"day": (rfc3339(d) or "")[:10], "runs": n, "height": round(100 * n / peak)} for d, n in zip(days, per_day, strict=True)]})
    return rows


async def policies_page(request: Request) -> Response:
    """Rules in force with violations over time, version history, newest decisions."""
    ctx = _ctx(request)
    tenant = ctx.tenant_for(request)
    service = service_of(ctx)
    now = time.time_ns()
    today = now // DAY_NS * DAY_NS

    def read() -> dict[str, Any]:
        current = service.current(tenant)
        counts = ctx.store.violation_counts(tenant, today - (DAYS - 1) * DAY_NS, DAY_NS)
        admin = ctx.principal(request).role == "admin"
        return {
            "current": current,
            "applied_at": rfc3339(current.applied_ns) if current else None,
            "rules": rule_rows(current, counts, today),
            "history": [{**h, "applied_at": rfc3339(h["applied_ns"])} for h in ctx.store.policy_sets(tenant, 20)],
            "violations": ctx.store.list_violations(tenant, None, None, None, None, 20),
            "decisions": [{**d, "at": rfc3339(d["at_ns"])} for d in ctx.store.list_decisions(tenant, limit=20)] if admin else None,
        }

    context = {"nav": "policies", **await run_in_threadpool(read)}
    return _render(request, "policies.html", context)


def policy_ui_routes() -> list[BaseRoute]:
    """Routes of the Policies page."""
    return [Route("/policies", _page(policies_page), methods=["GET"], include_in_schema=False)]
