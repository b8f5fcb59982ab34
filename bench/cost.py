"""Cost benchmark: a 30-day × 50-journey cost breakdown from the rollups (target < 200 ms) and
a spike explanation between two 1-day windows at 10M stored spans (target < 2 s).

Run:  .venv/bin/python bench/cost.py [--spans N] [--reps N] [--keep PATH]

The data is bench/slo.py's generator (hash-derived pseudo-random traces of 10 spans with 3
chat calls each, written by SQL into a store file created by ``DuckDBStore``, so the schema
is the real one). The last day's journeys 0-9 get 60 % more input tokens per call (a prompt
regression), so the explanation has something to find. Then the store's own minute rebuild
(rollups.rebuild: run_minutes, slo_minutes, cost_minutes) runs over all 30 days, and the
API's code paths are timed: ``CostEngine.breakdown`` and ``CostEngine.explain``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aisre.evaluate.cost import CostEngine
from aisre.store.duckdb.cost import DuckDBCost
from aisre.store.duckdb.rollups import MINUTE_NS, rebuild
from aisre.store.duckdb.store import DuckDBStore
from slo import (
    CHUNK_TRACES,
    END_NS,
    INSERT_SPANS,
    INSERT_TRACES,
    SPANS_PER_TRACE,
    START_NS,
    TENANT,
)

console = Console()
DAY_NS = 86_400 * 10**9
TARGET_BREAKDOWN_S = 0.200
TARGET_EXPLAIN_S = 2.0


def generate(path: Path, spans: int) -> None:
    DuckDBStore(str(path), rollup_interval_ms=0).close()  # the real schema
    traces = spans // SPANS_PER_TRACE
    conn = duckdb.connect(str(path))
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} traces"),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("generating spans", total=traces)
            for t0 in range(0, traces, CHUNK_TRACES):
                t1 = min(traces, t0 + CHUNK_TRACES)
                conn.execute("BEGIN TRANSACTION")
                conn.execute(INSERT_SPANS, {"t0": t0, "t1": t1})
                conn.execute(INSERT_TRACES, {"t0": t0, "t1": t1})
                conn.execute("COMMIT")
                progress.update(task, completed=t1)
        # A prompt regression on the last day: journeys 0-9 send 60 % more input tokens.
        with console.status("injecting a prompt regression on the last day"):
            last_day = END_NS - DAY_NS
            conn.execute(
                """
                UPDATE spans SET input_tokens = input_tokens * 16 // 10,
                    cost_usd = cost_usd + (input_tokens * 16 // 10 - input_tokens) * cost_usd
                        / (input_tokens + 4 * output_tokens)
                WHERE operation = 'chat' AND start_ns >= ? AND trace_id IN (
                    SELECT trace_id FROM traces WHERE root_start_ns >= ? AND journey_attr < 'journey-10')
                """,
                [last_day, last_day],
            )
            conn.execute(
                """
                UPDATE traces SET prompt_version = 'p4', input_tokens = x.i, cost_usd = x.c
                FROM (SELECT trace_id, sum(input_tokens) AS i, sum(cost_usd) AS c FROM spans
                      WHERE start_ns >= ? AND operation = 'chat' GROUP BY trace_id) x
                WHERE traces.trace_id = x.trace_id AND root_start_ns >= ? AND journey_attr < 'journey-10'
                """,
                [last_day, last_day],
            )
        began = time.perf_counter()
        with console.status("rebuilding run_minutes, slo_minutes and cost_minutes for 30 days (rollups.rebuild)"):
            rebuild(conn, {TENANT: set(range(START_NS, END_NS, MINUTE_NS))})
        console.print(f"rollups rebuilt in {time.perf_counter() - began:.1f} s")
        conn.execute("CHECKPOINT")
    finally:
        conn.close()


def _timed(fn: Any, reps: int) -> tuple[float, float, Any]:
    times, out = [], None
    for _ in range(reps):
        began = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), max(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="store file to reuse (generated if missing)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="aisre-bench-cost-"))
    path = args.keep or folder / "cost.duckdb"
    if not path.exists():
        generate(path, args.spans)
    store = DuckDBStore(str(path), rollup_interval_ms=0)
    try:
        engine = CostEngine(DuckDBCost(store))
        spans = store.count_spans()
        rollup_rows = store._rows("SELECT count(*) AS n FROM cost_minutes", [])[0]["n"]
        journeys = store._rows("SELECT count(DISTINCT journey) AS n FROM cost_minutes", [])[0]["n"]

        def breakdown() -> dict[str, Any]:
            return engine.breakdown(TENANT, START_NS, END_NS, ("journey",))

        breakdown()  # warm-up
        b_med, b_max, doc = _timed(breakdown, args.reps)
        assert len(doc["groups"]) == journeys
        m_med, m_max, _ = _timed(lambda: engine.breakdown(TENANT, START_NS, END_NS, ("journey", "model"), DAY_NS), args.reps)

        base = (END_NS - 2 * DAY_NS, END_NS - DAY_NS)
        cur = (END_NS - DAY_NS, END_NS)

        def explain() -> dict[str, Any]:
            return engine.explain(TENANT, "journey-03", base, cur)

        explain()
        e_med, e_max, exp = _timed(explain, args.reps)
    finally:
        store.close()

    table = Table("measure", "median", "max", "target", "result", title=f"{spans:,} spans, {rollup_rows:,} cost_minutes rows, {journeys} journeys")
    rows = [
        ("breakdown by journey, 30 days", b_med, b_max, TARGET_BREAKDOWN_S),
        ("breakdown by journey × model per day, 30 days", m_med, m_max, None),
        ("explain journey-03, two 1-day windows", e_med, e_max, TARGET_EXPLAIN_S),
    ]
    ok = True
    for name, med, worst, target in rows:
        verdict = "-" if target is None else ("PASS" if med < target else "FAIL")
        ok &= verdict != "FAIL"
        table.add_row(name, f"{med * 1000:.1f} ms", f"{worst * 1000:.1f} ms",
                      "-" if target is None else f"< {target * 1000:.0f} ms", verdict)
    console.print(table)
    if exp["status"] != "explained":
        console.print(f"explanation: {exp['summary']}")
        return 0 if ok else 1
    top = exp["causes"][0]
    console.print(f"explanation: delta {exp['delta_usd']:+.4f} USD; top cause {top['cause']} ({top['share'] * 100:.0f}%): "
                  f"{top['evidence']['summary']}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
