"""``/api/gate``: the release verdict for a baseline and a candidate, and the verdict history.

``GET`` judges without writing unless ``record=true``; ``POST`` records unless ``record=false``.
Recording keeps the verdict in the history and the audit log, so it needs a role that may write
(ingest or admin; see ``auth.required_roles``): a read key stays read-only.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.core.errors import PermanentError
from aisre.derive.populations import parse_selector
from aisre.evaluate.gate.config import GateConfig, parse_gate_config
from aisre.evaluate.gate.judge import GateRequest, judge, judge_and_record
from aisre.present.api import models
from aisre.present.api.context import AppContext
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _int_param, _time_param, path_id

GATE_CONFIG_KEY = "gate_config"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}



def server_config(ctx: AppContext) -> GateConfig:
    """The gate file the server was started with (defaults when none)."""
    config = ctx.extra.get(GATE_CONFIG_KEY)
    return config if isinstance(config, GateConfig) else GateConfig()


def _flag(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise PermanentError(f"{name} must be true or false; got {raw!r}")


def _gate_request(request: Request) -> GateRequest:
    q = request.query_params
    journey = q.get("journey", "").strip()
    if not journey:
        raise PermanentError("journey is required (e.g. ?journey=ask)")
    return GateRequest(
        tenant=_ctx(request).tenant_for(request),
        journey=journey,
        baseline=parse_selector(q.get("baseline", ""), "baseline"),
        candidate=parse_selector(q.get("candidate", ""), "candidate"),
        fix=_flag(request, "fix", False),
        since_ns=_time_param(request, "since"),
        until_ns=_time_param(request, "until"),
    )


async def decide(request: Request, gate_request: GateRequest, config: GateConfig, record: bool) -> dict[str, Any]:
    """Judge; when ``record``, keep the verdict in the history and audit it (API and UI alike)."""
    ctx = _ctx(request)
    tenant = gate_request.tenant

    def statuses() -> list[dict[str, Any]]:
        return ctx.slos.statuses(tenant)

    fn = judge_and_record if record else judge
    doc: dict[str, Any] = await run_in_threadpool(fn, ctx.store, gate_request, config, statuses)
    if record:
        after = {"id": doc.get("id"), "verdict": doc.get("verdict"), "baseline": doc["baseline"]["selector"],
                 "candidate": doc["candidate"]["selector"], "fix": gate_request.fix}
        await ctx.audit(request, "gate.verdict", f"journey {gate_request.journey}", None, after)
    return doc


async def _decide(request: Request, config: GateConfig) -> Response:
    # The auth middleware has already checked the role against the same default.
    record = _flag(request, "record", request.method == "POST")
    return ORJSONResponse(await decide(request, _gate_request(request), config, record))


@operation("gate", models.Verdict)
async def gate_get(request: Request) -> Response:
    """
    summary: Judge a candidate against a baseline (Fisher's exact test for rates, Kayenta's Mann-Whitney for the rest), with the error-budget policy
    description: >
      Shaped for an Argo Rollouts AnalysisTemplate `web` metric: read `{$.verdict}` (pass | marginal |
      fail | insufficient_data) with successCondition `result == "pass"` and failureCondition
      `result == "fail"`; marginal and insufficient_data are then Inconclusive. `exit_code` is what
      `aisre gate` exits with. Without a gate file the default policy (tier-0-budget) applies.
    parameters:
      - {name: journey, in: query, required: true, schema: {type: string}}
      - {name: baseline, in: query, required: true, schema: {type: string}, description: "key=value[,key=value] e.g. service.version=1.4.2"}
      - {name: candidate, in: query, required: true, schema: {type: string}}
      - {name: fix, in: query, schema: {type: boolean}, description: The release is a fix (may pass a policy rule that allows fixes)}
      - {name: since, in: query, schema: {type: string}, description: "Start of the runs compared (default: the gate window before until)"}
      - {name: until, in: query, schema: {type: string}}
      - {name: record, in: query, schema: {type: boolean}, description: "Keep the verdict in the history and the audit log (default false on GET); true needs an ingest or admin key"}
    responses:
      200: {description: "{verdict, exit_code, score, score_range, failed_metrics, insufficient_data, reasons, notes, metrics: [...], groups, policy, baseline, candidate}"}
      400: {description: Bad parameters.}
      403: {description: record=true with a read key.}
    """
    return await _decide(request, server_config(_ctx(request)))


@operation("gate", models.Verdict)
async def gate_post(request: Request) -> Response:
    """
    summary: Judge with the gate file in the body (YAML) and record the verdict (unless record=false)
    description: >
      Takes GET /api/gate's query parameters. Recording (the default here) keeps the verdict in the
      history and the audit log and needs an ingest or admin key; with record=false a read key may judge.
    parameters:
      - {name: record, in: query, schema: {type: boolean}, description: "Keep the verdict (default true)"}
    requestBody:
      content:
        application/yaml: {schema: {type: string}}
    responses:
      200: {description: The verdict document.}
      400: {description: "Bad parameters, or gate file errors as file:line: field: message."}
      403: {description: Recording with a read key.}
    """
    body = await request.body()  # bytes: a byte that is not UTF-8 is reported with its place
    config = await run_in_threadpool(parse_gate_config, body, request.query_params.get("config_name", "request body"))
    return await _decide(request, config)


@operation("gate", models.VerdictList)
async def gate_history(request: Request) -> Response:
    """
    summary: Recorded verdicts, newest first (optionally of one journey)
    parameters:
      - {name: journey, in: query, schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, default: 50}}
    responses:
      200: {description: "{items: [{id, journey, baseline, candidate, verdict, score, baseline_runs, candidate_runs, decided_at}]}"}
    """
    from aisre.core.timefmt import rfc3339

    ctx = _ctx(request)
    limit = _int_param(request, "limit", 50)
    if not 1 <= limit <= 1000:
        raise PermanentError(f"limit must be between 1 and 1000; got {limit}")
    rows = await run_in_threadpool(
        ctx.store.list_gate_verdicts, ctx.tenant_for(request), request.query_params.get("journey") or None, limit
    )
    items = [{**{k: v for k, v in row.items() if k != "decided_ns"}, "decided_at": rfc3339(row["decided_ns"])} for row in rows]
    return ORJSONResponse({"items": items})


@operation("gate", models.Verdict)
async def gate_verdict(request: Request) -> Response:
    """
    summary: One recorded verdict with its full evidence
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
    responses:
      200: {description: The verdict document.}
      404: {description: Unknown id.}
    """
    ctx = _ctx(request)
    vid = path_id(request, "id", "verdict")
    doc = await run_in_threadpool(ctx.store.get_gate_verdict, ctx.tenant_for(request), vid)
    return ORJSONResponse(doc)


GATE_ROUTES = [
    Route("/api/gate", gate_get, methods=["GET"]),
    Route("/api/gate", gate_post, methods=["POST"]),
    Route("/api/gate/verdicts", gate_history, methods=["GET"]),
    Route("/api/gate/verdicts/{id}", gate_verdict, methods=["GET"]),
]
