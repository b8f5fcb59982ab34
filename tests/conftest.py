"""Shared fixtures: the captured OTLP payloads, and a real aisre server process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures: a real PostgreSQL)

REPO = Path(__file__).resolve().parents[1]
# Copies of ../shared/fixtures and ../shared/refs, unchanged (tests/data/README.md).
# Tests judge what servers answer, not how fast: on a loaded machine a request to a test
# server may take longer than httpx's 5 s default, so every call without its own timeout
# waits up to a minute.
HTTP_TIMEOUT = httpx.Timeout(60.0)


def _patient(call: Any) -> Any:
    def request(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return call(*args, **kwargs)

    return request


for _verb in ("request", "get", "post", "put", "patch", "delete", "head", "options"):
    setattr(httpx, _verb, _patient(getattr(httpx, _verb)))


DATA = REPO / "tests" / "data"
REFS = DATA / "refs"
FIXTURES = DATA / "fixtures" / "otlp"
CAPTURES = ("otel-genai", "otel-genai-content", "openllmetry")


def capture_files(name: str, kind: str = "raw") -> list[Path]:
    """The request bodies of one capture, in the order they were sent."""
    pattern = "*.pb" if kind == "raw" else "*.json"
    return sorted((FIXTURES / name / kind).glob(pattern))


def capture_truth(name: str) -> dict:
    return json.loads((FIXTURES / name / "truth.json").read_text())


def wait_for(fn: Any, timeout: float, what: str) -> Any:
    """Poll ``fn`` every half second until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A real `aisre up` child process on loopback."""

    db: Path
    port: int
    grpc_port: int
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        # The captures and reference runs carry fixed dates that age past the default 14-day
        # retention; expiry must not depend on the day the suite runs (retention tests set it).
        keep = () if any("retention_days" in a for a in self.extra_args) else ("--setting", "retention_days=0")
        args = [
            *AISRE, "up",
            "--port", str(self.port), "--grpc-port", str(self.grpc_port), "--db", str(self.db),
            *keep, *self.extra_args,
        ]
        log = open(self.db.with_suffix(".log"), "ab")  # noqa: SIM115 - lives as long as the process
        # Its own process group, so discard() can end it and its decoders at once.
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy: {self.log()}")

    def log(self) -> str:
        path = self.db.with_suffix(".log")
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def discard(self) -> None:
        """SIGKILL the server and its decoders: the end of a test that has made its checks
        (the graceful path is what ``stop`` and the start/stop tests exercise)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait: the graceful path."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else None


AISRE = [sys.executable, "-c", "from aisre.app import main; main()"]


def aisre_up_refused(tmp_path: Path, *args: str) -> str:
    """Run `aisre up` expecting it to refuse to start (exit 1); returns what it printed."""
    result = subprocess.run(
        [*AISRE, "up", "--port", "1", "--db", str(tmp_path / "refused.duckdb"), *args],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[callable]:
    started: list[ServerProcess] = []

    def make(db: Path | None = None, *extra: str) -> ServerProcess:
        server = ServerProcess(db or tmp_path / "aisre.duckdb", free_port(), free_port(), tuple(extra))
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.discard()


@pytest.fixture
def server(server_factory) -> ServerProcess:
    return server_factory()
