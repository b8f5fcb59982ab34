"""`aisre demo` as a new user runs it: --duration ends everything, a re-run starts fresh unless
--keep, and a key created mid-run does not lock the demo's own traffic out."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.conftest import AISRE, free_port


def _demo(db: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*AISRE, "demo", "--port", str(free_port()), "--grpc-port", "0", "--db", str(db), "--rate", "5", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )


def _finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    return out.decode(errors="replace")


def _trace_ids(db: Path) -> set[str]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return {row[0] for row in conn.execute("SELECT trace_id FROM journey_runs").fetchall()}


@pytest.mark.slow
def test_duration_stops_the_server_and_reruns_start_fresh_unless_keep(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    first = _finish(_demo(db, "--duration", "4"))  # returns only if the server stopped by itself
    assert "demo: --duration 4 s passed: traffic stopped, stopping the server" in first, first[-3000:]
    assert "fresh store" not in first  # nothing to remove on the first run
    assert "Traceback" not in first, first[-3000:]
    first_ids = _trace_ids(db)
    assert first_ids

    kept = _finish(_demo(db, "--duration", "4", "--keep"))
    assert "reusing the store of the last run" in kept, kept[-3000:]
    kept_ids = _trace_ids(db)
    assert first_ids < kept_ids  # last run's runs are still there, and new ones joined them

    fresh = _finish(_demo(db, "--duration", "4"))
    assert f"fresh store: removed the last run's {db}" in fresh, fresh[-3000:]
    fresh_ids = _trace_ids(db)
    assert fresh_ids and not fresh_ids & kept_ids


@pytest.mark.slow
def test_first_key_mid_run_switches_the_demo_to_its_own_ingest_key(tmp_path: Path) -> None:
    proc = _demo(tmp_path / "demo.duckdb")
    port = int(proc.args[proc.args.index("--port") + 1])  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        runs = 0
        while time.monotonic() < deadline and not runs:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                runs = sum(j["runs"] for j in httpx.get(url + "/api/journeys", timeout=2).json()["items"])
            time.sleep(0.3)
        assert runs, "the demo never served a journey"
        # What `aisre keys create --role admin` does against a server with auth off: auth turns on.
        created = httpx.post(url + "/api/keys", json={"role": "admin", "name": "ops"}, timeout=10)
        assert created.status_code in (200, 201), created.text
        headers = {"Authorization": f"Bearer {created.json()['key']}"}
        assert httpx.get(url + "/api/journeys", timeout=5).status_code == 401

        def count() -> int:
            items = httpx.get(url + "/api/journeys/runs", params={"limit": 1000}, headers=headers, timeout=5).json()
            return len(items["items"])

        at_key = count()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and count() < at_key + 10:
            time.sleep(0.5)
        assert count() >= at_key + 10, "the demo's traffic stopped arriving once auth was on"
        keys = httpx.get(url + "/api/keys", headers=headers, timeout=5).json()["items"]
        assert {(k["name"], k["role"]) for k in keys} >= {("aisre demo", "ingest"), ("ops", "admin")}
        os.killpg(proc.pid, signal.SIGINT)
        text = _finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert proc.returncode == 0, text[-3000:]
    assert "demo: auth is on: sending with its own ingest key" in text, text[-3000:]
    # A batch whose headers were set in the instant before the key appeared may still be
    # refused; a stream of them is what this test exists to prevent.
    # (A status, not digits inside the banner's port number.)
    assert len(re.findall(r"\b401\b", text)) <= 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
