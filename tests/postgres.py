"""A real PostgreSQL for the tests: one server per session, started with the Debian binaries
(initdb, pg_ctl) in a temporary folder on a free loopback port, a fresh database per test
module, stopped at the end.

initdb refuses to run as root, so when the tests run as root the server runs as the
``postgres`` user (``runuser``), in a folder it owns. Without the binaries (or psycopg) the
tests that need the server are skipped, naming what is missing; with
AISRE_REQUIRE_POSTGRES=1 (CI) they fail instead.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_counter = itertools.count(1)


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else the newest Debian install."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for folder in sorted(glob.glob(_BIN_GLOB), key=lambda p: int(re.sub(r"\D", "", p) or 0), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _missing(reason: str) -> None:
    if os.environ.get("AISRE_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (AISRE_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running PostgreSQL: superuser ``aisre`` (trust auth on loopback)."""

    port: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://aisre@127.0.0.1:{self.port}/{database}"

    def create_database(self, hint: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{re.sub(r'[^a-z0-9_]', '_', hint.lower())[:40]}_{next(_counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the whole session (skipped, or failed under AISRE_REQUIRE_POSTGRES=1,
    when it cannot run here)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install 'aisre[postgres]')")
    bin_dir = postgres_bin()
    if bin_dir is None:
        _missing(f"initdb/pg_ctl not on PATH nor in {_BIN_GLOB} (apt-get install postgresql)")
        raise AssertionError  # unreachable: skip or fail raised
    if os.geteuid() == 0 and not shutil.which("runuser"):
        _missing("running as root needs runuser to start the server as the postgres user")
    # Not under pytest's own temp folder: it is private to root, and the server may run as postgres.
    folder = Path(tempfile.mkdtemp(prefix="aisre-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, log = folder / "data", folder / "server.log"
    port = _free_port()
    try:
        subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "aisre", "--auth=trust",
                                        "-E", "UTF8", "--no-sync", "--locale=C"]),
                       check=True, capture_output=True, timeout=120, cwd=folder)
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        started = subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "120",
                             "start"]), capture_output=True, timeout=180, cwd=folder)
        if started.returncode != 0:
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"pg_ctl start failed: {started.stderr.decode()} {text[-2000:]}")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"initdb failed: {exc.stderr.decode()[-2000:]}")
    try:
        yield PostgresServer(port, folder)
    finally:
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=120, cwd=folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database for this test module."""
    return postgres_server.create_database(request.module.__name__.rsplit(".", 1)[-1])
