"""End-to-end OTLP/HTTP ingest benchmark: aisre against Arize Phoenix, same load, same run.

Run:  /work/main/.venv/bin/python bench/ingest.py [--seconds 20] [--clients 2] [--skip-phoenix]

Each system is started as a subprocess on 127.0.0.1, driven for a fixed time by client
processes that POST pre-built protobuf bodies of 1,000 LLM-shaped spans, and stopped again.
What counts is what reached the store: aisre's /api/stats for aisre, the spans table of
Phoenix's SQLite file for Phoenix (Phoenix answers 200 long before it writes).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
PHOENIX_VENV = BENCH_DIR / ".phoenix-venv"
TRACES_PER_BODY = 100
SPANS_PER_TRACE = 10
SPANS_PER_BODY = TRACES_PER_BODY * SPANS_PER_TRACE
TARGET_STORED_RATIO = 0.8  # prefilled (and overloaded) ingest vs the empty store's
TARGET_PERSISTED_PER_S = 50_000
TARGET_RATIO = 100.0
# Under overload the server must shed, not queue: its whole process tree stays under this.
RSS_CEILING_MIB = 2048
RETRY_AFTER_CAP_S = 1.0  # an exporter waits briefly, never past the load window
MASK64 = (1 << 64) - 1
MIX = 0x9E3779B97F4A7C15  # odd, so x -> x*MIX mod 2^64 is a bijection: unique ids that look random

console = Console()


# --------------------------------------------------------------------------- payloads


def _any(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_any(v) for v in value]))
    return AnyValue(string_value=str(value))


def _kv(pairs: Mapping[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_any(v)) for k, v in pairs.items()]


def _messages(rng: random.Random, order: int) -> str:
    docs = "Orders ship within 2 business days. Refunds take 5-7 days after the return arrives."
    return json.dumps(
        [
            {"role": "system", "parts": [{"type": "text", "content": f"Answer from docs: {docs}"}]},
            {
                "role": "user",
                "parts": [
                    {
                        "type": "text",
                        "content": f"Where is my order number {order}? I ordered it last "
                        f"week and need it before {rng.choice(['Friday', 'Monday'])}.",
                    }
                ],
            },
        ]
    )


def _chat(rng: random.Random, model: str, finish: str, order: int) -> dict[str, object]:
    inp, out = rng.randint(30, 900), rng.randint(5, 400)
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": f"{model}-2024-08-06",
        "gen_ai.usage.input_tokens": inp,
        "gen_ai.usage.output_tokens": out,
        "gen_ai.response.finish_reasons": [finish],
        "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(48):012x}",
        "gen_ai.input.messages": _messages(rng, order),
        "server.address": "api.openai.com",
    }


@dataclass
class _SpanSpec:
    name: str
    kind: int
    parent: int | None  # index in the trace, None for the root
    attrs: Mapping[str, object]
    genai: bool = False
    error: str | None = None


def _trace_specs(rng: random.Random, n: int) -> list[_SpanSpec]:
    """Ten spans shaped like one /ask request of a RAG support bot with a tool call."""
    order, failed = rng.randint(1, 99_999), rng.random() < 0.03
    root = {
        "aisre.journey": "ask",
        "user.id": f"user-{rng.randint(0, 5000)}",
        "session.id": f"sess-{n}",
        "http.request.method": "POST",
        "http.route": "/ask",
        "aisre.prompt.name": "ask-answer",
        "aisre.prompt.version": rng.choice(["v3", "v4"]),
        "http.response.status_code": 500 if failed else 200,
    }
    emb = {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "text-embedding-3-small",
        "gen_ai.response.model": "text-embedding-3-small",
        "gen_ai.usage.input_tokens": rng.randint(8, 40),
    }
    db = {"db.system.name": "pgvector", "db.operation.name": "search"}
    tool = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "lookup_order",
        "gen_ai.tool.call.arguments": json.dumps({"order": order}),
    }
    http_out = {"http.request.method": "GET", "server.address": "orders.internal"}
    error = rng.choice(["RateLimitError", "InternalServerError"]) if failed else None
    answer = _chat(rng, rng.choice(["gpt-4.1", "gpt-4o"]), "stop", order)
    plan = _chat(rng, "gpt-4o-mini", "tool_calls", order)
    guard = _chat(rng, "gpt-4o-mini", "stop", order)
    cache = {"db.system.name": "redis", "db.operation.name": "GET"}
    srv, cli, internal = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL
    return [
        _SpanSpec("POST /ask", srv, None, root, error=error),
        _SpanSpec("render_prompt ask-answer", internal, 0, {"aisre.prompt.version": "v3"}),
        _SpanSpec("GET", cli, 0, cache),
        _SpanSpec("embeddings text-embedding-3-small", cli, 0, emb, genai=True),
        _SpanSpec("search support_docs", cli, 0, {**db, "db.collection.name": "support_docs"}),
        _SpanSpec("chat gpt-4o-mini", cli, 0, plan, genai=True),
        _SpanSpec("execute_tool lookup_order", internal, 0, tool, genai=True),
        _SpanSpec("GET /orders/{id}", cli, 6, {**http_out, "http.response.status_code": 200}),
        _SpanSpec(f"chat {answer['gen_ai.request.model']}", cli, 0, answer, True, error),
        _SpanSpec("chat gpt-4o-mini", cli, 0, guard, genai=True),
    ]


def _to_span(spec: _SpanSpec, trace_id: bytes, ids: list[bytes], i: int, t0: int) -> Span:
    start = t0 + i * 40_000_000
    span = Span(
        trace_id=trace_id,
        span_id=ids[i],
        parent_span_id=b"" if spec.parent is None else ids[spec.parent],
        name=spec.name,
        kind=spec.kind,  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=start + (1_500_000_000 if i == 0 else 30_000_000),
        attributes=_kv(spec.attrs),
    )
    if spec.error:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=spec.error))
        span.attributes.extend(_kv({"error.type": spec.error}))
        span.events.add(
            name="exception",
            time_unix_nano=start,
            attributes=_kv(
                {"exception.type": f"openai.{spec.error}", "exception.message": "upstream failure"}
            ),
        )
    return span


def _resource(rng: random.Random) -> list[KeyValue]:
    return _kv(
        {
            "service.name": rng.choice(["support-bot", "billing-assistant", "search-copilot"]),
            "service.version": rng.choice(["1.4.2", "1.5.0"]),
            "service.instance.id": f"{rng.getrandbits(64):016x}",
            "deployment.environment.name": "prod",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.version": "1.38.0",
        }
    )


@dataclass(frozen=True)
class Template:
    """A serialized body plus where each trace/span id sits, so a send only rewrites ids."""

    body: bytes
    trace_slots: list[tuple[int, int]]  # (byte offset, trace index) of each 16-byte trace id
    span_slots: list[tuple[int, int]]  # (byte offset, span index) of each 8-byte span/parent id
    # (byte offset, value) of each fixed64 timestamp (span start/end, event time), and the
    # time the body was built around: sends shift them so spans carry the current time.
    time_slots: list[tuple[int, int]] = field(default_factory=list)
    base_ns: int = 0
    _shifted: dict[int, bytes] = field(default_factory=dict)

    def at(self, second: int) -> bytes:
        """The body with its times moved so its first span starts ``second`` (Unix seconds,
        two minutes behind the clock, as when it was built); one copy per second, cached."""
        body = self._shifted.get(second)
        if body is None:
            delta = second * 1_000_000_000 - self.base_ns
            buf = bytearray(self.body)
            for off, value in self.time_slots:
                struct.pack_into("<Q", buf, off, value + delta)
            body = bytes(buf)
            self._shifted.clear()  # keep only the current second's
            self._shifted[second] = body
        return body


def _build_request(
    rng: random.Random,
) -> tuple[ExportTraceServiceRequest, list[bytes], list[bytes]]:
    # Whole seconds, so a body shifted to another second keeps its spans' sub-second offsets.
    now = (time.time_ns() - 120 * 1_000_000_000) // 1_000_000_000 * 1_000_000_000
    trace_ids = [rng.randbytes(16) for _ in range(TRACES_PER_BODY)]
    span_ids = [rng.randbytes(8) for _ in range(SPANS_PER_BODY)]
    genai = ScopeSpans()
    genai.scope.name, genai.scope.version = "opentelemetry.instrumentation.openai.v2", "2.1b0"
    app = ScopeSpans()
    app.scope.name = "support-bot"
    for t, trace_id in enumerate(trace_ids):
        ids = span_ids[t * SPANS_PER_TRACE : (t + 1) * SPANS_PER_TRACE]
        t0 = now + t * 50_000_000
        for i, spec in enumerate(_trace_specs(rng, t)):
            (genai if spec.genai else app).spans.append(_to_span(spec, trace_id, ids, i, t0))
    rs = ResourceSpans(scope_spans=[app, genai])
    rs.resource.attributes.extend(_resource(rng))
    return ExportTraceServiceRequest(resource_spans=[rs]), trace_ids, span_ids


def _slots(body: bytes, tag: bytes, size: int, index: dict[bytes, int]) -> list[tuple[int, int]]:
    # Look only behind field tags; random 8/16-byte sentinels make false hits impossible in practice.
    found = []
    for m in re.finditer(re.escape(tag), body):
        value = body[m.end() : m.end() + size]
        if value in index:
            found.append((m.end(), index[value]))
    return found


def build_template(seed: int) -> Template:
    rng = random.Random(seed)
    req, trace_ids, span_ids = _build_request(rng)
    body = req.SerializeToString()
    t_index = {tid: i for i, tid in enumerate(trace_ids)}
    s_index = {sid: i for i, sid in enumerate(span_ids)}
    trace_slots = _slots(body, b"\x0a\x10", 16, t_index)  # Span.trace_id: field 1, len 16
    span_slots = _slots(body, b"\x12\x08", 8, s_index) + _slots(body, b"\x22\x08", 8, s_index)
    n_parents = sum(
        1
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
        if s.parent_span_id
    )
    if len(trace_slots) != SPANS_PER_BODY or len(span_slots) != SPANS_PER_BODY + n_parents:
        raise RuntimeError("id slots not found where expected; protobuf layout changed?")
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    times = {t for s in spans for t in (s.start_time_unix_nano, s.end_time_unix_nano, *(e.time_unix_nano for e in s.events))}
    time_slots = [(off, int.from_bytes(body[off:off + 8], "little"))
                  for tag in (b"\x39", b"\x41", b"\x09")  # Span fields 7 and 8, Event field 1: fixed64
                  for off, _ in _slots(body, tag, 8, {t.to_bytes(8, "little"): t for t in times})]
    expected = 2 * len(spans) + sum(len(s.events) for s in spans)
    if len(time_slots) != expected:
        raise RuntimeError(f"found {len(time_slots)} timestamps, expected {expected}; protobuf layout changed?")
    base = min(s.start_time_unix_nano for s in spans)
    return Template(body, trace_slots, span_slots, time_slots, base)


def stamp(tpl: Template, sender: int, seq: int, nonce: bytes, current_time: bool = True) -> bytearray:
    """Copy of the body with ids unique to (sender, seq): never repeated within a run. With
    ``current_time`` its spans start two minutes before now (to the second), as a live
    service's would; otherwise at the time the template was built."""
    base = (sender << 48) | (seq << 16)
    span_ids = [(((base | i) + 1) * MIX & MASK64).to_bytes(8, "big") for i in range(SPANS_PER_BODY)]
    trace_ids = [
        nonce + (((base | i) + 1) * MIX & MASK64).to_bytes(8, "big") for i in range(TRACES_PER_BODY)
    ]
    buf = bytearray(tpl.at(time.time_ns() // 1_000_000_000 - 120) if current_time else tpl.body)
    for off, i in tpl.span_slots:
        buf[off : off + 8] = span_ids[i]
    for off, i in tpl.trace_slots:
        buf[off : off + 16] = trace_ids[i]
    return buf


# --------------------------------------------------------------------------- load clients


@dataclass
class LoadSpec:
    host: str
    port: int
    path: str
    seconds: float
    clients: int
    threads: int
    nonce: bytes


@dataclass
class LoadTally:
    statuses: Counter[str] = field(default_factory=Counter)
    ok_latencies_ms: list[float] = field(default_factory=list)
    accepted_bodies: int = 0
    client_cpu_s: float = 0.0  # shows whether the clients, not the server, were the limit

    def merge(self, other: LoadTally) -> None:
        self.statuses.update(other.statuses)
        self.ok_latencies_ms.extend(other.ok_latencies_ms)
        self.accepted_bodies += other.accepted_bodies
        self.client_cpu_s += other.client_cpu_s


def _status_key(status: int) -> str:
    if 200 <= status < 300:
        return "2xx"
    return str(status) if status in (429, 503) else ("error" if status == 0 else "other")


def _post(conn: http.client.HTTPConnection, path: str, body: bytearray) -> tuple[int, float]:
    """One export; returns (status, retry-after seconds). Status 0 means no answer."""
    headers = {"Content-Type": "application/x-protobuf"}
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()  # drain so the connection stays usable (keep-alive)
    except (OSError, http.client.HTTPException):
        conn.close()  # reconnects on the next request
        return 0, 0.5
    try:
        retry = float(resp.getheader("Retry-After") or 0.1)
    except ValueError:
        retry = 0.1
    return resp.status, retry


def _send_one(
    conn: http.client.HTTPConnection,
    spec: LoadSpec,
    body: bytearray,
    deadline: float,
    tally: LoadTally,
) -> None:
    """Send until acknowledged, honouring Retry-After like an OTel exporter (same body)."""
    while True:
        t0 = time.perf_counter()
        status, retry = _post(conn, spec.path, body)
        tally.statuses[_status_key(status)] += 1
        if 200 <= status < 300:
            tally.ok_latencies_ms.append((time.perf_counter() - t0) * 1000)
            tally.accepted_bodies += 1
            return
        wait = min(retry, RETRY_AFTER_CAP_S)
        if status not in (0, 429, 503) or time.monotonic() + wait >= deadline:
            return
        time.sleep(wait)


def _sender(
    spec: LoadSpec,
    templates: list[Template],
    sender: int,
    start: float,
    counter: Any,
    tally: LoadTally,
) -> None:
    conn = http.client.HTTPConnection(spec.host, spec.port, timeout=60)
    deadline, seq = start + spec.seconds, 0
    while time.monotonic() < deadline:
        body = stamp(templates[(sender + seq) % len(templates)], sender, seq, spec.nonce)
        before = tally.accepted_bodies
        _send_one(conn, spec, body, deadline, tally)
        if tally.accepted_bodies > before:
            with counter.get_lock():
                counter.value += 1
        seq += 1
    conn.close()


def _client_main(
    spec: LoadSpec,
    templates: list[Template],
    client: int,
    go: EventType,
    start_at: Any,
    counter: Any,
    results: Any,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when clients stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # ...and stops them with terminate()
    go.wait()
    cpu0 = time.process_time()
    tallies = [LoadTally() for _ in range(spec.threads)]
    threads = [
        threading.Thread(
            target=_sender,
            args=(spec, templates, client * spec.threads + t, start_at.value, counter, tallies[t]),
        )
        for t in range(spec.threads)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = LoadTally(client_cpu_s=time.process_time() - cpu0)
    for t in tallies:
        total.merge(t)
    results.put(total)


def drive_load(
    spec: LoadSpec, templates: list[Template], label: str, on_tick: Callable[[], str] | None = None
) -> tuple[LoadTally, float, float]:
    """Run the client processes; returns (tally, load start monotonic, elapsed seconds)."""
    ctx = mp.get_context("fork")  # templates are inherited, not pickled
    go, start_at, counter = ctx.Event(), ctx.Value("d", 0.0), ctx.Value("q", 0)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_client_main,
            daemon=True,
            args=(spec, templates, c, go, start_at, counter, results),
        )
        for c in range(spec.clients)
    ]
    for p in procs:
        p.start()
    try:
        start_at.value = time.monotonic()
        go.set()
        _show_progress(spec, label, start_at.value, counter, procs, on_tick)
        tally = LoadTally()
        for _ in procs:
            tally.merge(results.get(timeout=120))
        elapsed = time.monotonic() - start_at.value
        return tally, start_at.value, elapsed
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(5)


def _show_progress(
    spec: LoadSpec,
    label: str,
    start: float,
    counter: Any,
    procs: list[Any],
    on_tick: Callable[[], str] | None,
) -> None:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=spec.seconds, info="")
        while any(p.is_alive() for p in procs) and time.monotonic() - start < spec.seconds + 90:
            elapsed = min(time.monotonic() - start, spec.seconds)
            acked = counter.value * SPANS_PER_BODY
            extra = on_tick() if on_tick else ""
            info = f"acked {acked:,} spans ({acked / max(elapsed, 1e-3):,.0f}/s){extra}"
            progress.update(task, completed=elapsed, info=info)
            time.sleep(0.2)
        progress.update(task, completed=spec.seconds)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(pid: int) -> list[int]:
    pids, stack = [], [pid]
    while stack:
        p = stack.pop()
        pids.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
    return pids


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssPoller(threading.Thread):
    """Peak resident memory of a server's process tree (VmHWM catches peaks between polls)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kib = pid, 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.sample()
            self._stop_evt.wait(0.1)

    def sample(self) -> None:
        tree = sum(_status_kib(p, "VmRSS") for p in _tree(self.pid))
        self.peak_kib = max(self.peak_kib, tree, _status_kib(self.pid, "VmHWM"))

    def stop(self) -> float:
        self._stop_evt.set()
        self.join(2)
        return self.peak_kib / 1024


def _log_tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def server(
    cmd: list[str], env: dict[str, str], cwd: Path, log: Path, health_url: str, timeout: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server in its own process group; always SIGTERM (then SIGKILL) it on the way out."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_healthy(proc, health_url, timeout, log)
        yield proc
    finally:
        stop_server(proc)


def stop_server(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_log_tail(log)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"server not healthy after {timeout:.0f}s:\n{_log_tail(log)}")


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


# --------------------------------------------------------------------------- results


@dataclass
class RunResult:
    system: str
    load_seconds: float
    persist_window_seconds: float
    requests: int
    statuses: dict[str, int]
    accepted_spans: int
    persisted_spans: int
    p50_ms: float
    p99_ms: float
    peak_rss_mib: float
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted_per_s(self) -> float:
        return self.accepted_spans / self.load_seconds if self.load_seconds else 0.0

    @property
    def persisted_per_s(self) -> float:
        w = self.persist_window_seconds
        return self.persisted_spans / w if w else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "accepted_per_s": round(self.accepted_per_s, 1),
            "persisted_per_s": round(self.persisted_per_s, 1),
        }


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _result(
    system: str,
    tally: LoadTally,
    elapsed: float,
    window: float,
    persisted: int,
    rss_mib: float,
    notes: dict[str, Any],
) -> RunResult:
    return RunResult(
        system=system,
        load_seconds=round(elapsed, 3),
        persist_window_seconds=round(window, 3),
        requests=sum(tally.statuses.values()),
        statuses=dict(tally.statuses),
        accepted_spans=tally.accepted_bodies * SPANS_PER_BODY,
        persisted_spans=persisted,
        p50_ms=round(_percentile(tally.ok_latencies_ms, 0.50), 2),
        p99_ms=round(_percentile(tally.ok_latencies_ms, 0.99), 2),
        peak_rss_mib=round(rss_mib, 1),
        notes={**notes, "client_cpu_cores": round(tally.client_cpu_s / elapsed, 2)},
    )


# --------------------------------------------------------------------------- aisre


def run_aisre(
    args: argparse.Namespace,
    templates: list[Template],
    tmp: Path,
    name: str = "aisre",
    threads: int | None = None,
    prefill: int = 0,
) -> RunResult:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        args.aisre_bin,
        "up",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--grpc-port",
        "0",
        "--db",
        str(tmp / f"{name}.duckdb"),
        *(arg for setting in args.aisre_setting for arg in ("--setting", setting)),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    spec = _load_spec(args, port)
    if threads is not None:
        spec = dataclasses.replace(spec, threads=threads)
    if prefill:
        from store import prefill as fill  # bench/store.py

        # Into the tenant the load goes to (auth off: "default"), so its indexes and scans hold them.
        prefill = fill(f"duckdb://{tmp / f'{name}.duckdb'}", prefill, tenant="default")
    with server(cmd, env, tmp, tmp / f"{name}.log", f"{base}/healthz") as proc:
        rss = RssPoller(proc.pid)
        rss.start()
        try:
            before = int(_get_json(f"{base}/api/stats").get("spans", 0))
            tally, _, elapsed = drive_load(spec, templates, f"{name:8s}")
            stats = _get_json(f"{base}/api/stats")  # a 2xx means committed: no drain wait
        finally:
            peak = rss.stop()
    persisted = int(stats.get("spans", 0)) - before
    notes = {"queued_spans_after_load": stats.get("queued_spans"), "exit_code": proc.returncode,
             "stored_before_load": before}
    return _result(name, tally, elapsed, elapsed, persisted, peak, notes)


# --------------------------------------------------------------------------- phoenix


def ensure_phoenix(venv: Path) -> Path:
    phoenix = venv / "bin" / "phoenix"
    if phoenix.exists():
        return phoenix
    log = BENCH_DIR / ".phoenix-install.log"
    with (
        console.status("installing arize-phoenix into bench/.phoenix-venv (once)"),
        open(log, "wb") as out,
    ):
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "arize-phoenix"],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return phoenix


def _phoenix_env(workdir: Path, port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "PHOENIX_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(
        {
            "PHOENIX_WORKING_DIR": str(workdir),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(free_port()),
            # No outbound calls: no telemetry pixels, fonts or downloads.
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
            "PHOENIX_LOGGING_LEVEL": "warning",
        }
    )
    return env


class SpanRowPoller(threading.Thread):
    """Counts rows of Phoenix's spans table, read-only, so polling never blocks its writer."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db, self.count, self.last_change = db, 0, time.monotonic()
        self.samples: list[tuple[float, int]] = []
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            n, now = self._read(), time.monotonic()
            self.samples.append((now, n))
            if n > self.count:
                self.count, self.last_change = n, now
            self._stop_evt.wait(0.5)

    def _read(self) -> int:
        try:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
            try:
                return int(con.execute("SELECT count(*) FROM spans").fetchone()[0])
            finally:
                con.close()
        except sqlite3.Error:
            return self.count

    def peak_rate(self, span_s: float = 5.0) -> float:
        """Best write rate over any `span_s` window: Phoenix at its most favourable."""
        best, i = 0.0, 0
        for t, n in self.samples:
            while i + 1 < len(self.samples) and t - self.samples[i + 1][0] >= span_s:
                i += 1
            t0, n0 = self.samples[i]
            if t - t0 >= span_s:
                best = max(best, (n - n0) / (t - t0))
        return best

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(5)


def _drain(rows: SpanRowPoller, accepted: int, cap: float) -> None:
    """Give Phoenix `cap` more seconds to write what it acknowledged (it may start late)."""
    deadline = time.monotonic() + cap
    with console.status("phoenix: draining") as status:
        while time.monotonic() < deadline and rows.count < accepted:
            status.update(
                f"phoenix: {rows.count:,}/{accepted:,} acknowledged spans in SQLite, "
                f"{deadline - time.monotonic():.0f}s of drain left"
            )
            time.sleep(0.5)


def run_phoenix(args: argparse.Namespace, templates: list[Template], tmp: Path) -> RunResult:
    phoenix = ensure_phoenix(args.phoenix_venv)
    workdir = tmp / "phoenix"
    workdir.mkdir()
    port = free_port()
    env = _phoenix_env(workdir, port)
    spec = _load_spec(args, port)
    with server(
        [str(phoenix), "serve"],
        env,
        workdir,
        tmp / "phoenix.log",
        f"http://127.0.0.1:{port}/healthz",
    ) as proc:
        rss, rows = RssPoller(proc.pid), SpanRowPoller(workdir / "phoenix.db")
        rss.start()
        rows.start()
        try:
            tally, start, elapsed = drive_load(
                spec, templates, "phoenix", on_tick=lambda: f", {rows.count:,} in SQLite"
            )
            at_load_end = rows.count
            _drain(rows, tally.accepted_bodies * SPANS_PER_BODY, args.drain_cap)
            persisted, window = rows.count, max(rows.last_change - start, elapsed)
        finally:
            rows.stop()
            peak = rss.stop()
    notes = {
        "persisted_at_load_end": at_load_end,
        "persisted_per_s_during_load": round(at_load_end / elapsed, 1),
        "peak_5s_write_rate": round(rows.peak_rate(), 1),
    }
    return _result("phoenix", tally, elapsed, window, persisted, peak, notes)


# --------------------------------------------------------------------------- report


def _load_spec(args: argparse.Namespace, port: int) -> LoadSpec:
    return LoadSpec(
        "127.0.0.1",
        port,
        "/v1/traces",
        args.seconds,
        args.clients,
        args.threads,
        nonce=os.urandom(8),
    )


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


def figures_table(results: list[RunResult]) -> Table:
    table = Table(title=f"OTLP/HTTP ingest, {SPANS_PER_BODY:,} LLM spans per request")
    table.add_column("figure")
    for r in results:
        table.add_column(r.system, justify="right")
    rows: list[tuple[str, Callable[[RunResult], str]]] = [
        ("load window (s)", lambda r: f"{r.load_seconds:.1f}"),
        ("requests sent", lambda r: _fmt(r.requests)),
        ("accepted spans/s (2xx)", lambda r: _fmt(r.accepted_per_s)),
        ("persisted spans/s", lambda r: _fmt(r.persisted_per_s)),
        ("persist window (s)", lambda r: f"{r.persist_window_seconds:.1f}"),
        (
            "persisted spans/s during load only",
            lambda r: _fmt(r.notes.get("persisted_per_s_during_load", r.persisted_per_s)),
        ),
        ("accepted spans", lambda r: _fmt(r.accepted_spans)),
        ("persisted spans", lambda r: _fmt(r.persisted_spans)),
        (
            "accepted == persisted",
            lambda r: "yes" if r.accepted_spans == r.persisted_spans else "NO",
        ),
        ("p50 / p99 latency of 2xx (ms)", lambda r: f"{r.p50_ms:.1f} / {r.p99_ms:.1f}"),
        (
            "429 / 503 / other / no answer",
            lambda r: " / ".join(
                str(r.statuses.get(k, 0)) for k in ("429", "503", "other", "error")
            ),
        ),
        ("server peak RSS (MiB)", lambda r: _fmt(r.peak_rss_mib)),
        ("client CPU (cores busy)", lambda r: f"{r.notes.get('client_cpu_cores', 0):.2f}"),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in results))
    return table


def _check(name: str, measured: str, ok: bool) -> tuple[str, str, str]:
    return name, measured, "PASS" if ok else "FAIL"


def _ratio_checks(a: RunResult, p: RunResult) -> list[tuple[str, str, str]]:
    name = f"persisted ratio aisre/phoenix >= {TARGET_RATIO:.0f}x"
    # Nothing written in the window: bound Phoenix by one span, so the ratio is a floor.
    phoenix_rate = p.persisted_per_s or 1 / p.persist_window_seconds
    ratio = a.persisted_per_s / phoenix_rate
    shown = f"{ratio:,.1f}x" if p.persisted_spans else f"> {ratio:,.0f}x (phoenix wrote 0)"
    out = [_check(name, shown, ratio >= TARGET_RATIO)]
    peak = float(p.notes.get("peak_5s_write_rate") or 0)
    if peak:  # context only: Phoenix judged by its best 5 s of writing
        out.append(
            ("ratio vs phoenix's best 5 s write rate", f"{a.persisted_per_s / peak:,.1f}x", "INFO")
        )
    return out


def targets(results: dict[str, RunResult]) -> list[tuple[str, str, str]]:
    """(target, measured, PASS/FAIL/SKIP/INFO) for each target."""
    a, p = results.get("aisre"), results.get("phoenix")
    out = []
    if a:
        out.append(
            _check(
                f"aisre persisted >= {TARGET_PERSISTED_PER_S:,} spans/s",
                _fmt(a.persisted_per_s),
                a.persisted_per_s >= TARGET_PERSISTED_PER_S,
            )
        )
        out.append(
            _check(
                "aisre accepted == persisted",
                f"{a.accepted_spans:,} vs {a.persisted_spans:,}",
                a.accepted_spans == a.persisted_spans,
            )
        )
    o = results.get("overload")
    if o:
        refused = o.statuses.get("429", 0) + o.statuses.get("503", 0)
        out.append(
            _check(
                f"overload: server RSS <= {RSS_CEILING_MIB:,} MiB",
                f"{o.peak_rss_mib:,.0f} MiB",
                o.peak_rss_mib <= RSS_CEILING_MIB,
            )
        )
        out.append(_check("overload: excess answered 429/503", f"{refused:,} refused", refused > 0))
        if a:
            # Refused work must not eat the cores commits need: pushed harder, commit as much.
            out.append(
                _check(
                    f"overload: persisted >= {TARGET_STORED_RATIO} x normal load",
                    f"{o.persisted_per_s / a.persisted_per_s:.2f} x" if a.persisted_per_s else "n/a",
                    bool(a.persisted_per_s) and o.persisted_per_s >= TARGET_STORED_RATIO * a.persisted_per_s,
                )
            )
        out.append(
            _check(
                "overload: accepted == persisted",
                f"{o.accepted_spans:,} vs {o.persisted_spans:,}",
                o.accepted_spans == o.persisted_spans,
            )
        )
    f = results.get("prefilled")
    if a and f:
        out.append(
            _check(
                f"persisted with {f.notes.get('stored_before_load', 0):,} spans stored >= {TARGET_STORED_RATIO} x empty",
                f"{f.persisted_per_s / a.persisted_per_s:.2f} x" if a.persisted_per_s else "n/a",
                bool(a.persisted_per_s) and f.persisted_per_s >= TARGET_STORED_RATIO * a.persisted_per_s,
            )
        )
    if a and p:
        out.extend(_ratio_checks(a, p))
    else:
        out.append((f"persisted ratio aisre/phoenix >= {TARGET_RATIO:.0f}x", "n/a", "SKIP"))
    return out


def targets_table(rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title="Targets")
    for col in ("target", "measured", "result"):
        table.add_column(col)
    colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow", "INFO": "cyan"}
    for name, measured, verdict in rows:
        table.add_row(name, measured, f"[{colour[verdict]}]{verdict}[/]")
    return table


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="load duration per system")
    ap.add_argument("--clients", type=int, default=2, help="client processes")
    # 2 clients x 4 in flight: eight concurrent exports, fewer than the OTel Collector's
    # default of 10 sending-queue consumers.
    ap.add_argument("--threads", type=int, default=4, help="in-flight requests per client process")
    ap.add_argument("--pool", type=int, default=8, help="distinct pre-built bodies")
    ap.add_argument(
        "--aisre-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pass a setting to aisre up (repeatable), e.g. rollup_interval_ms=0",
    )
    ap.add_argument(
        "--overload",
        type=int,
        default=8,
        help="also drive aisre with this many times the in-flight requests (0: skip)",
    )
    ap.add_argument(
        "--drain-cap",
        type=float,
        default=60.0,
        # Phoenix starts writing ~40 s after a 20 s burst starts; 30 s would see only that stall.
        help="max seconds to wait for Phoenix to write what it acknowledged",
    )
    ap.add_argument(
        "--prefill",
        type=int,
        default=0,
        metavar="N",
        help="store N spans in aisre's file before its server starts (bench/store.py's fill); "
        "the issue's target: persisted spans/s with 30M stored >= 0.8 x on an empty store",
    )
    ap.add_argument("--skip-phoenix", action="store_true")
    ap.add_argument("--skip-aisre", action="store_true")
    ap.add_argument("--aisre-bin", default=str(Path(sys.executable).parent / "aisre"))
    ap.add_argument("--phoenix-venv", type=Path, default=PHOENIX_VENV)
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    args = ap.parse_args(argv)
    if args.clients * args.threads > 256:
        ap.error("at most 256 senders (clients x threads): ids embed the sender in one byte")
    return args


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the finally blocks stop every server we started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    with console.status(f"building {args.pool} request bodies of {SPANS_PER_BODY:,} spans"):
        templates = [build_template(seed) for seed in range(args.pool)]
    size = sum(len(t.body) for t in templates) / len(templates) / 1024
    console.print(
        f"payload: {SPANS_PER_BODY:,} spans/request, {size:,.0f} KiB protobuf, "
        f"{args.clients} clients x {args.threads} in flight, {args.seconds:g}s per system"
    )
    results: dict[str, RunResult] = {}
    with tempfile.TemporaryDirectory(prefix="aisre-bench-") as tmp:
        if not args.skip_aisre:
            results["aisre"] = run_aisre(args, templates, Path(tmp))
            if args.overload:
                # Far more exports in flight than the store can write: it must shed
                # with 429/503 and keep its memory, not queue without bound.
                results["overload"] = run_aisre(
                    args, templates, Path(tmp), "overload", threads=args.threads * args.overload
                )
            if args.prefill:
                # The same load on a store that already holds --prefill spans.
                results["prefilled"] = run_aisre(args, templates, Path(tmp), "prefilled", prefill=args.prefill)
        if not args.skip_phoenix:
            results["phoenix"] = run_phoenix(args, templates, Path(tmp))
    console.print(figures_table(list(results.values())))
    verdicts = targets(results)
    console.print(targets_table(verdicts))
    if args.json:
        payload = {
            "spans_per_request": SPANS_PER_BODY,
            "seconds": args.seconds,
            "clients": args.clients,
            "threads": args.threads,
            "results": {k: r.to_json() for k, r in results.items()},
            "targets": [{"target": t, "measured": m, "result": v} for t, m, v in verdicts],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    failed = any(v == "FAIL" for _, _, v in verdicts)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        console.print("[red]interrupted: servers stopped[/]")
        sys.exit(130)
