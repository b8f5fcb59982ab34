"""`aisre demo` (what `make demo` runs) brings up live journeys within a minute."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import free_port


@pytest.mark.slow
def test_demo_serves_live_journeys_within_a_minute(tmp_path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from aisre.app import main; main()", "demo", "--port", str(port),
         "--grpc-port", "0", "--db", str(tmp_path / "demo.duckdb"), "--rate", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    started = time.monotonic()
    journeys: dict[str, dict] = {}
    try:
        while time.monotonic() - started < 60:
            try:
                items = httpx.get(url + "/api/journeys", timeout=2).json()["items"]
                journeys = {j["journey"]: j for j in items}
            except (httpx.HTTPError, ValueError):
                pass
            if {"ask", "triage-agent"} <= set(journeys):
                break
            time.sleep(0.5)
        assert {"ask", "triage-agent"} <= set(journeys), journeys
        assert journeys["ask"]["tokens_per_run"] > 0
        runs = httpx.get(url + "/api/journeys/runs", params={"journey": "ask", "outcome": "success", "limit": 1}).json()["items"]
        trace = httpx.get(f"{url}/api/traces/{runs[0]['trace_id']}").json()
        operations = {span["operation"] for span in trace["spans"]}
        assert {"embeddings", "retrieval", "chat"} <= operations
        page = httpx.get(url + "/", timeout=5)
        assert page.status_code == 200
        assert "ask" in page.text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    text = out.decode()
    assert f"http://127.0.0.1:{port}/" in text
    # SIGTERM stops the simulated service first: its exporter flushes to a server that is
    # still listening, so no retries, refusals or dropped batches show up on the way out.
    assert proc.returncode == 0, text[-2000:]
    for noise in ("Transient error", "Failed to export", "Connection refused"):
        assert noise not in text, text[-2000:]
