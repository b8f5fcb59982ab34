"""``POST /api/events``: pipeline runs and dataset updates from a scheduler's hooks (Airflow
callbacks, a Feast materialisation), ingested as spans through the traces consumer
(receive/events.py), so the pipeline, deadline and freshness SLIs count them."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisre.core.jsonbody import parse_json
from aisre.core.pipeline import EncodedExport, TracesConsumer
from aisre.present.api import models
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx
from aisre.receive.events import parse_events


@operation("ingest", models.EventsAccepted)
async def event_create(request: Request) -> Response:
    """
    summary: Record pipeline runs and dataset updates (e.g. from Airflow callbacks or a Feast materialisation hook) for pipeline, deadline and freshness SLOs; each item accepted or refused on its own
    requestBody:
      content:
        application/json:
          schema:
            type: object
            required: [events]
            properties:
              events:
                type: array
                maxItems: 1000
                items:
                  type: object
                  required: [kind]
                  properties:
                    kind: {type: string, enum: [pipeline_run, dataset_update]}
                    pipeline: {type: string, description: 'pipeline_run: the pipeline (cicd.pipeline.name)'}
                    result: {type: string, enum: [success, failure, error, timeout, cancellation, skip], description: 'pipeline_run'}
                    start: {description: 'pipeline_run: RFC 3339 time or unix nanoseconds', oneOf: [{type: string}, {type: integer}]}
                    end: {description: 'pipeline_run: RFC 3339 time or unix nanoseconds', oneOf: [{type: string}, {type: integer}]}
                    dataset: {type: string, description: 'dataset_update: a dataset or feature view name (aisre.dataset)'}
                    time: {description: 'dataset_update: when it was updated, RFC 3339 or unix nanoseconds', oneOf: [{type: string}, {type: integer}]}
                    id: {type: string, description: "the scheduler's run id; the same id is counted once"}
                    service: {type: string, description: 'service.name of the span (default aisre-events)'}
    responses:
      200: {description: "{accepted, rejected: [{index, reason}], spans: [{index, trace_id, span_id}]}"}
      400: {description: Malformed body.}
    """
    ctx = _ctx(request)
    consumer: TracesConsumer = request.app.state.traces_consumer
    tenant = ctx.tenant_for(request)
    parsed = parse_events(parse_json(await request.body()), tenant, time.time_ns())
    refused = list(parsed.refused)
    spans: list[dict[str, Any]] = []
    accepted = 0
    if parsed.spans:
        body = parsed.request().SerializeToString()
        result = await consumer.consume(EncodedExport(body, "protobuf"), tenant)
        for event in parsed.spans:
            # Ingest names each span it refuses (normalize/spans.py _describe).
            if result.rejected and f"span {event.span_id} " in result.message:
                refused.append({"index": event.index, "reason": _reason(result.message, event.span_id)})
                continue
            trace_id = event.span.trace_id.hex()
            spans.append({"index": event.index, "trace_id": trace_id, "span_id": event.span_id})
        accepted = len(spans)
    refused.sort(key=lambda r: r["index"])
    return ORJSONResponse({"accepted": accepted, "rejected": refused, "spans": spans})


def _reason(message: str, span_id: str) -> str:
    """The part of an ingest message about one span."""
    for part in message.replace(" | ", "; ").split("; "):
        if f"span {span_id} " in part:
            return part.split(": ", 1)[-1] if part.startswith("rejected") else part
    return message


EVENT_ROUTES = [Route("/api/events", event_create, methods=["POST"])]
