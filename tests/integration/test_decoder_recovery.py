"""kill -9 of a decoder under load: the listener keeps answering, exports resume quickly,
the pool is replaced once, and every acknowledged span is stored."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.otlp_factory import journey_request

PB = {"Content-Type": "application/x-protobuf"}
WORKERS = 2


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended while we looked
            continue
    return found


def _decoders(server_pid: int) -> set[int]:
    """Live (not zombie) decoder processes of the server: spawned pool workers."""
    out = set()
    for pid in _children(server_pid):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z" and b"spawn_main" in cmdline:
            out.add(pid)
    return out


class Load:
    """Senders posting pre-built requests (so the test's own CPU use stays small), recording
    which span ids got a 200, when, and which requests were refused and how."""

    def __init__(self, url: str, senders: int = 6, requests: int = 300, traces: int = 40) -> None:
        self.url = url
        self.bodies: list[tuple[bytes, list[str]]] = []
        for _ in range(requests):
            request, _ = journey_request(traces)
            ids = [s.span_id.hex() for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
            self.bodies.append((request.SerializeToString(), ids))
        self.lock = threading.Lock()
        self.acked: list[str] = []
        self.acked_at: list[tuple[float, float]] = []  # (sent, answered), monotonic
        self.refused: list[tuple[int, str | None]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(senders)]

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def _next(self) -> tuple[bytes, list[str]] | None:
        with self.lock:
            return self.bodies.pop() if self.bodies else None

    def _send(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                item = self._next()
                if item is None:
                    return
                body, ids = item
                sent = time.monotonic()
                try:
                    response = client.post(self.url + "/v1/traces", content=body, headers=PB)
                except httpx.HTTPError:
                    continue  # never acknowledged
                with self.lock:
                    if response.status_code == 200:
                        self.acked.extend(ids)
                        self.acked_at.append((sent, time.monotonic()))
                    else:
                        self.refused.append((response.status_code, response.headers.get("retry-after")))
                if response.status_code != 200:
                    time.sleep(0.1)

    def acks_sent_after(self, t: float) -> list[float]:
        with self.lock:
            return [answered for sent, answered in self.acked_at if sent >= t]

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(90)


class HealthProbe(threading.Thread):
    """GET /healthz every 100 ms, recording how long each answer took; also samples how many
    decoders are alive."""

    def __init__(self, url: str, server_pid: int) -> None:
        super().__init__(daemon=True)
        self.url, self.server_pid = url, server_pid
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.decoder_counts: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.halt.is_set():
                started = time.monotonic()
                try:
                    status = client.get(self.url + "/healthz").status_code
                    if status != 200:
                        self.failures.append(f"status {status}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.latencies.append(time.monotonic() - started)
                self.decoder_counts.append(len(_decoders(self.server_pid)))
                self.halt.wait(0.1)


@pytest.mark.slow
def test_kill_9_of_a_decoder_under_load_never_stalls_the_listener(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "decoder.duckdb", "--ingest-workers", str(WORKERS))
    assert server.proc is not None
    before = _decoders(server.proc.pid)
    assert len(before) == WORKERS
    load = Load(server.url).start()
    probe = HealthProbe(server.url, server.proc.pid)
    probe.start()
    try:
        # Wait for the first acknowledgement instead of assuming one came within a fixed time.
        load.wait(lambda: bool(load.acks_sent_after(0)), 90, "the first acknowledged export")
        victim = min(before)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        # Exports resume: a request sent after the kill is acknowledged within 5 s of it.
        load.wait(lambda: bool(load.acks_sent_after(killed_at)), 60, "an export acknowledged after the kill")
        resumed = min(load.acks_sent_after(killed_at)) - killed_at
        # Recovery: a whole new pool, the old one reaped.
        load.wait(lambda: (now := _decoders(server.proc.pid)) and len(now) == WORKERS and not now & before, 60,
                  "a replacement decoder pool")
        after = _decoders(server.proc.pid)
        # Keep the load on the new pool for a while.
        count = len(load.acks_sent_after(time.monotonic()))
        load.wait(lambda: len(load.acks_sent_after(killed_at)) >= count + 10, 90, "exports on the new pool")
        load.wait(lambda: len(probe.latencies) >= 20, 60, "twenty health probes")
    finally:
        load.finish()
        probe.halt.set()
        probe.join(30)

    print(f"health max {max(probe.latencies):.3f}s over {len(probe.latencies)}; resumed {resumed:.2f}s; refused {load.refused[:8]} ({len(load.refused)}); acked {len(load.acked)}; left {len(load.bodies)}; counts {sorted(set(probe.decoder_counts))}")
    assert not probe.failures, probe.failures[:5]
    assert max(probe.latencies) < 1.0, f"/healthz took {max(probe.latencies):.2f}s"
    assert resumed < 5.0, f"exports resumed {resumed:.1f}s after the kill"
    assert len(after) == WORKERS and not after & before
    assert max(probe.decoder_counts) <= WORKERS, probe.decoder_counts
    # Refusals while the pool was replaced were retryable 503s with Retry-After (or 429s
    # from the writer's own backpressure), never 500s.
    assert all(code in (429, 503) and retry for code, retry in load.refused), load.refused
    metrics = httpx.get(server.url + "/metrics").text
    assert server.stop() == 0
    with duckdb.connect(str(server.db), read_only=True) as con:
        stored = {row[0] for row in con.execute("SELECT span_id FROM spans").fetchall()}
    missing = set(load.acked) - stored
    assert not missing, f"{len(missing)} of {len(load.acked)} acknowledged spans are missing"
    assert "aisre_ingest_requests_total" in metrics
