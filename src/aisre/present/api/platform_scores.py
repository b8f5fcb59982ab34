"""Platform scores as routes: an Evidently report posted as a subject's scores, and the
stored scores of subjects listed (normalize/evidently.py, docs/metrics.md)."""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.core.errors import PermanentError
from aisre.core.jsonbody import parse_json
from aisre.core.scores import subject_problem
from aisre.core.timefmt import rfc3339
from aisre.normalize.evidently import evidently_scores
from aisre.normalize.scores import parse_score_batch
from aisre.present.api import models
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx, _int_param, _time_param

MAX_LIST = 10_000


def _subject(request: Request, required: bool) -> str | None:
    subject = request.query_params.get("subject")
    if subject is None and not required:
        return None
    problem = subject_problem(subject)
    if problem:
        raise PermanentError(problem)
    return subject


@operation("ingest", models.EvidentlyImported)
async def evidently_import(request: Request) -> Response:
    """
    summary: Post an Evidently report's headline numbers (dataset and column drift, missing values) as scores of a subject
    description: |
      The body is an Evidently report as `Report.as_dict()` or `Report.json()` writes it: a
      `metrics` list of `{metric, result}`. DatasetDriftMetric, DataDriftTable,
      ColumnDriftMetric and DatasetMissingValuesMetric become scores named
      `drift.share_of_drifted_columns`, `drift.number_of_drifted_columns`, `drift.dataset_drift`
      (0/1), `drift.column.<name>.score`, `drift.column.<name>.detected` (0/1),
      `quality.share_of_missing_values`, `quality.number_of_missing_values` and
      `quality.share_of_rows_with_missing_values`, at the report's `timestamp` (else now). Other
      metrics are listed in `skipped`. The same report posted again is stored once.
    parameters:
      - {name: subject, in: query, required: true, schema: {type: string}, description: "what the report is about, e.g. model:churn-v3 or dataset:customer_orders"}
    requestBody:
      content:
        application/json: {schema: {type: object, properties: {metrics: {type: array, items: {type: object}}, timestamp: {type: string}}}}
    responses:
      200: {description: "{subject, time, accepted, rejected: [{index, reason}], scores: [{name, value}], skipped: [{index, metric, reason}]}"}
      400: {description: Not an Evidently report, or a missing or malformed subject.}
    """
    ctx = _ctx(request)
    subject = _subject(request, required=True) or ""
    report = parse_json(await request.body(), allow_nonfinite=True)
    items, skipped, when = evidently_scores(report, subject, time.time_ns())
    batch = parse_score_batch(items, ctx.tenant_for(request))
    if batch.platform.num_rows:
        await run_in_threadpool(ctx.store.add_platform_scores, batch.platform)
    return ORJSONResponse({
        "subject": subject, "time": rfc3339(when), "accepted": batch.platform.num_rows, "rejected": batch.refused,
        "scores": [{"name": i["name"], "value": i["value"]} for i in items], "skipped": skipped,
    })


@operation("ingest", models.PlatformScoreList)
async def platform_score_list(request: Request) -> Response:
    """
    summary: Stored scores of subjects (drift and quality reports), oldest first
    parameters:
      - {name: subject, in: query, schema: {type: string}, description: "e.g. model:churn-v3"}
      - {name: name, in: query, schema: {type: string}, description: "e.g. drift.share_of_drifted_columns"}
      - {name: since, in: query, schema: {type: string}, description: "RFC 3339 time or look-back (e.g. 7d)"}
      - {name: until, in: query, schema: {type: string}, description: RFC 3339 time}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000, default: 1000}}
    responses:
      200: {description: "{items: [{subject, name, value, source, comment, time, received}]}"}
      400: {description: Bad parameter.}
    """
    ctx = _ctx(request)
    limit = _int_param(request, "limit", 1000)
    if not 1 <= limit <= MAX_LIST:
        raise PermanentError(f"limit must be 1 to {MAX_LIST}; got {limit}")
    name = request.query_params.get("name") or None
    rows = await run_in_threadpool(
        ctx.store.platform_scores, ctx.tenant_for(request), _subject(request, required=False), name,
        _time_param(request, "since"), _time_param(request, "until"), limit)
    return ORJSONResponse({"items": [
        {"subject": r["subject"], "name": r["name"], "value": r["value"], "source": r["source"], "comment": r["comment"],
         "time": rfc3339(r["time_ns"]), "received": rfc3339(r["received_ns"])} for r in rows]})


PLATFORM_SCORE_ROUTES = [
    Route("/api/scores/evidently", evidently_import, methods=["POST"]),
    Route("/api/scores/platform", platform_score_list, methods=["GET"]),
]
