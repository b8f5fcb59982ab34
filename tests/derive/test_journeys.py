"""Run listing: keyset pagination walks every run exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aisre.core.errors import PermanentError
from aisre.core.model import RunQuery
from aisre.derive import journeys
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from tests.otlp_factory import journey_request


def test_pages_cover_every_run_once(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "p.duckdb"))
    base = time.time_ns() - 10**12
    all_ids: list[str] = []
    for i in range(5):
        request, ids = journey_request(5, start_ns=base + i * 10**9, journey="ask" if i % 2 else "agent")
        all_ids += ids
        b = flatten(request, "t")
        store.submit_spans(b.table, b.resources).result(10)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = journeys.list_runs(store, RunQuery("t", limit=7, after=after))
        pages += 1
        seen += [item["trace_id"] for item in page["items"]]
        starts = [item["start_time"] for item in page["items"]]
        assert starts == sorted(starts, reverse=True)
        if not page["next_cursor"]:
            break
        after = journeys.decode_cursor(page["next_cursor"])
    assert pages == 4
    assert sorted(seen) == sorted(all_ids)
    asks = journeys.list_runs(store, RunQuery("t", journey="ask", limit=100))["items"]
    assert len(asks) == 10 and {a["journey"] for a in asks} == {"ask"}
    store.close()


def test_bad_parameters_are_clear() -> None:
    with pytest.raises(PermanentError, match="limit must be between 1 and 1000"):
        journeys.list_runs(None, RunQuery("t", limit=0))  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="outcome must be one of"):
        journeys.list_runs(None, RunQuery("t", outcome="maybe"))  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="not one this API handed out"):
        journeys.decode_cursor("%%%")
