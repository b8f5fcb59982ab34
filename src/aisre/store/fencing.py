"""Fencing tokens: the writes of an evaluation pass carry the lease term the pass started under.

A lease alone cannot stop a holder that was paused (a long GC, a stopped VM, a laptop lid)
past its TTL: when it wakes it still believes it holds the lease and finishes its pass,
while another node has taken over. So a pass runs inside ``fenced(name, term)`` (the
evaluator's ``LeaseGate`` sets it), and the control store checks, in the same transaction as
each write, that the lease row still has that term and has not expired; otherwise the write
is refused with ``LeaseLost`` and nothing of it is applied. The check locks the lease row
FOR SHARE until the write commits, so a takeover waits for a write already admitted
instead of overlapping it. Writes made outside a pass (API requests: a person acknowledging)
carry no fence and are not checked.

The fence travels in a context variable: each thread has its own, so only the thread
running the pass is fenced.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Fence:
    """The lease (by name) and term a pass started under."""

    lease: str
    term: int


_current: ContextVar[Fence | None] = ContextVar("aisre_fence", default=None)


def current_fence() -> Fence | None:
    """The fence of the pass running on this thread, if any."""
    return _current.get()


@contextmanager
def fenced(lease: str, term: int) -> Iterator[Fence]:
    """Writes made inside carry ``(lease, term)`` and are refused once the term is over."""
    fence = Fence(lease, term)
    token = _current.set(fence)
    try:
        yield fence
    finally:
        _current.reset(token)
