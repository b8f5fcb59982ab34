"""OTLP metric points → minute series in a real store, and metric SLIs counted from them.

Tests taking the ``store`` fixture run on every backend of tests/store/conftest.py
STORE_URLS (DuckDB, and ClickHouse in-process with chdb); the others look inside DuckDB."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisre.core.pipeline import EncodedExport
from aisre.core.series import parse_selector
from aisre.evaluate.slo import sli_rule
from aisre.evaluate.specs import load_specs
from aisre.ingest.metrics import decode_metrics
from aisre.store.duckdb import DuckDBStore
from aisre.store.factory import open_store
from tests.metrics_otlp import DELTA, MIN, T0, counter, gauge, histogram, minutes_of, request
from tests.store.conftest import STORE_URLS


@pytest.fixture(params=STORE_URLS, ids=lambda url: url.split(":", 1)[0])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store location of each backend."""
    return str(request.param).format(dir=tmp_path, name=re.sub(r"\W", "_", tmp_path.name))


@pytest.fixture
def store(url: str) -> Iterator[Any]:
    s = open_store(url, max_metric_series=5, rollup_interval_ms=0, retention_days=0)
    yield s
    s.close()


def send(store: Any, *metrics: Any, tenant: str = "t") -> Any:
    batch = decode_metrics(EncodedExport(request(list(metrics)).SerializeToString(), "protobuf"), 1 << 20)
    result = store.submit_metrics(tenant, batch.points).result(30)
    return batch, result


def test_cumulative_counter_becomes_increases_and_a_reset_is_never_negative(store: Any) -> None:
    # Cumulative 10, 25, 40, then the process restarts (value drops to 5), then 12.
    pts = [(T0 + 30 * 10**9, 10.0), (T0 + MIN + 30 * 10**9, 25.0), (T0 + 2 * MIN + 30 * 10**9, 40.0),
           (T0 + 3 * MIN + 30 * 10**9, 5.0), (T0 + 4 * MIN + 30 * 10**9, 12.0)]
    send(store, counter("req", [(t, v, {"code": "200"}) for t, v in pts]))
    rows = minutes_of(store, "t", "req")
    labels = '{"code":"200","service.name":"svc"}'
    assert [rows[(labels, i)]["value"] for i in range(5)] == [10.0, 15.0, 15.0, 5.0, 7.0]
    # The same export again (a retry) adds nothing.
    send(store, counter("req", [(t, v, {"code": "200"}) for t, v in pts]))
    assert [minutes_of(store, "t", "req")[(labels, i)]["value"] for i in range(5)] == [10.0, 15.0, 15.0, 5.0, 7.0]
    # A new start time is a reset too, even when the value did not go down.
    send(store, counter("req", [(T0 + 5 * MIN + 30 * 10**9, 50.0, {"code": "200"})], start_ns=T0 + 5 * MIN))
    assert minutes_of(store, "t", "req")[(labels, 5)]["value"] == 50.0


def test_delta_counter_adds_and_state_survives_reopen(url: str) -> None:
    store = open_store(url, rollup_interval_ms=0, retention_days=0)
    send(store, counter("tok", [(T0 + 1, 3.0, {}), (T0 + 2, 4.0, {}), (T0 + MIN + 5, 6.0, {})], temporality=DELTA))
    send(store, counter("cum", [(T0 + 10, 100.0, {})]))
    store.close()
    store = open_store(url, rollup_interval_ms=0, retention_days=0)
    send(store, counter("tok", [(T0 + MIN + 9, 1.0, {})], temporality=DELTA))
    send(store, counter("cum", [(T0 + MIN + 10, 130.0, {})]))  # increase against the state kept on disk
    tok = minutes_of(store, "t", "tok")
    cum = minutes_of(store, "t", "cum")
    store.close()
    assert [tok[('{"service.name":"svc"}', i)]["value"] for i in (0, 1)] == [7.0, 7.0]
    assert cum[('{"service.name":"svc"}', 1)]["value"] == 30.0


def test_gauge_and_histogram_minutes(store: Any) -> None:
    send(store,
         gauge("gpu.util", [(T0 + 1, 0.5, {"gpu": "0"}), (T0 + 2, 0.9, {"gpu": "0"}), (T0 + 3, 0.7, {"gpu": "0"})]),
         histogram("lat", [1.0, 2.0, 5.0], [(T0 + 5, [1, 2, 3, 4], {}), (T0 + MIN + 5, [2, 4, 6, 8], {})]))
    g = minutes_of(store, "t", "gpu.util")[('{"gpu":"0","service.name":"svc"}', 0)]
    assert (g["points"], g["min"], g["max"], g["last"]) == (3, 0.5, 0.9, 0.7)
    assert g["value"] == pytest.approx(2.1)
    h = minutes_of(store, "t", "lat")
    assert h[('{"service.name":"svc"}', 0)]["buckets"] == [1, 2, 3, 4]
    assert h[('{"service.name":"svc"}', 1)]["buckets"] == [1, 2, 3, 4]  # cumulative → the increase
    assert h[('{"service.name":"svc"}', 1)]["value"] == 10


def test_series_limit_refuses_new_series_only(store: Any) -> None:
    # Limit 5: three series first, then a request with two known and four new series.
    send(store, gauge("g", [(T0 + 1, 1.0, {"i": str(i)}) for i in range(3)]))
    _, result = send(store, gauge("g", [(T0 + MIN, 2.0, {"i": str(i)}) for i in range(7)]))
    assert (result.accepted, result.over_limit) == (5, 2)
    rows = minutes_of(store, "t", "g")
    assert sorted(k for k in rows if k[1] == 1) == sorted((f'{{"i":"{i}","service.name":"svc"}}', 1) for i in range(5))
    # Another tenant has its own limit.
    _, other = send(store, gauge("g", [(T0, 1.0, {"i": str(i)}) for i in range(5)]), tenant="u")
    assert (other.accepted, other.over_limit) == (5, 0)


def test_selector_parsing() -> None:
    sel = parse_selector('http.server.requests{status=~"5..",route!="/health"}')
    assert sel.metric == "http.server.requests"
    assert sel.matches("http.server.requests", {"status": "503", "route": "/ask"})
    assert not sel.matches("http.server.requests", {"status": "200", "route": "/ask"})
    assert not sel.matches("http.server.requests", {"status": "500", "route": "/health"})
    with pytest.raises(ValueError, match="label matcher"):
        parse_selector("x{status=5}")


SPECS = """
slos:
  - name: errors
    service: api
    objective: 90
    sli: {kind: ratio, bad: 'req{code=~"5.."}', total: req}
  - name: gpu
    service: pool
    objective: 50
    sli: {kind: threshold, metric: 'gpu.util', max: 0.8}
  - name: latency
    service: api
    objective: 90
    sli: {kind: histogram, metric: lat, le: 2}
"""


def test_metric_slis_count_slo_minutes(store: Any, tmp_path: Path) -> None:
    spec_file = tmp_path / "slos.yaml"
    spec_file.write_text(SPECS)
    specs = load_specs([spec_file])
    rules = [sli_rule(s) for s in specs]
    # Minute 0: 100 requests, 4 of them 5xx; minute 1: 50 more, 10 of them 5xx.
    send(store,
         counter("req", [(T0 + 30 * 10**9, 96.0, {"code": "200"}), (T0 + MIN + 30 * 10**9, 136.0, {"code": "200"})]),
         counter("req", [(T0 + 30 * 10**9, 4.0, {"code": "503"}), (T0 + MIN + 30 * 10**9, 14.0, {"code": "503"})]),
         gauge("gpu.util", [(T0 + 1, 0.5, {"gpu": "0"}), (T0 + 2, 0.7, {"gpu": "0"}), (T0 + 3, 0.95, {"gpu": "1"}),
                            (T0 + MIN, 0.9, {"gpu": "0"})]),
         histogram("lat", [1.0, 2.0, 5.0], [(T0 + 5, [1, 2, 3, 4], {}), (T0 + MIN + 5, [2, 4, 6, 8], {})]))
    store.set_sli_rules("t", [r for r in rules if r is not None])
    got = store.slo_minute_arrays("t", T0 - MIN, T0 + 10 * MIN)
    as_rows = {slo: list(zip(*(a.tolist() for a in arrays), strict=True)) for slo, arrays in got.items()}
    assert as_rows["api-errors"] == [(T0, 96, 100), (T0 + MIN, 40, 50)]
    assert as_rows["pool-gpu"] == [(T0, 1, 2), (T0 + MIN, 0, 1)]  # gpu0 avg 0.6 good, gpu1 0.95 bad; then 0.9 bad
    assert as_rows["api-latency"] == [(T0, 3, 10), (T0 + MIN, 3, 10)]


def test_points_after_the_rules_update_slo_minutes(url: str, tmp_path: Path) -> None:
    spec_file = tmp_path / "slos.yaml"
    spec_file.write_text(SPECS)
    store = open_store(url, retention_days=0)
    try:
        store.set_sli_rules("t", [r for s in load_specs([spec_file]) if (r := sli_rule(s)) is not None])
        send(store, counter("req", [(T0 + 10, 10.0, {"code": "200"}), (T0 + MIN + 10, 30.0, {"code": "200"})],
                            start_ns=T0),
             counter("req", [(T0 + MIN + 10, 5.0, {"code": "500"})], start_ns=T0 + MIN))
        store.flush_rollups()
        got = store.slo_minute_arrays("t", T0 - MIN, T0 + 10 * MIN, slo="api-errors")["api-errors"]
        assert [a.tolist() for a in got] == [[T0, T0 + MIN], [10, 20], [10, 25]]
    finally:
        store.close()


def test_metric_sli_validation_names_file_and_line(tmp_path: Path) -> None:
    from aisre.core.slo import SpecValidationError

    bad = tmp_path / "bad.yaml"
    bad.write_text("slos:\n  - name: x\n    service: s\n    objective: 99\n"
                   "    sli: {kind: ratio, good: 'req{code=5}', total: req}\n"
                   "  - name: y\n    service: s\n    objective: 99\n"
                   "    sli: {kind: threshold, metric: g, aggregate: median, max: 1}\n"
                   "  - name: z\n    objective: 99\n    sli: {kind: histogram, metric: h, le: 2}\n")
    with pytest.raises(SpecValidationError) as info:
        load_specs([bad])
    text = str(info.value)
    assert f"{bad}:5: " in text and "label matcher" in text
    assert f"{bad}:9: " in text and "aggregate" in text
    assert f"{bad}:10: " in text and "journey: is required (or service, for a histogram SLI)" in text


def test_exponential_histogram_as_explicit_buckets(store: Any) -> None:
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    metric = metrics_pb2.Metric(name="ttft", unit="s")
    metric.exponential_histogram.aggregation_temporality = 2
    # Scale 0: buckets (1,2], (2,4], (4,8] hold 1, 2, 3; one zero observation.
    p = metric.exponential_histogram.data_points.add(start_time_unix_nano=T0 - MIN, time_unix_nano=T0 + 1,
                                                     count=7, sum=20.0, scale=0, zero_count=1)
    p.positive.offset = 0
    p.positive.bucket_counts.extend([1, 2, 3])
    # A minute later the range grew down to (0.5,1]: cumulative, so only the new counts are added.
    q = metric.exponential_histogram.data_points.add(start_time_unix_nano=T0 - MIN, time_unix_nano=T0 + MIN + 1,
                                                     count=10, sum=22.0, scale=0, zero_count=1)
    q.positive.offset = -1
    q.positive.bucket_counts.extend([2, 1, 3, 3])
    send(store, metric)
    rows = minutes_of(store, "t", "ttft")
    first, second = rows[('{"service.name":"svc"}', 0)], rows[('{"service.name":"svc"}', 1)]
    assert first["bounds"] == [0.0, 2.0, 4.0, 8.0] and first["buckets"] == [1, 1, 2, 3, 0]
    assert second["bounds"] == [0.0, 1.0, 2.0, 4.0, 8.0] and second["buckets"] == [0, 2, 0, 1, 0, 0]
    assert second["value"] == 3


def test_compaction_folds_appended_rows_and_keeps_every_value(tmp_path: Path) -> None:
    # The store's clock stands at T0, so the writer's upkeep leaves the minute open.
    store = DuckDBStore(str(tmp_path / "c.duckdb"), clock=lambda: T0)
    try:
        _compaction(store)
    finally:
        store.close()


def _compaction(store: Any) -> None:
    # Three commits into the same minute: a cumulative counter, a gauge and a histogram.
    for k in range(3):
        at = T0 + (k + 1) * 10 * 10**9
        send(store, counter("req", [(at, 10.0 * (k + 1), {})]), gauge("g", [(at, float(k), {})]),
             histogram("lat", [1.0, 2.0], [(at, [k + 1, k + 1, 0], {})]))
    before = {name: minutes_of(store, "t", name) for name in ("req", "g", "lat")}
    rows = store._conn.execute("SELECT count(*) FROM metric_minutes").fetchone()[0]
    assert rows == 9
    assert store.compact_metrics() == 1
    assert store._conn.execute("SELECT count(*) FROM metric_minutes").fetchone()[0] == 3
    assert {name: minutes_of(store, "t", name) for name in ("req", "g", "lat")} == before
    key = ('{"service.name":"svc"}', 0)
    assert before["req"][key]["value"] == 30.0
    assert (before["g"][key]["points"], before["g"][key]["last"]) == (3, 2.0)
    assert before["lat"][key]["buckets"] == [3, 3, 0]


def test_metric_minutes_expire_with_the_rollups(store: Any) -> None:
    """Minute rollups are kept rollup_retention_days (400 by default): expiry as of a
    moment 400 days after the first minute's end takes that minute and keeps the next."""
    send(store, gauge("g", [(T0 + 1, 1.0, {}), (T0 + 2 * MIN, 2.0, {})]))
    store.expire(now_ns=T0 + MIN + 400 * 86_400 * 10**9)
    assert [k[1] for k in minutes_of(store, "t", "g")] == [2]


def test_compaction_keeps_every_value(url: str) -> None:
    # The store's clock stands at T0, so the writer's upkeep leaves the minute open.
    store = open_store(url, clock=lambda: T0, retention_days=0)
    try:
        for k in range(3):
            at = T0 + (k + 1) * 10 * 10**9
            send(store, counter("req", [(at, 10.0 * (k + 1), {})]), gauge("g", [(at, float(k), {})]),
                 histogram("lat", [1.0, 2.0], [(at, [k + 1, k + 1, 0], {})]))
        before = {name: minutes_of(store, "t", name) for name in ("req", "g", "lat")}
        assert store.compact_metrics() == 1
        assert {name: minutes_of(store, "t", name) for name in ("req", "g", "lat")} == before
        key = ('{"service.name":"svc"}', 0)
        assert before["req"][key]["value"] == 30.0
        assert (before["g"][key]["points"], before["g"][key]["last"]) == (3, 2.0)
        assert before["lat"][key]["buckets"] == [3, 3, 0]
    finally:
        store.close()
