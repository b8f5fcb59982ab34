"""Store benchmark: does a store stay fast as it fills? Through the store protocol only.

Run:  .venv/bin/python bench/store.py                                   # DuckDB, 3M spans
      .venv/bin/python bench/store.py --prefill 30000000 --steps 4      # the issue's 30M
      .venv/bin/python bench/store.py --store duckdb:///tmp/a.duckdb --store chdb:///tmp/a.chdb

Everything runs in this process against stores opened with ``open_store(url)`` (the
server's own factory), and stops by itself. For each store:

1. **Fill** to ``--prefill`` spans in ``--steps`` equal steps. Batches are bench/ingest.py's
   1,000-span bodies (100 RAG-bot traces), decoded and normalized once, then re-keyed per
   batch (fresh trace ids, times moved on by a minute a batch) with Arrow compute, so the
   fill measures the store, not the decoder.
2. **Measure** after each step (and on the empty store): ``--seconds`` of ingest at full
   speed (``--in-flight`` batches queued at once, as the server's decoders do), with the
   writer's per-commit time, and the reads the API makes: a trace by id (p50/p99 of
   ``--lookups`` random stored traces), the journey list, the newest runs, a cost breakdown
   by model over everything, and SLO minute counts of 100 SLOs over 28 days.

Target (issue 14): ingest with the most spans stored >= 0.8 x ingest on the empty store.
Figures go to the terminal, and with ``--json`` to a file.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aisre.core.model import RunQuery, SliRule, TimeRange
from aisre.core.pipeline import EncodedExport
from aisre.core.settings import Settings
from aisre.ingest.pipeline import decode_and_prepare
from aisre.store.factory import open_store
from aisre.store.protocol import Store
from ingest import SPANS_PER_BODY, build_template, stamp

TENANT = "bench"
MINUTE_NS = 60 * 10**9
DAY_NS = 86_400 * 10**9
TARGET_RATIO = 0.8
console = Console(width=180)


@dataclass
class Seed:
    """One prepared batch, as the writer receives it, and how to make fresh copies of it."""

    tables: tuple[pa.Table, ...]
    start_ns: int

    @property
    def spans(self) -> int:
        return int(self.tables[0].num_rows)

    def copy(self, n: int) -> tuple[pa.Table, ...]:
        """Batch ``n``: the seed with trace ids unique to ``n`` and times ``n`` minutes later."""
        prefix = pa.scalar(f"{n:016x}")
        shift = pa.scalar(n * MINUTE_NS, pa.int64())
        out = []
        for table in self.tables:
            if table.num_rows == 0 or "trace_id" not in table.column_names:
                out.append(table)
                continue
            ids = pc.binary_join_element_wise(prefix, pc.utf8_slice_codeunits(table.column("trace_id"), 16, 32), "")
            table = table.set_column(table.schema.get_field_index("trace_id"), "trace_id", ids)
            out.append(_shift(table, shift))
        return tuple(out)


TIME_COLUMNS = ("start_ns", "end_ns", "root_start_ns", "root_end_ns", "received_ns", "first_received_ns",
                "last_received_ns")


def _shift(table: pa.Table, by: pa.Scalar) -> pa.Table:
    for name in TIME_COLUMNS:
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), name, pc.add(table.column(name), by))
    return table


def make_seed(store: Store, start_ns: int, tenant: str = TENANT) -> Seed:
    """bench/ingest.py's body decoded, normalized and prepared once for ``tenant``, its first
    span at ``start_ns``."""
    body = bytes(stamp(build_template(7), 0, 1, b"\x42" * 8))
    tables = decode_and_prepare(EncodedExport(body, "protobuf"), tenant, 64 * 1024 * 1024, store.prepare).tables
    delta = pa.scalar(start_ns - int(pc.min(tables[0].column("start_ns")).as_py()), pa.int64())
    return Seed(tuple(_shift(t, delta) if t.num_rows else t for t in tables), start_ns)


@dataclass
class Step:
    stored_spans: int
    ingest_spans_s: float
    commit_p50_ms: float
    commit_p99_ms: float
    # Shares of the measured wall time the writer thread spent committing, and on upkeep
    # between commits (rollup rebuilds, expiry): what grows when ingest slows.
    writer_commit_share: float
    writer_upkeep_share: float
    trace_p50_ms: float
    trace_p99_ms: float
    journeys_ms: float
    runs_ms: float
    cost_ms: float
    slo_100_ms: float
    rss_mib: float


@dataclass
class Result:
    url: str
    steps: list[Step] = field(default_factory=list)
    fill_spans_s: float = 0.0

    @property
    def ratio(self) -> float | None:
        if len(self.steps) < 2 or not self.steps[0].ingest_spans_s:
            return None
        return self.steps[-1].ingest_spans_s / self.steps[0].ingest_spans_s


class Feeder:
    """Submits numbered batches keeping ``in_flight`` queued, like the server's decoders."""

    def __init__(self, store: Store, seed: Seed, in_flight: int) -> None:
        self.store, self.seed, self.in_flight = store, seed, in_flight
        self.next = 0
        self.pending: deque[tuple[float, Future[int]]] = deque()
        self.commit_ms: list[float] = []

    def _wait_oldest(self) -> int:
        started, future = self.pending.popleft()
        n = future.result(600)
        self.commit_ms.append((time.perf_counter() - started) * 1000)
        return n

    def run(self, spans: int | None = None, seconds: float | None = None, progress: Any = None, task: Any = None) -> int:
        """Submit until ``spans`` are stored or ``seconds`` pass; returns spans stored."""
        stored = 0
        deadline = time.perf_counter() + seconds if seconds is not None else None
        while True:
            done = (spans is not None and stored + len(self.pending) * self.seed.spans >= spans) or (
                deadline is not None and time.perf_counter() >= deadline)
            if done:
                break
            if len(self.pending) >= self.in_flight:
                stored += self._wait_oldest()
                if progress is not None:
                    progress.update(task, completed=stored)
                continue
            batch = self.seed.copy(self.next)
            self.next += 1
            self.pending.append((time.perf_counter(), self.store.submit_prepared(batch)))
        while self.pending:
            stored += self._wait_oldest()
        return stored


def _timed(fn: Any, repeat: int = 3) -> float:
    """Median milliseconds of ``fn`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def measure(store: Store, feeder: Feeder, stored: int, args: argparse.Namespace, rng: random.Random) -> Step:
    feeder.commit_ms = []
    before = store.stats()
    t = time.perf_counter()
    fresh = feeder.run(seconds=args.seconds)
    wall = time.perf_counter() - t
    rate = fresh / wall
    after = store.stats()
    commit_share = _share(before, after, "commit_seconds_total", wall)
    upkeep_share = _share(before, after, "upkeep_seconds_total", wall)
    store.flush_rollups()
    end_ns = feeder.seed.start_ns + (feeder.next + 1) * MINUTE_NS
    batches = feeder.next
    lookups = []
    for _ in range(args.lookups):
        n = rng.randrange(batches)
        trace = f"{n:016x}" + feeder.seed.tables[1].column("trace_id")[rng.randrange(feeder.seed.tables[1].num_rows)].as_py()[16:]
        t0 = time.perf_counter()
        store.get_trace(TENANT, trace)
        lookups.append((time.perf_counter() - t0) * 1000)
    journeys = _timed(lambda: store.journey_summaries(TimeRange(TENANT)))
    runs = _timed(lambda: store.list_runs(RunQuery(TENANT, limit=50)))
    cost = _timed(lambda: store.cost.breakdown(TENANT, None, None, by=("model",)))
    slo = _timed(lambda: store.slo_minute_arrays(TENANT, end_ns - 28 * DAY_NS, end_ns))
    return Step(
        stored_spans=stored + fresh, ingest_spans_s=rate,
        commit_p50_ms=_pct(feeder.commit_ms, 0.5), commit_p99_ms=_pct(feeder.commit_ms, 0.99),
        writer_commit_share=commit_share, writer_upkeep_share=upkeep_share,
        trace_p50_ms=_pct(lookups, 0.5), trace_p99_ms=_pct(lookups, 0.99),
        journeys_ms=journeys, runs_ms=runs, cost_ms=cost, slo_100_ms=slo,
        rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def run_store(url: str, args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)
    # The server's defaults (checkpoint size, rollup interval, …), raw spans kept for ever.
    store = open_store(url, Settings(db_memory_limit=args.memory_limit, retention_days=0))
    result = Result(url)
    try:
        # 100 SLOs over the bench's journey: outcome, latency and cost bounds.
        rules = [SliRule(f"slo-{i}", "ask", ("outcome", "latency", "cost")[i % 3],
                         latency_ns=(1 + i % 7) * 10**9, max_cost_usd=0.001 * (1 + i % 5)) for i in range(100)]
        store.set_sli_rules(TENANT, rules)
        seed = make_seed(store, time.time_ns() - 30 * DAY_NS)
        feeder = Feeder(store, seed, args.in_flight)
        stored = 0
        result.steps.append(measure(store, feeder, stored, args, rng))
        stored = result.steps[-1].stored_spans
        per_step = args.prefill // args.steps if args.steps else 0
        filled_s = 0.0
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} spans"),
                      TimeRemainingColumn(), console=console, transient=True) as progress:
            for step in range(1, args.steps + 1):
                task = progress.add_task(f"fill {url} step {step}/{args.steps}", total=per_step)
                t = time.perf_counter()
                stored += feeder.run(spans=per_step, progress=progress, task=task)
                filled_s += time.perf_counter() - t
                progress.remove_task(task)
                result.steps.append(measure(store, feeder, stored, args, rng))
                stored = result.steps[-1].stored_spans
                _print_step(url, result.steps[-1])
        result.fill_spans_s = (per_step * args.steps) / filled_s if filled_s else 0.0
    finally:
        store.close()
    return result


def prefill(url: str, spans: int, memory_limit: str = "1GB", tenant: str = TENANT) -> int:
    """Fill the store at ``url`` with ``spans`` spans of ``tenant`` (a month ago onwards),
    showing progress; bench/ingest.py --prefill uses it before starting a server on the file."""
    store = open_store(url, Settings(db_memory_limit=memory_limit, retention_days=0))
    try:
        feeder = Feeder(store, make_seed(store, time.time_ns() - 30 * DAY_NS, tenant), in_flight=8)
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} spans"),
                      TimeRemainingColumn(), console=console, transient=True) as progress:
            task = progress.add_task(f"prefill {url}", total=spans)
            return feeder.run(spans=spans, progress=progress, task=task)
    finally:
        store.close()


def _share(before: dict[str, Any], after: dict[str, Any], key: str, wall: float) -> float:
    """The share of ``wall`` a writer counter grew by; NaN for a backend without that counter
    (ClickHouse's stores keep no commit/upkeep clock)."""
    if key not in after or key not in before:
        return float("nan")
    return float(after[key] - before[key]) / wall


def _share_text(share: float) -> str:
    return "n/a" if share != share else f"{share:.0%}"


def _print_step(url: str, s: Step) -> None:
    console.print(f"[dim]{url}: {s.stored_spans:,} spans stored, ingest {s.ingest_spans_s:,.0f} spans/s, "
                  f"writer busy committing {_share_text(s.writer_commit_share)}, on upkeep {_share_text(s.writer_upkeep_share)}, "
                  f"trace p99 {s.trace_p99_ms:,.1f} ms[/]")


def table(result: Result) -> Table:
    t = Table(title=f"{result.url} (fill ran at {result.fill_spans_s:,.0f} spans/s)")
    for col in ("stored spans", "ingest spans/s", "batch wait p50/p99 ms", "writer: commit / upkeep", "trace by id p50/p99 ms",
                "journeys ms", "newest runs ms", "cost by model ms", "100 SLOs, 28 d ms", "peak RSS MiB"):
        t.add_column(col, justify="right")
    for s in result.steps:
        t.add_row(f"{s.stored_spans:,}", f"{s.ingest_spans_s:,.0f}", f"{s.commit_p50_ms:,.0f} / {s.commit_p99_ms:,.0f}",
                  f"{_share_text(s.writer_commit_share)} / {_share_text(s.writer_upkeep_share)}",
                  f"{s.trace_p50_ms:,.1f} / {s.trace_p99_ms:,.1f}", f"{s.journeys_ms:,.0f}", f"{s.runs_ms:,.1f}",
                  f"{s.cost_ms:,.0f}", f"{s.slo_100_ms:,.0f}", f"{s.rss_mib:,.0f}")
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", action="append", default=[], help="store URL (repeatable); default a DuckDB file in a temp dir")
    ap.add_argument("--prefill", type=int, default=3_000_000, help="spans to store before the last measurement")
    ap.add_argument("--steps", type=int, default=3, help="measure after each of this many equal fill steps")
    ap.add_argument("--seconds", type=float, default=10.0, help="ingest measured for this long at each step")
    ap.add_argument("--in-flight", type=int, default=8, help="batches queued at once (the server's decoders)")
    ap.add_argument("--lookups", type=int, default=200, help="trace-by-id lookups per step")
    ap.add_argument("--memory-limit", default="1GB", help="db_memory_limit for DuckDB stores")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    args = ap.parse_args()
    if SPANS_PER_BODY <= 0:
        raise SystemExit("no spans per body")
    with tempfile.TemporaryDirectory(prefix="aisre-bench-store-") as tmp:
        urls = args.store or [f"duckdb://{tmp}/bench.duckdb"]
        results = [run_store(url, args) for url in urls]
    failed = False
    for result in results:
        console.print(table(result))
        ratio = result.ratio
        if ratio is not None:
            ok = ratio >= TARGET_RATIO
            failed |= not ok
            console.print(f"ingest at {result.steps[-1].stored_spans:,} spans stored / empty store: {ratio:.2f} "
                          f"(target >= {TARGET_RATIO}) {'[green]PASS[/]' if ok else '[red]FAIL[/]'}")
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "ratio": r.ratio} for r in results], indent=2))
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
