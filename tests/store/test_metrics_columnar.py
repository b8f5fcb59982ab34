"""The columnar metric commit (SQL over the decoded Arrow points) on what a per-point loop
got right by construction: points out of order in one request, a reset within one request,
the series limit reached inside a request, exponential histograms whose range moves, and
the same results as the per-point reference commit on random requests."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import duckdb
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from aisre.core.pipeline import EncodedExport
from aisre.core.schema import MINUTE_NS
from aisre.core.series import MetricPoint, series_id
from aisre.ingest.metrics import decode_metrics
from aisre.normalize.metrics import points_table
from aisre.store.duckdb import DuckDBStore
from aisre.store.duckdb.metrics import MetricTables, MinuteAgg, folded_minutes
from tests.metrics_otlp import MIN, T0, counter, gauge, histogram, minutes_of, request
from tests.store.metrics_reference import Reference

S = 10**9
SVC = '{"service.name":"svc"}'


@pytest.fixture
def store(tmp_path: Path):
    s = DuckDBStore(str(tmp_path / "c.duckdb"), max_metric_series=5, rollup_interval_ms=0)
    yield s
    s.close()


def send(store: DuckDBStore, *metrics: metrics_pb2.Metric, tenant: str = "t") -> Any:
    batch = decode_metrics(EncodedExport(request(list(metrics)).SerializeToString(), "protobuf"), 1 << 20)
    return store.submit_metric_table(tenant, batch.table).result(30)


def values(store: DuckDBStore, metric: str, labels: str = SVC) -> dict[int, float]:
    return {minute: row["value"] for (lab, minute), row in minutes_of(store, "t", metric).items() if lab == labels}


def test_cumulative_points_out_of_order_in_one_request(store: DuckDBStore) -> None:
    # Cumulative 10, 25, 40, 60 at minutes 0..3, sent in the order 40, 10, 60, 25.
    pts = [(T0 + 2 * MIN + 5 * S, 40.0), (T0 + 5 * S, 10.0), (T0 + 3 * MIN + 5 * S, 60.0), (T0 + MIN + 5 * S, 25.0)]
    result = send(store, counter("req", [(t, v, {}) for t, v in pts]))
    assert (result.accepted, result.over_limit) == (4, 0)
    assert values(store, "req") == {0: 10.0, 1: 15.0, 2: 15.0, 3: 20.0}
    # The series' kept point is the newest, not the last sent: 70 later adds 10.
    send(store, counter("req", [(T0 + 4 * MIN + 5 * S, 70.0, {})]))
    assert values(store, "req")[4] == 10.0


def test_a_reset_and_a_repeated_point_within_one_request(store: DuckDBStore) -> None:
    # 10, 25, then the process restarts (5), 12; the point at 25 is also sent twice.
    pts = [(T0 + 5 * S, 10.0), (T0 + MIN + 5 * S, 25.0), (T0 + MIN + 5 * S, 25.0), (T0 + 2 * MIN + 5 * S, 5.0),
           (T0 + 3 * MIN + 5 * S, 12.0)]
    send(store, counter("req", [(t, v, {}) for t, v in reversed(pts)]))
    assert values(store, "req") == {0: 10.0, 1: 15.0, 2: 5.0, 3: 7.0}
    row = minutes_of(store, "t", "req")[(SVC, 1)]
    assert row["points"] == 1  # the repeat adds nothing and is no point of the minute


def test_a_new_start_time_within_one_request_is_a_reset(store: DuckDBStore) -> None:
    first = counter("req", [(T0 + 5 * S, 100.0, {}), (T0 + MIN + 5 * S, 130.0, {})], start_ns=T0 - MIN)
    # The exporter restarted at T0 + 2 min (a new start time): 20 since then, then 50.
    second = counter("req", [(T0 + 2 * MIN + 30 * S, 20.0, {}), (T0 + 3 * MIN + 30 * S, 50.0, {})], start_ns=T0 + 2 * MIN)
    send(store, second, first)
    assert values(store, "req") == {0: 100.0, 1: 30.0, 2: 20.0, 3: 30.0}
    # A later start time with a higher value than before is a reset too: the whole value counts.
    send(store, counter("req", [(T0 + 4 * MIN + 30 * S, 80.0, {})], start_ns=T0 + 4 * MIN))
    assert values(store, "req")[4] == 80.0


def test_series_first_seen_at_the_limit_boundary(store: DuckDBStore) -> None:
    # Limit 5: three known series, then one request with points of the three known series
    # and of four new ones whose first points come in the order d, c, b, a (request order is
    # a, b, c, d). The two first seen are admitted, all their points kept, the rest refused.
    send(store, gauge("g", [(T0, 1.0, {"i": i}) for i in ("x", "y", "z")]))
    late, early = T0 + MIN, T0 + 5 * S
    points = [
        (late + 4 * S, 1.0, {"i": "a"}), (late + 3 * S, 1.0, {"i": "b"}), (late + 2 * S, 1.0, {"i": "c"}),
        (late + S, 1.0, {"i": "d"}), (late + 9 * S, 2.0, {"i": "c"}), (early, 3.0, {"i": "x"}),
        (early, 3.0, {"i": "y"}), (early, 3.0, {"i": "z"}), (late + 10 * S, 2.0, {"i": "a"}),
    ]
    result = send(store, gauge("g", points))
    assert (result.accepted, result.over_limit) == (6, 3)
    rows = minutes_of(store, "t", "g")
    admitted = sorted(labels for labels, minute in rows if minute == 1)
    assert admitted == ['{"i":"c","service.name":"svc"}', '{"i":"d","service.name":"svc"}']
    assert rows[('{"i":"c","service.name":"svc"}', 1)]["points"] == 2
    assert {store.metric_series("t", "g")[i]["labels"] for i in range(5)} == {
        f'{{"i":"{i}","service.name":"svc"}}' for i in "cdxyz"}
    # Full now: a new series is refused, known ones still land.
    result = send(store, gauge("g", [(T0 + 2 * MIN, 1.0, {"i": "e"}), (T0 + 2 * MIN, 1.0, {"i": "x"})]))
    assert (result.accepted, result.over_limit) == (1, 1)


def test_ties_at_the_limit_go_by_request_order(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "tie.duckdb"), max_metric_series=2, rollup_interval_ms=0)
    try:
        result = send(store, gauge("g", [(T0, 1.0, {"i": i}) for i in "qpon"]))
        assert (result.accepted, result.over_limit) == (2, 2)
        assert sorted(s["labels"] for s in store.metric_series("t", "g")) == [
            '{"i":"p","service.name":"svc"}', '{"i":"q","service.name":"svc"}']
    finally:
        store.close()


def test_a_series_sent_as_two_kinds_in_one_request_keeps_its_first(store: DuckDBStore) -> None:
    result = send(store, counter("m", [(T0 + 30 * S, 5.0, {})]), gauge("m", [(T0 + 10 * S, 0.5, {})]))
    assert (result.accepted, result.over_limit) == (1, 1)
    assert [s["kind"] for s in store.metric_series("t", "m")] == ["gauge"]


def _exponential(name: str, points: list[tuple[int, int, int, list[int], int, list[int]]]) -> metrics_pb2.Metric:
    """(time_ns, scale, offset, positive counts, zero count, negative counts), cumulative from T0 - 1 min."""
    metric = metrics_pb2.Metric(name=name, unit="s")
    metric.exponential_histogram.aggregation_temporality = 2
    for at, scale, offset, counts, zero, negative in points:
        p = metric.exponential_histogram.data_points.add(
            start_time_unix_nano=T0 - MIN, time_unix_nano=at, count=sum(counts) + zero + sum(negative),
            sum=float(sum(counts)), scale=scale, zero_count=zero)
        p.positive.offset = offset
        p.positive.bucket_counts.extend(counts)
        p.negative.bucket_counts.extend(negative)
    return metric


def test_exponential_histogram_whose_range_moves_within_one_request(store: DuckDBStore) -> None:
    # Minute 0, scale 0: (1,2] 1, (2,4] 2; a negative value and a zero go below 0.
    # Minute 0 again, 20 s later: the range grew down to (0.5,1] (offset -1): 1 there, 1 more in (2,4].
    # Minute 1: scale 1 halves the buckets (bounds √2^k, 0.71 to 4): 1 more in (0.5, 0.71] and
    # (1, 1.41], 2 more in (2, 2.83]; the counts seen before are moved onto the finer bounds.
    r2 = 2 ** 0.5
    send(store, _exponential("ttft", [
        (T0 + MIN + 5 * S, 1, -2, [1, 1, 1, 1, 2, 3], 1, [1]),
        (T0 + 5 * S, 0, 0, [1, 2], 1, [1]),
        (T0 + 25 * S, 0, -1, [1, 1, 3], 1, [1]),
    ]))
    rows = minutes_of(store, "t", "ttft")
    first, second = rows[(SVC, 0)], rows[(SVC, 1)]
    # Two points in minute 0 with different bounds: summed over their union.
    assert first["bounds"] == [0.0, 1.0, 2.0, 4.0]
    assert first["buckets"] == [2.0, 1.0, 1.0, 3.0, 0.0]
    assert (first["value"], first["points"], first["sum"]) == (7.0, 2, 5.0)
    # Minute 1 against the last point of minute 0, moved onto the finer bounds.
    assert second["bounds"] == pytest.approx([0.0, r2 ** -1, 1.0, r2, 2.0, r2 ** 3, 4.0])
    assert second["buckets"] == [0.0, 1.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0]
    assert second["value"] == 4.0


def test_histogram_without_start_time_counts_from_its_second_point(store: DuckDBStore) -> None:
    first = histogram("lat", [1.0, 2.0], [(T0 + 5 * S, [3, 2, 1], {})], start_ns=0)
    second = histogram("lat", [1.0, 2.0], [(T0 + MIN + 5 * S, [4, 4, 1], {})], start_ns=0)
    send(store, second, first)
    rows = minutes_of(store, "t", "lat")
    assert (rows[(SVC, 0)]["value"], rows[(SVC, 0)]["buckets"]) == (0.0, [0.0, 0.0, 0.0])
    assert (rows[(SVC, 1)]["value"], rows[(SVC, 1)]["buckets"]) == (3.0, [1.0, 2.0, 0.0])


def test_a_time_past_signed_64_bits_is_refused_not_a_failed_commit(store: DuckDBStore) -> None:
    batch = decode_metrics(EncodedExport(request([gauge("g", [(2**64 - 1, 1.0, {}), (T0, 2.0, {})])]).SerializeToString(),
                                         "protobuf"), 1 << 20)
    assert (batch.table.num_rows, batch.rejected) == (1, 1)
    assert "2262" in batch.message()
    assert store.submit_metric_table("t", batch.table).result(30).accepted == 1
    assert values(store, "g") == {0: 2.0}


# -- the same results as the per-point reference ------------------------------------------

SHAPES: list[tuple[float, ...]] = [(1.0, 2.0, 5.0), (1.0, 2.0, 5.0), (0.5, 1.0, 2.0, 5.0), ()]


def _random_points(rng: random.Random, base: int) -> list[MetricPoint]:
    points = []
    for _ in range(rng.randint(1, 40)):
        i = rng.randrange(9)
        kind = ("sum", "gauge", "histogram")[i % 3] if rng.random() > 0.05 else rng.choice(["sum", "gauge"])
        temporality = "delta" if kind == "gauge" or rng.random() < (0.8 if i == 4 else 0.1) else "cumulative"
        labels = f'{{"i":"{i}"}}'
        at = base + rng.randrange(0, 3 * MINUTE_NS, 7 * 10**9)
        start = rng.choice([0, T0 - MINUTE_NS, T0 - MINUTE_NS, T0 - MINUTE_NS, at - 10**9])
        value = float(rng.randrange(0, 60))
        bounds: tuple[float, ...] = ()
        buckets: tuple[float, ...] = ()
        total = 0.0
        if kind == "histogram":
            bounds = rng.choice(SHAPES)
            counts = [float(rng.randrange(0, 20)) for _ in range(len(bounds) + 1)]
            buckets, value, total = tuple(counts), float(sum(counts)), float(rng.randrange(0, 100))
        points.append(MetricPoint(series_id("m", labels), "m", labels, kind, temporality, "1", start, at, value, total,
                                  bounds, buckets))
    return points


def _row(agg: Any) -> tuple[Any, ...]:
    bounds = list(agg.bounds) if agg.bounds is not None else None
    return (pytest.approx(agg.value), agg.points, agg.min, agg.max, agg.last, agg.last_ns,
            None if agg.sum is None else pytest.approx(agg.sum), bounds, agg.buckets)


@pytest.mark.parametrize("seed", range(40))
def test_random_requests_give_what_the_per_point_reference_gives(seed: int) -> None:
    rng = random.Random(seed)
    conn = duckdb.connect()
    _metric_tables(conn)
    tables, reference = MetricTables(conn, 6), Reference(6)
    for step in range(6):
        points = _random_points(rng, T0 + step * 2 * MINUTE_NS)
        got = tables.commit("t", points_table(points))
        accepted, over, aggs = reference.commit(points)
        assert (got.accepted, got.over_limit) == (accepted, over)
        assert got.minutes == {minute for _, minute in aggs}
        rows = conn.execute("SELECT series_id, minute_ns, value, points, min, max, last, last_ns, sum, bounds, buckets "
                            "FROM metric_minutes").fetchall()
        conn.execute("DELETE FROM metric_minutes")
        assert {(r[0], r[1]): tuple(r[2:]) for r in rows} == {key: _row(agg) for key, agg in aggs.items()}
        series = conn.execute("SELECT series_id, metric, labels, kind, unit, first_ns, start_ns, last_ns, last_value, "
                              "last_sum, last_bounds, last_buckets FROM metric_series "
                              "LEFT JOIN metric_series_buckets USING (tenant, series_id)").fetchall()
        assert {r[0]: tuple(r[1:]) for r in series} == {
            s.series_id: (s.metric, s.labels, s.kind, s.unit, s.first_ns, s.start_ns, s.last_ns, s.last_value,
                          s.last_sum, None if s.last_bounds is None else list(s.last_bounds),
                          _kept_buckets(s))
            for s in reference.known.values()
        }
    conn.close()


def _metric_tables(conn: duckdb.DuckDBPyConnection) -> None:
    for sql in sorted((Path(__file__).parents[2] / "src/aisre/store/duckdb/migrations").glob("003*.sql")):
        conn.execute(sql.read_text())


def _kept_buckets(s: Any) -> list[float] | None:
    # The store keeps bucket counts for histograms only (a sum's are always empty).
    return None if s.kind != "histogram" or s.last_buckets is None else list(s.last_buckets)


def _fold(rows: list[Any]) -> tuple[Any, ...]:
    total = MinuteAgg()
    for agg in rows:
        total.merge(agg)
    return tuple(v if v is None or isinstance(v, int) else pytest.approx(v) for v in _folded(total))


def _folded(agg: MinuteAgg) -> tuple[Any, ...]:
    # ``last`` is left out: two requests with a gauge point at the same time leave it to
    # whichever row a read meets first, committed together or one by one.
    return (agg.value, agg.points, agg.min, agg.max, agg.sum,
            None if agg.bounds is None else list(agg.bounds), agg.buckets)


@pytest.mark.parametrize("seed", range(20))
def test_requests_committed_together_give_what_one_by_one_gives(seed: int) -> None:
    # Requests queued for the writer are committed in one transaction; their points overlap
    # in time (a later request may hold older points), and the limit falls inside the batch.
    rng = random.Random(1000 + seed)
    conn = duckdb.connect()
    _metric_tables(conn)
    tables, reference = MetricTables(conn, 6), Reference(6)
    expected: dict[tuple[int, int], list[MinuteAgg]] = {}
    for step in range(3):
        batch = [_random_points(rng, T0 + (2 * step + rng.randrange(2)) * MINUTE_NS) for _ in range(rng.randint(2, 5))]
        got = tables.commit_many("t", [points_table(points) for points in batch])
        for points, result in zip(batch, got, strict=True):
            accepted, over, aggs = reference.commit(points)
            assert (result.accepted, result.over_limit, result.minutes) == (accepted, over, {m for _, m in aggs})
            for key, agg in aggs.items():
                expected.setdefault(key, []).append(agg)
    ids = sorted({sid for sid, _ in expected})
    folded = {(sid, minute): _folded(agg) for sid, minute, agg in folded_minutes(conn, "t", ids, 0, 2**62)}
    assert folded == {key: _fold(rows) for key, rows in expected.items()}
    series = conn.execute("SELECT series_id, kind, first_ns, start_ns, last_ns, last_value, last_sum, last_bounds, "
                          "last_buckets FROM metric_series LEFT JOIN metric_series_buckets USING (tenant, series_id)").fetchall()
    assert {r[0]: tuple(r[1:]) for r in series} == {
        s.series_id: (s.kind, s.first_ns, s.start_ns, s.last_ns, s.last_value, s.last_sum,
                      None if s.last_bounds is None else list(s.last_bounds),
                      _kept_buckets(s))
        for s in reference.known.values()
    }
    conn.close()
