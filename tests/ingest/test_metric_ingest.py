"""MetricIngest: requests decoded in the span decoders' processes come back as Arrow
tables and are committed columnar; requests in flight together are committed together
with each one's own answer; a sink without the Arrow path still gets the points."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from aisre.core.pipeline import EncodedExport
from aisre.core.series import MetricPoint
from aisre.ingest.metrics import MetricIngest
from aisre.ingest.pipeline import SpanIngest
from aisre.store.duckdb import DuckDBStore
from tests.metrics_otlp import DELTA, MIN, T0, counter, gauge, histogram, minutes_of, request

S = 10**9


def _export(*metrics: Any) -> EncodedExport:
    return EncodedExport(request(list(metrics)).SerializeToString(), "protobuf")


def test_points_decoded_in_a_decoder_process_land_as_minutes(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "p.duckdb"), rollup_interval_ms=0)
    decoders = SpanIngest(store, workers=1)
    try:
        assert len(decoders.decoder_pids()) == 1
        ingest = MetricIngest(store, decoders=decoders)
        export = _export(
            counter("req", [(T0 + MIN + 5 * S, 30.0, {}), (T0 + 5 * S, 10.0, {})]),
            gauge("util", [(T0 + S, 0.25, {}), (T0 + 2 * S, 0.75, {})]),
            histogram("lat", [1.0], [(T0 + 5 * S, [2, 1], {}), (T0 + MIN + 5 * S, [5, 1], {})]),
        )
        result = asyncio.run(ingest.consume(export, "t"))
        assert (result.accepted, result.rejected) == (6, 0)
        key0, key1 = ('{"service.name":"svc"}', 0), ('{"service.name":"svc"}', 1)
        req, util, lat = (minutes_of(store, "t", name) for name in ("req", "util", "lat"))
        assert (req[key0]["value"], req[key1]["value"]) == (10.0, 20.0)
        assert (util[key0]["value"], util[key0]["points"], util[key0]["last"]) == (1.0, 2, 0.75)
        assert (lat[key0]["buckets"], lat[key1]["buckets"]) == ([2.0, 1.0], [3.0, 0.0])
        assert ingest.points_accepted == 6
    finally:
        decoders.close()
        store.close()


def test_requests_in_flight_together_each_get_their_own_answer(tmp_path: Path) -> None:
    # Eight exporters at once, each with its own delta counter (5 points of 1 + i) and a point
    # of one shared gauge (i at T0 + i s); some of them are committed together.
    store = DuckDBStore(str(tmp_path / "f.duckdb"), rollup_interval_ms=0)
    ingest = MetricIngest(store, decoders=SpanIngest(store, workers=0), max_pending=16)

    def export(i: int) -> EncodedExport:
        return _export(counter("tok", [(T0 + k * S, 1.0 + i, {"exporter": str(i)}) for k in range(5)], temporality=DELTA),
                       gauge("shared", [(T0 + i * S, float(i), {})]))

    async def run() -> list[Any]:
        return await asyncio.gather(*(ingest.consume(export(i), "t") for i in range(8)))

    try:
        results = asyncio.run(run())
        assert [(r.accepted, r.rejected) for r in results] == [(6, 0)] * 8
        tok = minutes_of(store, "t", "tok")
        assert {labels: row["value"] for (labels, _), row in tok.items()} == {
            f'{{"exporter":"{i}","service.name":"svc"}}': 5 * (1.0 + i) for i in range(8)}
        shared = minutes_of(store, "t", "shared")[('{"service.name":"svc"}', 0)]
        assert (shared["points"], shared["value"], shared["min"], shared["max"], shared["last"]) == (8, 28.0, 0.0, 7.0, 7.0)
    finally:
        store.close()


class _PointsOnly:
    """A sink with only MetricSink.submit_metrics (as a backend without the Arrow path)."""

    def __init__(self, store: DuckDBStore) -> None:
        self.store = store
        self.calls = 0

    def submit_metrics(self, tenant: str, points: list[MetricPoint]) -> Future[Any]:
        self.calls += 1
        return self.store.submit_metrics(tenant, points)


def test_a_sink_without_the_arrow_path_gets_points(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "s.duckdb"), rollup_interval_ms=0)
    sink = _PointsOnly(store)
    try:
        result = asyncio.run(MetricIngest(sink).consume(_export(gauge("g", [(T0, 2.0, {})])), "t"))
        assert (result.accepted, sink.calls) == (1, 1)
        assert minutes_of(store, "t", "g")[('{"service.name":"svc"}', 0)]["value"] == 2.0
    finally:
        store.close()
