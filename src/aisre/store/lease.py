"""Which node runs the singleton background jobs (alert and budget evaluation, change
detection and incident evidence, policy judging, the Prometheus reader).

With the control plane in the DuckDB file there is one process, which always holds the
lease (``LocalLease``). With the control plane on PostgreSQL several nodes share it and
exactly one holds the lease at a time (store/postgres/lease.py). Each job's loop asks a
``LeaseGate`` before every pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aisre.store.fencing import fenced
from aisre.store.protocol import Lease


class LocalLease:
    """The lease of a process that is the only one: always held."""

    backend = "local"
    holder = "local"
    term = 1
    ttl_s = 0.0

    def held(self) -> bool:
        return True

    def start(self) -> None:
        """Nothing to renew."""

    def stop(self, release: bool = True) -> None:
        """Nothing to give up."""


class LeaseGate:
    """Asked by a singleton job before each pass: run it only while this node holds the
    lease, and say when the term changed (another node may have written meanwhile, so
    what the job cached must be read again)."""

    def __init__(self, lease: Lease | None = None) -> None:
        self.lease = lease
        self._term: int | None = None

    def admit(self) -> tuple[bool, bool]:
        """(run this pass, the term is new since the last pass run)."""
        if self.lease is None:
            return True, False
        if not self.lease.held():
            self._term = None
            return False, False
        fresh = self.lease.term != self._term
        self._term = self.lease.term
        return True, fresh

    @contextlib.contextmanager
    def fenced(self) -> Iterator[None]:
        """Run a pass inside: its writes to a shared control store carry the term it was admitted
        under and are refused (LeaseLost) once another node holds a newer term. A local lease (one
        process) needs no fence."""
        name = getattr(self.lease, "name", None)
        if self.lease is None or name is None:
            yield
            return
        with fenced(str(name), self._term if self._term is not None else self.lease.term):
            yield
