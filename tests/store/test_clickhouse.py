"""What the ClickHouse backend adds to the contract suite: exactly-once inside the engine,
ingest nodes that keep no state another needs, and a schema that is what RUN_MERGE says.

Runs on chdb (the ClickHouse engine in-process). chdb holds one session per process, so
"two ingest nodes" are two stores, each with its own writer and commit order, sharing one
engine: what two `aisre up` processes against one server share.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aisre.core.model import RunQuery, SliRule, TimeRange
from aisre.core.schema import MINUTE_NS
from aisre.normalize.runs import trace_partials_of
from aisre.normalize.spans import flatten
from aisre.store.clickhouse.client import ChdbClient
from aisre.store.clickhouse.semantics import run_parts_ddl, run_parts_in_ddl, run_parts_mv_ddl
from aisre.store.clickhouse.store import ClickHouseStore
from aisre.store.factory import open_store
from tests.otlp_factory import journey_request

pytest.importorskip("chdb")

T0 = 1_790_000_040 * 10**9  # 40 s into a minute: a request's 20 runs stay in one minute
RULES = [SliRule(slo="ask-ok", journey="ask", kind="outcome"),
         SliRule(slo="ask-chat", journey="ask", kind="step", operation="chat", latency_ns=10**9)]


def _request(traces: int, start_ns: int = T0) -> tuple[pa.Table, pa.Table]:
    flat = flatten(journey_request(traces, start_ns=start_ns)[0], "t")
    return flat.table, flat.resources


@pytest.fixture
def client(tmp_path: Path) -> Iterator[ChdbClient]:
    c = ChdbClient(str(tmp_path / "ch"))
    try:
        yield c
    finally:
        c.close()


def _store(client: ChdbClient) -> ClickHouseStore:
    store = ClickHouseStore(client, retention_days=0)
    store.set_sli_rules("t", RULES)
    return store


def _counts(store: ClickHouseStore) -> dict[str, Any]:
    """Everything a delivery is counted in."""
    store.flush_rollups()
    totals = store.metric_totals("t")
    arrays = store.slo_minute_arrays("t", 0, 2**62)
    return {
        "spans": store.count_spans("t"),
        "runs": sorted((r["trace_id"], r["span_count"], r["llm_calls"], r["outcome"])
                       for r in store.list_runs(RunQuery("t", limit=1000))),
        "run_minutes": [(r["journey"], r["runs"], r["failures"]) for r in totals["runs"]],
        "slo": {slo: (int(g.sum()), int(t.sum())) for slo, (_, g, t) in arrays.items()},
        "roots": store.client.query("SELECT count() AS n FROM run_roots FINAL").column("n")[0].as_py(),
    }


def test_a_batch_sent_twice_is_stored_and_counted_once(client: ChdbClient) -> None:
    store = _store(client)
    spans, res = _request(20)
    assert store.submit_spans(spans, res).result(60) == 60
    once = _counts(store)
    assert once["spans"] == 60 and len(once["runs"]) == 20 and once["roots"] == 20
    assert once["run_minutes"] == [("ask", 20, 0)]
    assert once["slo"] == {"ask-ok": (20, 20), "ask-chat": (20, 20)}
    # Again, and once more within one group commit: acknowledged, stored nowhere.
    assert store.submit_spans(spans, res).result(60) == 0
    assert store.stats()["duplicate_spans"] == 60
    assert _counts(store) == once
    store.close()


def test_a_group_retried_after_its_partials_were_written_is_stored_once(client: ChdbClient) -> None:
    """A node dies after inserting a group's run partials and before its spans: the client
    retries, the spans are not stored so the group is inserted again whole, and the engine
    drops the partials (and what its views made of them) by their deduplication token."""
    store = _store(client)
    spans, res = _request(20)
    store._insert_parts([spans], [trace_partials_of(spans)])  # the first attempt, cut short
    assert store.submit_spans(spans, res).result(60) == 60
    counts = _counts(store)
    assert counts["spans"] == 60 and counts["roots"] == 20
    assert {r[1] for r in counts["runs"]} == {3}  # not 6: the partials counted once
    assert counts["run_minutes"] == [("ask", 20, 0)]
    # The whole group inserted twice at the engine: the tokens drop the second copy.
    more, more_res = _request(5, T0 + 3 * MINUTE_NS)
    for _ in range(2):
        store._insert([more], [trace_partials_of(more)], more_res, [pa.table({"tenant": pa.array([], pa.string())})])
    counts = _counts(store)
    assert counts["spans"] == 75 and counts["roots"] == 25 and {r[1] for r in counts["runs"]} == {3}
    assert counts["run_minutes"] == [("ask", 25, 0)]
    store.close()


def test_requests_retried_into_other_groups_on_another_node_are_stored_once(client: ChdbClient) -> None:
    """Two requests committed as one group on node A, cut short after their partials; the
    client retries each on node B, one alone and one grouped with a new request: each
    request's partials carry a token of their own, so nothing counts twice."""
    a, b = _store(client), _store(client)
    (one, one_res), (two, two_res), (new, new_res) = (_request(10, T0 + k * 10**9) for k in range(3))
    a._insert_parts([one, two], [trace_partials_of(one), trace_partials_of(two)])  # A dies here
    assert b.submit_spans(two, two_res).result(60) == 30
    futures = [b.submit_spans(new, new_res), b.submit_spans(one, one_res)]  # may share a group
    assert [f.result(60) for f in futures] == [30, 30]
    counts = _counts(b)
    assert counts["spans"] == 90 and counts["roots"] == 30 and len(counts["runs"]) == 30
    assert {r[1] for r in counts["runs"]} == {3}
    assert counts["run_minutes"] == [("ask", 30, 0)]
    a.close()
    b.close()


@pytest.mark.parametrize("root_first", [False, True])
def test_a_trace_split_across_two_ingest_nodes_assembles_into_one_run(client: ChdbClient, root_first: bool) -> None:
    """Children on one node, roots on the other (in either order): one run per trace, with
    the totals of the whole trace, counted once in its minute."""
    a, b = _store(client), _store(client)
    spans, res = _request(20)
    roots, children = spans.filter(spans.column("is_root")), spans.filter(pc.invert(spans.column("is_root")))
    first, second = (roots, children) if root_first else (children, roots)
    a.submit_spans(first, res).result(60)
    b.submit_spans(second, res).result(60)
    for node in (a, b):  # each node's writer recounts the minutes its own commits touched
        node.flush_rollups()
    for node in (a, b):
        counts = _counts(node)
        assert counts["spans"] == 60 and counts["roots"] == 20
        assert {r[1:] for r in counts["runs"]} == {(3, 2, "success")}
        assert counts["run_minutes"] == [("ask", 20, 0)]
        assert counts["slo"] == {"ask-ok": (20, 20), "ask-chat": (20, 20)}
        assert node.incomplete_traces("t") == 0
    summary = a.journey_summaries(TimeRange("t"))
    assert [(s["journey"], s["runs"], s["llm_calls_per_run"]) for s in summary] == [("ask", 20, 2.0)]
    a.close()
    b.close()


def test_the_migration_holds_the_run_tables_compiled_from_run_merge() -> None:
    """0002_runs.sql is what store/clickhouse/semantics.py compiles from RUN_MERGE, so the
    merge rules have one source."""
    sql = resources.files("aisre.store.clickhouse").joinpath("migrations", "0002_runs.sql").read_text()
    for ddl in (run_parts_ddl(), run_parts_in_ddl(), run_parts_mv_ddl()):
        assert ddl + ";\n" in sql


def test_open_store_names_chdb_and_clickhouse_urls(tmp_path: Path) -> None:
    store = open_store(f"chdb://{tmp_path}/ch", retention_days=0)
    try:
        assert store.backend == "clickhouse" and store.schema_version() == 8
        with pytest.raises(NotImplementedError, match=r"cost\.put_budget is not yet on ClickHouse"):
            store.cost.put_budget({"tenant": "t"})
    finally:
        store.close()


def test_the_server_refuses_a_clickhouse_store_without_a_control_plane() -> None:
    """ClickHouse holds the data plane only: `aisre up` on it needs --control (a server with
    both runs in tests/integration/test_clickhouse_server.py)."""
    from aisre.core.settings import Settings
    from aisre.store.factory import BadStoreSetting, check_store_settings

    for url in ("chdb:///tmp/x", "clickhouse://default:@localhost:8123/aisre"):
        with pytest.raises(BadStoreSetting, match="--control postgresql://"):
            check_store_settings(url, Settings())


def _members(proto: type) -> set[str]:
    return {n for k in proto.__mro__ if k.__name__ not in ("Protocol", "Generic", "object")
            for n in vars(k) if not n.startswith("_")}


def test_every_port_of_the_protocol_is_there_or_says_it_is_not_yet(tmp_path: Path) -> None:
    """No missing attribute: a port is implemented, or raises NotImplementedError naming
    itself and issue 17 (the report lists them)."""
    from aisre.store import protocol
    from aisre.store.clickhouse.store import COST_NOT_YET, INCIDENTS_NOT_YET, NOT_YET

    store = ClickHouseStore(ChdbClient(str(tmp_path / "ch")), retention_days=0)
    try:
        for proto, part, not_yet in ((protocol.Store, store, NOT_YET), (protocol.IncidentStore, store.incidents,
                                     INCIDENTS_NOT_YET), (protocol.CostStore, store.cost, COST_NOT_YET)):
            missing = [n for n in _members(proto) if n != "expiry" and not hasattr(part, n)]
            assert missing == [], proto.__name__
            for name in not_yet:
                with pytest.raises(NotImplementedError, match="not yet on ClickHouse"):
                    getattr(part, name)()
    finally:
        store.close()


def test_spans_past_their_tenants_retention_are_dropped_by_ttl(client: ChdbClient) -> None:
    """Each span carries its tenant's retention from ingest; the engine's TTL drops whole
    parts past it, and a retention of 0 keeps spans for ever; with expiry off
    (retention_interval_s 0) nothing is stamped to expire."""
    off = ClickHouseStore(client, retention_days=1)
    spans, res = _request(5, T0 - 400 * 86_400 * 10**9)
    off.submit_spans(spans, res).result(60)
    client.command("OPTIMIZE TABLE spans FINAL")
    assert off.count_spans("t") == 15
    off.flush_rollups()
    for table in ("spans", "run_parts", "run_roots", "run_minutes", "slo_minutes", "cost_minutes"):
        client.command(f"TRUNCATE TABLE {table}")
    store = ClickHouseStore(client, retention_days=1, retention_overrides={"keep": 0}, retention_interval_s=60)
    old = T0 - 400 * 86_400 * 10**9  # more than a year before the fixed start: long expired
    spans, res = _request(5, old)
    store.submit_spans(spans, res).result(60)
    kept = spans.set_column(spans.schema.get_field_index("tenant"), "tenant", pa.array(["keep"] * spans.num_rows))
    store.submit_spans(kept, res).result(60)
    client.command("OPTIMIZE TABLE spans FINAL")
    assert store.count_spans("t") == 0
    assert store.count_spans("keep") == 15
    store.close()
    off.close()  # nothing left to roll up: the shared client is closed already


def test_a_server_url_names_no_local_file_and_keeps_its_credentials_out_of_paths() -> None:
    from aisre.store.factory import parse_store_url

    assert parse_store_url("chdb:///var/lib/aisre/ch").local_file == "/var/lib/aisre/ch"
    server = parse_store_url("clickhouse://default:secret@db.internal:8123/aisre")
    assert (server.backend, server.local_file) == ("clickhouse", None)


def test_two_ingest_nodes_taking_halves_of_traces_at_once_lose_and_double_nothing(client: ChdbClient) -> None:
    """Ten requests, each cut in two (children to one node, roots to the other), sent to
    both nodes at the same time from two threads; the redelivery of every roots request to
    the other node is acknowledged and stored nowhere."""
    from concurrent.futures import ThreadPoolExecutor

    a, b = _store(client), _store(client)
    requests = [_request(20, T0 + k * 10**9) for k in range(10)]

    def send(node: ClickHouseStore, roots: bool) -> int:
        total = 0
        for spans, res in requests:
            mask = spans.column("is_root") if roots else pc.invert(spans.column("is_root"))
            total += node.submit_spans(spans.filter(mask), res).result(60)
        return total

    with ThreadPoolExecutor(2) as pool:
        stored = [f.result() for f in [pool.submit(send, a, False), pool.submit(send, b, True)]]
    assert stored == [400, 200]
    assert send(a, True) == 0  # the roots again, on the other node
    for node in (a, b):
        node.flush_rollups()
    counts = _counts(a)
    assert counts["spans"] == 600 and counts["roots"] == 200 and len(counts["runs"]) == 200
    assert {r[1:] for r in counts["runs"]} == {(3, 2, "success")}
    assert counts["run_minutes"] == [("ask", 200, 0)]
    assert counts["slo"] == {"ask-ok": (200, 200), "ask-chat": (200, 200)}
    a.close()
    b.close()


def test_runs_expire_with_their_spans_and_the_rollups_outlive_them(client: ChdbClient) -> None:
    """Runs stored while expiry was off, then past a 1-day retention (stamped by a
    mutation, as if the days had passed): the runs go with their spans, and the rollups keep
    their counts even when the expired minutes are recounted (a repair, an SLO backfill)."""
    before_store = _store(client)
    old = T0 - 400 * 86_400 * 10**9
    spans, res = _request(5, old)
    before_store.submit_spans(spans, res).result(60)
    counted = _counts(before_store)
    assert counted["run_minutes"] == [("ask", 5, 0)] and counted["slo"]["ask-ok"] == (5, 5)
    for table in ("spans", "run_parts", "run_roots"):
        client.command(f"ALTER TABLE {table} UPDATE retention_days = 1 WHERE tenant = 't' SETTINGS mutations_sync = 1")
        client.command(f"OPTIMIZE TABLE {table} FINAL")
    # Rollups kept for ever here: the runs are older than the 400 days a minute is kept by default.
    store = ClickHouseStore(client, retention_days=1, retention_interval_s=60, rollup_retention_days=0)
    store.set_sli_rules("t", RULES)  # the server sets its rules at start: a backfill
    store.rebuild_rollups("t", old - MINUTE_NS, old + MINUTE_NS)
    assert store.count_spans("t") == 0 and store.list_runs(RunQuery("t")) == []
    after = _counts(store)
    assert (after["run_minutes"], after["slo"]) == (counted["run_minutes"], counted["slo"])
    store.close()
    before_store.close()  # nothing left to roll up: the shared client is closed already


def test_rollups_older_than_rollup_retention_are_dropped_by_ttl(client: ChdbClient) -> None:
    """With expiry on, the minute rollups get a table TTL of rollup_retention_days: the
    engine drops minutes older than that (here forced by OPTIMIZE … FINAL) and keeps recent
    ones; with expiry off there is no TTL and every minute stays."""
    import time

    off = ClickHouseStore(client, retention_days=0)
    off.set_sli_rules("t", RULES)
    now = time.time_ns() // MINUTE_NS * MINUTE_NS
    for start in (now - 40 * 86_400 * 10**9, now - 3600 * 10**9):
        spans, res = _request(5, start + 10**9)
        off.submit_spans(spans, res).result(60)
    off.flush_rollups()
    for table in ("run_minutes", "slo_minutes", "cost_minutes", "metric_minutes"):
        client.command(f"OPTIMIZE TABLE {table} FINAL")
        ddl = client.query(f"SELECT create_table_query AS q FROM system.tables WHERE name = '{table}'").column("q")[0]
        assert " TTL " not in ddl.as_py(), table
    assert [r["runs"] for r in off.metric_totals("t")["runs"]] == [10]
    store = ClickHouseStore(client, retention_days=0, retention_interval_s=60, rollup_retention_days=30)
    for table in ("run_minutes", "slo_minutes", "cost_minutes", "metric_minutes"):
        ddl = client.query(f"SELECT create_table_query AS q FROM system.tables WHERE name = '{table}'").column("q")[0]
        assert "toIntervalDay(30)" in ddl.as_py(), table
        client.command(f"OPTIMIZE TABLE {table} FINAL")
    assert [r["runs"] for r in store.metric_totals("t")["runs"]] == [5]
    assert [int(m) for m in store.slo_minute_arrays("t", 0, 2**62)["ask-ok"][0]] == [now - 3600 * 10**9]
    assert store.count_spans("t") == 30  # raw spans of a tenant kept for ever stay
    store.close()
    off.close()  # nothing left to roll up: the shared client is closed already


def test_a_tenants_retention_setting_stamps_the_spans_that_arrive_after_it(client: ChdbClient) -> None:
    """set_retention (kept in PostgreSQL by the split store, applied here) changes the stamp of
    spans that arrive from then on; spans stored before keep theirs; None goes back to the
    default. retention() says where the value comes from and the dedup window it promises
    (the setting's, cut to a shorter retention)."""
    import time

    store = ClickHouseStore(client, retention_days=14, retention_interval_s=60, dedup_window_s=200_000)
    day = 86_400 * 10**9
    recent = time.time_ns() // MINUTE_NS * MINUTE_NS - 3600 * 10**9  # within every retention here
    try:
        store.submit_spans(*_request(2, recent - day)).result(60)
        assert store.set_retention("t", 2.5) == {"tenant": "t", "retention_days": 2.5, "source": "api",
                                                 "rollup_retention_days": 400.0, "dedup_window_s": 200_000.0}
        store.submit_spans(*_request(2, recent)).result(60)
        found = client.query("SELECT start_ns < {t:Int64} AS before, any(retention_days) AS d FROM spans GROUP BY before",
                             {"t": recent - day // 2})
        stamps = dict(zip(found.column("before").to_pylist(), found.column("d").to_pylist(), strict=True))
        assert stamps == {True: 14, False: 3}  # whole days, rounded up; the earlier spans keep theirs
        assert store.set_retention("t", None)["source"] == "default"
        assert store.retention("t")["retention_days"] == 14
        assert store.set_retention("u", 1)["dedup_window_s"] == 86_400.0  # kept one day: the window too
    finally:
        store.close()
