"""The evaluator lease on PostgreSQL: one row per lease name, held until ``expires_at``.

A lease row rather than an advisory lock: a session-level advisory lock is tied to one
connection, so a holder whose process hangs with its connection open keeps it for ever,
and a pooler in transaction mode loses it silently. A row with an expiry on the
database's clock bounds both: whoever stops renewing loses the lease ``ttl_s`` after its
last renewal, whatever its connection does.

Safety (never two holders): the holder believes it holds the lease until ``ttl_s *
SAFETY`` after it *sent* its last successful renewal; the database extended the row to
``ttl_s`` after it *ran* that statement, which is later. So the holder stops acting before
the row can expire and be taken, as long as the two clocks run at rates within 20 % of
each other. Liveness (takeover bound): a contender tries every ``ttl_s / 3``; a dead
holder's row expires at most ``ttl_s`` after its last renewal, so another node holds the
lease at most ``ttl_s * 4 / 3`` (plus one round trip) after the holder died. A holder that
stops cleanly expires its row at once, and the next contender's try takes over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from aisre.store.postgres.connections import connect

log = logging.getLogger(__name__)

SAFETY = 0.8

_ACQUIRE = """
INSERT INTO leases AS l (name, holder, term, acquired_at, expires_at)
VALUES (%(name)s, %(holder)s, 1, clock_timestamp(), clock_timestamp() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE SET
    holder = excluded.holder,
    expires_at = excluded.expires_at,
    term = CASE WHEN l.holder = excluded.holder THEN l.term ELSE l.term + 1 END,
    acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at ELSE excluded.acquired_at END
WHERE l.holder = excluded.holder OR l.expires_at < clock_timestamp()
RETURNING term
"""


def takeover_bound_s(ttl_s: float) -> float:
    """At most this long after a holder dies, another node holds the lease (plus a round trip)."""
    return ttl_s * 4 / 3


class PostgresLease:
    """A named lease in the ``leases`` table, on a connection of its own."""

    def __init__(
        self, dsn: str, name: str = "evaluator", ttl_s: float = 15.0, holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.ttl_s = float(ttl_s)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.term = 0
        self._clock = clock
        self._valid_until = float("-inf")
        self._conn: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backend = "postgresql"

    def held(self) -> bool:
        """Whether this node may act as the holder now (no database round trip)."""
        return self._clock() < self._valid_until

    def try_acquire(self) -> bool:
        """One attempt to take or renew the lease; returns whether this node holds it."""
        with self._lock:
            sent = self._clock()
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self.dsn)
                row = self._conn.execute(_ACQUIRE, {"name": self.name, "holder": self.holder, "ttl": self.ttl_s}).fetchone()
            except Exception as exc:  # the database is unreachable: holding nothing is the safe side
                log.warning("lease %s: cannot reach PostgreSQL: %s", self.name, exc)
                self._valid_until = float("-inf")
                self._drop()
                return False
            if row is None:
                self._valid_until = float("-inf")
                return False
            if int(row["term"]) != self.term:
                log.info("lease %s: %s holds it (term %s)", self.name, self.holder, row["term"])
            self.term = int(row["term"])
            self._valid_until = sent + self.ttl_s * SAFETY
            return True

    def holder_now(self) -> dict[str, Any] | None:
        """The lease row as the database has it (holder, term, expired or not)."""
        conn = connect(self.dsn)
        try:
            found = conn.execute(
                "SELECT holder, term, expires_at < clock_timestamp() AS expired FROM leases WHERE name = %s",
                [self.name]).fetchone()
            return dict(found) if found else None
        finally:
            conn.close()

    def start(self) -> None:
        """Try (and renew) every ttl/3 on a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"aisre-lease-{self.name}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self.try_acquire()
            if self._stop.wait(self.ttl_s / 3):
                return

    def stop(self, release: bool = True) -> None:
        """Stop renewing; with ``release`` give the lease up now (a clean shutdown), else let
        it expire (what a crash looks like to the others). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        with self._lock:
            was_held = self.held()
            self._valid_until = float("-inf")
            if release and was_held and self._conn is not None and not self._conn.closed:
                try:
                    # Expired now, not deleted: the next holder's term still counts up.
                    self._conn.execute(
                        "UPDATE leases SET expires_at = clock_timestamp() - interval '1 second' "
                        "WHERE name = %s AND holder = %s", [self.name, self.holder])
                except Exception as exc:
                    log.warning("lease %s: release failed (it expires by itself): %s", self.name, exc)
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
