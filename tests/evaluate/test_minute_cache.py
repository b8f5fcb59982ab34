"""Cached minute counts agree with the store after every kind of change: new runs, late
spans in a past minute, SLOs replaced, and a journal too old to replay."""

from __future__ import annotations

import time
from pathlib import Path

from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import specs_from_text
from aisre.normalize.spans import flatten
from aisre.store.changes import MinuteJournal
from aisre.store.duckdb import DuckDBStore
from tests.otlp_factory import journey_request

SPECS = """
slos:
  - {name: ask-ok, journey: ask, objective: 99, window: 7d, sli: {kind: outcome}}
  - {name: ask-fast, journey: ask, objective: 95, window: 30d, sli: {kind: latency, latency_ms: 50}}
"""
MINUTE = 60 * 10**9


def _submit(store: DuckDBStore, runs: int, start_ns: int, fail: bool = False) -> None:
    request, _ = journey_request(runs, start_ns=start_ns)
    flat = flatten(request, "t")
    table = flat.table
    if fail:
        index = table.schema.get_field_index("marks_failure")
        table = table.set_column(index, "marks_failure", table.column("is_root"))
    store.submit_spans(table, flat.resources).result(10)
    store.flush_rollups()


def _uncached(store: DuckDBStore, engine: SloEngine, now: int) -> list[dict]:
    fresh = SloEngine(store)
    fresh.apply("t", engine.specs("t"))  # same rules: nothing is backfilled
    return fresh.statuses("t", now)


def test_cached_statuses_match_a_fresh_read_after_each_change(tmp_path: Path) -> None:
    now = time.time_ns()
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    try:
        engine = SloEngine(store)
        engine.apply("t", specs_from_text(SPECS, "slos.yaml"))
        _submit(store, 20, now - 3 * 3600 * 10**9)
        first = engine.statuses("t", now)
        assert [d["total"] for d in first] == [20, 20]
        assert first == _uncached(store, engine, now)

        # Live runs, half failing, in the current minutes.
        _submit(store, 10, now - 2 * MINUTE, fail=True)
        live = engine.statuses("t", now)
        assert (live[0]["good"], live[0]["total"]) == (20, 30)
        assert live == _uncached(store, engine, now)

        # A late batch for a minute two days back changes that minute only.
        _submit(store, 5, now - 2 * 86400 * 10**9, fail=True)
        late = engine.statuses("t", now)
        assert (late[0]["good"], late[0]["total"]) == (20, 35)
        assert late == _uncached(store, engine, now)

        # Replacing the SLOs reloads everything.
        engine.apply("t", specs_from_text(SPECS.replace("objective: 99,", "objective: 90,"), "slos.yaml"))
        replaced = engine.statuses("t", now)
        assert replaced[0]["objective"] == 90
        assert replaced == _uncached(store, engine, now)
    finally:
        store.close()


def test_a_reader_behind_the_journal_reloads(tmp_path: Path) -> None:
    now = time.time_ns()
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    try:
        store._slo_changes = MinuteJournal(max_minutes=1)
        engine = SloEngine(store)
        engine.apply("t", specs_from_text(SPECS, "slos.yaml"))
        _submit(store, 4, now - 10 * MINUTE)
        assert engine.statuses("t", now)[0]["total"] == 4
        # Two rebuilds of different minutes overflow a one-minute journal.
        _submit(store, 3, now - 5 * MINUTE, fail=True)
        _submit(store, 2, now - 3 * MINUTE, fail=True)
        statuses = engine.statuses("t", now)
        assert (statuses[0]["good"], statuses[0]["total"]) == (4, 9)
        assert statuses == _uncached(store, engine, now)
    finally:
        store.close()


def test_rebuild_rollups_recounts_a_range(tmp_path: Path) -> None:
    now = time.time_ns()
    store = DuckDBStore(str(tmp_path / "s.duckdb"), rollup_interval_ms=0)
    try:
        engine = SloEngine(store)
        engine.apply("t", specs_from_text(SPECS, "slos.yaml"))
        request, _ = journey_request(6, start_ns=now - 30 * MINUTE)
        flat = flatten(request, "t")
        store.submit_spans(flat.table, flat.resources).result(10)
        # Rollups off: nothing is counted until the range is rebuilt by hand.
        assert engine.statuses("t", now)[0]["total"] == 0
        since = now - 3600 * 10**9
        minutes = len(range(since // MINUTE * MINUTE, now + MINUTE, MINUTE))
        assert store.rebuild_rollups("t", since, now + MINUTE) == minutes
        assert engine.statuses("t", now)[0]["total"] == 6
    finally:
        store.close()


def test_first_minutes_follow_data_that_arrives_after_the_first_read(tmp_path) -> None:
    """An SLO read before it had events learns where they begin once they arrive, including
    events older than any seen so far."""
    import time

    from aisre.evaluate.minute_cache import MinuteCache
    from aisre.evaluate.slo import SloEngine
    from aisre.evaluate.specs import load_specs
    from aisre.normalize.spans import flatten
    from aisre.store.duckdb import DuckDBStore
    from tests.otlp_factory import journey_request

    spec = tmp_path / "s.yaml"
    spec.write_text("slos:\n  - name: a\n    journey: ask\n    objective: 99\n    sli: {kind: outcome}\n")
    store = DuckDBStore(str(tmp_path / "f.duckdb"))
    SloEngine(store).apply("t", load_specs([spec]))
    cache = MinuteCache(store)
    assert cache.first_minutes("t", ["a"]) == {}
    now = time.time_ns()
    for start in (now - 60 * 10**9, now - 4 * 86400 * 10**9):  # live data, then a late old batch
        request, _ = journey_request(3, start_ns=start)
        flat = flatten(request, "t")
        store.submit_spans(flat.table, flat.resources).result(10)
        store.flush_rollups()
        assert cache.first_minutes("t", ["a"]) == {"a": start // 60_000_000_000 * 60_000_000_000}
    store.close()
