"""The two kinds of failure every stage speaks (after the Collector's consumererror)."""

from __future__ import annotations


class AisreError(Exception):
    """Base class; carries a message meant for the person who sent the input."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class PermanentError(AisreError):
    """Bad input: refuse it with a clear message and never retry (HTTP 400)."""


class UnsupportedMediaType(PermanentError):
    """The body's content type is not one we decode (HTTP 415)."""


class PayloadTooLarge(PermanentError):
    """The body is over the configured size limit (HTTP 413)."""


class NotFound(PermanentError):
    """The thing asked for does not exist (HTTP 404)."""


class Conflict(PermanentError):
    """The request is well formed but the current state does not allow it (HTTP 409)."""


class StaleState(Conflict):
    """A conditional update found the row no longer in the state it expected: another
    writer (another node, or a second person) got there first. ``state`` is what it is now."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


class LeaseLost(Conflict):
    """A write of an evaluation pass carried a lease term that is over (another node took the
    evaluator lease while this one was paused): refused, nothing applied (store/fencing.py)."""


class RetryableError(AisreError):
    """A transient refusal: the sender should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0, overloaded: bool = True, reason: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # overloaded → 429 / RESOURCE_EXHAUSTED; otherwise → 503 / UNAVAILABLE.
        self.overloaded = overloaded
        # Why, as /metrics counts refusals (aisre_ingest_refused_requests{reason}).
        self.reason = reason or ("queue_full" if overloaded else "unavailable")
