"""Running counts of what other runs used, for session and tenant budgets decided inline.

An inline decision with a session or tenant budget needs the calls of the session's other
runs, or of the tenant's other runs in the period. Reading them from the store per decision
costs two aggregates (about 12 ms at 1,000 stored runs); these counts answer from memory.

Per (tenant, session) and per (tenant, window start) the counts are kept per trace, so the
asking run's own calls can be left out, and so each source replaces rather than adds:

- **seeded** from the store once, when a session or window is first asked about (one read
  of the calls summed per trace), and again every ``refresh_s`` (other nodes' runs);
- **judged runs**: the policy pass hands in every committed run it judges, with all its
  calls (what the store holds of that trace);
- **decisions**: an allowed call is counted for its run at once, with the run's history,
  before its span is exported.

Per trace and measure the count is the larger of what the store holds (seed, judged run)
and what decisions announced, so a call decided and then committed is counted once. Once
every run is committed the counts equal the store read (``PolicyService.ledgers``); before
that they also count calls decided but not yet exported, which the store read misses.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aisre.evaluate.policy.engine import (
    MODEL_MEASURES,
    Action,
    Ledger,
    RunContext,
    Totals,
    period_start,
)
from aisre.evaluate.policy.spec import Policy
from aisre.normalize.attribute_rules import hash_value
from aisre.store.protocol import PolicyStore

Vector = list[float]  # model_calls, tool_calls, tokens, cost_usd
_ZERO = (0.0, 0.0, 0.0, 0.0)
# Seed reads ask for calls up to here (every call stored so far).
_END = 2**62


def _vector(actions: Iterable[tuple[str, int, float]]) -> Vector:
    out = [0.0, 0.0, 0.0, 0.0]
    for kind, tokens, cost in actions:
        out[0 if kind == "model" else 1] += 1
        out[2] += tokens
        out[3] += cost
    return out


class _Entry:
    """The counts of one session or one tenant window, per trace."""

    __slots__ = ("forms", "inline", "seeded_at", "since_ns", "stored", "total", "until_ns")

    def __init__(self, since_ns: int, until_ns: int, forms: tuple[str, ...] = ()) -> None:
        # Calls started in [since_ns, until_ns) count: a tenant window's period; all for a session.
        self.since_ns, self.until_ns = since_ns, until_ns
        self.forms = forms  # sessions: the id as sent and as stored (hashed)
        self.stored: dict[str, Vector] = {}
        self.inline: dict[str, Vector] = {}
        self.total = [0.0, 0.0, 0.0, 0.0]
        self.seeded_at = 0.0

    def of(self, trace_id: str) -> tuple[float, ...]:
        stored, inline = self.stored.get(trace_id, _ZERO), self.inline.get(trace_id, _ZERO)
        return tuple(max(a, b) for a, b in zip(stored, inline, strict=True))

    def put(self, trace_id: str, vector: Vector, inline: bool) -> None:
        """Raise the trace's count (stored or announced) to ``vector`` where it is larger."""
        before = self.of(trace_id)
        side = self.inline if inline else self.stored
        side[trace_id] = [max(a, b) for a, b in zip(side.get(trace_id, _ZERO), vector, strict=True)]
        after = self.of(trace_id)
        for i in range(4):
            self.total[i] += after[i] - before[i]

    def holds(self, start_ns: int) -> bool:
        """Whether a call started at ``start_ns`` counts here (no start: it does)."""
        return not start_ns or self.since_ns <= start_ns < self.until_ns

    def others(self, trace_id: str) -> dict[str, float]:
        own = self.of(trace_id)
        return {name: self.total[i] - own[i] for i, name in enumerate(MODEL_MEASURES)}


class UsageCounts:
    """Session and tenant-window counts for inline decisions (thread-safe)."""

    def __init__(self, store: PolicyStore, digest_key: bytes = b"", refresh_s: float = 30.0,
                 max_sessions: int = 10_000, max_windows: int = 8, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.digest_key = digest_key
        self.refresh_s = refresh_s
        self.max_sessions = max_sessions
        self.max_windows = max_windows
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[tuple[str, str], _Entry] = OrderedDict()  # (tenant, id as sent)
        self._forms: dict[tuple[str, str], _Entry] = {}  # (tenant, id as sent or stored)
        self._windows: dict[str, OrderedDict[int, _Entry]] = {}  # tenant → window start → entry
        self.seeds = 0  # store reads made (for tests and /metrics)

    # -- what a decision needs ------------------------------------------------------

    @staticmethod
    def windows(policies: Sequence[Policy], at_ns: int) -> list[tuple[int, int]]:
        """The tenant windows (start, end) the policies' tenant budgets ask about at ``at_ns``
        (periods starting together share one: the store read counts [start, at_ns) alike)."""
        ends: dict[int, int] = {}
        for period in {r.period_s for p in policies for r in p.rules if r.kind == "budget" and r.per == "tenant"}:
            start = period_start(at_ns, period)
            end = start + int(period * 1e9)
            ends[start] = min(ends.get(start, end), end)
        return sorted(ends.items())

    def ready(self, tenant: str, session: str | None, windows: Sequence[tuple[int, int]], scopes: set[str]) -> bool:
        """Whether answering needs no store read (every entry known and fresh)."""
        now = self._clock()
        with self._lock:
            entries: list[_Entry | None] = []
            if "tenant" in scopes:
                entries += [self._windows.get(tenant, OrderedDict()).get(s) for s, _ in windows]
            if "session" in scopes and session:
                entries.append(self._sessions.get((tenant, session)))
        return all(e is not None and now - e.seeded_at < self.refresh_s for e in entries)

    def ledgers(self, scopes: set[str], ctx: RunContext, windows: Sequence[tuple[int, int]]) -> dict[str, Ledger]:
        """The other runs' totals for an inline decision of ``ctx`` (as the store read gives
        them), seeding what is missing or stale."""
        found: dict[str, Ledger] = {}
        if "tenant" in scopes:
            found["tenant"] = Totals({s: self._window(ctx.tenant, s, e).others(ctx.trace_id) for s, e in windows})
        if "session" in scopes and ctx.session:
            found["session"] = Totals({0: self._session(ctx.tenant, ctx.session).others(ctx.trace_id)})
        return found

    def decided(self, ctx: RunContext, history: Sequence[Action], action: Action) -> None:
        """Count an allowed call for its run at once (with the run's history): the run's calls
        as the caller announced them, until its spans are committed."""
        if not ctx.trace_id:
            return  # an anonymous run cannot be told apart from the others
        calls = [*history, action]
        with self._lock:
            if ctx.session and (entry := self._sessions.get((ctx.tenant, ctx.session))) is not None:
                entry.put(ctx.trace_id, _vector((a.type, a.tokens, a.cost_usd) for a in calls), inline=True)
            for entry in self._windows.get(ctx.tenant, OrderedDict()).values():
                if entry.holds(action.start_ns):
                    # History without start times counts as in the window (as the rule does).
                    mine = [a for a in calls if entry.holds(a.start_ns)]
                    entry.put(ctx.trace_id, _vector((a.type, a.tokens, a.cost_usd) for a in mine), inline=True)

    def committed(self, tenant: str, trace_id: str, session: str | None, actions: Sequence[Action]) -> None:
        """A committed run as judged (every call the store holds of it)."""
        with self._lock:
            if session and (entry := self._forms.get((tenant, session))) is not None:
                entry.put(trace_id, _vector((a.type, a.tokens, a.cost_usd) for a in actions), inline=False)
            for entry in self._windows.get(tenant, OrderedDict()).values():
                mine = [a for a in actions if a.start_ns and entry.holds(a.start_ns)]
                entry.put(trace_id, _vector((a.type, a.tokens, a.cost_usd) for a in mine), inline=False)

    def forget(self, tenant: str | None = None) -> None:
        """Drop the counts (of one tenant): the next decision seeds them again."""
        with self._lock:
            for key in [k for k in self._sessions if tenant is None or k[0] == tenant]:
                entry = self._sessions.pop(key)
                for form in entry.forms:
                    self._forms.pop((key[0], form), None)
            for t in [t for t in self._windows if tenant is None or t == tenant]:
                self._windows.pop(t)

    # -- entries ------------------------------------------------------------------

    def _session(self, tenant: str, session: str) -> _Entry:
        with self._lock:
            entry = self._sessions.get((tenant, session))
            if entry is not None:
                self._sessions.move_to_end((tenant, session))
        if entry is None or self._clock() - entry.seeded_at >= self.refresh_s:
            # The store holds the id as ingest left it (hashed by default): both forms.
            forms = tuple(dict.fromkeys([session, str(hash_value(self.digest_key, session))]))
            rows = self.store.policy_usage_by_trace(tenant, 0, _END, list(forms))
            with self._lock:
                entry = self._sessions.get((tenant, session))
                if entry is None:
                    entry = self._sessions[(tenant, session)] = _Entry(0, _END, forms)
                    for form in forms:
                        self._forms[(tenant, form)] = entry
                    while len(self._sessions) > self.max_sessions:
                        (old_tenant, _), old = self._sessions.popitem(last=False)
                        for form in old.forms:
                            self._forms.pop((old_tenant, form), None)
                self._seed(entry, rows)
        return entry

    def _window(self, tenant: str, start: int, end: int) -> _Entry:
        with self._lock:
            entry = self._windows.get(tenant, OrderedDict()).get(start)
        if entry is None or self._clock() - entry.seeded_at >= self.refresh_s:
            rows = self.store.policy_usage_by_trace(tenant, start, end)
            with self._lock:
                windows = self._windows.setdefault(tenant, OrderedDict())
                entry = windows.get(start)
                if entry is None:
                    entry = windows[start] = _Entry(start, end)
                    while len(windows) > self.max_windows:
                        windows.popitem(last=False)
                self._seed(entry, rows)
        return entry

    def _seed(self, entry: _Entry, rows: list[dict[str, Any]]) -> None:
        """(Lock held.) Raise each trace's stored count to what the store read found."""
        for r in rows:
            entry.put(str(r["trace_id"]), [float(r["model_calls"]), float(r["tool_calls"]), float(r["tokens"]),
                                           float(r["cost_usd"])], inline=False)
        entry.seeded_at = self._clock()
        self.seeds += 1
