"""ML-platform SLIs (freshness, pipeline, deadline) counted by a real store (every backend of
tests/store/conftest.py STORE_URLS) from data with known truth: exact good/total per minute,
at backfill and on the live rebuild path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from aisre.core.pipeline import EncodedExport
from aisre.evaluate.slo import sli_rule
from aisre.evaluate.specs import load_specs
from aisre.ingest.metrics import decode_metrics
from aisre.normalize.spans import flatten
from aisre.store.factory import open_store
from tests.metrics_otlp import MIN, T0, gauge, request
from tests.otlp_factory import pipeline_runs
from tests.store.conftest import STORE_URLS

H = 60 * MIN
DAY = 24 * H
SLOS = """
slos:
  - name: fresh
    service: feast
    objective: 99
    sli: {kind: freshness, metric: 'feature_view.last_update_timestamp{view="user"}', max_age: 5m}
  - name: runs
    service: airflow
    objective: 90
    sli: {kind: pipeline, pipeline: nightly}
  - name: jobs
    service: airflow
    objective: 90
    sli: {kind: pipeline, pipeline: export}
  - name: on-time
    service: airflow
    objective: 90
    sli: {kind: deadline, pipeline: nightly, at: "06:00"}
"""


def _rules(tmp_path: Path):
    path = tmp_path / "slos.yaml"
    path.write_text(SLOS)
    return [r for spec in load_specs([path]) if (r := sli_rule(spec)) is not None]


def _minutes(store: Any, slo: str) -> dict[int, tuple[int, int]]:
    arrays = store.slo_minute_arrays("t", 0, 2**62, slo).get(slo)
    if arrays is None:
        return {}
    return {int(m): (int(g), int(t)) for m, g, t in zip(*arrays, strict=True)}


def _send(store: Any) -> None:
    # The view updates at T0 and at T0+6m; its exporter reports the last update each minute.
    points = [(T0 + i * MIN + 30 * 10**9, (T0 + (6 * MIN if i >= 6 else 0)) / 1e9, {"view": "user"}) for i in range(10)]
    points.append((T0 + 30 * 10**9, T0 / 1e9 - 3600, {"view": "other"}))  # another view: not selected
    batch = decode_metrics(EncodedExport(request([gauge("feature_view.last_update_timestamp", points)]).SerializeToString(),
                                         "protobuf"), 1 << 20)
    store.submit_metrics("t", batch.points).result(30)
    # Nightly runs, one per day from day 0: on time, late (06:10), on time, failed, none at all.
    runs = [(T0 + 5 * H, T0 + 5 * H + 30 * MIN, "success", False),
            (T0 + DAY + 5 * H, T0 + DAY + 6 * H + 10 * MIN, "success", False),
            (T0 + 2 * DAY + 5 * H, T0 + 2 * DAY + 5 * H + 40 * MIN, None, False),
            (T0 + 3 * DAY + 4 * H, T0 + 3 * DAY + 5 * H, "failure", False),
            (T0 + 3 * DAY + 5 * H + MIN, T0 + 3 * DAY + 5 * H + 2 * MIN, "cancellation", False)]
    jobs = [(T0 + 7 * MIN, T0 + 8 * MIN, None, False), (T0 + 7 * MIN + 1, T0 + 9 * MIN, None, True),
            (T0 + 9 * MIN, T0 + 10 * MIN, None, False)]
    for req in (pipeline_runs(runs), pipeline_runs(jobs, pipeline="export", cicd=False)):
        flat = flatten(req, "t", received_ns=T0)
        store.submit_spans(flat.table, flat.resources).result(30)


def _check(store: Any) -> None:
    assert _minutes(store, "feast-fresh") == {T0 + i * MIN: (0 if i == 5 else 1, 1) for i in range(10)}
    assert _minutes(store, "airflow-runs") == {
        T0 + 5 * H: (1, 1), T0 + DAY + 5 * H: (1, 1), T0 + 2 * DAY + 5 * H: (1, 1), T0 + 3 * DAY + 4 * H: (0, 1)}
    assert _minutes(store, "airflow-jobs") == {T0 + 7 * MIN: (1, 2), T0 + 9 * MIN: (1, 1)}
    # 06:00 on days 0..4 (day 5's deadline is not due at the clock's day 4 12:00): the late
    # run misses day 1, the failed one day 3, and day 4 had no run.
    assert _minutes(store, "airflow-on-time") == {
        T0 + 6 * H: (1, 1), T0 + DAY + 6 * H: (0, 1), T0 + 2 * DAY + 6 * H: (1, 1),
        T0 + 3 * DAY + 6 * H: (0, 1), T0 + 4 * DAY + 6 * H: (0, 1)}


def _url(url: str, folder: Path) -> str:
    return url.format(dir=folder, name=re.sub(r"\W", "_", folder.name))


BACKENDS = pytest.mark.parametrize("url", STORE_URLS, ids=lambda url: url.split(":", 1)[0])


@BACKENDS
def test_backfill_counts_freshness_pipeline_and_deadline_minutes(tmp_path: Path, url: str) -> None:
    store = open_store(_url(url, tmp_path), rollup_interval_ms=0, retention_days=0, clock=lambda: T0 + 4 * DAY + 12 * H)
    try:
        _send(store)
        store.set_sli_rules("t", _rules(tmp_path))
        _check(store)
    finally:
        store.close()


@BACKENDS
def test_live_rebuild_counts_the_same_and_queues_due_deadlines(tmp_path: Path, url: str) -> None:
    now = [T0 + 4 * DAY + 12 * H]
    store = open_store(_url(url, tmp_path), rollup_interval_ms=3_600_000, retention_days=0, clock=lambda: now[0])
    try:
        store.set_sli_rules("t", _rules(tmp_path))
        _send(store)
        store.flush_rollups()
        _check(store)
        # Day 5 06:00 falls due with no run and no new data: the next pass counts it bad.
        now[0] = T0 + 5 * DAY + 7 * H
        store.flush_rollups()
        assert _minutes(store, "airflow-on-time")[T0 + 5 * DAY + 6 * H] == (0, 1)
    finally:
        store.close()


@pytest.mark.parametrize(("sli", "error"), [
    ("{kind: deadline, pipeline: p, at: 25h}", "must be within the period"),
    ("{kind: freshness, metric: 'x{'}", "max_age"),
    ("{kind: pipeline}", "pipeline"),
])
def test_invalid_ml_slis_are_reported(tmp_path: Path, sli: str, error: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"slos:\n  - name: x\n    service: s\n    objective: 99\n    sli: {sli}\n")
    with pytest.raises(Exception) as info:
        load_specs([path])
    assert error in str(info.value)
