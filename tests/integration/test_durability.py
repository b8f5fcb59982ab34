"""A 2xx means committed: SIGKILL right after answers loses nothing; overload sheds with 429."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.otlp_factory import journey_request, span_count

PB = {"Content-Type": "application/x-protobuf"}


def _acked_trace_ids(server: ServerProcess, stop: threading.Event, acked: list[str], spans: list[int]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            request, trace_ids = journey_request(50)
            try:
                response = client.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB)
            except httpx.HTTPError:
                return  # the server died mid-request: that export was never acknowledged
            if response.status_code == 200:
                acked.extend(trace_ids)
                spans.append(span_count(request))


@pytest.mark.slow
def test_sigkill_after_2xx_loses_no_acknowledged_span(server_factory, tmp_path) -> None:
    db = tmp_path / "crash.duckdb"
    for round_no in range(2):
        server = server_factory(db)
        stop = threading.Event()
        acked: list[str] = []
        spans: list[int] = []
        threads = [threading.Thread(target=_acked_trace_ids, args=(server, stop, acked, spans)) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(1.5 + round_no)
        server.kill()  # no drain, no checkpoint
        stop.set()
        for thread in threads:
            thread.join(30)
        assert sum(spans) > 0

        restarted = server_factory(db)
        total_acked = sum(spans)
        stored = httpx.get(restarted.url + "/api/stats").json()["spans"]
        assert stored >= total_acked
        # Every acknowledged trace is there, whole.
        for trace_id in acked[:: max(1, len(acked) // 50)]:
            doc = httpx.get(f"{restarted.url}/api/traces/{trace_id}").json()
            assert len(doc["spans"]) == 3, trace_id
        restarted.stop()


def test_sigterm_drains_what_it_acknowledged(server_factory, tmp_path) -> None:
    db = tmp_path / "drain.duckdb"
    server = server_factory(db)
    sent = 0
    with httpx.Client(timeout=30) as client:
        for _ in range(20):
            request, _ = journey_request(100)
            assert client.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB).status_code == 200
            sent += span_count(request)
    assert server.stop() == 0
    again = server_factory(db)
    assert httpx.get(again.url + "/api/stats").json()["spans"] == sent


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
