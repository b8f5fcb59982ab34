"""Events (POST /api/events, receive/events.py) counted by a real store on every backend of
tests/store/conftest.py STORE_URLS: pipeline runs through the pipeline and deadline SLIs,
dataset updates through the freshness-from-spans SLI, with known good/bad minutes, at backfill
and on the live rebuild path (minutes going stale without new data, a late update), and the
same event delivered twice counted once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from aisre.evaluate.slo import sli_rule
from aisre.evaluate.specs import load_specs
from aisre.normalize.spans import flatten
from aisre.receive.events import parse_events
from aisre.store.factory import open_store
from tests.metrics_otlp import MIN, T0
from tests.store.conftest import STORE_URLS

SLOS = """
slos:
  - name: orders-fresh
    service: feast
    objective: 99
    sli: {kind: freshness, dataset: orders, max_age: 5m}
  - name: etl-runs
    service: airflow
    objective: 90
    sli: {kind: pipeline, pipeline: etl}
  - name: etl-on-time
    service: airflow
    objective: 90
    sli: {kind: deadline, pipeline: etl, at: 8m, every: 10m}
"""
NOW = T0 + 20 * MIN + 10 * 10**9
ISO = "2026-01-01T00:{:02d}:{:02d}Z"  # T0 + minutes, seconds

EVENTS = [
    {"kind": "dataset_update", "dataset": "orders", "time": ISO.format(0, 30)},
    {"kind": "dataset_update", "dataset": "orders", "time": T0 + 2 * MIN, "id": "m-2"},
    {"kind": "dataset_update", "dataset": "orders", "time": T0 + 2 * MIN, "id": "m-2"},  # delivered twice
    {"kind": "dataset_update", "dataset": "orders", "time": ISO.format(10, 0)},
    {"kind": "dataset_update", "dataset": "customers", "time": ISO.format(19, 0)},  # another dataset
    {"kind": "pipeline_run", "pipeline": "etl", "result": "success", "id": "r1",
     "start": ISO.format(1, 0), "end": ISO.format(3, 0)},
    {"kind": "pipeline_run", "pipeline": "etl", "result": "failure", "id": "r2",
     "start": T0 + 5 * MIN, "end": T0 + 6 * MIN},
    {"kind": "pipeline_run", "pipeline": "etl", "result": "success", "id": "r1",  # r1 again
     "start": ISO.format(1, 0), "end": ISO.format(3, 0)},
    {"kind": "pipeline_run", "pipeline": "etl", "result": "skip", "start": T0 + 12 * MIN, "end": T0 + 13 * MIN},
]


def _rules(tmp_path: Path) -> list[Any]:
    path = tmp_path / "slos.yaml"
    path.write_text(SLOS)
    return [r for spec in load_specs([path]) if (r := sli_rule(spec)) is not None]


def _minutes(store: Any, slo: str) -> dict[int, tuple[int, int]]:
    arrays = store.slo_minute_arrays("t", 0, 2**62, slo).get(slo)
    if arrays is None:
        return {}
    return {int(m): (int(g), int(t)) for m, g, t in zip(*arrays, strict=True) if int(t)}


def _send(store: Any, events: list[dict[str, Any]], received_ns: int = NOW) -> int:
    parsed = parse_events({"events": events}, "t", NOW)
    assert parsed.refused == []
    flat = flatten(parsed.request(), "t", received_ns=received_ns)
    return int(store.submit_spans(flat.table, flat.resources).result(30))


def _fresh(minute: int, newest: int) -> tuple[int, int]:
    return (int((minute + 1) * MIN - newest <= 5 * MIN), 1)


def _check(store: Any) -> None:
    # From the first update's minute to the last minute ended by NOW (minute 19): stale
    # (older than 5 minutes at the minute's end) in minutes 7-8 and 15-19.
    def newest(i: int) -> int:
        return 10 * MIN if i >= 9 else 2 * MIN if i >= 1 else 30 * 10**9

    expected = {T0 + i * MIN: _fresh(i, newest(i)) for i in range(20)}
    assert [i for i in range(20) if expected[T0 + i * MIN][0] == 0] == [7, 8, 15, 16, 17, 18, 19]
    assert _minutes(store, "feast-orders-fresh") == expected
    # r1 (sent twice) good, r2 bad; the skipped run is not counted.
    assert _minutes(store, "airflow-etl-runs") == {T0 + MIN: (1, 1), T0 + 5 * MIN: (0, 1)}
    # Deadlines at minute 8 (r1 ended at 3: good) and 18 (no successful run since 8: bad).
    assert _minutes(store, "airflow-etl-on-time") == {T0 + 8 * MIN: (1, 1), T0 + 18 * MIN: (0, 1)}


def _url(url: str, folder: Path) -> str:
    return url.format(dir=folder, name=re.sub(r"\W", "_", folder.name))


BACKENDS = pytest.mark.parametrize("url", STORE_URLS, ids=lambda url: url.split(":", 1)[0])


@BACKENDS
def test_events_backfill_pipeline_deadline_and_freshness_minutes(tmp_path: Path, url: str) -> None:
    store = open_store(_url(url, tmp_path), rollup_interval_ms=0, retention_days=0, clock=lambda: NOW)
    try:
        stored = _send(store, EVENTS)
        assert stored == len(EVENTS) - 2  # the update and the run sent twice in it are one span each
        assert _send(store, EVENTS[:4]) == 0  # and posting them again stores nothing
        # Re-posted a day later, past the store's dedup window (DuckDB may store such a copy
        # again): each run still counts once.
        _send(store, EVENTS[5:8], received_ns=NOW + 24 * 60 * MIN)
        store.set_sli_rules("t", _rules(tmp_path))
        _check(store)
    finally:
        store.close()


@BACKENDS
def test_live_rebuild_counts_stale_minutes_without_new_data_and_late_updates(tmp_path: Path, url: str) -> None:
    now = [NOW]
    store = open_store(_url(url, tmp_path), rollup_interval_ms=3_600_000, retention_days=0, clock=lambda: now[0])
    try:
        store.set_sli_rules("t", _rules(tmp_path))
        store.flush_rollups()
        _send(store, EVENTS)
        store.flush_rollups()
        _check(store)
        # Five more minutes pass with no update: each is counted, and stale.
        now[0] = NOW + 5 * MIN
        store.flush_rollups()
        got = _minutes(store, "feast-orders-fresh")
        assert [got[T0 + i * MIN] for i in range(20, 25)] == [(0, 1)] * 5
        # An update stamped 22:00 arrives late: minutes 21-24 turn fresh, 20 stays stale.
        _send(store, [{"kind": "dataset_update", "dataset": "orders", "time": ISO.format(22, 0)}])
        store.flush_rollups()
        got = _minutes(store, "feast-orders-fresh")
        assert [got[T0 + i * MIN] for i in range(19, 25)] == [(0, 1), (0, 1), (1, 1), (1, 1), (1, 1), (1, 1)]
        assert len(got) == 25
    finally:
        store.close()


@pytest.mark.parametrize(("sli", "error"), [
    ("{kind: freshness, metric: x, dataset: d, max_age: 5m}", "exactly one of metric"),
    ("{kind: freshness, max_age: 5m}", "exactly one of metric"),
    ("{kind: freshness, dataset: d}", "max_age"),
])
def test_invalid_freshness_sources_are_reported_with_file_and_line(tmp_path: Path, sli: str, error: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"slos:\n  - name: x\n    service: s\n    objective: 99\n    sli: {sli}\n")
    with pytest.raises(Exception) as info:
        load_specs([path])
    assert error in str(info.value)
    assert f"{path}:5" in str(info.value)
