"""The seam between stages: each stage is handed the next consumer and imports none of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Encoding = Literal["protobuf", "json"]


@dataclass(frozen=True)
class EncodedExport:
    """An OTLP export request as it arrived: checked for type and size, not yet decoded.

    Decoding is left to the consumer so that it can run off the event loop, in
    worker processes, where the CPU cost of ingest lies.
    """

    body: bytes
    encoding: Encoding
    content_encoding: str | None = None


@dataclass(frozen=True)
class IngestResult:
    """What happened to one export request, once its accepted spans are durable."""

    accepted: int
    rejected: int
    message: str = ""


class TracesConsumer(Protocol):
    """Takes an export request; returns only after its accepted spans are committed.

    Raises PermanentError for a request that is unusable as a whole and
    RetryableError when the store cannot take it now.
    """

    async def consume(self, export: EncodedExport, tenant: str) -> IngestResult: ...
