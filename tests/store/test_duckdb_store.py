"""The embedded store: migrations, group commit, journey-run maintenance, late spans."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aisre.core.errors import NotFound, RetryableError
from aisre.core.model import RunQuery, TimeRange
from aisre.normalize.runs import trace_partials_of
from aisre.normalize.spans import flatten
from aisre.receive.otlp_decode import parse_request
from aisre.store.duckdb import DuckDBStore
from aisre.store.writer import Writer
from tests.conftest import capture_files, capture_truth
from tests.otlp_factory import journey_request

# Migrations are numbered files: the newest number is the schema version.
LATEST = max(int(p.name.split("_")[0]) for p in (Path(__file__).parents[2] / "src/aisre/store/duckdb/migrations").glob("*.sql"))


def _store(path: Path, **kw) -> DuckDBStore:
    return DuckDBStore(str(path), **kw)


def test_migrations_apply_once_and_data_survives_reopen(tmp_path: Path) -> None:
    store = _store(tmp_path / "a.duckdb")
    request, ids = journey_request(5)
    b = flatten(request, "t")
    store.submit_spans(b.table, b.resources).result(10)
    assert store.schema_version() == LATEST
    store.close()
    store.close()  # idempotent
    again = _store(tmp_path / "a.duckdb")
    assert again.schema_version() == LATEST
    assert again.count_spans("t") == 15
    assert {r["trace_id"] for r in again.list_runs(RunQuery("t"))} == set(ids)
    again.close()


def test_late_root_completes_the_run_without_double_counting(tmp_path: Path) -> None:
    store = _store(tmp_path / "late.duckdb")
    request, ids = journey_request(4)
    flat = flatten(request, "t")
    table, res = flat.table, flat.resources
    roots = table.filter(table.column("is_root"))
    children = table.filter(pc.invert(table.column("is_root")))
    store.submit_spans(children, res).result(10)
    early = {r["trace_id"]: r for r in store.list_runs(RunQuery("t"))}
    assert {r["outcome"] for r in early.values()} == {"incomplete"}
    assert all(r["llm_calls"] == 2 for r in early.values())
    run, spans = store.get_trace("t", ids[0])
    assert len(spans) == 2 and not run["has_root"]

    store.submit_spans(roots, res).result(10)
    runs = {r["trace_id"]: r for r in store.list_runs(RunQuery("t"))}
    for run in runs.values():
        assert (run["journey"], run["outcome"]) == ("ask", "success")
        assert (run["span_count"], run["llm_calls"], run["input_tokens"], run["output_tokens"]) == (3, 2, 112, 20)
        assert run["duration_ns"] == 900_000
    assert store.incomplete_traces("t") == 0
    store.close()


def test_capture_sent_span_by_span_in_reverse_gives_same_runs(tmp_path: Path) -> None:
    """The worst case for late spans: every span in its own commit, children before roots."""
    store = _store(tmp_path / "rev.duckdb")
    flats = [flatten(parse_request(p.read_bytes(), "protobuf"), "t") for p in capture_files("otel-genai")]
    rows = [(f.table.slice(i, 1), f.resources) for f in flats for i in range(f.table.num_rows)]
    for row, res in reversed(rows):
        store.submit_spans(row, res).result(10)
    truth = capture_truth("otel-genai")["driver"]
    summaries = {s["journey"]: s for s in store.journey_summaries(TimeRange("t"))}
    assert {k: v["runs"] for k, v in summaries.items()} == truth["journeys"]
    assert sum(v["retries"] for v in summaries.values()) == truth["app_level_retries"]
    assert summaries["ask"]["failures"] == 1
    store.close()


def test_tenants_do_not_see_each_other(tmp_path: Path) -> None:
    store = _store(tmp_path / "ten.duckdb")
    request, ids = journey_request(2)
    b = flatten(request, "a")
    store.submit_spans(b.table, b.resources).result(10)
    assert store.list_runs(RunQuery("b")) == []
    with pytest.raises(NotFound):
        store.get_trace("b", ids[0])
    assert store.count_spans("b") == 0
    store.close()


def test_close_commits_everything_already_accepted(tmp_path: Path) -> None:
    store = _store(tmp_path / "drain.duckdb")
    batches = [flatten(journey_request(20)[0], "t") for _ in range(10)]
    futures = [store.submit_spans(b.table, b.resources) for b in batches]
    store.close()
    assert all(f.result(0) == 60 for f in futures)
    again = _store(tmp_path / "drain.duckdb")
    assert again.count_spans() == 600
    again.close()


def test_writer_refuses_when_full_and_never_grows() -> None:
    gate = threading.Event()
    committed: list[int] = []

    def slow_commit(tables):
        gate.wait(10)
        committed.append(sum(t.num_rows for t in tables))  # the batches are tables here

    writer = Writer(slow_commit, max_queued_spans=100, max_commit_spans=1000, max_wait_ms=0)
    table = flatten(journey_request(20)[0], "t").table  # 60 spans
    first = writer.submit(table, table.num_rows)
    with pytest.raises(RetryableError) as refused:
        writer.submit(table, table.num_rows)
    assert refused.value.overloaded and "queue is full" in refused.value.message
    assert writer.stats.refused_full == 1
    gate.set()
    assert first.result(10) == 60
    writer.close()
    assert committed == [60]


def test_commit_failure_is_reported_to_every_waiter_and_writer_lives() -> None:
    calls = {"n": 0}

    def flaky(tables):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")

    writer = Writer(flaky, max_queued_spans=10_000, max_commit_spans=1000, max_wait_ms=0)
    table = flatten(journey_request(2)[0], "t").table
    with pytest.raises(RetryableError, match="disk full"):
        writer.submit(table, table.num_rows).result(10)
    assert writer.submit(table, table.num_rows).result(10) == 6
    writer.close()


def test_late_span_for_a_trace_the_writer_forgot_is_merged(tmp_path: Path) -> None:
    """After a restart the writer remembers no trace ids: a late root takes the merge path."""
    request, ids = journey_request(3)
    flat = flatten(request, "t")
    table = flat.table
    store = _store(tmp_path / "forgot.duckdb")
    store.submit_spans(table.filter(pc.invert(table.column("is_root"))), flat.resources).result(10)
    store.close()
    store = _store(tmp_path / "forgot.duckdb")
    request2, new_ids = journey_request(2)
    both = pa.concat_tables([table.filter(table.column("is_root")), flatten(request2, "t").table])
    store.submit_spans(both, flat.resources).result(10)
    runs = {r["trace_id"]: r for r in store.list_runs(RunQuery("t"))}
    assert set(runs) == set(ids) | set(new_ids)
    assert all(r["outcome"] == "success" and r["span_count"] == 3 for r in runs.values())
    store.close()


def test_one_trace_in_two_requests_of_one_commit(tmp_path: Path) -> None:
    store = _store(tmp_path / "group.duckdb")
    request, _ = journey_request(5)
    flat = flatten(request, "t")
    table = flat.table
    roots_t = table.filter(table.column("is_root"))
    children_t = table.filter(pc.invert(table.column("is_root")))
    roots = store.prepare(roots_t, trace_partials_of(roots_t), flat.resources)
    children = store.prepare(children_t, trace_partials_of(children_t), flat.resources)
    store._commit([roots, children])  # what a group commit of the two requests does
    runs = store.list_runs(RunQuery("t"))
    assert len(runs) == 5 and all(r["span_count"] == 3 and r["llm_calls"] == 2 for r in runs)
    store.close()


def _bulk_traces(store: DuckDBStore, tenant: str, n: int) -> None:
    """n bare trace rows straight in SQL: enough to grow the (tenant, trace_id) index."""
    columns = store._conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'traces' AND is_nullable = 'NO' AND column_name NOT IN ('tenant', 'trace_id')"
    ).fetchall()
    zero = {"BOOLEAN": "false", "VARCHAR": "''", "DOUBLE": "0.0"}
    select = ", ".join(f"{zero.get(kind, '0')} AS {name}" for name, kind in columns)
    store._conn.execute(
        f"INSERT INTO traces BY NAME SELECT '{tenant}' AS tenant, md5(i::VARCHAR) AS trace_id, {select} FROM range({n}) r(i)"
    )


def test_memory_report_and_an_index_outgrowing_the_limit_is_refused_naming_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "grown.duckdb"
    store = _store(path, memory_limit="2GB")
    _bulk_traces(store, "t", 1_000_000)
    store.close()

    small = _store(path, memory_limit="16MB")
    memory = small.memory()
    assert memory["limit_bytes"] == pytest.approx(16_000_000, rel=0.01)
    flat = flatten(journey_request(5000)[0], "t")  # new random ids reach all over the index
    # The index (~50 MB for 1M traces) cannot be loaded under 16 MB: the commit fails with
    # what to do about it, the sender is told to retry, and the writer lives on.
    with pytest.raises(RetryableError, match=r"raise db_memory_limit") as refused:
        small.submit_spans(flat.table, flat.resources).result(30)
    assert "must fit whole" in str(refused.value)
    assert small.stats()["failed_commits"] == 1
    small.close()

    roomy = _store(path)  # the default limit holds it: the retried batch commits
    roomy.submit_spans(flat.table, flat.resources).result(30)
    assert roomy.count_spans("t") == flat.accepted
    memory = roomy.memory()
    assert memory["limit_bytes"] == pytest.approx(1_000_000_000, rel=0.01)
    assert 20 * 1_000_000 < memory["index_bytes"] < 200 * 1_000_000
    roomy.close()
