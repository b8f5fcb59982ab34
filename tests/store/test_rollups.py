"""Minute rollups: rebuilt from traces for touched minutes, right under late spans."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.compute as pc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aisre.core.schema import DURATION_BUCKETS_MS
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from aisre.store.duckdb.rollups import MINUTE_NS, ranges
from tests.otlp_factory import journey_request

BASE = 1_795_400_000 * 10**9 // MINUTE_NS * MINUTE_NS  # a minute boundary in Nov 2026


def _minutes(store: DuckDBStore) -> dict[tuple[str, int], dict]:
    store.flush_rollups()
    rows = store._rows("SELECT * FROM run_minutes ORDER BY journey, minute_ns")
    return {(r["journey"], r["minute_ns"]): r for r in rows}


def _brute_force(store: DuckDBStore) -> dict[tuple[str, int], tuple]:
    rows = store._rows(
        f"SELECT journey, (run_start_ns // {MINUTE_NS}) * {MINUTE_NS} AS m, count(*) AS runs, "
        "count(*) FILTER (WHERE outcome = 'failure') AS failures, sum(input_tokens) AS tin, sum(cost_usd) AS cost "
        "FROM journey_runs WHERE has_root GROUP BY ALL"
    )
    return {(r["journey"], r["m"]): (r["runs"], r["failures"], r["tin"], r["cost"]) for r in rows}


def test_ranges_merge_consecutive_minutes() -> None:
    m = MINUTE_NS
    assert ranges([5 * m, 3 * m, 4 * m, 9 * m]) == [(3 * m, 6 * m), (9 * m, 10 * m)]


def test_rollups_equal_a_recount_from_runs(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "r.duckdb"))
    for i in range(6):
        request, _ = journey_request(40, journey="ask" if i % 2 else "agent", start_ns=BASE + i * 25 * 10**9)
        flat = flatten(request, "t")
        store.submit_spans(flat.table, flat.resources).result(10)
    minutes = _minutes(store)
    expected = _brute_force(store)
    assert {k: (v["runs"], v["failures"], v["input_tokens"], v["cost_usd"]) for k, v in minutes.items()} == expected
    assert sum(v["runs"] for v in minutes.values()) == 240
    for row in minutes.values():
        assert len(row["duration_buckets"]) == len(DURATION_BUCKETS_MS) + 1
        assert sum(row["duration_buckets"]) == row["runs"]
        # Every run lasts 0.9 ms: all in the first bucket (up to 1 ms).
        assert row["duration_buckets"][0] == row["runs"]
    store.close()


def test_late_root_and_late_failure_adjust_their_minute(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "late.duckdb"))
    request, ids = journey_request(5, start_ns=BASE + 10 * 10**9)
    flat = flatten(request, "t")
    roots = flat.table.filter(flat.table.column("is_root"))
    children = flat.table.filter(pc.invert(flat.table.column("is_root")))
    store.submit_spans(children, flat.resources).result(10)
    assert _minutes(store) == {}  # no root yet: not a run

    store.submit_spans(roots, flat.resources).result(10)
    minutes = _minutes(store)
    assert {k: (v["runs"], v["failures"]) for k, v in minutes.items()} == {("ask", BASE): (5, 0)}

    # A late child of the first run says the user did not get an answer.
    late = ExportTraceServiceRequest()
    late.resource_spans.add().scope_spans.add().spans.append(
        Span(trace_id=bytes.fromhex(ids[0]), span_id=os.urandom(8), parent_span_id=os.urandom(8),
             name="judge", start_time_unix_nano=BASE + 11 * 10**9, end_time_unix_nano=BASE + 12 * 10**9,
             attributes=[KeyValue(key="aisre.outcome", value={"string_value": "failure"})])
    )
    flat = flatten(late, "t")
    store.submit_spans(flat.table, flat.resources).result(10)
    minutes = _minutes(store)
    assert {k: (v["runs"], v["failures"]) for k, v in minutes.items()} == {("ask", BASE): (5, 1)}
    assert minutes == {k: v for k, v in _minutes(store).items()}  # stable on a second refresh
    store.close()


def test_close_leaves_rollups_current(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    store = DuckDBStore(str(path), rollup_interval_ms=60_000)
    request, _ = journey_request(7, start_ns=BASE)
    flat = flatten(request, "t")
    store.submit_spans(flat.table, flat.resources).result(10)
    store.close()
    again = DuckDBStore(str(path))
    assert again._rows("SELECT sum(runs) AS n FROM run_minutes")[0]["n"] == 7
    again.close()
