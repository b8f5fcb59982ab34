"""The seam between stages: each stage is handed the next consumer and imports none of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass(frozen=True)
class IngestResult:
    """What happened to one export request, once its accepted spans are durable."""

    accepted: int
    rejected: int
    message: str = ""


class TracesConsumer(Protocol):
    """Takes a decoded OTLP export request; returns only after accepted spans are committed.

    Raises PermanentError for a request that is unusable as a whole and
    RetryableError when the store cannot take it now.
    """

    async def consume(self, request: ExportTraceServiceRequest, tenant: str) -> IngestResult: ...
