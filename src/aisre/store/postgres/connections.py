"""Connections to PostgreSQL: a small lock-guarded pool, and the numbered migrations.

Why not psycopg_pool: the control plane's load is a few short statements per API request
and per evaluator pass, so a fixed handful of connections shared under one lock does the
job without another dependency. Connections open lazily up to ``size``; a caller waits
when all are in use; a connection the server dropped (restart, failover) is discarded on
return and a fresh one opened next time. Every connection is in autocommit mode: a single
statement commits alone, and several are grouped with ``conn.transaction()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

# One number for every aisre process: migrations run under this advisory lock, so nodes
# starting together apply each migration once.
_MIGRATION_LOCK = 0x61697372  # "aisr"


def connect(dsn: str) -> Any:
    """One autocommit connection with dict rows (psycopg is imported only here)."""
    import psycopg
    from psycopg.rows import dict_row

    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row, connect_timeout=10)


class Connections:
    """At most ``size`` connections to ``dsn``, handed out one caller at a time."""

    def __init__(self, dsn: str, size: int = 4) -> None:
        self.dsn = dsn
        self._size = max(1, size)
        self._idle: list[Any] = []
        self._opened = 0
        self._cond = threading.Condition()
        self._closed = False

    @contextmanager
    def __call__(self) -> Iterator[Any]:
        conn = self._take()
        try:
            yield conn
        finally:
            self._give(conn)

    def _take(self) -> Any:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the PostgreSQL connections are closed")
                if self._idle:
                    return self._idle.pop()
                if self._opened < self._size:
                    self._opened += 1
                    break
                self._cond.wait()
        try:
            return connect(self.dsn)
        except Exception:
            with self._cond:
                self._opened -= 1
                self._cond.notify()
            raise

    def _give(self, conn: Any) -> None:
        with self._cond:
            if conn.closed or conn.broken or self._closed:
                self._opened -= 1
                if not conn.closed:
                    conn.close()
            else:
                self._idle.append(conn)
            self._cond.notify()

    def close(self) -> None:
        """Close the idle connections; those in use close when given back. Idempotent."""
        with self._cond:
            self._closed = True
            for conn in self._idle:
                conn.close()
            self._opened -= len(self._idle)
            self._idle.clear()
            self._cond.notify_all()


def migrate(conn: Any) -> int:
    """Apply the numbered migrations not yet recorded, each in its own transaction; returns
    the schema version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_ns BIGINT NOT NULL)"
    )
    folder = resources.files("aisre.store.postgres").joinpath("migrations")
    scripts = sorted((e.name, e.read_text()) for e in folder.iterdir() if e.name.endswith(".sql"))
    for name, sql in scripts:
        version = int(name.split("_", 1)[0])
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
            done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", [version]).fetchone()
            if done:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)", [version, name, time.time_ns()])
    row = conn.execute("SELECT coalesce(max(version), 0) AS v FROM schema_migrations").fetchone()
    return int(row["v"])
