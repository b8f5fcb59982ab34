"""A 2xx means committed: SIGKILL right after answers loses nothing; overload sheds with 429."""

from __future__ import annotations

import concurrent.futures
import random
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.otlp_factory import journey_request, span_count

PB = {"Content-Type": "application/x-protobuf"}


def _span_ids(request) -> list[str]:
    return [span.span_id.hex() for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def _stored_span_ids(db: Path) -> set[str]:
    """Span ids in the DuckDB file itself, read after the server has exited."""
    with duckdb.connect(str(db), read_only=True) as con:
        return {row[0] for row in con.execute("SELECT span_id FROM spans").fetchall()}


def _send_until(url: str, stop: threading.Event, acked: list[str], lock: threading.Lock) -> None:
    """Post 50-trace requests until told to stop; record the span ids of each 2xx exactly."""
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            request, _ = journey_request(50)
            try:
                response = client.post(url + "/v1/traces", content=request.SerializeToString(), headers=PB)
            except httpx.HTTPError:
                return  # the server died mid-request: that export was never acknowledged
            if response.status_code == 200:
                with lock:
                    acked.extend(_span_ids(request))


def _load(url: str, senders: int, acked: list[str], lock: threading.Lock) -> tuple[threading.Event, list[threading.Thread]]:
    stop = threading.Event()
    threads = [threading.Thread(target=_send_until, args=(url, stop, acked, lock)) for _ in range(senders)]
    for thread in threads:
        thread.start()
    return stop, threads


@pytest.mark.slow
def test_sigkill_during_load_loses_no_acknowledged_span(server_factory, tmp_path) -> None:
    """Three SIGKILLs at random moments of sustained load, restarting on the same file each
    time: every span id that got a 2xx is in the file at the end."""
    db = tmp_path / "crash.duckdb"
    rng = random.Random()
    acked: list[str] = []
    lock = threading.Lock()
    orphans: list[int] = []
    for _ in range(3):
        server = server_factory(db)
        assert server.proc is not None
        already = len(acked)
        stop, threads = _load(server.url, 3, acked, lock)
        # On a busy machine the first answer can take long: wait for it (bounded) instead of
        # assuming one came within a fixed time, then kill at a random later moment.
        deadline = time.monotonic() + 120
        while len(acked) == already and time.monotonic() < deadline and server.proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.0))
        before = len(acked) - already
        orphans += _children(server.proc.pid)
        server.kill()  # no drain, no checkpoint
        stop.set()
        for thread in threads:
            thread.join(30)
        assert before > 0, "no export was acknowledged before the kill"
    server_factory(db).stop()  # one more WAL replay, then a clean close

    stored = _stored_span_ids(db)
    missing = set(acked) - stored
    assert len(acked) == len(set(acked))
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged spans are missing"
    # The killed servers' decoder processes noticed and left (none linger).
    assert orphans
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in orphans):
        time.sleep(0.2)
    assert not [pid for pid in orphans if Path(f"/proc/{pid}").exists()]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended while we looked
            continue
    return found


@pytest.mark.slow
def test_sigterm_during_load_drains_what_it_acknowledged(server_factory, tmp_path) -> None:
    db = tmp_path / "drain.duckdb"
    server = server_factory(db)
    acked: list[str] = []
    lock = threading.Lock()
    stop, threads = _load(server.url, 3, acked, lock)
    time.sleep(2.0)
    assert server.stop() == 0  # SIGTERM with exports in flight; exits 0 after draining
    stop.set()
    for thread in threads:
        thread.join(30)
    assert acked
    assert not set(acked) - _stored_span_ids(db)


@pytest.mark.slow
def test_otel_sdk_exporter_retries_429s_until_everything_is_delivered(server_factory, tmp_path) -> None:
    """A tiny writer queue makes concurrent exporters meet 429 + Retry-After; the SDK's own
    retry then delivers every span."""
    server = server_factory(tmp_path / "retry.duckdb", "--queue-max-spans", "1")
    providers = []
    for _ in range(6):
        provider = TracerProvider(resource=Resource.create({"service.name": "retry-svc"}))
        exporter = OTLPSpanExporter(endpoint=server.url + "/v1/traces", timeout=60)
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=20_000, max_export_batch_size=500,
                                                       schedule_delay_millis=50))
        providers.append(provider)
    sent: list[str] = []
    lock = threading.Lock()

    def emit(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("retry-test")
        ids = []
        for _ in range(1500):
            with tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat"}) as span:
                ids.append(format(span.get_span_context().span_id, "016x"))
        with lock:
            sent.extend(ids)

    threads = [threading.Thread(target=emit, args=(p,)) for p in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for provider in providers:
        assert provider.force_flush(60_000)
        provider.shutdown()

    metrics = httpx.get(server.url + "/metrics").text
    refused = [line for line in metrics.splitlines()
               if line.startswith("aisre_ingest_requests_total") and 'code="429"' in line]
    assert refused and float(refused[0].rsplit(" ", 1)[1]) > 0, "no 429 was answered: the test proved nothing"
    db = server.db
    assert server.stop() == 0
    assert len(sent) == 9000
    assert not set(sent) - _stored_span_ids(db)


def test_http_overload_answers_429_with_retry_after(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "tiny.duckdb", "--queue-max-spans", "1")

    def post(_: int) -> tuple[int, str | None, int]:
        request, _ids = journey_request(300)
        response = httpx.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB, timeout=30)
        return response.status_code, response.headers.get("retry-after"), span_count(request)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(32)))
    codes = [code for code, _, _ in results]
    assert 200 in codes and 429 in codes
    assert all(retry == "1" for code, retry, _ in results if code == 429)
    acked = sum(n for code, _, n in results if code == 200)
    assert httpx.get(server.url + "/api/stats").json()["spans"] == acked
    assert "aisre_ingest_refused_requests_total" in httpx.get(server.url + "/metrics").text
