"""Start and stop as a new user meets them: a busy port or a bad setting is one line and exit 2;
Ctrl-C on the demo stops everything without a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import AISRE, free_port


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process-like listener holds."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _up(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AISRE, "up", "--db", str(tmp_path / "up.duckdb"), *args], capture_output=True, text=True, timeout=120,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert "Traceback" not in text and "aisre on http" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.slow
def test_busy_http_port_names_the_port_and_the_flag(tmp_path: Path, busy_port: int) -> None:
    line = _one_error_line(_up(tmp_path, "--port", str(busy_port), "--grpc-port", "0"))
    assert f"HTTP port {busy_port} on 127.0.0.1 is already in use" in line
    assert "--port" in line


@pytest.mark.slow
def test_busy_grpc_port_names_the_port_and_the_flag(tmp_path: Path, busy_port: int) -> None:
    line = _one_error_line(_up(tmp_path, "--port", str(free_port()), "--grpc-port", str(busy_port)))
    assert f"OTLP/gRPC port {busy_port} on 127.0.0.1 is already in use" in line
    assert "--grpc-port" in line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("db_memory_limit=abc", "setting 'db_memory_limit' must be a memory size such as 1GB or 512MB, got 'abc'"),
        ("no_such_setting=1", "unknown setting 'no_such_setting'"),
        ("commit_max_spans=lots", "setting 'commit_max_spans' must be int, got 'lots'"),
        ("commit_max_spans", "--setting takes NAME=VALUE; got 'commit_max_spans'"),
    ],
)
def test_bad_setting_is_one_line_naming_it(tmp_path: Path, setting: str, expected: str) -> None:
    line = _one_error_line(_up(tmp_path, "--port", str(free_port()), "--grpc-port", "0", "--setting", setting))
    assert expected in line


@pytest.mark.slow
def test_ctrl_c_on_the_demo_exits_0_without_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A terminal's Ctrl-C signals the whole foreground process group, decoder processes included.
    proc = subprocess.Popen(
        [*AISRE, "demo", "--port", str(port), "--grpc-port", "0", "--db", str(tmp_path / "demo.duckdb"), "--rate", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        runs = 0
        while time.monotonic() < deadline and runs == 0:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                runs = sum(j["runs"] for j in httpx.get(url + "/api/journeys", timeout=2).json()["items"])
            time.sleep(0.3)
        assert runs > 0, "the demo never served a journey"
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    for noise in ("Traceback", "KeyboardInterrupt", "decoder process died"):
        assert noise not in text, text[-3000:]
