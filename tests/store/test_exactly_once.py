"""Exactly-once spans: a span delivered again (same tenant, trace id, span id) is stored
and counted once within dedup_window_s, on a real DuckDB file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from aisre.core.model import RunQuery, SliRule
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from tests.otlp_factory import journey_request

S = 10**9
T0 = 1_790_000_000 * S // (60 * S) * (60 * S)
RULES = [SliRule(slo="ask-success", journey="ask", kind="outcome")]


def _store(path: Path, **kw: Any) -> DuckDBStore:
    store = DuckDBStore(str(path), **kw)
    store.set_sli_rules("t", RULES)
    return store


def _totals(store: DuckDBStore) -> dict[str, Any]:
    """Everything a delivery is counted in: runs, rollups, SLO minutes, cost minutes, scores."""
    store.flush_rollups()
    runs = sorted(
        (r["trace_id"], r["span_count"], r["llm_calls"], r["input_tokens"], r["output_tokens"], r["outcome"])
        for r in store.list_runs(RunQuery("t", limit=1000))
    )
    with store._reader() as cur:
        minutes = cur.execute(
            "SELECT minute_ns, runs, failures, llm_calls, input_tokens, output_tokens FROM run_minutes "
            "WHERE tenant = 't' ORDER BY ALL"
        ).fetchall()
        slo = cur.execute("SELECT slo, minute_ns, good, total FROM slo_minutes WHERE tenant = 't' ORDER BY ALL").fetchall()
        cost = cur.execute("SELECT count(*), sum(calls) FROM cost_minutes WHERE tenant = 't'").fetchall()
        scores = cur.execute("SELECT count(*) FROM scores WHERE tenant = 't'").fetchall()
    return {"spans": store.count_spans("t"), "runs": runs, "minutes": minutes, "slo": slo, "cost": cost,
            "scores": scores, "metrics": store.metric_totals("t")}


def _scored_request(traces: int, start_ns: int) -> Any:
    """Runs whose chat span carries a gen_ai.evaluation.result event (a score from a span)."""
    request, ids = journey_request(traces, start_ns=start_ns)
    for span in request.resource_spans[0].scope_spans[0].spans:
        if span.name == "chat":
            event = span.events.add(name="gen_ai.evaluation.result", time_unix_nano=span.end_time_unix_nano)
            kv = event.attributes.add(key="gen_ai.evaluation.name")
            kv.value.string_value = "groundedness"
            kv = event.attributes.add(key="gen_ai.evaluation.score.value")
            kv.value.double_value = 0.9
    return request, ids


def test_a_batch_delivered_twice_is_stored_and_counted_once(tmp_path: Path) -> None:
    request, _ = _scored_request(6, T0)
    once = _store(tmp_path / "once.duckdb")
    flat = flatten(request, "t", received_ns=T0 + S)
    assert once.submit_spans(flat.table, flat.resources, flat.scores).result(10) == 18
    expected = _totals(once)
    once.close()
    assert expected["spans"] == 18 and len(expected["runs"]) == 6 and expected["scores"] == [(6,)]
    assert expected["slo"] == [("ask-success", T0, 6, 6)]

    twice = _store(tmp_path / "twice.duckdb")
    first = flatten(request, "t", received_ns=T0 + S)
    again = flatten(request, "t", received_ns=T0 + 30 * S)  # an exporter's retry half a minute later
    assert twice.submit_spans(first.table, first.resources, first.scores).result(10) == 18
    assert twice.submit_spans(again.table, again.resources, again.scores).result(10) == 0  # acknowledged, not stored
    assert _totals(twice) == expected
    assert twice.stats()["duplicate_spans"] == 18
    twice.close()


def test_a_copy_in_the_same_group_commit_is_stored_once(tmp_path: Path) -> None:
    request, _ = journey_request(5, start_ns=T0)
    once = _store(tmp_path / "once.duckdb")
    flat = flatten(request, "t", received_ns=T0)
    once.submit_spans(flat.table, flat.resources).result(10)
    expected = _totals(once)
    once.close()

    # A long commit wait gathers both requests into one transaction.
    store = _store(tmp_path / "group.duckdb", max_wait_ms=500)
    a, b = flatten(request, "t", received_ns=T0), flatten(request, "t", received_ns=T0 + S)
    futures = [store.submit_spans(a.table, a.resources), store.submit_spans(b.table, b.resources)]
    assert sorted(f.result(10) for f in futures) == [0, 15]
    assert store.writer_stats.commits == 1
    assert _totals(store) == expected
    store.close()


def test_a_split_trace_with_one_part_resent_counts_once(tmp_path: Path) -> None:
    request, ids = journey_request(4, start_ns=T0)
    flat = flatten(request, "t", received_ns=T0)
    roots = flat.table.filter(flat.table.column("is_root"))
    children = flat.table.filter(pc.invert(flat.table.column("is_root")))

    once = _store(tmp_path / "once.duckdb")
    once.submit_spans(children, flat.resources).result(10)
    once.submit_spans(roots, flat.resources).result(10)
    expected = _totals(once)
    once.close()
    assert [r[1:] for r in expected["runs"]] == [(3, 2, 112, 20, "success")] * 4

    store = _store(tmp_path / "resent.duckdb")
    store.submit_spans(children, flat.resources).result(10)
    store.submit_spans(roots, flat.resources).result(10)
    # The children's request timed out at the exporter after we committed it: sent again.
    resent = children.set_column(
        children.schema.get_field_index("received_ns"), "received_ns", pa.array([T0 + 5 * S] * children.num_rows)
    )
    assert store.submit_spans(resent, flat.resources).result(10) == 0
    # And the roots again, after the writer forgot the traces (a restart, or a long gap).
    store.close()
    store = _store(tmp_path / "resent.duckdb")
    # With one trace the writer remembers (it just took a new span of it) and three it
    # forgot: the first attempt conflicts and is redone, and the duplicates count once.
    fresh, _ = journey_request(1, start_ns=T0)
    first_child = flatten(fresh, "t", received_ns=T0 + 6 * S).table.slice(1, 1)
    remembered = first_child.set_column(first_child.schema.get_field_index("trace_id"), "trace_id", pa.array([ids[0]]))
    assert store.submit_spans(remembered, flat.resources).result(10) == 1
    expected_spans = expected["spans"] + 1
    assert store.submit_spans(roots, flat.resources).result(10) == 0
    assert store.stats()["duplicate_spans"] == 4
    got = _totals(store)
    assert got["spans"] == expected_spans and got["slo"] == expected["slo"]
    assert [r for r in got["runs"] if r[0] != ids[0]] == [r for r in expected["runs"] if r[0] != ids[0]]
    # The new span of a known trace was taken, and counted in its run.
    runs = {r["trace_id"]: r for r in store.list_runs(RunQuery("t"))}
    assert runs[ids[0]]["span_count"] == 4 and runs[ids[1]]["span_count"] == 3
    store.close()


def test_a_copy_older_than_the_window_is_stored_again(tmp_path: Path) -> None:
    """Outside dedup_window_s the check no longer looks: the README says so."""
    request, _ = journey_request(2, start_ns=T0)
    store = _store(tmp_path / "w.duckdb", dedup_window_s=3600)
    first = flatten(request, "t", received_ns=T0)
    within = flatten(request, "t", received_ns=T0 + 3599 * S)
    after = flatten(request, "t", received_ns=T0 + 3601 * S)
    assert store.submit_spans(first.table, first.resources).result(10) == 6
    assert store.submit_spans(within.table, within.resources).result(10) == 0
    assert store.submit_spans(after.table, after.resources).result(10) == 6
    store.close()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT span_id) FROM spans").fetchone() == (12, 6)


def test_a_forgotten_trace_resent_in_two_requests_of_one_group_counts_once(tmp_path: Path) -> None:
    request, _ = journey_request(3, start_ns=T0)
    flat = flatten(request, "t", received_ns=T0)
    roots = flat.table.filter(flat.table.column("is_root"))
    children = flat.table.filter(pc.invert(flat.table.column("is_root")))
    once = _store(tmp_path / "once.duckdb")
    once.submit_spans(flat.table, flat.resources).result(10)
    expected = _totals(once)
    once.close()

    store = _store(tmp_path / "g.duckdb")
    store.submit_spans(flat.table, flat.resources).result(10)
    store.close()
    # Reopened, the writer remembers nothing; the trace comes again split over two requests
    # that one group commit takes together.
    store = _store(tmp_path / "g.duckdb", max_wait_ms=500)
    futures = [store.submit_spans(children, flat.resources), store.submit_spans(roots, flat.resources)]
    assert [f.result(10) for f in futures] == [0, 0]
    assert store.writer_stats.commits == 1
    assert _totals(store) == expected and store.stats()["duplicate_spans"] == 9
    store.close()
