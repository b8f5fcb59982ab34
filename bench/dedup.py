"""Exactly-once and retention at the store: the duplicate check's slow path, and one expiry step.

Run:  PYTHONPATH=src /work/main/.venv/bin/python bench/dedup.py [--batches 50] [--traces 1000]

1. Split traces: each request of ``--traces`` runs is sent as two, children first and then
   roots, so every roots request carries spans of traces already stored and takes the
   duplicate check (bench/ingest.py sends whole traces, the fast path). Printed as
   committed spans/s; compare with the same script on an older checkout.
2. Expiry: a store of ``--batches`` × ``--traces`` runs (3 spans each), half of them past a
   1-day retention, expired in steps of 5,000 traces; printed as milliseconds per step, the
   longest an ingest request waits for expiry.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.otlp_factory import journey_request

from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore

DAY = 86_400 * 10**9
T0 = 1_790_000_000 * 10**9


def split_traces(folder: str, batches: int, traces: int) -> float:
    """Committed spans/s when every trace arrives as children, then roots."""
    store = DuckDBStore(os.path.join(folder, "split.duckdb"), rollup_interval_ms=0)
    parts = []
    for k in range(batches + 10):
        flat = flatten(journey_request(traces, start_ns=T0 + k * 10**9)[0], "t")
        t = flat.table
        parts.append((t.filter(pc.invert(t.column("is_root"))), t.filter(t.column("is_root")), flat.resources))
    for children, roots, res in parts[:10]:  # warm-up
        store.submit_spans(children, res).result(60)
        store.submit_spans(roots, res).result(60)
    started, n = time.perf_counter(), 0
    for children, roots, res in parts[10:]:
        store.submit_spans(children, res).result(60)
        store.submit_spans(roots, res).result(60)
        n += children.num_rows + roots.num_rows
    rate = n / (time.perf_counter() - started)
    store.close()
    return rate


def expiry_steps(folder: str, batches: int, traces: int) -> list[float]:
    """Seconds per expiry step of 5,000 traces, half the store past its retention."""
    now = T0 + 3 * DAY
    store = DuckDBStore(os.path.join(folder, "expiry.duckdb"), rollup_interval_ms=0, retention_days=1,
                        retention_step_traces=5000, clock=lambda: now)
    for k in range(batches):
        old = k < batches // 2
        flat = flatten(journey_request(traces, start_ns=T0 + (0 if old else 2 * DAY) + k * 10**9)[0], "t", received_ns=T0)
        store.submit_spans(flat.table, flat.resources).result(60)
    times = []
    while True:
        started = time.perf_counter()
        more = store._writer.call(lambda: store._expire_one_step(now)).result(60)
        times.append(time.perf_counter() - started)
        if not more:
            break
    print(f"expired {store.expiry.traces:,} traces / {store.expiry.spans:,} spans in {store.expiry.steps} steps")
    store.close()
    return times[:-1] or times


def main() -> None:
    """Print both figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--traces", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rate = split_traces(folder, args.batches, args.traces)
        print(f"split traces (duplicate check on every roots request): {rate:,.0f} spans/s committed")
        steps = expiry_steps(folder, args.batches * 2, args.traces)
        print(f"expiry step of 5,000 traces: median {statistics.median(steps) * 1000:.0f} ms, "
              f"max {max(steps) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
