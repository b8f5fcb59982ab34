"""Web UI pages (server-rendered with Jinja2; no JS framework, nothing from a CDN).

Handlers are thin: they parse query parameters, call the ``derive`` functions the REST API
uses, and render a template. Errors from the lower layers become HTML error pages here
(the app-wide handlers answer JSON, which is right for the API but not for a browser).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from aisre.core.auth import Principal, Unauthenticated
from aisre.core.errors import NotFound, PermanentError, RetryableError
from aisre.core.model import OUTCOMES, RunQuery, TimeRange
from aisre.core.timefmt import parse_time, rfc3339
from aisre.derive import journeys
from aisre.present.api.auth import COOKIE
from aisre.present.api.context import AppContext
from aisre.present.ui import attention
from aisre.present.ui import format as fmt

Handler = Callable[[Request], Awaitable[Response]]

SINCE_CHOICES = ("1h", "24h", "7d", "30d", "all")
DEFAULT_SINCE = "all"  # the API's default too; a fixed look-back would hide older data
PAGE_SIZE = 50
REFRESH_SECONDS = 5
BURN_DOWN_POINTS = 120  # the API's default too
# The range picker of the SLO and cost charts (kept in the URL as ?range= / ?since=).
RANGE_CHOICES = ("1h", "6h", "1d", "7d", "28d")
SLI_BUCKETS = 60  # about this many bars in an SLO's error-rate chart

# Defence in depth behind autoescaping: no inline or third-party script can run.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@functools.cache
def _env() -> Environment:
    # Built on first render, not at import (house rule: nothing happens at import time).
    env = Environment(
        loader=PackageLoader("aisre.present.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=fmt.duration,
        percent=fmt.percent,
        number=fmt.number,
        money=fmt.money,
        measure=fmt.measure,
        utc=fmt.utc,
        ago=fmt.ago,
        pretty=fmt.pretty,
        compact=fmt.compact,
        op_class=fmt.op_class,
        objective=fmt.objective,
        sli_ratio=fmt.sli_ratio,
        budget=fmt.budget,
        burn=fmt.burn,
        span_seconds=fmt.span_seconds,
        safe_url=_safe_url,
        urlpart=lambda value: quote(str(value), safe=""),
    )
    return env


def _safe_url(value: str | None) -> str | None:
    """Only http(s) links are rendered as links (a runbook could say ``javascript:``)."""
    text = (value or "").strip()
    return text if urlsplit(text).scheme in ("http", "https") else None


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _url(request: Request, path: str | None = None, **changes: Any) -> str:
    """This page's URL (or ``path``) with query parameters changed; None or '' drops one."""
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    params.update(changes)
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    query = urlencode(kept)
    return (path or request.url.path) + (f"?{query}" if query else "")


def _render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    page = _env().get_template(template).render(
        request=request,
        url=functools.partial(_url, request),
        now=datetime.now(UTC),
        tenant=_tenant_or_none(request),
        signed_in=_signed_in(request),
        attention=getattr(request.state, "attention", None),
        attention_seconds=REFRESH_SECONDS,
        **context,
    )
    headers = {"Content-Security-Policy": _CSP, "Cache-Control": "no-store"}
    return HTMLResponse(page, status_code=status_code, headers=headers)


def _tenant_or_none(request: Request) -> str | None:
    found = request.scope.get("aisre.principal")
    return found.tenant if isinstance(found, Principal) else None


def _signed_in(request: Request) -> bool:
    """Whether the caller came with a key (a sign-out makes sense), not as the local admin."""
    found = request.scope.get("aisre.principal")
    return isinstance(found, Principal) and found.key_id != "local"


def is_https(request: Request) -> bool:
    """Whether the browser reached us over TLS: directly, or through a proxy saying
    ``X-Forwarded-Proto: https``. The header is believed from any peer because it only ever
    adds ``Secure`` to the sender's own cookie; a cookie without it could leak over plain HTTP."""
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "")
    return any(part.strip().lower() == "https" for part in forwarded.split(","))


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only (never '//host' or a scheme,
    which would make the login form an open redirect); '/' otherwise."""
    text = (target or "").strip()
    parts = urlsplit(text)
    if not text.startswith("/") or text.startswith("//") or "\\" in text or parts.scheme or parts.netloc:
        return "/"
    if any(ord(ch) < 32 for ch in text) or parts.path in ("/login", "/logout"):
        return "/"
    return text


async def login_page(request: Request) -> Response:
    """A form that keeps an API key in an HttpOnly, SameSite=Lax cookie (Secure over HTTPS),
    then lands on the page that was asked for (``?next=``, a local path only)."""
    keys = _ctx(request).keys
    context: dict[str, Any] = {"error": None, "nav": None, "auth_on": keys.enabled,
                               "next": safe_next(request.query_params.get("next"))}
    if request.method == "POST":
        # A plain urlencoded form; parsed here so the UI needs no multipart library.
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        key = (form.get("key") or [""])[0].strip()
        context["next"] = safe_next((form.get("next") or [""])[0])
        try:
            keys.principal(key)
        except (Unauthenticated, PermanentError):
            return _render(request, "login.html", {**context, "error": "unknown or revoked API key"}, 401)
        response = RedirectResponse(context["next"], status_code=303)
        # Lax, not Strict: links from notifications (Slack, PagerDuty) open signed in, and no
        # GET changes anything, while cross-site POSTs still arrive without the cookie.
        response.set_cookie(COOKIE, key, httponly=True, samesite="lax", secure=is_https(request), path="/")
        return response
    return _render(request, "login.html", context)


async def logout(request: Request) -> Response:
    """Sign out: forget the key cookie and go back to the sign-in form (a POST from our pages)."""
    form = await own_form(request)
    if isinstance(form, Response):
        return form
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request))
    return response


def _page(handler: Handler) -> Handler:
    """Turn the lower layers' errors into HTML pages rather than the API's JSON."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        if request.method == "GET":
            request.state.attention = await attention.for_request(request)
        try:
            return await handler(request)
        except NotFound as exc:
            return _error(request, 404, "Not found", exc.message)
        except PermanentError as exc:
            return _error(request, 400, "Bad request", exc.message)
        except RetryableError as exc:
            response = _error(request, 503, "Busy", exc.message)
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
            return response

    return wrapped


def _error(
    request: Request, status: int, title: str, message: str, nav: str | None = None
) -> HTMLResponse:
    context = {"status": status, "title": title, "message": message, "nav": nav}
    return _render(request, "error.html", context, status_code=status)


async def own_form(request: Request) -> dict[str, str] | Response:
    """A form posted from this server's own pages, as field → first value; a refusal page
    when the browser says it came from another origin (a cross-site form post)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.url.netloc:
        return _error(request, 403, "Refused", "this form may only be posted from this server's own pages")
    return {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", errors="replace")).items()}


def _since(request: Request) -> tuple[str, int | None]:
    """The look-back the page shows: its label and the lower bound in Unix ns (None = all)."""
    raw = (request.query_params.get("since") or DEFAULT_SINCE).strip()
    if raw == "all":
        return raw, None
    return raw, parse_time(raw, time.time_ns(), "since")


def _endpoints(request: Request) -> dict[str, str | None]:
    """Where to send data, as this server was reached, for the empty state."""
    settings = _ctx(request).settings
    base = str(request.base_url).rstrip("/")
    grpc = f"{request.url.hostname}:{settings.grpc_port}" if settings.grpc_port else None
    return {"http": f"{base}/v1/traces", "grpc": grpc}


async def journeys_page(request: Request) -> Response:
    """Journeys: runs, failure rate, latency, tokens, LLM calls, retries, last seen."""
    since, since_ns = _since(request)
    ctx = _ctx(request)
    r = TimeRange(tenant=ctx.tenant_for(request), since_ns=since_ns)
    items = await run_in_threadpool(journeys.journey_summaries, ctx.store, r)
    slos = await _slo_views(request)
    by_journey: dict[str, list[dict[str, Any]]] = {}
    for view in fmt.worst_first(slos):
        by_journey.setdefault(str(view.get("journey")), []).append(view)
    context = {
        "nav": "journeys",
        "items": items,
        "slos_by_journey": by_journey,
        "any_slos": bool(slos),
        "since": since,
        "since_choices": SINCE_CHOICES,
        "endpoints": _endpoints(request),
        "refresh": REFRESH_SECONDS,
    }
    return _render(request, "journeys.html", context)


def _run_query(request: Request, journey: str | None) -> RunQuery:
    params = request.query_params
    cursor = params.get("cursor")
    _, since_ns = _since(request)
    return RunQuery(
        tenant=_ctx(request).tenant_for(request),
        journey=journey,
        outcome=params.get("outcome") or None,
        since_ns=since_ns,
        service_version=(params.get("service_version") or "").strip() or None,
        model=(params.get("model") or "").strip() or None,
        limit=PAGE_SIZE,
        after=journeys.decode_cursor(cursor) if cursor else None,
    )


async def _runs_context(request: Request, journey: str | None) -> dict[str, Any]:
    ctx = _ctx(request)
    q = _run_query(request, journey)
    page = await run_in_threadpool(journeys.list_runs, ctx.store, q)
    next_cursor = page["next_cursor"]
    # All-time names for the journey filter; cheap (one row per journey).
    every = await run_in_threadpool(
        journeys.journey_summaries, ctx.store, TimeRange(tenant=q.tenant)
    )
    return {
        "runs": page["items"],
        "older_url": _url(request, cursor=next_cursor) if next_cursor else None,
        "first_page": not request.query_params.get("cursor"),
        "newest_url": _url(request),
        "query": q,
        "since": _since(request)[0],
        "since_choices": SINCE_CHOICES,
        "outcomes": OUTCOMES,
        "journey_names": sorted(item["journey"] for item in every),
        "all_summaries": every,
        "refresh": REFRESH_SECONDS,
    }


async def runs_page(request: Request) -> Response:
    """Runs, newest first, filtered by journey, outcome, version, model and time."""
    context = await _runs_context(request, request.query_params.get("journey") or None)
    context.update(nav="runs", journey=None, summary=None)
    return _render(request, "runs.html", context)


async def journey_page(request: Request) -> Response:
    """One journey: its summary numbers over the range, then its runs."""
    name = request.path_params["journey"]
    context = await _runs_context(request, name)
    ctx = _ctx(request)
    _, since_ns = _since(request)
    slos = fmt.worst_first([v for v in await _slo_views(request) if v.get("journey") == name])
    # A journey an SLO names has a page before its first run: the SLOs say "no data" there.
    if not slos and not any(item["journey"] == name for item in context["all_summaries"]):
        raise NotFound(f"no journey named {name!r} has any runs yet")
    in_range = await run_in_threadpool(
        journeys.journey_summaries,
        ctx.store,
        TimeRange(tenant=ctx.tenant_for(request), since_ns=since_ns),
    )
    summary = next((item for item in in_range if item["journey"] == name), None)
    context.update(nav="journeys", journey=name, summary=summary, slos=slos)
    return _render(request, "runs.html", context)


async def _slo_views(request: Request) -> list[dict[str, Any]]:
    """Every SLO of the tenant, evaluated now, shaped for the templates."""
    ctx = _ctx(request)
    tenant = ctx.tenant_for(request)
    docs = await run_in_threadpool(ctx.slos.statuses, tenant)
    specs = _sli_specs(ctx, tenant) if docs else {}
    return [fmt.slo_view(doc, specs.get(doc["name"])) for doc in docs]


def _sli_specs(ctx: AppContext, tenant: str) -> dict[str, dict[str, Any]]:
    """Each SLO's SLI spec ({kind, threshold fields}), as the API shows it before evaluation."""
    return {
        spec.id: {
            "kind": spec.sli.kind,
            **{k: v for k, v in vars(spec.sli).items() if v is not None},
        }
        for spec in ctx.slos.specs(tenant)
    }


async def slos_page(request: Request) -> Response:
    """Every SLO: status, SLI, error budget left, burn rate, tier, owner and runbook."""
    context = {"nav": "slos", "slos": await _slo_views(request), "refresh": REFRESH_SECONDS}
    return _render(request, "slos.html", context)


async def slo_page(request: Request) -> Response:
    """One SLO: its numbers, the error budget burn-down, burn rates and alert pairs."""
    ctx = _ctx(request)
    tenant = ctx.tenant_for(request)
    name = request.path_params["name"]
    try:
        doc = await run_in_threadpool(ctx.slos.status, tenant, name, None, BURN_DOWN_POINTS)
    except NotFound as exc:
        return _error(request, 404, "Not found", exc.message, nav="slos")
    view = fmt.slo_view(doc, _sli_specs(ctx, tenant).get(doc["name"]))
    window_ns = _window_ns(str(doc.get("window") or ""))
    choices = [c for c in RANGE_CHOICES if window_ns is None or -parse_time(c, 0) < window_ns]
    if window_ns is not None:
        choices.append(str(doc["window"]))  # the whole window is always a choice, and the default
    chosen = request.query_params.get("range") or (choices[-1] if choices else RANGE_CHOICES[-1])
    if chosen not in (choices or RANGE_CHOICES):
        raise PermanentError(f"range must be one of {', '.join(choices or RANGE_CHOICES)}; got {chosen!r}")
    range_ns = -parse_time(chosen, 0)
    series = await run_in_threadpool(ctx.slos.chart, tenant, name, range_ns, BURN_DOWN_POINTS)
    # Both charts share one time axis: from the earlier of their first times to the later end.
    spans = [fmt.time_span(series["burn_down"]), fmt.time_span(series["sli_series"], series["bucket_s"])]
    found = [sp for sp in spans if sp is not None]
    shared = (min(a for a, _ in found), max(b for _, b in found)) if found else None
    chart = fmt.burn_down_chart(series["burn_down"], shared) if series["burn_down"] else None
    sli = fmt.sli_chart(series["sli_series"], series.get("objective"), series["bucket_s"], shared)
    changes: list[dict[str, Any]] = []
    if chart and ctx.incidents is not None and doc.get("journey"):
        rows = await run_in_threadpool(
            ctx.incidents.store.list_changes, tenant, int(chart["t0"] * 1e9), int(chart["t1"] * 1e9) + 1,
            doc["journey"], None, 200,
        )
        changes = [dict(r, at=rfc3339(r["at_ns"])) for r in rows]
    context = {
        "nav": "slos",
        "slo": view,
        "chart": chart,
        "markers": fmt.change_markers(chart, changes),
        "sli_chart": sli,
        "sli_markers": fmt.change_markers(sli, changes),
        "range": chosen,
        "range_choices": choices or list(RANGE_CHOICES),
        "rates": fmt.rate_bars(doc.get("burn_rates")),
        "alerts": fmt.alert_rows(doc.get("alerts")),
        "refresh": REFRESH_SECONDS,
    }
    return _render(request, "slo.html", context)


def _window_ns(window: str) -> int | None:
    """An SLO window such as '28d' in ns; None for calendar windows ('1 month')."""
    try:
        return -parse_time(window.replace(" ", ""), 0)
    except PermanentError:
        return None


async def attention_fragment(request: Request) -> Response:
    """The attention strip alone, for pages without a live refresh of their own."""
    request.state.attention = await attention.for_request(request)
    page = _env().get_template("_attention.html").render(
        attention=request.state.attention, attention_seconds=REFRESH_SECONDS,
    )
    return HTMLResponse(page, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})


async def trace_page(request: Request) -> Response:
    """One trace as a waterfall, with each span's GenAI details in a <details> block."""
    ctx = _ctx(request)
    doc = await run_in_threadpool(
        journeys.get_trace, ctx.store, ctx.tenant_for(request), request.path_params["trace_id"]
    )
    violations = await run_in_threadpool(ctx.store.list_violations, ctx.tenant_for(request), doc["trace_id"], None, None, None, 200)
    by_span: dict[str, list[str]] = {}
    for v in violations:
        for sid in v["span_ids"]:
            by_span.setdefault(sid, []).append(v["rule"])
    context = {"nav": "runs", "trace": doc, "waterfall": fmt.waterfall(doc), "violations": violations,
               "violations_by_span": by_span}
    return _render(request, "trace.html", context)


def ui_routes() -> list[BaseRoute]:
    """Routes of the web UI."""
    static = StaticFiles(packages=[("aisre.present.ui", "static")])
    from aisre.present.ui.capacity import capacity_ui_routes
    from aisre.present.ui.catalog import catalog_ui_routes
    from aisre.present.ui.check import check_ui_routes  # these build on this module's helpers
    from aisre.present.ui.gate import gate_ui_routes
    from aisre.present.ui.policy import policy_ui_routes
    from aisre.present.ui.readiness import readiness_ui_routes
    from aisre.present.ui.report import report_routes
    from aisre.present.ui.scorecards import scorecard_ui_routes

    return [
        *gate_ui_routes(),
        *policy_ui_routes(),
        *check_ui_routes(),
        *scorecard_ui_routes(),
        *catalog_ui_routes(),
        *readiness_ui_routes(),
        *report_routes(),
        *capacity_ui_routes(),
        Route("/", _page(journeys_page), methods=["GET"], include_in_schema=False),
        Route("/runs", _page(runs_page), methods=["GET"], include_in_schema=False),
        Route(
            "/journeys/{journey:path}", _page(journey_page), methods=["GET"],
            include_in_schema=False,
        ),
        Route("/traces/{trace_id}", _page(trace_page), methods=["GET"], include_in_schema=False),
        Route("/slos", _page(slos_page), methods=["GET"], include_in_schema=False),
        Route("/slos/{name}", _page(slo_page), methods=["GET"], include_in_schema=False),
        Route("/ui/attention", attention_fragment, methods=["GET"], include_in_schema=False),
        Route("/login", login_page, methods=["GET", "POST"], include_in_schema=False),
        Route("/logout", logout, methods=["POST"], include_in_schema=False),
        Mount("/static", app=static, name="static"),
    ]
