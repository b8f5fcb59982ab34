"""OTLP metrics ingest benchmark: data points per second against the 200k/s target (issue 19).

Run:  .venv/bin/python bench/metrics.py [--series 3000] [--requests 120] [--workers 2] [--metric-slos 50]
      [--in-flight 10] [--profile decode|commit] [--skip-http]

In this process, against a fresh DuckDB store opened with ``open_store`` (the server's
factory). Each export request holds one point of every series (a third cumulative
counters, a third gauges, a third 12-bucket histograms, over ``--series`` label sets),
10 s after the previous request. Measured, in points per second:

1. **decode**: protobuf → a table of series points (normalize/metrics.py), one core;
2. **commit**: the tables folded into the minute series by the writer, in SQL (store only):
   half the requests one at a time (each waits for its commit), then the other half queued
   at once (the writer commits queued requests together, as under load);
3. **end to end**: ``MetricIngest.consume`` (decode in ``--workers`` decoder processes, as
   the server's span decoders, the points crossing back as Arrow; then commit), with
   ``--in-flight`` requests at once (10: an OpenTelemetry Collector's exporter with its
   default sending queue, ``num_consumers: 10``), and with 4;
4. **over HTTP**: the same requests POSTed to ``/v1/metrics`` of a real ``aisre up`` server
   (embedded store, its default decoder processes) by ``--in-flight`` client threads, each
   request counted once it is answered 200 (committed);

then the time to evaluate ``--metric-slos`` ratio/threshold/histogram SLOs over the data.
Target: end to end >= 200,000 points/s on this box.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import http.client
import os
import pstats
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from aisre.core.pipeline import EncodedExport
from aisre.core.slo import HistogramSli, RatioSli, SloSpec, ThresholdSli
from aisre.evaluate.slo import SloEngine
from aisre.ingest.metrics import MetricIngest, decode_metrics
from aisre.ingest.pipeline import SpanIngest
from aisre.store.factory import open_store

TARGET = 200_000
T0 = 1_767_225_600 * 10**9
BOUNDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]


def build(series: int, step: int) -> bytes:
    """One export request: a point of every series at T0 + step * 10 s."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="vllm")))
    sm = rm.scope_metrics.add()
    at = T0 + step * 10 * 10**9
    per = max(1, series // 3)
    counter = sm.metrics.add(name="vllm:request_success_total")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = 2
    gauge = sm.metrics.add(name="DCGM_FI_DEV_GPU_UTIL")
    hist = sm.metrics.add(name="vllm:e2e_request_latency_seconds", unit="s")
    hist.histogram.aggregation_temporality = 2
    for i in range(per):
        labels = [KeyValue(key="pod", value=AnyValue(string_value=f"pod-{i % 50}")),
                  KeyValue(key="gpu", value=AnyValue(string_value=str(i)))]
        c = counter.sum.data_points.add(start_time_unix_nano=T0 - 10**9, time_unix_nano=at, as_double=float(step * 10 + i % 7))
        c.attributes.extend(labels)
        g = gauge.gauge.data_points.add(time_unix_nano=at, as_double=(step + i) % 100 / 100)
        g.attributes.extend(labels)
        n = step + 1
        h = hist.histogram.data_points.add(start_time_unix_nano=T0 - 10**9, time_unix_nano=at, count=12 * n, sum=3.0 * n)
        h.explicit_bounds.extend(BOUNDS)
        h.bucket_counts.extend([n] * 12)
        h.attributes.extend(labels)
    return req.SerializeToString()


def end_to_end(store: Any, bodies: list[bytes], workers: int, in_flight: int) -> float:
    """Points per second through ``MetricIngest.consume`` with ``in_flight`` requests at once."""
    # The server's decoder pool (SpanIngest's), which metric decoding shares.
    decoders = SpanIngest(store, workers=workers)
    ingest = MetricIngest(store, max_pending=in_flight * 2, decoders=decoders)
    points = 0

    async def run() -> float:
        nonlocal points
        gate = asyncio.Semaphore(in_flight)

        async def one(body: bytes) -> None:
            nonlocal points
            async with gate:
                result = await ingest.consume(EncodedExport(body, "protobuf"), "bench")
                points += result.accepted  # after the await: `points +=` around it would lose counts

        began = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - began

    try:
        elapsed = asyncio.run(run())
    finally:
        decoders.close()
    return points / elapsed


def over_http(bodies: list[bytes], per_request: int, clients: int, tmp: Path) -> tuple[float, int]:
    """Points per second POSTed to a live ``aisre up`` by ``clients`` connections, each body
    once; a request asked to retry (429/503) is sent again after its Retry-After."""
    from ingest import free_port, server  # bench/ingest.py

    port = free_port()
    cmd = [str(Path(sys.executable).with_name("aisre")), "up", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0",
           "--db", str(tmp / "http.duckdb"), "--setting", "max_metric_series=1000000"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    work: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    accepted: list[int] = []
    refused: list[int] = []
    failures: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Content-Type": "application/x-protobuf"}
        try:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                while True:
                    conn.request("POST", "/v1/metrics", body, headers)
                    resp = conn.getresponse()
                    answer = resp.read()
                    if resp.status in (429, 503):
                        refused.append(1)
                        time.sleep(float(resp.getheader("Retry-After") or 1))
                        continue
                    if resp.status != 200:
                        failures.append(f"{resp.status}: {answer[:200]!r}")
                        return
                    reply = ExportMetricsServiceResponse.FromString(answer)
                    accepted.append(per_request - reply.partial_success.rejected_data_points)
                    break
        finally:
            conn.close()

    with server(cmd, env, tmp, tmp / "http.log", f"http://127.0.0.1:{port}/healthz"):
        threads = [threading.Thread(target=client) for _ in range(clients)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
    if failures:
        raise SystemExit(f"the server refused requests: {failures[0]}")
    return sum(accepted) / elapsed, len(refused)


def main() -> None:
    """Print decode, commit and end-to-end points/s, and metric SLO evaluation time."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=3000)
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--in-flight", type=int, default=10)
    ap.add_argument("--skip-http", action="store_true", help="leave out the phase against a live server")
    ap.add_argument("--metric-slos", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2, help="decoder processes end to end (0: a thread)")
    ap.add_argument("--profile", choices=["decode", "commit"], help="print where that phase's time goes (cProfile)")
    args = ap.parse_args()
    bodies = [build(args.series, s) for s in range(args.requests)]
    per_request = decode_metrics(EncodedExport(bodies[0], "protobuf"), 1 << 30).table.num_rows
    points = per_request * len(bodies)
    print(f"{len(bodies)} requests x {per_request} points ({args.series} series)")

    profiler = cProfile.Profile()
    if args.profile == "decode":
        profiler.enable()
    started = time.perf_counter()
    decoded = [decode_metrics(EncodedExport(b, "protobuf"), 1 << 30).table for b in bodies]
    decode_s = time.perf_counter() - started
    profiler.disable()
    print(f"decode       {points / decode_s:>12,.0f} points/s  (one core)")

    with tempfile.TemporaryDirectory() as tmp:
        # The DuckDB store itself (unguarded): its Arrow path, and its writer thread to profile.
        store: Any = open_store(f"duckdb://{Path(tmp) / 'commit.duckdb'}", guarded=False, max_metric_series=10**6)
        if args.profile == "commit":  # commits run on the writer thread: profile that one
            store._writer.call(profiler.enable).result(60)
        half = len(decoded) // 2
        started = time.perf_counter()
        for batch in decoded[:half]:
            store.submit_metric_table("bench", batch).result(600)
        one_s = time.perf_counter() - started
        # The second half all at once: requests queued for the writer are committed together.
        started = time.perf_counter()
        futures = [store.submit_metric_table("bench", batch) for batch in decoded[half:]]
        for future in futures:
            future.result(600)
        queued_s = time.perf_counter() - started
        if args.profile == "commit":
            store._writer.call(profiler.disable).result(60)
        store.close()
        per_half = per_request * half, per_request * (len(decoded) - half)
        print(f"commit       {per_half[0] / one_s:>12,.0f} points/s  (writer only, one request at a time)")
        print(f"commit       {per_half[1] / queued_s:>12,.0f} points/s  (writer only, {len(decoded) - half} requests queued)")
        if args.profile:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)

        # Against a fresh store each: the Collector's 10 requests in flight, then 4. The
        # first store keeps its data for the SLO evaluation below.
        kept: Any = None
        for in_flight in dict.fromkeys([args.in_flight, 4]):
            store = open_store(f"duckdb://{Path(tmp) / f'e2e{in_flight}.duckdb'}", guarded=False, max_metric_series=10**6)
            rate = end_to_end(store, bodies, args.workers, in_flight)
            verdict = "meets" if rate >= TARGET else "misses"
            print(f"end to end   {rate:>12,.0f} points/s  ({verdict} the {TARGET:,} target; "
                  f"{args.workers} decoder processes, {in_flight} requests in flight)")
            if kept is None:
                kept = store
            else:
                store.close()
        store = kept
        if not args.skip_http:
            rate, refused = over_http(bodies, per_request, args.in_flight, Path(tmp))
            verdict = "meets" if rate >= TARGET else "misses"
            print(f"over HTTP    {rate:>12,.0f} points/s  ({verdict} the {TARGET:,} target; a live server, "
                  f"{args.in_flight} client connections; {refused} answers asked to retry)")

        kinds: list[Any] = [
            RatioSli(total="vllm:request_success_total", good='vllm:request_success_total{pod!="pod-1"}'),
            ThresholdSli(metric='DCGM_FI_DEV_GPU_UTIL{pod=~"pod-1.*"}', max=0.9),
            HistogramSli(metric="vllm:e2e_request_latency_seconds", le=2.5),
        ]
        specs = [SloSpec(name=f"m{i}", objective=99.0, sli=kinds[i % 3], service="vllm") for i in range(args.metric_slos)]
        engine = SloEngine(store)
        started = time.perf_counter()
        engine.apply("bench", specs)
        apply_s = time.perf_counter() - started
        now = T0 + args.requests * 10 * 10**9
        engine.statuses("bench", now)  # fills the minute cache
        started = time.perf_counter()
        engine.statuses("bench", now)
        eval_s = time.perf_counter() - started
        print(f"metric SLOs  {args.metric_slos} backfilled in {apply_s:.2f} s, evaluated in {eval_s * 1000:.0f} ms")
        store.close()


if __name__ == "__main__":
    main()
