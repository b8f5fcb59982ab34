"""The store backends side by side: ingest, trace lookup, run listing and SLO minutes.

Run:  PYTHONPATH=src /work/main/.venv/bin/python bench/backends.py [--batches 40] [--traces 1000]

Each backend (DuckDB, and ClickHouse in-process via chdb) gets the same synthetic requests
(``--traces`` runs of three spans per request, ``--batches`` requests after ten warm-up
ones) through ``submit_spans``, one request at a time, whole traces and then split traces
(children first, roots in a second request, the duplicate-check path). Then trace lookups
by id (p50/p99 ms), a run listing and one SLO's minute arrays; then the span scans of the
rest of the data plane (the checker's sample, the service catalog's dependency calls, the
policy budget totals of a day, a short trace id) and one metric export of ``--series``
gauges folded into minutes and read back. The issue 17 target run is 10M spans
(``--batches 3400``); the default is a quick look.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.otlp_factory import journey_request

from aisre.core.model import RunQuery, SliRule, SpanSampleQuery
from aisre.core.series import MetricPoint, series_id
from aisre.normalize.spans import flatten
from aisre.store.factory import open_store

T0 = 1_790_000_000 * 10**9
URLS = {"duckdb": "duckdb:///{dir}/bench.duckdb", "chdb": "chdb:///{dir}/bench.chdb"}


def _requests(n: int, traces: int, offset: int) -> list[tuple[Any, Any]]:
    out = []
    for k in range(n):
        flat = flatten(journey_request(traces, start_ns=T0 + (offset + k) * 10**9)[0], "t")
        out.append((flat.table, flat.resources))
    return out


def _timed_ms(call: Any) -> float:
    t = time.perf_counter()
    call()
    return (time.perf_counter() - t) * 1000


def _gauges(series: int, minutes: int) -> list[MetricPoint]:
    out = []
    for i in range(series):
        labels = f'{{"gpu":"{i}"}}'
        sid = series_id("gpu.util", labels)
        out += [MetricPoint(sid, "gpu.util", labels, "gauge", "cumulative", "1", 0, T0 + m * 60 * 10**9 + 1,
                            float(i % 100) / 100, 0.0, (), ()) for m in range(minutes)]
    return out


def run(backend: str, folder: str, batches: int, traces: int, rollup_interval_ms: int = 1000,
        series: int = 1000) -> dict[str, float]:
    """Figures of one backend."""
    store = open_store(URLS[backend].format(dir=folder), retention_days=0, rollup_interval_ms=rollup_interval_ms)
    store.set_sli_rules("t", [SliRule(slo="ask-ok", journey="ask", kind="outcome")])
    whole = _requests(batches + 10, traces, 0)
    for spans, res in whole[:10]:
        store.submit_spans(spans, res).result(120)
    started, n = time.perf_counter(), 0
    for spans, res in whole[10:]:
        n += store.submit_spans(spans, res).result(120)
    whole_rate = n / (time.perf_counter() - started)
    split = _requests(batches, traces, batches + 10)
    started, n = time.perf_counter(), 0
    for spans, res in split:
        roots = spans.column("is_root")
        n += store.submit_spans(spans.filter(pc.invert(roots)), res).result(120)
        n += store.submit_spans(spans.filter(roots), res).result(120)
    split_rate = n / (time.perf_counter() - started)
    started = time.perf_counter()
    store.flush_rollups()
    flush_s = time.perf_counter() - started
    ids = [t for spans, _ in whole[10:][:: max(1, batches // 50)] for t in spans.column("trace_id").to_pylist()[:2]]
    lookups = []
    for trace in ids:
        t = time.perf_counter()
        store.get_trace("t", trace)
        lookups.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    store.list_runs(RunQuery("t", limit=100))
    list_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    store.slo_minute_arrays("t", 0, 2**62, "ask-ok")
    slo_ms = (time.perf_counter() - t) * 1000
    sample_ms = _timed_ms(lambda: store.span_sample(SpanSampleQuery("t", limit=50_000)))
    deps_ms = _timed_ms(lambda: store.dependency_calls("t"))
    usage_ms = _timed_ms(lambda: store.policy_usage_totals("t", T0, T0 + 86_400 * 10**9, sessions=None))
    prefix_ms = _timed_ms(lambda: store.trace_ids_with_prefix("t", ids[0][:6]))
    points = _gauges(series, 10)
    t = time.perf_counter()
    store.submit_metrics("t", points).result(600)
    metric_rate = len(points) / (time.perf_counter() - t)
    metric_ids = [s["series_id"] for s in store.metric_series("t", "gpu.util")]
    metric_read_ms = _timed_ms(lambda: store.metric_minutes("t", metric_ids, 0, 2**62))
    spans_stored = store.count_spans("t")
    store.close()
    lookups.sort()
    return {
        "spans": spans_stored, "ingest_whole_spans_s": whole_rate, "ingest_split_spans_s": split_rate,
        "rollup_flush_s": flush_s, "trace_p50_ms": statistics.median(lookups),
        "trace_p99_ms": lookups[min(len(lookups) - 1, int(len(lookups) * 0.99))],
        "list_runs_ms": list_ms, "slo_minutes_ms": slo_ms, "span_sample_50k_ms": sample_ms,
        "dependency_calls_ms": deps_ms, "policy_usage_day_ms": usage_ms, "trace_id_prefix_ms": prefix_ms,
        "metric_points_s": metric_rate, "metric_minutes_read_ms": metric_read_ms,
    }


def main() -> None:
    """Print each backend's figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--backends", default="duckdb,chdb")
    parser.add_argument("--rollup-interval-ms", type=int, default=1000,
                        help="how often the writer recounts touched minutes (a large value: once, at the flush)")
    parser.add_argument("--series", type=int, default=1000, help="gauge series in the metric export (10 minutes each)")
    args = parser.parse_args()
    results = {}
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as folder:
            results[backend] = run(backend, folder, args.batches, args.traces, args.rollup_interval_ms, args.series)
    names = list(results)
    print(f"{'':24}" + "".join(f"{n:>14}" for n in names))
    for key in results[names[0]]:
        print(f"{key:24}" + "".join(f"{results[n][key]:>14,.1f}" for n in names))


if __name__ == "__main__":
    main()
