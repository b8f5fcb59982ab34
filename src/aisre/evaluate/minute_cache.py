"""Dense per-minute good/total counts per SLO, kept in memory and refreshed from the store's
change journal.

Reading 30 days of minutes for 100 SLOs from the store on every evaluation costs as much as
the number of minutes with traffic, which grows with the data (at 10M spans it was ~95 % of
an evaluation). Here each SLO's window is read once, kept as two arrays with a day of
headroom ahead, and afterwards only the minutes the rollups rebuilt are re-read: an
evaluation then costs the same at 1M and 100M spans.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from aisre.evaluate.budget import MINUTE_NS, Counts
from aisre.store.protocol import SloMinuteSource

# Minutes allocated past the requested end, so the window can slide without a reload.
HEADROOM_MINUTES = 1440
# Past this many changed minutes (a backfill, a big late batch) one full reload is cheaper.
DELTA_MAX_MINUTES = 1000


@dataclass
class _Span:
    """One SLO's counts for minutes [start_ns, start_ns + len minutes)."""

    start_ns: int
    good: Counts
    total: Counts

    @property
    def end_ns(self) -> int:
        return self.start_ns + int(self.total.shape[0]) * MINUTE_NS

    def covers(self, start_ns: int, end_ns: int) -> bool:
        return self.start_ns <= start_ns and end_ns <= self.end_ns

    def put(self, minute_ns: int, good: int, total: int) -> None:
        i = (minute_ns - self.start_ns) // MINUTE_NS
        if 0 <= i < self.total.shape[0]:
            self.good[i] = good
            self.total[i] = total


@dataclass
class _Tenant:
    generation: int = -1
    spans: dict[str, _Span] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Per SLO, the first minute with events (None: read it from the store on next use),
    # and the generation it was read at.
    first: dict[str, int] | None = None
    first_generation: int = -1


class MinuteCache:
    """Per-tenant, per-SLO minute arrays; ``read`` answers a range as fresh copies."""

    def __init__(self, store: SloMinuteSource, headroom_minutes: int = HEADROOM_MINUTES) -> None:
        self._store = store
        self._headroom_ns = headroom_minutes * MINUTE_NS
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()

    def read(self, tenant: str, ranges: dict[str, tuple[int, int]]) -> dict[str, tuple[Counts, Counts]]:
        """(good, total) for each SLO over its minute-aligned [start_ns, end_ns)."""
        with self._lock:
            state = self._tenants.setdefault(tenant, _Tenant())
        with state.lock:
            self._sync(tenant, state)
            missing = {slo: r for slo, r in ranges.items() if slo not in state.spans or not state.spans[slo].covers(*r)}
            if missing:
                self._load(tenant, state, missing)
            out: dict[str, tuple[Counts, Counts]] = {}
            for slo, (start, end) in ranges.items():
                span = state.spans[slo]
                i, j = (start - span.start_ns) // MINUTE_NS, (end - span.start_ns) // MINUTE_NS
                out[slo] = (span.good[i:j].copy(), span.total[i:j].copy())
            return out

    def first_minutes(self, tenant: str, slos: list[str]) -> dict[str, int]:
        """Per SLO of ``slos`` that has events, the start of its first minute with events."""
        with self._lock:
            state = self._tenants.setdefault(tenant, _Tenant())
        with state.lock:
            self._sync(tenant, state)
            # An SLO without events yet may have some now: read again once per new generation.
            stale = state.first_generation != state.generation and any(s not in (state.first or {}) for s in slos)
            if state.first is None or stale:
                state.first = self._store.slo_first_minutes(tenant)
                state.first_generation = state.generation
            return {s: state.first[s] for s in slos if s in state.first}

    def _sync(self, tenant: str, state: _Tenant) -> None:
        """Apply the minutes rebuilt since the last read (all of them after a rules change)."""
        generation, changed = self._store.slo_changes(tenant, state.generation)
        if changed and state.first and min(changed) < max(state.first.values()):
            state.first = None  # minutes before some SLO's first one changed: read again
        if state.generation < 0 or changed is None or len(changed) > DELTA_MAX_MINUTES:
            state.spans.clear()
            state.first = None
        elif changed and state.spans:
            minutes = np.fromiter(changed, dtype=np.int64, count=len(changed))
            # A rebuilt minute may have lost its row (no runs left), so clear before filling.
            wanted: set[int] = set()
            for span in state.spans.values():
                idx = (minutes - span.start_ns) // MINUTE_NS
                idx = idx[(idx >= 0) & (idx < span.total.shape[0])]
                span.good[idx] = 0
                span.total[idx] = 0
                wanted.update((idx * MINUTE_NS + span.start_ns).tolist())
            for slo, minute, good, total in self._store.slo_minutes_at(tenant, sorted(wanted)):
                if slo in state.spans:
                    state.spans[slo].put(minute, good, total)
        state.generation = generation

    def _load(self, tenant: str, state: _Tenant, missing: dict[str, tuple[int, int]]) -> None:
        """Read the missing SLOs' ranges (plus headroom) in one query."""
        start = min(r[0] for r in missing.values())
        end = max(r[1] for r in missing.values()) + self._headroom_ns
        rows = self._store.slo_minute_arrays(tenant, start, end) if len(missing) > 1 else (
            self._store.slo_minute_arrays(tenant, start, end, next(iter(missing)))
        )
        empty = np.zeros(0, dtype=np.int64)
        for slo, (first, last) in missing.items():
            last += self._headroom_ns
            n = (last - first) // MINUTE_NS
            good = np.zeros(n, dtype=np.int64)
            total = np.zeros(n, dtype=np.int64)
            minute, g, t = rows.get(slo, (empty, empty, empty))
            idx = (np.asarray(minute, dtype=np.int64) - first) // MINUTE_NS
            keep = (idx >= 0) & (idx < n)
            good[idx[keep]] = np.asarray(g, dtype=np.int64)[keep]
            total[idx[keep]] = np.asarray(t, dtype=np.int64)[keep]
            state.spans[slo] = _Span(first, good, total)
