"""The store backends side by side: ingest, trace lookup, run listing and SLO minutes.

Run:  PYTHONPATH=src /work/main/.venv/bin/python bench/backends.py [--batches 40] [--traces 1000]

Each backend (DuckDB, and ClickHouse in-process via chdb) gets the same synthetic requests
(``--traces`` runs of three spans per request, ``--batches`` requests after ten warm-up
ones) through ``submit_spans``, one request at a time, whole traces and then split traces
(children first, roots in a second request, the duplicate-check path). Then trace lookups
by id (p50/p99 ms), a run listing and one SLO's minute arrays. The issue 17 target run is
10M spans (``--batches 3400``); the default is a quick look.
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

from aisre.core.model import RunQuery, SliRule
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


def run(backend: str, folder: str, batches: int, traces: int, rollup_interval_ms: int = 1000) -> dict[str, float]:
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
    spans_stored = store.count_spans("t")
    store.close()
    lookups.sort()
    return {
        "spans": spans_stored, "ingest_whole_spans_s": whole_rate, "ingest_split_spans_s": split_rate,
        "rollup_flush_s": flush_s, "trace_p50_ms": statistics.median(lookups),
        "trace_p99_ms": lookups[min(len(lookups) - 1, int(len(lookups) * 0.99))],
        "list_runs_ms": list_ms, "slo_minutes_ms": slo_ms,
    }


def main() -> None:
    """Print each backend's figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--backends", default="duckdb,chdb")
    parser.add_argument("--rollup-interval-ms", type=int, default=1000,
                        help="how often the writer recounts touched minutes (a large value: once, at the flush)")
    args = parser.parse_args()
    results = {}
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as folder:
            results[backend] = run(backend, folder, args.batches, args.traces, args.rollup_interval_ms)
    names = list(results)
    print(f"{'':24}" + "".join(f"{n:>14}" for n in names))
    for key in results[names[0]]:
        print(f"{key:24}" + "".join(f"{results[n][key]:>14,.1f}" for n in names))


if __name__ == "__main__":
    main()
