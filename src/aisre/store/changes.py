"""A bounded journal of which minutes of each tenant's SLO counts changed, so readers that
keep per-minute series in memory refresh them with a delta instead of re-reading every
minute of every window on each evaluation."""

from __future__ import annotations

import threading
from collections import deque


class MinuteJournal:
    """Generation-numbered records of changed minutes per tenant.

    ``record`` is called after the change is committed, so a reader that takes the
    generation first and reads afterwards never misses a change: at worst it applies
    one twice, which is harmless because it re-reads the minutes' current counts.
    """

    def __init__(self, max_minutes: int = 500_000) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        # (generation, tenant, minutes changed, or None for "everything of the tenant")
        self._log: deque[tuple[int, str, frozenset[int] | None]] = deque()
        self._kept = 0
        self._max = max_minutes
        # Readers whose generation is below this missed a dropped record.
        self._floor = 0

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def record(self, tenant: str, minutes: set[int] | None) -> None:
        """Minutes of ``tenant`` changed (None: all of them, e.g. SLO rules replaced)."""
        with self._lock:
            self._generation += 1
            entry = frozenset(minutes) if minutes is not None else None
            self._log.append((self._generation, tenant, entry))
            self._kept += len(entry) if entry is not None else 1
            while self._kept > self._max and len(self._log) > 1:
                generation, _, dropped = self._log.popleft()
                self._kept -= len(dropped) if dropped is not None else 1
                self._floor = generation

    def since(self, tenant: str, generation: int) -> tuple[int, set[int] | None]:
        """(current generation, minutes of ``tenant`` changed after ``generation``);
        None instead of the minutes when the reader must reload everything."""
        with self._lock:
            if generation < self._floor:
                return self._generation, None
            changed: set[int] = set()
            for record_generation, record_tenant, minutes in reversed(self._log):
                if record_generation <= generation:
                    break
                if record_tenant != tenant:
                    continue
                if minutes is None:
                    return self._generation, None
                changed.update(minutes)
            return self._generation, changed
