"""Soak and crash benchmark: overload for minutes, and SIGKILL during load, losing nothing.

Run:  .venv/bin/python bench/soak.py                        # calibrate, 10 min soak, 20 kills
      .venv/bin/python bench/soak.py --minutes 2 --kills 5  # shorter
      .venv/bin/python bench/soak.py --mode crash --json out.json
      .venv/bin/python bench/soak.py --mode soak --minutes 30 --prefill 10000000  # expiry runs during it

Everything runs on 127.0.0.1 and stops by itself. The load is bench/ingest.py's: protobuf
bodies of 1,000 LLM-shaped spans whose ids are unique to (sender, sequence), so every
acknowledged span can be looked up by id in the DuckDB file afterwards.

1. **Calibrate**: closed-loop load (2 clients x 4 in flight) for --calibrate-seconds; the
   store's sustainable rate R is what was acknowledged per second (a 2xx means committed).
2. **Soak**: open-loop load offering --factor x R spans/s (default 2x) for --minutes from
   --senders concurrent senders. A sender retries a refused body after Retry-After (at most
   1 s) like an OTel exporter and gives up on it after --give-up-s (the exporter's timeout).
   The server's process tree RSS is sampled every second: ceiling, and the mean of each third
   of the run. The first third is warm-up: DuckDB's buffer pool fills towards db_memory_limit
   (a cache, not a leak). "Flat" is judged after it: the last third's mean within 10 % +
   64 MiB of the middle third's; the slope over the second half (MiB/min) is printed too.
   Before the SIGTERM, /metrics gives DuckDB's memory and its index share, so the index
   bytes per stored trace are measured. After it every acknowledged span id must be in the
   file.
3. **Crash**: a fresh file, load at R, and --kills SIGKILLs of the server at random moments
   (2-8 s apart), restarting it on the same file and port each time; at the end every
   acknowledged span id must be in the file. Prints the acknowledged-but-missing count.

Targets (PASS/FAIL): soak: missing == 0, RSS flat, RSS ceiling under 2 GiB, 429/503 answered
(shedding happened); crash: missing == 0. Exit code 0 unless --strict and a target failed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest as load  # (bench/ingest.py: payloads, id stamping, process helpers)

console = Console()
RSS_CEILING_MIB = 2048
FLAT_RATIO, FLAT_SLACK_MIB = 1.1, 64
RATE_KEPT = 0.8  # the last third's acknowledged rate against the first's


# --------------------------------------------------------------------------- senders


@dataclass
class Shared:
    """Counters and the rate limiter shared by the client processes."""

    acked: Any
    s429: Any
    s503: Any
    no_answer: Any
    other: Any
    gave_up: Any
    next_slot: Any  # monotonic time of the next body the open-loop schedule allows

    @classmethod
    def make(cls, ctx: Any) -> Shared:
        return cls(*(ctx.Value("q", 0) for _ in range(6)), ctx.Value("d", 0.0))


def _take_slot(shared: Shared, interval: float, stop: EventType) -> bool:
    """Open loop: wait for this body's slot in a fixed-rate schedule; False once stopped."""
    with shared.next_slot.get_lock():
        now = time.monotonic()
        slot = max(now, shared.next_slot.value)
        shared.next_slot.value = slot + interval
    while not stop.is_set():
        wait = slot - time.monotonic()
        if wait <= 0:
            return True
        time.sleep(min(wait, 0.2))
    return False


def _bump(counter: Any) -> None:
    with counter.get_lock():
        counter.value += 1


def _sender(
    port: int, templates: list[load.Template], sender: int, nonce: bytes, shared: Shared,
    interval: float, give_up_s: float, stop: EventType, acked: list[tuple[int, int]],
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    seq = 0
    while not stop.is_set():
        if interval and not _take_slot(shared, interval, stop):
            break
        body = load.stamp(templates[(sender + seq) % len(templates)], sender, seq, nonce)
        first = time.monotonic()
        while not stop.is_set():
            status, retry = load._post(conn, "/v1/traces", body)
            if 200 <= status < 300:
                acked.append((sender, seq))
                _bump(shared.acked)
                break
            _bump({429: shared.s429, 503: shared.s503, 0: shared.no_answer}.get(status, shared.other))
            if status not in (0, 429, 503) or time.monotonic() - first > give_up_s:
                _bump(shared.gave_up)
                break
            time.sleep(min(retry, 1.0))
        seq += 1
    conn.close()


def _client_main(
    port: int, templates: list[load.Template], first_sender: int, threads: int, nonce: bytes,
    shared: Shared, interval: float, give_up_s: float, stop: EventType, results: Any,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lists: list[list[tuple[int, int]]] = [[] for _ in range(threads)]
    workers = [
        threading.Thread(
            target=_sender,
            args=(port, templates, first_sender + t, nonce, shared, interval, give_up_s, stop, lists[t]),
        )
        for t in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    results.put([pair for part in lists for pair in part])


class Clients:
    """Client processes sending until :meth:`stop`; they survive server restarts."""

    def __init__(self, port: int, templates: list[load.Template], first_sender: int, processes: int,
                 threads: int, rate_spans_s: float | None, give_up_s: float) -> None:
        ctx = mp.get_context("fork")  # templates are inherited, not pickled
        self.shared = Shared.make(ctx)
        self._stop = ctx.Event()
        self._results = ctx.Queue()
        interval = load.SPANS_PER_BODY / rate_spans_s if rate_spans_s else 0.0
        self.shared.next_slot.value = time.monotonic()
        nonce = os.urandom(8)
        self._procs = [
            ctx.Process(
                target=_client_main, daemon=True,
                args=(port, templates, first_sender + p * threads, threads, nonce, self.shared, interval,
                      give_up_s, self._stop, self._results),
            )
            for p in range(processes)
        ]
        for proc in self._procs:
            proc.start()

    def stop(self) -> list[tuple[int, int]]:
        """Stop sending; returns every acknowledged (sender, seq)."""
        self._stop.set()
        pairs: list[tuple[int, int]] = []
        for _ in self._procs:
            pairs.extend(self._results.get(timeout=180))
        for proc in self._procs:
            proc.join(10)
        return pairs

    def counts(self) -> dict[str, int]:
        s = self.shared
        return {"acked_bodies": s.acked.value, "429": s.s429.value, "503": s.s503.value,
                "no_answer": s.no_answer.value, "other": s.other.value, "gave_up": s.gave_up.value}


# --------------------------------------------------------------------------- server


@dataclass
class Server:
    db: Path
    port: int
    settings: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> None:
        cmd = [sys.executable, "-c", "from aisre.app import main; main()", "up", "--port", str(self.port),
               "--grpc-port", "0", "--db", str(self.db)]
        for item in self.settings:
            cmd += ["--setting", item]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        load._wait_healthy(self.proc, f"http://127.0.0.1:{self.port}/healthz", timeout, self.log)

    def kill(self) -> None:
        """SIGKILL the server process (no drain, no checkpoint), then whatever it left behind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # orphaned decoder processes

    def stop(self) -> int | None:
        """SIGTERM: the graceful path (drain, close)."""
        if self.proc is None:
            return None
        load.stop_server(self.proc, grace=120)
        return self.proc.returncode


class RssSampler(threading.Thread):
    """RSS of the server's process tree once a second (MiB), through restarts."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.samples = server, []
        self.server_only: list[float] = []  # the server process alone, without its decoders
        self._stop_evt = threading.Event()
        self.began = time.monotonic()

    def run(self) -> None:
        while not self._stop_evt.wait(1.0):
            proc = self.server.proc
            if proc is not None and proc.poll() is None:
                kib = sum(load._status_kib(p, "VmRSS") for p in load._tree(proc.pid))
                self.samples.append((time.monotonic() - self.began, kib / 1024))
                self.server_only.append(load._status_kib(proc.pid, "VmRSS") / 1024)

    def stop(self) -> list[tuple[float, float]]:
        self._stop_evt.set()
        self.join(5)
        return self.samples


class WriterSampler(threading.Thread):
    """The writer's counters from /api/stats every ``every`` seconds: where its time goes
    (committing, upkeep between commits, idle) as the soak goes on."""

    KEYS = ("commit_seconds_total", "upkeep_seconds_total", "spans_committed", "commits", "expired_spans")

    def __init__(self, port: int, every: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.port, self.every, self.samples = port, every, []
        self._stop_evt = threading.Event()
        self.began = time.monotonic()

    def run(self) -> None:
        while not self._stop_evt.wait(self.every):
            with contextlib.suppress(Exception):
                stats = _stats(self.port)
                self.samples.append((time.monotonic() - self.began, *(float(stats.get(k) or 0) for k in self.KEYS)))

    def stop(self) -> list[tuple[float, ...]]:
        self._stop_evt.set()
        self.join(30)
        return self.samples


def writer_by_third(samples: list[tuple[float, ...]]) -> list[dict[str, float]]:
    """Per third of the samples: the writer's commit and upkeep shares of wall time, and
    spans it committed per second of committing (falling = each commit got slower)."""
    if len(samples) < 4:
        return []
    n = len(samples)
    cuts = [0, n // 3, 2 * n // 3, n - 1]
    out = []
    for a, b in itertools.pairwise(cuts):
        (t0, c0, u0, s0, k0, e0), (t1, c1, u1, s1, k1, e1) = samples[a], samples[b]
        wall = (t1 - t0) or 1.0
        out.append({"commit_share": round((c1 - c0) / wall, 3), "upkeep_share": round((u1 - u0) / wall, 3),
                    "spans_per_commit_s": round((s1 - s0) / (c1 - c0)) if c1 > c0 else 0,
                    "spans_per_commit": round((s1 - s0) / (k1 - k0)) if k1 > k0 else 0,
                    "expired_spans": int(e1 - e0)})
    return out


def _stats(port: int) -> dict[str, Any]:
    return load._get_json(f"http://127.0.0.1:{port}/api/stats")


def _store_memory(port: int) -> dict[str, float]:
    """DuckDB's memory gauges from /metrics: limit, total and index bytes."""
    with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=30)) as conn:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "aisre_store_memory_limit_bytes":
                found["limit"] = sample.value
            elif sample.name == "aisre_store_memory_bytes":
                found[sample.labels["kind"]] = sample.value
    return found


# --------------------------------------------------------------------------- checking


def missing_spans(db: Path, pairs: list[tuple[int, int]]) -> tuple[int, int]:
    """(acknowledged spans, how many of them are not in the file), by exact span id."""
    if not pairs:
        return 0, 0
    arr = np.array(pairs, dtype=np.uint64)
    base = (arr[:, 0] << np.uint64(48)) | (arr[:, 1] << np.uint64(16))
    ids = ((base[:, None] | np.arange(load.SPANS_PER_BODY, dtype=np.uint64)[None, :]) + np.uint64(1)) * np.uint64(load.MIX)
    acked = pa.table({"id": pa.array(ids.ravel())})
    with duckdb.connect(str(db), read_only=True) as con:
        con.register("acked", acked)
        missing = con.execute(
            "SELECT count(*) FROM acked a ANTI JOIN spans s ON s.span_id = lpad(lower(hex(a.id)), 16, '0')"
        ).fetchone()[0]
    return len(acked), int(missing)


# --------------------------------------------------------------------------- phases


@dataclass
class Report:
    sustainable_spans_s: float = 0.0
    soak: dict[str, Any] = field(default_factory=dict)
    crash: dict[str, Any] = field(default_factory=dict)
    targets: list[tuple[str, str, str]] = field(default_factory=list)


def _progress(label: str, seconds: float) -> Progress:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeRemainingColumn())
    return Progress(*columns, console=console, transient=False)


@contextlib.contextmanager
def _running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop()


def calibrate(args: argparse.Namespace, templates: list[load.Template], tmp: Path) -> float:
    server = Server(tmp / "calibrate.duckdb", load.free_port(), args.aisre_setting, tmp / "calibrate.log")
    with _running(server):
        clients = Clients(server.port, templates, 0, 2, 4, None, args.give_up_s)
        started = time.monotonic()
        with _progress("calibrate", args.calibrate_seconds) as progress:
            task = progress.add_task("calibrate (closed loop)", total=args.calibrate_seconds, info="")
            while (elapsed := time.monotonic() - started) < args.calibrate_seconds:
                acked = clients.shared.acked.value * load.SPANS_PER_BODY
                progress.update(task, completed=elapsed, info=f"acked {acked:,} ({acked / max(elapsed, 1e-3):,.0f}/s)")
                time.sleep(0.5)
            progress.update(task, completed=args.calibrate_seconds)
        acked = clients.shared.acked.value * load.SPANS_PER_BODY
        elapsed = time.monotonic() - started
        clients.stop()
    return acked / elapsed


def soak(args: argparse.Namespace, templates: list[load.Template], tmp: Path, rate: float) -> dict[str, Any]:
    seconds = args.minutes * 60
    offered = rate * args.factor
    db = tmp / "soak.duckdb"
    prefilled = 0
    if args.prefill:
        from store import prefill  # bench/store.py
        # Spans a month old: past the default 14-day retention, so expiry deletes them in
        # bounded steps while the soak's own (current) spans arrive.
        prefilled = prefill(f"duckdb://{db}", args.prefill)
        console.print(f"prefilled {prefilled:,} spans dated 30 days ago (to expire during the soak)")
    server = Server(db, load.free_port(), args.aisre_setting, tmp / "soak.log")
    with _running(server):
        sampler = RssSampler(server)
        sampler.start()
        writer = WriterSampler(server.port)
        writer.start()
        clients = Clients(server.port, templates, 1000, 2, args.senders // 2, offered, args.give_up_s)
        started = time.monotonic()
        acked_at: list[tuple[float, int]] = []  # (seconds into the soak, spans acknowledged so far)
        with _progress("soak", seconds) as progress:
            task = progress.add_task(f"soak at {offered:,.0f} spans/s offered", total=seconds, info="")
            while (elapsed := time.monotonic() - started) < seconds:
                c = clients.counts()
                acked_at.append((elapsed, c["acked_bodies"] * load.SPANS_PER_BODY))
                rss = sampler.samples[-1][1] if sampler.samples else 0.0
                progress.update(task, completed=elapsed, info=(
                    f"acked {c['acked_bodies'] * load.SPANS_PER_BODY:,}  429 {c['429']:,}  503 {c['503']:,}  "
                    f"RSS {rss:,.0f} MiB"))
                time.sleep(1.0)
            progress.update(task, completed=seconds)
            acked_at.append((time.monotonic() - started, clients.counts()["acked_bodies"] * load.SPANS_PER_BODY))
        load_ended = time.monotonic() - sampler.began
        writer_samples = writer.stop()
        pairs = clients.stop()
        elapsed = time.monotonic() - started
        counts = clients.counts()
        stats = _stats(server.port)
        memory = _store_memory(server.port)
        code = server.stop()
        samples = sampler.stop()
    acked_spans, missing = missing_spans(server.db, pairs)
    # The ceiling counts the drain after SIGTERM too; the thirds and slope only the load.
    ceiling = max(mib for _, mib in samples)
    server_ceiling = max(sampler.server_only, default=0.0)
    samples = [(t, mib) for t, mib in samples if t <= load_ended]
    rss = [mib for _, mib in samples]
    third = max(1, len(rss) // 3)
    first = float(np.mean(rss[:third]))
    middle = float(np.mean(rss[third:-third] or rss))
    last = float(np.mean(rss[-third:]))
    half = samples[len(samples) // 2:]
    slope = float(np.polyfit([t for t, _ in half], [m for _, m in half], 1)[0] * 60) if len(half) > 2 else 0.0
    mib = 1024 * 1024
    traces = int(stats.get("traces") or 0)
    first_rate, middle_rate, last_rate = _rate_by_third(acked_at)
    if args.svg:
        write_rss_svg(Path(args.svg), samples, f"aisre RSS during {args.minutes:g} min at {args.factor:g}x the sustainable rate")
    return {
        "seconds": round(elapsed, 1), "offered_spans_s": round(offered), "acked_spans": acked_spans,
        "acked_spans_s": round(acked_spans / elapsed), "stored_spans": stats.get("spans"),
        "acked_spans_s_first_third": round(first_rate), "acked_spans_s_middle_third": round(middle_rate),
        "acked_spans_s_last_third": round(last_rate),
        "acked_last_vs_first_third": round(last_rate / first_rate, 3) if first_rate else None,
        "writer_by_third": writer_by_third(writer_samples),
        "prefilled_spans": prefilled, "expired_spans": stats.get("expired_spans"),
        "expired_traces": stats.get("expired_traces"),
        "missing": missing, "responses": counts, "sigterm_exit": code,
        "rss_ceiling_mib": round(ceiling, 1), "rss_server_process_ceiling_mib": round(server_ceiling, 1),
        "rss_first_third_mib": round(first, 1),
        "rss_middle_third_mib": round(middle, 1), "rss_last_third_mib": round(last, 1),
        "rss_flat": last <= middle * FLAT_RATIO + FLAT_SLACK_MIB,
        "rss_second_half_slope_mib_per_min": round(slope, 1), "rss_samples": len(rss),
        "db_memory_limit_mib": round(memory.get("limit", 0) / mib), "db_memory_used_mib": round(memory.get("total", 0) / mib),
        "db_index_mib": round(memory.get("index", 0) / mib, 1), "stored_traces": traces,
        "db_index_bytes_per_trace": round(memory.get("index", 0) / traces, 1) if traces else None,
    }


def _rate_by_third(acked_at: list[tuple[float, int]]) -> tuple[float, float, float]:
    """Spans acknowledged per second in each third of the soak's duration."""
    if len(acked_at) < 2:
        return 0.0, 0.0, 0.0
    end = acked_at[-1][0]
    times = np.array([t for t, _ in acked_at])
    counts = np.array([n for _, n in acked_at], dtype=float)
    edges = [0.0, end / 3, 2 * end / 3, end]
    at = np.interp(edges, times, counts, left=0.0)
    return tuple(float((at[i + 1] - at[i]) / (edges[i + 1] - edges[i])) for i in range(3))  # type: ignore[return-value]


def crash(args: argparse.Namespace, templates: list[load.Template], tmp: Path, rate: float) -> dict[str, Any]:
    rng = random.Random(args.seed)
    server = Server(tmp / "crash.duckdb", load.free_port(), args.aisre_setting, tmp / "crash.log")
    server.start()
    clients = Clients(server.port, templates, 2000, 2, 4, rate, args.give_up_s)
    restarts: list[float] = []
    try:
        with _progress("crash", args.kills) as progress:
            task = progress.add_task(f"SIGKILL x{args.kills} during load", total=args.kills, info="")
            for kill in range(args.kills):
                time.sleep(rng.uniform(2.0, 8.0))
                server.kill()
                t0 = time.monotonic()
                server.start()
                restarts.append(time.monotonic() - t0)
                acked = clients.shared.acked.value * load.SPANS_PER_BODY
                progress.update(task, completed=kill + 1, info=f"acked {acked:,}  restart {restarts[-1]:.1f} s")
            time.sleep(2.0)
    finally:
        pairs = clients.stop()
        counts = clients.counts()
        code = server.stop()
    acked_spans, missing = missing_spans(server.db, pairs)
    return {"kills": args.kills, "acked_spans": acked_spans, "missing": missing, "responses": counts,
            "restart_s_max": round(max(restarts), 1) if restarts else None,
            "restart_s_median": round(float(np.median(restarts)), 1) if restarts else None, "final_exit": code}


def write_rss_svg(path: Path, samples: list[tuple[float, float]], title: str) -> None:
    """A line chart of RSS over time, each third's mean drawn across it (dashed)."""
    if not samples:
        return
    n = len(samples)
    thirds = [samples[: n // 3], samples[n // 3 : n - n // 3], samples[n - n // 3 :]]
    w, h, pad = 720, 260, 48
    t_max = max(t for t, _ in samples) or 1.0
    r_max = max(m for _, m in samples) * 1.15 or 1.0
    def xy(t: float, m: float) -> str:
        return f"{pad + (w - 2 * pad) * t / t_max:.1f},{h - pad - (h - 2 * pad) * m / r_max:.1f}"
    points = " ".join(xy(t, m) for t, m in samples)
    means = "".join(
        f'<polyline fill="none" stroke="#dc2626" stroke-dasharray="4 3" '
        f'points="{xy(part[0][0], mean)} {xy(part[-1][0], mean)}"/>'
        f'<text x="{xy(part[0][0], mean).split(",")[0]}" y="{float(xy(0, mean).split(",")[1]) - 4:.1f}" '
        f'fill="#dc2626">{label} {mean:,.0f}</text>'
        for label, part in zip(("warm-up", "middle", "last"), thirds, strict=True)
        if part and (mean := float(np.mean([m for _, m in part]))) >= 0
    )
    ticks = "".join(
        f'<text x="{pad - 6}" y="{h - pad - (h - 2 * pad) * v / r_max + 4:.1f}" text-anchor="end">{v:.0f}</text>'
        for v in np.linspace(0, r_max, 5)
    )
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">'
        f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>{ticks}'
        f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">RSS (MiB)</text>'
        f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">seconds (0 to {t_max:.0f})</text>'
        f'<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="{points}"/>{means}</svg>\n'
    )


def _show(report: Report) -> None:
    table = Table(title="soak and crash")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("sustainable rate R (spans/s, closed loop)", f"{report.sustainable_spans_s:,.0f}")
    for name, figures in (("soak", report.soak), ("crash", report.crash)):
        for key, value in figures.items():
            shown = json.dumps(value) if isinstance(value, dict) else (f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
            table.add_row(f"{name}: {key}", shown)
    console.print(table)
    targets = Table(title="Targets")
    for col in ("target", "measured", "result"):
        targets.add_column(col)
    for row in report.targets:
        targets.add_row(*row)
    console.print(targets)


def _targets(report: Report) -> None:
    def add(name: str, measured: str, ok: bool) -> None:
        report.targets.append((name, measured, "PASS" if ok else "FAIL"))

    if report.soak:
        s = report.soak
        add("soak: acknowledged-but-missing spans == 0", f"{s['missing']:,} of {s['acked_spans']:,}", s["missing"] == 0)
        add("soak: RSS flat after warm-up (last third <= middle third x1.1 + 64 MiB)",
            f"{s['rss_first_third_mib']:,.0f} (warm-up) -> {s['rss_middle_third_mib']:,.0f} -> "
            f"{s['rss_last_third_mib']:,.0f} MiB; {s['rss_second_half_slope_mib_per_min']:+,.1f} MiB/min", s["rss_flat"])
        add(f"soak: RSS ceiling < {RSS_CEILING_MIB} MiB", f"{s['rss_ceiling_mib']:,.0f} MiB", s["rss_ceiling_mib"] < RSS_CEILING_MIB)
        ratio = s["acked_last_vs_first_third"] or 0.0
        add(f"soak: acknowledged rate, last third >= {RATE_KEPT:g}x the first",
            f"{s['acked_spans_s_first_third']:,} -> {s['acked_spans_s_middle_third']:,} -> "
            f"{s['acked_spans_s_last_third']:,} spans/s ({ratio:.2f}x)", ratio >= RATE_KEPT)
        if s["prefilled_spans"]:
            add("soak: expiry ran during the soak", f"{s['expired_spans'] or 0:,} of {s['prefilled_spans']:,} old spans expired",
                bool(s["expired_spans"]))
        shed = s["responses"]["429"] + s["responses"]["503"]
        add("soak: overload answered with 429/503", f"{s['responses']['429']:,} / {s['responses']['503']:,}", shed > 0)
    if report.crash:
        c = report.crash
        add(f"crash: {c['kills']} SIGKILLs, acknowledged-but-missing == 0", f"{c['missing']:,} of {c['acked_spans']:,}", c["missing"] == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("both", "soak", "crash"), default="both")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    parser.add_argument("--factor", type=float, default=2.0, help="soak load as a multiple of the sustainable rate")
    parser.add_argument("--calibrate-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=0.0, help="skip calibration: the sustainable rate in spans/s")
    parser.add_argument("--senders", type=int, default=32, help="concurrent soak senders (open loop)")
    parser.add_argument("--give-up-s", type=float, default=10.0, help="a sender drops a body refused for this long")
    parser.add_argument("--prefill", type=int, default=0,
                        help="spans dated 30 days ago put in the soak's file first, so expiry runs during the soak")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs in crash mode")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--aisre-setting", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--svg", default="", help="write the soak's RSS over time as an SVG chart")
    parser.add_argument("--json", default="", help="also write the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args()

    templates = [load.build_template(seed) for seed in range(4)]
    report = Report()
    with tempfile.TemporaryDirectory(prefix="aisre-soak-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            rate = args.rate or calibrate(args, templates, tmp)
            report.sustainable_spans_s = rate
            console.print(f"sustainable rate R = {rate:,.0f} spans/s")
            if args.mode in ("both", "soak"):
                report.soak = soak(args, templates, tmp, rate)
                # Shown and saved at once: a later phase failing does not lose these figures.
                console.print_json(json.dumps(report.soak))
                if args.json:
                    Path(args.json).write_text(json.dumps(asdict(report), indent=2))
            if args.mode in ("both", "crash"):
                report.crash = crash(args, templates, tmp, rate)
        except Exception:
            for log in sorted(tmp.glob("*.log")):
                console.print(f"[red]{log.name}[/red]\n{load._log_tail(log)}")
            raise
    _targets(report)
    _show(report)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2))
    failed = any(result == "FAIL" for _, _, result in report.targets)
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
