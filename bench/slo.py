"""SLO evaluation benchmark: 100 journey SLOs (plus 50 metric SLOs over 30 days of platform
series) over 30 days at 1M, 10M and 100M stored spans, and what rollup maintenance costs ingest.

Run:  /work/main/.venv/bin/python bench/slo.py [--quick] [--max-spans N] [--skip-ingest] [--metric-slos 50]

The datasets are generated inside DuckDB with SQL (hash-derived pseudo-random values) into a
store file created by ``DuckDBStore``, so the schema is the real one; pushing 100M spans through
the OTLP receiver would take half an hour. One file grows 1M -> 10M -> 100M spans; after each
step the minute rollups are rebuilt for all 30 days and the SLOs are backfilled through
``SloEngine.apply``, then ``SloEngine.statuses`` is timed the way the server runs it: each
timed call follows a rollup rebuild of the latest minutes, so it also refreshes its cached
minute counts. The first call after opening the store (every window read from disk) is
printed as the cold figure. The metric SLOs (ratio, threshold and histogram SLIs over vLLM and
DCGM series, as an inference platform sends them) read 30 days of per-minute series rows
written the same way, and are evaluated in the same statuses() call.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from aisre.core.slo import SloSpec
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import specs_from_text
from aisre.store.duckdb.rollups import MINUTE_NS, rebuild
from aisre.store.duckdb.store import DuckDBStore

console = Console()

TENANT = "default"
JOURNEYS = 50  # 2 SLOs each: 100 SLOs
SPANS_PER_TRACE = 10
DAY_NS = 86_400 * 10**9
# Fixed, so every run generates the same data; "now" is the end of the data.
END_NS = 1_748_736_000 * 10**9  # 2025-06-01T00:00:00Z
START_NS = END_NS - 30 * DAY_NS
# The last 45 minutes carry an outage on journeys 0-4 (30 % failures), so page alerts fire.
OUTAGE_NS = END_NS - 45 * MINUTE_NS
CHUNK_TRACES = 500_000  # 5M spans per INSERT: a progress step of a few seconds

TARGET_EVAL_S = 1.0
TARGET_FLAT_RATIO = 1.5
TARGET_ROLLUP_OVERHEAD = 0.10
GIB = 1024**3

MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet", "gemini-1.5-flash"]
PROVIDERS = ["openai", "openai", "anthropic", "gcp.gemini"]
PRICE_IN = [0.15e-6, 2.5e-6, 3.0e-6, 0.075e-6]  # USD per token
PRICE_OUT = [0.6e-6, 10.0e-6, 15.0e-6, 0.3e-6]


def _sql_list(values: list[Any]) -> str:
    return "[" + ", ".join(repr(v) if isinstance(v, str) else f"{v!r}::DOUBLE" for v in values) + "]"


# One row per trace; spans and `traces` rows are both derived from it, so they agree.
# hash(t, n) is DuckDB's 64-bit hash: a cheap, deterministic pseudo-random stream per trace.
_TRACE_CTE = f"""
WITH base AS (
    SELECT
        t,
        (hash(t, 1) % {JOURNEYS})::INTEGER AS j,
        {START_NS} + (hash(t, 2) % {30 * 86_400_000})::BIGINT * 1000000 AS s,
        -- 300-1800 ms, plus a 2.5 % tail of 2-10 s slow runs
        (300 + hash(t, 3) % 1500
            + CASE WHEN hash(t, 4) % 1000 < 25 THEN 2000 + hash(t, 5) % 8000 ELSE 0 END
        )::BIGINT * 1000000 AS d,
        [(400 + hash(t, 10) % 2000)::BIGINT, (400 + hash(t, 11) % 2000)::BIGINT,
         (400 + hash(t, 12) % 2000)::BIGINT] AS tin,
        [(40 + hash(t, 20) % 400)::BIGINT, (40 + hash(t, 21) % 400)::BIGINT,
         (40 + hash(t, 22) % 400)::BIGINT] AS tout,
        hash(t, 6) % 10000 AS fail_draw
    FROM range($t0, $t1) r(t)
), tr AS (
    SELECT
        *,
        'journey-' || lpad(j::VARCHAR, 2, '0') AS journey,
        'support-bot-' || (j % 10)::VARCHAR AS service,
        j % 4 AS m,
        {_sql_list(MODELS)}[j % 4 + 1] AS model,
        {_sql_list(PROVIDERS)}[j % 4 + 1] AS provider,
        {_sql_list(PRICE_IN)}[j % 4 + 1] AS pin,
        {_sql_list(PRICE_OUT)}[j % 4 + 1] AS pout,
        -- 0.05-0.5 % failures by journey; 30 % during the outage
        fail_draw < CASE WHEN j < 5 AND s >= {OUTAGE_NS} THEN 3000 ELSE 5 + (j % 10) * 5 END
            AS failed,
        lower(lpad(to_hex(t::UBIGINT), 16, '0') || lpad(to_hex(hash(t, 99)), 16, '0'))
            AS trace_id,
        lower(lpad(to_hex(hash(t, 100)), 16, '0')) AS root_id
    FROM base
)
"""

_SPAN_NAMES = _sql_list(
    ["POST /ask", "render prompt", "GET", "embeddings text-embedding-3-small",
     "retrieval pgvector", "chat", "chat", "chat", "execute_tool lookup_order", "GET /orders"]
)
_SPAN_KINDS = _sql_list(
    ["SERVER", "INTERNAL", "CLIENT", "CLIENT", "CLIENT", "CLIENT", "CLIENT", "CLIENT",
     "INTERNAL", "CLIENT"]
)
_SPAN_OPS = "[NULL, NULL, NULL, 'embeddings', 'retrieval', 'chat', 'chat', 'chat', " \
    "'execute_tool', NULL]"

INSERT_SPANS = (
    _TRACE_CTE
    + f"""
INSERT INTO spans BY NAME
SELECT
    '{TENANT}' AS tenant,
    trace_id,
    CASE WHEN k = 0 THEN root_id ELSE lower(lpad(to_hex(hash(t, 100 + k)), 16, '0')) END
        AS span_id,
    CASE k WHEN 0 THEN '' WHEN 9 THEN lower(lpad(to_hex(hash(t, 108)), 16, '0'))
        ELSE root_id END AS parent_span_id,
    CASE WHEN k BETWEEN 5 AND 7 THEN 'chat ' || model ELSE {_SPAN_NAMES}[k + 1] END AS name,
    {_SPAN_KINDS}[k + 1] AS kind,
    service,
    'bench' AS scope,
    CASE WHEN k = 0 THEN s ELSE s + d * k // 12 END AS start_ns,
    CASE WHEN k = 0 THEN s + d ELSE s + d * k // 12 + d // 12 END AS end_ns,
    CASE WHEN k = 0 THEN d ELSE d // 12 END AS duration_ns,
    CASE WHEN failed AND k IN (0, 7) THEN 'error' ELSE 'unset' END AS status,
    CASE WHEN failed AND k IN (0, 7) THEN 'upstream model error' END AS status_message,
    CASE WHEN k = 0 THEN journey END AS journey,
    k = 0 AS is_root,
    {_SPAN_OPS}[k + 1] AS operation,
    CASE WHEN k BETWEEN 5 AND 7 THEN provider END AS provider,
    CASE WHEN k BETWEEN 5 AND 7 THEN model END AS request_model,
    CASE WHEN k BETWEEN 5 AND 7 THEN model END AS response_model,
    CASE WHEN k BETWEEN 5 AND 7 THEN tin[k - 4] END AS input_tokens,
    CASE WHEN k BETWEEN 5 AND 7 THEN tout[k - 4] END AS output_tokens,
    CASE WHEN k BETWEEN 5 AND 7 THEN 0 END AS cached_input_tokens,
    CASE WHEN k BETWEEN 5 AND 7 THEN tin[k - 4] * pin + tout[k - 4] * pout END AS cost_usd,
    CASE WHEN k BETWEEN 5 AND 7 THEN '2025-05' END AS price_version,
    'v1.4.2' AS service_version,
    journey AS prompt_name,
    'p3' AS prompt_version,
    'prod' AS deployment_environment,
    CASE WHEN k = 0 THEN CASE WHEN failed THEN 500 ELSE 200 END
        WHEN k = 9 THEN 200 END AS http_status,
    NULL::INTEGER AS retry_attempt,
    CASE WHEN failed AND k = 7 THEN 'openai.InternalServerError' END AS error_type,
    CASE WHEN k = 8 THEN 'lookup_order' END AS tool_name,
    'user-' || (hash(t, 30) % 5000)::VARCHAR AS user_id,
    'session-' || (hash(t, 31) % 20000)::VARCHAR AS session_id,
    k = 0 AND failed AS marks_failure,
    CASE WHEN k = 0 THEN '{{"aisre.journey":"' || journey || '","http.route":"/ask"}}'
        ELSE '{{"bench":true}}' END AS attributes,
    (j % 10)::BIGINT + 1000 AS resource_id,
    CASE WHEN failed AND k = 7 THEN '[{{"name":"exception"}}]' ELSE '[]' END AS events,
    '[]' AS links,
    s + d + 1000000000 AS received_ns
FROM tr CROSS JOIN range({SPANS_PER_TRACE}) ks(k)
"""
)

INSERT_TRACES = (
    _TRACE_CTE
    + f"""
INSERT INTO traces BY NAME
SELECT
    '{TENANT}' AS tenant,
    trace_id,
    journey AS journey_attr,
    NULL AS journey_rule,
    true AS has_root,
    root_id AS root_span_id,
    'POST /ask' AS root_name,
    service AS root_service,
    s AS root_start_ns,
    s + d AS root_end_ns,
    s AS start_ns,
    s + d AS end_ns,
    failed,
    CASE WHEN failed THEN 'upstream model error' END AS failure_reason,
    {SPANS_PER_TRACE} AS span_count,
    CASE WHEN failed THEN 2 ELSE 0 END AS error_spans,
    3 AS llm_calls,
    CASE WHEN failed THEN 1 ELSE 0 END AS llm_errors,
    1 AS tool_calls,
    1 AS retrieval_calls,
    0 AS agent_steps,
    0 AS retries,
    list_sum(tin) AS input_tokens,
    list_sum(tout) AS output_tokens,
    0 AS cached_input_tokens,
    list_sum(tin) * pin + list_sum(tout) * pout AS cost_usd,
    'v1.4.2' AS service_version,
    journey AS prompt_name,
    'p3' AS prompt_version,
    'prod' AS environment,
    [model] AS models,
    [{{'p': root_id, 'm': 'chat/' || model, 's': s + d * i // 12, 'e': s + d * i // 12 + d // 12,
       'f': failed AND i = 7, 'r': 0}} FOR i IN [5, 6, 7]] AS llm_call_log,
    'user-' || (hash(t, 30) % 5000)::VARCHAR AS user_id,
    'session-' || (hash(t, 31) % 20000)::VARCHAR AS session_id,
    s + d + 1000000000 AS first_received_ns,
    s + d + 1000000000 AS last_received_ns
FROM tr
"""
)


def cost_bound(m: int) -> float:
    """A run-cost bound that under 1 % of the journey's runs exceed."""
    return round(0.9 * (3 * 2400 * PRICE_IN[m] + 3 * 440 * PRICE_OUT[m]), 6)


def slo_yaml() -> str:
    """100 SLOs: per journey an outcome SLO and a latency (even) or cost (odd) SLO, 30d."""
    lines = ["slos:"]
    for j in range(JOURNEYS):
        journey = f"journey-{j:02d}"
        lines += [
            f"  - name: {journey}-success",
            f"    journey: {journey}",
            f"    objective: {99.5 if j % 10 == 0 else 99.0}",
            "    window: 30d",
            "    sli: {kind: outcome, latency_ms: 10000}",
            f"    tier: {j % 3}",
            "    owner: bench",
        ]
        if j % 2 == 0:
            lines += [
                f"  - name: {journey}-latency",
                f"    journey: {journey}",
                "    objective: 95",
                "    window: 30d",
                "    sli: {kind: latency, latency_ms: 2500}",
                "    diagnostic: true",
            ]
        else:
            lines += [
                f"  - name: {journey}-cost",
                f"    journey: {journey}",
                "    objective: 97",
                "    window: 30d",
                f"    sli: {{kind: cost, max_usd: {cost_bound(j % 4)}}}",
                "    diagnostic: true",
            ]
    return "\n".join(lines) + "\n"


# The platform's series: GPU utilisation per pool and GPU (gauges), vLLM requests by model and
# outcome (counters), vLLM latency by model (histograms); 30 days of minutes each.
POOLS, GPUS, SERVED_MODELS = 8, 8, 16
LATENCY_BOUNDS = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


def metric_series() -> list[tuple[int, str, str, str, str]]:
    """(series id, metric, labels, kind, unit) of every platform series."""
    from aisre.core.series import series_id

    out = []

    def add(metric: str, labels: dict[str, str], kind: str, unit: str) -> None:
        text = json.dumps(labels, sort_keys=True, separators=(",", ":"))
        out.append((series_id(metric, text), metric, text, kind, unit))

    for p in range(POOLS):
        for g in range(GPUS):
            add("DCGM_FI_DEV_GPU_UTIL", {"gpu": str(g), "pool": f"pool-{p}", "service.name": "gpu-pool"}, "gauge", "%")
    for m in range(SERVED_MODELS):
        for outcome in ("ok", "error"):
            add("vllm:request_success_total", {"model": f"model-{m}", "outcome": outcome, "service.name": "vllm"},
                "sum", "{request}")
        add("vllm:e2e_request_latency_seconds", {"model": f"model-{m}", "service.name": "vllm"}, "histogram", "s")
    return out


# One row per series and minute, as the writer leaves them once compacted.
INSERT_METRIC_MINUTES = f"""
INSERT INTO metric_minutes BY NAME
SELECT '{TENANT}' AS tenant, s.series_id, {START_NS} + i * {MINUTE_NS} AS minute_ns,
    CASE s.kind WHEN 'gauge' THEN 6 * (40 + hash(s.series_id, i) % 50)
        WHEN 'sum' THEN CASE WHEN s.labels LIKE '%"error"%' THEN (hash(s.series_id, i) % 100 < 3)::INTEGER * 2
                             ELSE 100 + hash(s.series_id, i) % 20 END
        ELSE 100 END::DOUBLE AS value,
    CASE s.kind WHEN 'gauge' THEN 6 ELSE 1 END AS points,
    CASE WHEN s.kind = 'gauge' THEN 35 + hash(s.series_id, i) % 50 END::DOUBLE AS min,
    CASE WHEN s.kind = 'gauge' THEN 45 + hash(s.series_id, i) % 50 END::DOUBLE AS max,
    CASE WHEN s.kind = 'gauge' THEN 40 + hash(s.series_id, i) % 50 END::DOUBLE AS last,
    CASE WHEN s.kind = 'gauge' THEN {START_NS} + i * {MINUTE_NS} + 50 * 10^9 END::BIGINT AS last_ns,
    CASE WHEN s.kind = 'histogram' THEN 70.0 END AS sum,
    CASE WHEN s.kind = 'histogram' THEN {_sql_list(LATENCY_BOUNDS)} END AS bounds,
    CASE WHEN s.kind = 'histogram' THEN [20.0, 30, 25, 15, 7 + hash(s.series_id, i) % 2, 2, 1, 0] END AS buckets
FROM platform_series s, range(0, {30 * 1440}) r(i)
"""


def metric_slo_yaml(count: int) -> str:
    """``count`` metric SLOs (up to 50): per model a ratio and a histogram latency SLO, per
    pool a mean and a peak GPU threshold SLO, then the fleet-wide ratio and latency."""
    slos = []
    for m in range(SERVED_MODELS):
        slos.append(f"  - name: model-{m}-errors\n    service: vllm\n    objective: 99\n    window: 30d\n"
                    f"    sli: {{kind: ratio, bad: 'vllm:request_success_total{{model=\"model-{m}\",outcome=\"error\"}}', "
                    f"total: 'vllm:request_success_total{{model=\"model-{m}\"}}'}}")
        slos.append(f"  - name: model-{m}-latency\n    service: vllm\n    objective: 95\n    window: 30d\n"
                    f"    sli: {{kind: histogram, metric: 'vllm:e2e_request_latency_seconds{{model=\"model-{m}\"}}', le: 2.5}}")
    for p in range(POOLS):
        for aggregate, bound in (("avg", 85), ("max", 90)):
            slos.append(f"  - name: pool-{p}-gpu-{aggregate}\n    service: gpu-pool\n    objective: 90\n    window: 30d\n"
                        f"    sli: {{kind: threshold, metric: 'DCGM_FI_DEV_GPU_UTIL{{pool=\"pool-{p}\"}}', "
                        f"max: {bound}, aggregate: {aggregate}}}")
    slos.append("  - name: fleet-errors\n    service: vllm\n    objective: 99\n    window: 30d\n"
                "    sli: {kind: ratio, bad: 'vllm:request_success_total{outcome=\"error\"}', "
                "total: vllm:request_success_total}")
    slos.append("  - name: fleet-latency\n    service: vllm\n    objective: 95\n    window: 30d\n"
                "    sli: {kind: histogram, metric: vllm:e2e_request_latency_seconds, le: 2.5}")
    return "\n".join(slos[:count]) + ("\n" if count else "")


@dataclass
class SizeResult:
    spans: int
    traces: int
    generate_s: float
    run_minutes_rebuild_s: float
    slo_backfill_s: float
    slo_minutes_rows: int
    file_gib: float
    eval_median_s: float
    eval_max_s: float
    cold_s: float
    single_median_s: float
    single_max_s: float
    statuses: dict[str, int] = field(default_factory=dict)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} spans"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def generate(path: Path, from_traces: int, to_traces: int) -> float:
    """Append traces [from, to) and their spans; returns seconds taken."""
    began = time.perf_counter()
    conn = duckdb.connect(str(path))
    try:
        with _progress() as progress:
            task = progress.add_task(
                "generating spans", total=(to_traces - from_traces) * SPANS_PER_TRACE
            )
            for t0 in range(from_traces, to_traces, CHUNK_TRACES):
                t1 = min(t0 + CHUNK_TRACES, to_traces)
                conn.execute("BEGIN TRANSACTION")
                conn.execute(INSERT_SPANS, {"t0": t0, "t1": t1})
                conn.execute(INSERT_TRACES, {"t0": t0, "t1": t1})
                conn.execute("COMMIT")
                progress.advance(task, (t1 - t0) * SPANS_PER_TRACE)
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
    return time.perf_counter() - began


def rebuild_run_minutes(path: Path) -> float:
    """The store's own minute rebuild (rollups.rebuild) over all 30 days; returns seconds."""
    conn = duckdb.connect(str(path))
    try:
        began = time.perf_counter()
        minutes = set(range(START_NS, END_NS, MINUTE_NS))
        with console.status("rebuilding run_minutes for 30 days (rollups.rebuild)"):
            rebuild(conn, {TENANT: minutes})
        took = time.perf_counter() - began
        conn.execute("CHECKPOINT")
        return took
    finally:
        conn.close()


def _timed(fn: Any, reps: int) -> tuple[float, float, Any]:
    times: list[float] = []
    out = None
    for _ in range(reps):
        began = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), max(times), out


def measure(path: Path, specs: list[SloSpec], reps: int) -> dict[str, Any]:
    """Open the store, backfill the SLOs (apply) and time statuses() and one status()."""
    store = DuckDBStore(str(path))
    try:
        engine = SloEngine(store)
        began = time.perf_counter()
        with console.status(f"backfilling slo_minutes for {len(specs)} SLOs (SloEngine.apply)"):
            engine.apply(TENANT, specs)
        backfill = time.perf_counter() - began
        now = END_NS - 1
        # Cold: the first evaluation after start reads every SLO's window from the store.
        began = time.perf_counter()
        engine.statuses(TENANT, now)
        cold = time.perf_counter() - began

        def live() -> list[dict[str, Any]]:
            # As in the server: the writer has just rebuilt the latest minutes (untimed here),
            # so each evaluation also re-reads what changed since the previous one.
            store.rebuild_rollups(TENANT, END_NS - 5 * MINUTE_NS, END_NS)
            began = time.perf_counter()
            docs = engine.statuses(TENANT, now)
            times.append(time.perf_counter() - began)
            return docs

        times: list[float] = []
        with console.status(f"timing statuses() x {reps}, each after a rollup rebuild"):
            docs: list[dict[str, Any]] = []
            for _ in range(reps):
                docs = live()
            med, worst = statistics.median(times), max(times)
            name = specs[0].id
            smed, sworst, _ = _timed(
                lambda: engine.status(TENANT, name, now, burn_down_points=120), reps
            )
        states: dict[str, int] = {}
        for doc in docs:
            states[doc["status"]] = states.get(doc["status"], 0) + 1
        if len(docs) != len(specs):
            raise RuntimeError(f"statuses() returned {len(docs)} SLOs, expected {len(specs)}")
        return {
            "slo_backfill_s": backfill,
            "eval_median_s": med,
            "eval_max_s": worst,
            "cold_s": cold,
            "single_median_s": smed,
            "single_max_s": sworst,
            "statuses": dict(sorted(states.items())),
        }
    finally:
        store.close()


def count_rows(path: Path) -> tuple[int, int, int]:
    """Spans, traces and slo_minutes rows in the file."""
    conn = duckdb.connect(str(path), read_only=True)
    try:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM spans), (SELECT count(*) FROM traces), "
            "(SELECT count(*) FROM slo_minutes)"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])
    finally:
        conn.close()


def create_store(path: Path, metric_slos: int) -> None:
    """An empty store with the real migrations, plus the ten services' resources and, for
    metric SLOs, 30 days of the platform's series."""
    DuckDBStore(str(path)).close()
    conn = duckdb.connect(str(path))
    try:
        conn.execute(
            "INSERT INTO resources SELECT ?, 1000 + i, "
            "'{\"service.name\":\"support-bot-' || i || '\",\"service.version\":\"v1.4.2\"}' "
            "FROM range(10) r(i)",
            [TENANT],
        )
        if metric_slos:
            series = metric_series()
            conn.execute("CREATE TEMP TABLE platform_series (series_id BIGINT, metric VARCHAR, labels VARCHAR, "
                         "kind VARCHAR, unit VARCHAR)")
            conn.executemany("INSERT INTO platform_series VALUES (?, ?, ?, ?, ?)", series)
            with console.status(f"writing 30 days of minutes for {len(series)} platform series"):
                conn.execute(f"INSERT INTO metric_series BY NAME SELECT '{TENANT}' AS tenant, series_id, metric, labels, "
                             f"kind, unit, {START_NS} AS first_ns FROM platform_series")
                conn.execute(INSERT_METRIC_MINUTES)
            conn.execute("CHECKPOINT")
    finally:
        conn.close()


def sizes_for(max_spans: int) -> list[int]:
    out = [s for s in (1_000_000, 10_000_000, 100_000_000) if s <= max_spans]
    if not out or out[-1] < max_spans:
        out.append(max_spans)
    return out


def run_eval(args: argparse.Namespace) -> list[SizeResult]:
    sizes = sizes_for(10_000_000 if args.quick else args.max_spans)
    need = max(2 * GIB, int(20 * GIB * sizes[-1] / 100_000_000))
    folder = Path(args.dir)
    free = shutil.disk_usage(folder).free
    if free < need:
        console.print(
            f"[red]refusing: {free / GIB:.1f} GiB free in {folder}, "
            f"{sizes[-1]:,} spans need about {need / GIB:.0f} GiB[/]"
        )
        raise SystemExit(2)
    specs = specs_from_text(slo_yaml() + metric_slo_yaml(args.metric_slos), "bench-slos.yaml")
    args.slo_count = len(specs)
    work = Path(tempfile.mkdtemp(prefix="aisre-slo-bench-", dir=folder))
    path = work / "store.duckdb"
    # About 300k spans/s generated on 2 cores, plus ~30 % for rollups and the backfill;
    # replaced by the measured rate after step 1.
    rate = 300_000.0
    results: list[SizeResult] = []
    console.print(
        f"store file: {path} ({free / GIB:.0f} GiB free); {len(specs)} SLOs on {JOURNEYS} "
        f"journeys, 30 days, {SPANS_PER_TRACE} spans per trace; sizes "
        + ", ".join(f"{s:,}" for s in sizes)
        + f"; estimate ~{sizes[-1] / rate * 1.3 / 60:.0f} min"
    )
    try:
        create_store(path, args.metric_slos)
        have = 0
        for size in sizes:
            add = size - have
            console.print(
                f"\n[bold]{size:,} spans[/]: adding {add:,} spans "
                f"(estimate ~{add / rate:,.0f} s to generate, plus rollups)"
            )
            gen = generate(path, have // SPANS_PER_TRACE, size // SPANS_PER_TRACE)
            rate = add / gen
            have = size
            rm = rebuild_run_minutes(path)
            m = measure(path, specs, args.reps)
            spans, traces, slo_rows = count_rows(path)
            sizes_gib = sum(f.stat().st_size for f in work.iterdir()) / GIB
            r = SizeResult(
                spans=spans, traces=traces, generate_s=gen, run_minutes_rebuild_s=rm,
                slo_minutes_rows=slo_rows, file_gib=sizes_gib, **m,
            )
            results.append(r)
            console.print(
                f"  generated at {rate:,.0f} spans/s in {gen:.1f} s; run_minutes rebuild "
                f"{rm:.1f} s; slo_minutes backfill {r.slo_backfill_s:.1f} s; statuses() "
                f"median {r.eval_median_s * 1000:.0f} ms"
            )
    finally:
        if args.keep:
            console.print(f"kept {path}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return results


def eval_table(results: list[SizeResult], reps: int, slos: str) -> Table:
    table = Table(title=f"{slos} x 30 days, all windows (statuses() x {reps})")
    table.add_column("figure")
    for r in results:
        table.add_column(f"{r.spans / 1e6:,.0f}M spans", justify="right")
    rows: list[tuple[str, Any]] = [
        ("traces (journey runs)", lambda r: f"{r.traces:,}"),
        ("store file (GiB)", lambda r: f"{r.file_gib:.2f}"),
        ("generate, this step (s)", lambda r: f"{r.generate_s:.1f}"),
        ("run_minutes rebuild, 30 d (s)", lambda r: f"{r.run_minutes_rebuild_s:.1f}"),
        ("slo_minutes backfill, all SLOs (s)", lambda r: f"{r.slo_backfill_s:.1f}"),
        ("slo_minutes rows", lambda r: f"{r.slo_minutes_rows:,}"),
        ("statuses() median (ms)", lambda r: f"{r.eval_median_s * 1000:.0f}"),
        ("statuses() max (ms)", lambda r: f"{r.eval_max_s * 1000:.0f}"),
        ("first statuses() after start, cold (ms)", lambda r: f"{r.cold_s * 1000:.0f}"),
        ("one SLO + 120-pt burn-down, median (ms)", lambda r: f"{r.single_median_s * 1000:.1f}"),
        ("one SLO + 120-pt burn-down, max (ms)", lambda r: f"{r.single_max_s * 1000:.1f}"),
        ("SLO states", lambda r: " ".join(f"{k}={v}" for k, v in r.statuses.items())),
    ]
    for label, fn in rows:
        table.add_row(label, *(fn(r) for r in results))
    return table


def eval_verdicts(results: list[SizeResult], slos: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for r in results:
        ok = r.eval_max_s < TARGET_EVAL_S
        out.append(
            (
                f"{slos} evaluated < {TARGET_EVAL_S:g} s at {r.spans / 1e6:,.0f}M spans",
                f"median {r.eval_median_s * 1000:.0f} ms, max {r.eval_max_s * 1000:.0f} ms",
                "PASS" if ok else "FAIL",
            )
        )
    if len(results) >= 2:
        first, last = results[0], results[-1]
        ratio = last.eval_median_s / first.eval_median_s if first.eval_median_s else float("inf")
        flat = ratio <= TARGET_FLAT_RATIO
        out.append(
            (
                f"flat: {last.spans / 1e6:,.0f}M time / {first.spans / 1e6:,.0f}M time "
                f"<= {TARGET_FLAT_RATIO:g}x",
                f"{ratio:.2f}x ({'flat' if flat else 'NOT flat'})",
                "PASS" if flat else "FAIL",
            )
        )
    return out


# --------------------------------------------------------------------------- ingest


def run_ingest(args: argparse.Namespace) -> dict[str, Any]:
    """bench/ingest.py for aisre only, rollups off and on, alternating; best run of each."""
    script = Path(__file__).with_name("ingest.py")
    rates: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="aisre-slo-ingest-") as tmp:
        for i in range(args.ingest_runs):
            for mode in ("off", "on"):
                out = Path(tmp) / f"{mode}-{i}.json"
                cmd = [
                    sys.executable, str(script), "--skip-phoenix", "--overload", "0",
                    "--seconds", str(args.ingest_seconds), "--json", str(out),
                ]
                if mode == "off":
                    cmd += ["--aisre-setting", "rollup_interval_ms=0"]
                with console.status(f"bench/ingest.py, rollups {mode} (run {i + 1})"):
                    proc = subprocess.run(
                        cmd, capture_output=True, text=True, timeout=args.ingest_seconds + 240
                    )
                if proc.returncode != 0 or not out.exists():
                    console.print(proc.stdout[-2000:], proc.stderr[-2000:], markup=False)
                    raise RuntimeError(f"bench/ingest.py failed (exit {proc.returncode})")
                data = json.loads(out.read_text())
                rate = float(data["results"]["aisre"]["persisted_per_s"])
                rates[mode].append(rate)
                console.print(f"  rollups {mode}, run {i + 1}: {rate:,.0f} persisted spans/s")
    off, on = max(rates["off"]), max(rates["on"])
    return {
        "runs": rates,
        "without_rollups_per_s": off,
        "with_rollups_per_s": on,
        "overhead": (off - on) / off if off else 0.0,
    }


def ingest_table(r: dict[str, Any]) -> Table:
    table = Table(title="OTLP ingest (bench/ingest.py, aisre only), best run of each")
    table.add_column("rollups")
    table.add_column("persisted spans/s", justify="right")
    table.add_column("runs", justify="right")
    for mode, key in (("off (rollup_interval_ms=0)", "without_rollups_per_s"),
                      ("on (default)", "with_rollups_per_s")):
        runs = r["runs"]["off" if mode.startswith("off") else "on"]
        table.add_row(mode, f"{r[key]:,.0f}", ", ".join(f"{x:,.0f}" for x in runs))
    table.add_row("overhead", f"{r['overhead'] * 100:+.1f} %", "")
    return table


# --------------------------------------------------------------------------- main


def targets_table(rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title="Targets")
    for col in ("target", "measured", "result"):
        table.add_column(col)
    colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}
    for name, measured, verdict in rows:
        table.add_row(name, measured, f"[{colour[verdict]}]{verdict}[/]")
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--max-spans", type=int, default=100_000_000,
                    help="largest dataset (1M, 10M, 100M steps up to it)")
    ap.add_argument("--quick", action="store_true",
                    help="stop at 10M spans, one ingest run per mode")
    ap.add_argument("--reps", type=int, default=5, help="timed statuses() calls per size")
    ap.add_argument("--metric-slos", type=int, default=50, choices=range(0, 51), metavar="0-50",
                    help="metric SLOs evaluated with the 100 journey SLOs (issue 19's budget)")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the store file goes")
    ap.add_argument("--keep", action="store_true", help="keep the store file")
    ap.add_argument("--skip-eval", action="store_true", help="only the ingest comparison")
    ap.add_argument("--skip-ingest", action="store_true", help="no ingest comparison")
    ap.add_argument("--ingest-seconds", type=float, default=15.0)
    ap.add_argument("--ingest-runs", type=int, default=None,
                    help="runs per mode, alternating off/on (default 2, 1 with --quick)")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    args = ap.parse_args(argv)
    if args.ingest_runs is None:
        args.ingest_runs = 1 if args.quick else 2
    if args.max_spans < 100_000:
        ap.error("--max-spans must be at least 100,000")
    return args


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the finally blocks remove the store file


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    verdicts: list[tuple[str, str, str]] = []
    payload: dict[str, Any] = {}
    if not args.skip_eval:
        results = run_eval(args)
        slos = f"{args.slo_count} SLOs ({args.slo_count - args.metric_slos} journey + {args.metric_slos} metric)"
        console.print(eval_table(results, args.reps, slos))
        verdicts += eval_verdicts(results, slos)
        payload["evaluation"] = [asdict(r) for r in results]
    if not args.skip_ingest:
        console.print(
            "\n[bold]ingest with and without rollup maintenance[/] "
            f"({args.ingest_runs} x {args.ingest_seconds:g} s per mode)"
        )
        ing = run_ingest(args)
        console.print(ingest_table(ing))
        console.print(
            "note: bench/ingest.py reuses fixed timestamps, so every run lands in the same "
            "minutes and each rollup tick rebuilds minutes holding everything ingested so far: "
            "a worse case than live traffic. No SLO rules are loaded in that server, so "
            "run_minutes and cost_minutes are maintained, not slo_minutes."
        )
        verdicts.append(
            (
                f"rollup maintenance adds < {TARGET_ROLLUP_OVERHEAD * 100:.0f} % to ingest",
                f"{ing['overhead'] * 100:+.1f} % ({ing['with_rollups_per_s']:,.0f} vs "
                f"{ing['without_rollups_per_s']:,.0f} spans/s)",
                "PASS" if ing["overhead"] < TARGET_ROLLUP_OVERHEAD else "FAIL",
            )
        )
        payload["ingest"] = ing
    console.print(targets_table(verdicts))
    if args.json:
        payload["targets"] = [{"target": t, "measured": m, "result": v} for t, m, v in verdicts]
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    failed = any(v == "FAIL" for _, _, v in verdicts)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            console.print("[yellow]interrupted[/]")
        sys.exit(130)
