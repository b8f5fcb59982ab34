"""Change detection and triage cost as stored history grows.

Run:  .venv/bin/python bench/incidents.py [--traces 1000000] [--new 2000]

Journey runs are generated inside DuckDB with SQL into a store file created by
``DuckDBStore`` (the real schema), received in time order as a live server receives them.
Then, per step:

- the first detection pass (reads every run once, as after an upgrade) is timed;
- ``--new`` runs carrying a new prompt version are added and the incremental pass is timed:
  it must read only what arrived since the last pass, so its time should stay flat as the
  history grows (target below);
- triage of an incident over the last 30 minutes (bad vs good samples, span profiles of
  200 + 200 runs, suspect ranking) is timed.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aisre.evaluate.triage import triage
from aisre.store.duckdb.store import DuckDBStore

console = Console()
TENANT = "default"
END_NS = 1_748_736_000 * 10**9
STEP_NS = 50_000_000  # one run every 50 ms of history
TARGET_INCREMENTAL_S = 0.25
TARGET_TRIAGE_S = 2.0

_TRACES = """
INSERT INTO traces
SELECT ?, printf('%032x', i + ?), 'ask', NULL, true, printf('%016x', i), 'POST /ask', 'support-bot',
    t, t + 800000000, t, t + 800000000, failed, CASE WHEN failed THEN 'AnswerRejected' END,
    4, CASE WHEN failed THEN 1 ELSE 0 END, 1, 0, i % 3 = 0, 1, 0, 0, 300, 40, 0, 0.0001,
    '1.4.2', 'ask-answer', ?, 'prod', ['gpt-4o-mini', 'text-embedding-3-small'], [], 'u' || (i % 5000), NULL, t, t
FROM (SELECT i, ? + i * ? AS t, (hash(i) % 100) < ? AS failed FROM range(?) r(i))
"""

_SPANS = """
INSERT INTO spans
SELECT ?, printf('%032x', i + ?), printf('%016x', i * 4 + k), CASE WHEN k = 0 THEN '' ELSE printf('%016x', i * 4) END,
    ['POST /ask', 'embeddings', 'chat', 'execute_tool lookup'][k + 1], 'internal', 'support-bot', 'bench',
    t + k * 1000, t + k * 1000 + 100000000, 100000000, CASE WHEN k = 0 AND failed THEN 'error' ELSE 'unset' END, NULL,
    'ask', k = 0, ['other', 'embeddings', 'chat', 'execute_tool'][k + 1], 'openai', NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, '1.4.2', 'ask-answer', ?, 'prod', NULL, NULL, NULL, NULL, NULL, NULL, false, '{}', 0, '[]', '[]', t
FROM (SELECT i, ? + i * ? AS t, (hash(i) % 100) < ? AS failed FROM range(?) r(i)), range(4) s(k)
"""


def add_runs(store: DuckDBStore, offset: int, count: int, start_ns: int, prompt: str, fail_pct: int, spans: bool) -> None:
    def run() -> None:
        conn = store._conn
        conn.execute(_TRACES, [TENANT, offset, prompt, start_ns, STEP_NS, fail_pct, count])
        if spans:
            conn.execute(_SPANS, [TENANT, offset, prompt, start_ns, STEP_NS, fail_pct, count])

    store._writer.call(run).result(3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=1_000_000, help="largest history (runs)")
    parser.add_argument("--new", type=int, default=2000, help="runs arriving between two detection passes")
    args = parser.parse_args()
    sizes = [n for n in (10_000, 100_000, 1_000_000, 10_000_000) if n <= args.traces] or [args.traces]
    folder = Path(tempfile.mkdtemp(prefix="aisre-bench-incidents-"))
    rows = []
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("history sizes", total=len(sizes))
            for size in sizes:
                store = DuckDBStore(str(folder / f"h{size}.duckdb"), rollup_interval_ms=0)
                start = END_NS - size * STEP_NS
                # History: prompt v3; spans only for the last hour (triage reads those).
                recent = min(size, 3600 * 10**9 // STEP_NS)
                add_runs(store, 0, size - recent, start, "v3", 1, spans=False)
                add_runs(store, size - recent, recent, start + (size - recent) * STEP_NS, "v3", 1, spans=True)
                t = time.perf_counter()
                store.incidents.detect_changes(TENANT)
                full_s = time.perf_counter() - t
                add_runs(store, size, args.new, END_NS, "v5", 25, spans=True)
                t = time.perf_counter()
                added = store.incidents.detect_changes(TENANT)
                incremental_s = time.perf_counter() - t
                assert [c["version"] for c in added] == ["v5"], added
                now = END_NS + args.new * STEP_NS
                t = time.perf_counter()
                evidence = triage(store.incidents, TENANT, "ask", END_NS, now)
                triage_s = time.perf_counter() - t
                assert evidence["top_suspect"] and evidence["top_suspect"]["version"] == "v5", evidence["suspects"]
                rows.append((size, full_s, incremental_s, triage_s))
                store.close()
                progress.advance(task)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    table = Table("stored runs", "first detection pass", f"incremental pass (+{args.new} runs)", "triage", "result")
    for size, full_s, incremental_s, triage_s in rows:
        ok = incremental_s < TARGET_INCREMENTAL_S and triage_s < TARGET_TRIAGE_S
        table.add_row(f"{size:,}", f"{full_s * 1000:.0f} ms", f"{incremental_s * 1000:.0f} ms", f"{triage_s * 1000:.0f} ms",
                      "[green]PASS[/]" if ok else "[red]FAIL[/]")
    console.print(table)
    console.print(f"targets: incremental detection < {TARGET_INCREMENTAL_S * 1000:.0f} ms, "
                  f"triage < {TARGET_TRIAGE_S * 1000:.0f} ms, at every size")


if __name__ == "__main__":
    main()
