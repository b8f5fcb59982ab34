"""The Store protocol every backend implements (DuckDB now; ClickHouse for scale-out)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Protocol

import pyarrow as pa

from aisre.core.model import RunQuery, TimeRange
from aisre.store.gate import GateStore


class Store(GateStore, Protocol):
    backend: str

    def submit_spans(self, spans: pa.Table, resources: pa.Table) -> Future[int]:
        """Queue normalized spans and their resources; resolves once committed."""
        ...

    def submit_prepared(self, prepared: tuple[pa.Table, ...]) -> Future[int]:
        """Queue what ``prepare`` made of a batch (in a decoder process)."""
        ...

    @property
    def queued_spans(self) -> int: ...

    def count_spans(self, tenant: str | None = None) -> int: ...

    def get_trace(self, tenant: str, trace_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]: ...

    def list_runs(self, q: RunQuery) -> list[dict[str, Any]]: ...

    def journey_summaries(self, r: TimeRange) -> list[dict[str, Any]]: ...

    def incomplete_traces(self, tenant: str) -> int: ...

    def stats(self) -> dict[str, Any]: ...

    def add_scores(self, scores: pa.Table) -> list[int]: ...

    def list_alerts(self, tenant: str, state: str | None = None, slo: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...
