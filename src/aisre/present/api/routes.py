"""REST routes: thin wrappers over derive/ functions, described for OpenAPI in their docstrings."""

from __future__ import annotations

import time
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from aisre.act.alerts import is_budget_alert
from aisre.core.auth import Forbidden
from aisre.core.errors import NotFound, PermanentError
from aisre.core.jsonbody import parse_json
from aisre.core.model import RunQuery, TimeRange
from aisre.core.rows import AlertEpisode
from aisre.core.slo import SloSpec
from aisre.core.timefmt import parse_time, rfc3339
from aisre.derive import journeys
from aisre.evaluate.specs import specs_from_text
from aisre.normalize.scores import parse_score_batch
from aisre.present.api import models
from aisre.present.api.context import AppContext
from aisre.present.api.metrics import TenantScoped
from aisre.present.api.openapi import operation, spec_for


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise PermanentError(f"{name} must be an integer; got {raw!r}") from None


def path_id(request: Request, name: str = "id", what: str = "id") -> int:
    """An integer id from the path: 400 when it is not an integer, 404 when no stored id can
    be that large (ids are 64-bit; the store must not be asked for one it cannot hold)."""
    raw = request.path_params[name]
    try:
        value = int(raw)
    except ValueError:
        raise PermanentError(f"{what} must be an integer; got {raw!r}") from None
    if not 0 <= value < 2**63:
        raise NotFound(f"no {what} {raw}")
    return value


def _time_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    return parse_time(raw, time.time_ns(), name)


def _time_range(request: Request) -> TimeRange:
    return TimeRange(
        tenant=_ctx(request).tenant_for(request),
        since_ns=_time_param(request, "since"),
        until_ns=_time_param(request, "until"),
    )


@operation("meta", models.Health)
async def healthz(request: Request) -> Response:
    """
    summary: Readiness
    responses:
      200: {description: The server is ready to take data.}
    """
    store = _ctx(request).store
    return ORJSONResponse({"status": "ok", "store": store.backend})


@operation("meta", models.Stats)
async def stats(request: Request) -> Response:
    """
    summary: Store-wide counts (committed spans and traces, writer queue and commits)
    responses:
      200: {description: Counts.}
    """
    doc = dict(await run_in_threadpool(_ctx(request).store.stats))
    doc["oldest_span"] = rfc3339(doc.pop("oldest_span_ns", None))  # API times are RFC 3339
    return ORJSONResponse(doc)


@operation("meta", media_type="text/plain")
async def metrics(request: Request) -> Response:
    """
    summary: Prometheus exposition of aisre's own metrics, for the caller's tenant
    description: >
      Journey and SLO series are the caller's tenant's; series with a tenant label appear only
      for the caller's tenant (with auth off, the default tenant); process-wide series (ingest
      requests, spans, refusals, latency, store memory) carry no tenant label.
    responses:
      200: {description: Prometheus text format.}
    """
    ctx = _ctx(request)
    view = TenantScoped(ctx.registry, ctx.tenant_for(request))
    return Response(await run_in_threadpool(generate_latest, view), media_type=CONTENT_TYPE_LATEST)


@operation("meta", media_type="text/plain")
async def metrics_all(request: Request) -> Response:
    """
    summary: Prometheus exposition with every tenant's tenant-labelled series (operator admin key only)
    description: >
      Like /metrics, plus the tenant-labelled series of every tenant. Only an admin key of the
      operator tenant (setting operator_tenant, default the tenant setting) may read it; other
      tenants' admins get 403.
    responses:
      200: {description: Prometheus text format.}
      403: {description: Not an admin key of the operator tenant.}
    """
    ctx = _ctx(request)
    operator = ctx.settings.operator_tenant or ctx.settings.tenant
    principal = ctx.principal(request)
    if principal.role != "admin" or principal.tenant != operator:
        raise Forbidden(
            f"/metrics/all shows every tenant; it needs an admin key of the operator tenant {operator!r} "
            f"(key {principal.key_id} is {principal.role} of tenant {principal.tenant!r}); use /metrics"
        )
    return Response(await run_in_threadpool(generate_latest, ctx.registry), media_type=CONTENT_TYPE_LATEST)


@operation("journeys", models.JourneyList)
async def journey_list(request: Request) -> Response:
    """
    summary: Journeys with run counts, failure rate, p50/p95 duration, tokens per run, last seen
    parameters:
      - {name: since, in: query, schema: {type: string}, description: "RFC 3339 time or look-back (e.g. 24h)"}
      - {name: until, in: query, schema: {type: string}, description: RFC 3339 time}
    responses:
      200: {description: "{items: [...]}"}
      400: {description: Bad parameter.}
    """
    r = _time_range(request)
    items = await run_in_threadpool(journeys.journey_summaries, _ctx(request).store, r)
    return ORJSONResponse({"items": items})


@operation("journeys", models.RunPage)
async def run_list(request: Request) -> Response:
    """
    summary: Journey runs, newest first, with keyset pagination
    parameters:
      - {name: journey, in: query, schema: {type: string}}
      - {name: outcome, in: query, schema: {type: string, enum: [success, failure, incomplete]}}
      - {name: since, in: query, schema: {type: string}, description: "RFC 3339 time or look-back (e.g. 1h)"}
      - {name: until, in: query, schema: {type: string}}
      - {name: service_version, in: query, schema: {type: string}}
      - {name: model, in: query, schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000, default: 50}}
      - {name: cursor, in: query, schema: {type: string}, description: next_cursor from the previous page}
    responses:
      200: {description: "{items: [...], next_cursor: string|null}"}
      400: {description: Bad parameter.}
    """
    params = request.query_params
    cursor = params.get("cursor")
    q = RunQuery(
        tenant=_ctx(request).tenant_for(request),
        journey=params.get("journey") or None,
        outcome=params.get("outcome") or None,
        since_ns=_time_param(request, "since"),
        until_ns=_time_param(request, "until"),
        service_version=params.get("service_version") or None,
        model=params.get("model") or None,
        limit=_int_param(request, "limit", 50),
        after=journeys.decode_cursor(cursor) if cursor else None,
    )
    page = await run_in_threadpool(journeys.list_runs, _ctx(request).store, q)
    return ORJSONResponse(page)


@operation("journeys", models.Trace)
async def trace_detail(request: Request) -> Response:
    """
    summary: One trace with its span tree and GenAI details (prompts, completions, tools, retrieval, errors)
    parameters:
      - {name: trace_id, in: path, required: true, schema: {type: string}, description: "32 hex digits, or a unique prefix of 8 or more"}
    responses:
      200: {description: "{trace_id, journey, outcome, spans: [...]}"}
      400: {description: Malformed trace id.}
      404: {description: Unknown trace id.}
      409: {description: The prefix matches more than one trace.}
    """
    ctx = _ctx(request)
    doc = await run_in_threadpool(
        journeys.get_trace, ctx.store, ctx.tenant_for(request), request.path_params["trace_id"]
    )
    return ORJSONResponse(doc)


@operation("slos", models.SloList)
async def slo_list(request: Request) -> Response:
    """
    summary: Every SLO with its status, SLI, error budget, burn rates and alert pairs
    responses:
      200: {description: "{items: [...]}"}
    """
    ctx = _ctx(request)
    items = await run_in_threadpool(ctx.slos.statuses, ctx.tenant_for(request))
    return ORJSONResponse({"items": items})


@operation("slos", models.SloDetail)
async def slo_detail(request: Request) -> Response:
    """
    summary: One SLO's status, error budget, burn rates per window, alert state and burn-down series
    parameters:
      - {name: name, in: path, required: true, schema: {type: string}}
      - {name: points, in: query, schema: {type: integer, minimum: 2, maximum: 2000, default: 120}, description: burn-down points}
    responses:
      200: {description: SLO status document.}
      404: {description: Unknown SLO.}
    """
    ctx = _ctx(request)
    points = _int_param(request, "points", 120)
    if not 2 <= points <= 2000:
        raise PermanentError(f"points must be between 2 and 2000; got {points}")
    tenant = ctx.tenant_for(request)
    doc = await run_in_threadpool(ctx.slos.status, tenant, request.path_params["name"], None, points)
    doc["alert_episodes"] = [
        _alert_document(a) for a in await run_in_threadpool(ctx.store.list_alerts, tenant, None, doc["name"], 20)
    ]
    return ORJSONResponse(doc)


def _alert_document(row: AlertEpisode) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": "budget" if is_budget_alert(row["slo"]) else "slo",
        "slo": row["slo"],
        "journey": row["journey"],
        "severity": row["severity"],
        "state": row["state"],
        "pending_since": rfc3339(row["pending_since_ns"]),
        "started": rfc3339(row["started_ns"]),
        "ended": rfc3339(row["ended_ns"]),
        "peak_burn": row["peak_burn"],
        "summary": row["summary"],
    }


@operation("slos", models.AlertList)
async def alert_list(request: Request) -> Response:
    """
    summary: SLO and cost-budget alert episodes (pending, firing, resolved), newest first; budget ones are named budget:NAME@THRESHOLD
    parameters:
      - {name: state, in: query, schema: {type: string, enum: [pending, firing, resolved]}}
      - {name: slo, in: query, schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
    responses:
      200: {description: "{items: [...]}"}
    """
    ctx = _ctx(request)
    state = request.query_params.get("state") or None
    if state is not None and state not in ("pending", "firing", "resolved"):
        raise PermanentError(f"state must be pending, firing or resolved; got {state!r}")
    limit = _int_param(request, "limit", 100)
    if not 1 <= limit <= 1000:
        raise PermanentError(f"limit must be between 1 and 1000; got {limit}")
    rows = await run_in_threadpool(
        ctx.store.list_alerts, ctx.tenant_for(request), state, request.query_params.get("slo") or None, limit
    )
    docs = [_alert_document(r) for r in rows]
    if ctx.incidents is not None:  # owner, tier, runbook and the incident of each alert
        extra = await run_in_threadpool(ctx.incidents.alert_context, rows, ctx.tenant_for(request))
        for doc, more in zip(docs, extra, strict=True):
            doc.update(more)
    return ORJSONResponse({"items": docs})


@operation("slos", models.ReplayList)
async def slo_replay(request: Request) -> Response:
    """
    summary: Would this SLO have alerted? Page and ticket intervals over a past period, from stored counts
    parameters:
      - {name: name, in: path, required: true, schema: {type: string}}
      - {name: since, in: query, schema: {type: string}, description: "RFC 3339 time or look-back (default: the SLO window)"}
      - {name: until, in: query, schema: {type: string}, description: RFC 3339 time (default now)}
    responses:
      200: {description: "{items: [{severity, start, end, peak_burn}]}"}
      404: {description: Unknown SLO.}
    """
    ctx = _ctx(request)
    intervals = await run_in_threadpool(
        ctx.slos.replay,
        ctx.tenant_for(request),
        request.path_params["name"],
        _time_param(request, "since"),
        _time_param(request, "until"),
    )
    return ORJSONResponse({"items": intervals})


@operation("slos", models.SloApplied)
async def slo_apply(request: Request) -> Response:
    """
    summary: Replace the SLOs with the specs in the body (aisre, OpenSLO or Sloth YAML); nothing changes if any spec is invalid
    requestBody:
      content:
        application/yaml: {schema: {type: string}}
    responses:
      200: {description: "{applied: [names]}"}
      400: {description: "Invalid specs: {error, errors: [{file, line, field, message}]}"}
    """
    ctx = _ctx(request)
    body = await request.body()
    # Bytes, not text decoded with replacement: a bad byte is reported where it is.
    specs = await run_in_threadpool(specs_from_text, body, "request body")
    tenant = ctx.tenant_for(request)
    before = [_spec_summary(s) for s in ctx.slos.specs(tenant)]
    await run_in_threadpool(ctx.slos.apply, tenant, specs)
    await ctx.audit(request, "slo.apply", "slos", before, [_spec_summary(s) for s in specs])
    return ORJSONResponse({"applied": [s.id for s in specs]})


def _spec_summary(spec: SloSpec) -> dict[str, Any]:
    return {
        "name": spec.id, "journey": spec.journey, "objective": spec.objective,
        "window": str(spec.window.duration), "sli": spec.sli.kind,
    }


@operation("ingest", models.ScoresAccepted)
async def score_create(request: Request) -> Response:
    """
    summary: Attach evaluation results (groundedness, hallucination, feedback…) to traces, or post scores of a subject (a model's drift, a dataset's quality) at a time; each item accepted or refused on its own
    description: |
      Each item is either a trace's score (`trace_id`, optional `span_id`, `name`, `value` or
      `label`, `source`, `comment`, `time`) or a platform score of a subject (`subject` such as
      `model:churn-v3` or `dataset:customer_orders`, `name`, numeric `value`, `time` (RFC 3339;
      default now), `source`, `comment`): an item with neither or both of `trace_id` and
      `subject` is refused with its reason. A platform score posted again with the same subject,
      name and time replaces the stored one. Score SLIs over a subject count platform scores
      (docs/metrics.md).
    requestBody:
      content:
        application/json: {schema: {type: object, properties: {scores: {type: array, items: {type: object}}}}}
    responses:
      200: {description: "{accepted, rejected: [{index, reason}]}"}
      400: {description: Malformed body.}
    """
    ctx = _ctx(request)
    # NaN and Infinity, which many clients emit, are read so that such a score is refused
    # alone instead of the whole batch.
    document = parse_json(await request.body(), allow_nonfinite=True)
    batch = parse_score_batch(document, ctx.tenant_for(request))
    table, indexes, refused = batch.traces, batch.trace_indexes, batch.refused
    unknown = await run_in_threadpool(ctx.store.add_scores, table) if table.num_rows else []
    if batch.platform.num_rows:
        await run_in_threadpool(ctx.store.add_platform_scores, batch.platform)
    refused += [{"index": indexes[i], "reason": "unknown trace: no span of it has been received"} for i in unknown]
    refused.sort(key=lambda r: r["index"])
    return ORJSONResponse({"accepted": table.num_rows - len(unknown) + batch.platform.num_rows, "rejected": refused})


@operation("meta", dict[str, Any])
async def openapi(request: Request) -> Response:
    """
    summary: This API's OpenAPI document
    responses:
      200: {description: OpenAPI 3 JSON.}
    """
    return ORJSONResponse(spec_for(request.app))


async def api_docs(request: Request) -> Response:
    """
    summary: This API's reference as an HTML page, rendered here from the OpenAPI document (no CDN)
    responses:
      200: {description: HTML.}
    """
    from aisre.present.api.docs import render_docs

    return HTMLResponse(render_docs(spec_for(request.app)))


API_ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/metrics/all", metrics_all, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/docs", api_docs, methods=["GET"], include_in_schema=False),
    Route("/api/stats", stats, methods=["GET"]),
    Route("/api/journeys", journey_list, methods=["GET"]),
    Route("/api/journeys/runs", run_list, methods=["GET"]),
    Route("/api/traces/{trace_id}", trace_detail, methods=["GET"]),
    Route("/api/slos", slo_list, methods=["GET"]),
    Route("/api/slos", slo_apply, methods=["PUT"]),
    Route("/api/slos/{name}", slo_detail, methods=["GET"]),
    Route("/api/slos/{name}/replay", slo_replay, methods=["GET"]),
    Route("/api/alerts", alert_list, methods=["GET"]),
    Route("/api/scores", score_create, methods=["POST"]),
]
