"""API keys, roles and the caller's tenant.

A key belongs to one tenant and has one role: ``ingest`` (send telemetry and scores),
``read`` (every GET) or ``admin`` (everything, including keys and SLOs). Keys are random
256-bit secrets, so a SHA-256 digest is enough to store them: there is nothing to
brute-force, and a slow password hash would only slow every request down.

Whether keys are needed at all is decided once at start from configuration and the store,
never from how many keys happen to be active (see :func:`auth_required`): revoking keys can
close a server, never open it.

The caller's tenant travels in a context variable set once per request; the store checks
every tenant it is asked about against it, so a route that passed the wrong tenant would
fail loudly instead of leaking another tenant's data.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, get_args

from aisre.core.errors import AisreError, PermanentError
from aisre.core.timefmt import rfc3339

Role = Literal["ingest", "read", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
AuthMode = Literal["auto", "required", "off"]
AUTH_MODES: tuple[str, ...] = get_args(AuthMode)
KEY_PREFIX = "aisre_"
_LATEST_NS = 2**63 - 1  # times are stored as signed 64-bit nanoseconds


class Unauthenticated(AisreError):
    """No key, or a key aisre does not know (HTTP 401, gRPC UNAUTHENTICATED)."""


class Forbidden(AisreError):
    """A known key whose role or tenant does not allow this (HTTP 403, PERMISSION_DENIED)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id (or "local" when auth is off), tenant and role."""

    key_id: str
    tenant: str
    role: Role
    name: str = ""

    def may(self, need: Role) -> bool:
        """Whether this key's role allows what ``need`` allows (admin allows everything)."""
        return self.role == "admin" or self.role == need

    def may_any(self, needs: tuple[Role, ...]) -> bool:
        """Whether any of ``needs`` is allowed."""
        return any(self.may(n) for n in needs)


def auth_required(mode: str, latched: bool, public: bool) -> bool:
    """Whether requests need a key: ``required`` always; ``off`` never (loopback only, checked
    at start); ``auto`` once the store has ever had a key (``latched``) or on a public interface."""
    if mode not in AUTH_MODES:
        raise PermanentError(f"setting 'auth' must be one of {', '.join(AUTH_MODES)}; got {mode!r}")
    if mode == "off":
        return False
    return mode == "required" or latched or public


def parse_expiry(text: str, now_ns: int, field: str = "expires") -> int:
    """A key's expiry: a duration from now (``90d``, ``12h``, ``2w``) or an RFC 3339 time;
    it must lie in the future."""
    from datetime import datetime

    value = text.strip()
    unit_ns = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}
    if value[:-1].isdigit() and value[-1:] in unit_ns:
        at = now_ns + int(value[:-1]) * unit_ns[value[-1]]
    else:
        try:
            parsed = datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise PermanentError(
                f"{field} must be a duration such as 90d or 12h, or an RFC 3339 time such as "
                f"2027-01-31T00:00:00Z; got {text!r}"
            ) from None
        if parsed.tzinfo is None:
            raise PermanentError(f"{field} must carry a time zone (e.g. a trailing Z); got {text!r}")
        at = int(parsed.timestamp()) * 10**9 + parsed.microsecond * 1000
    if at <= now_ns:
        raise PermanentError(f"{field} must be in the future; got {text!r} ({rfc3339(at)})")
    if at > _LATEST_NS:
        raise PermanentError(f"{field} must be before {rfc3339(_LATEST_NS)}, the latest time aisre stores; got {text!r}")
    return at


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_from_headers(header: Callable[[str], str | None]) -> str | None:
    """The key an OpenTelemetry exporter can send: ``Authorization: Bearer …`` or
    ``x-aisre-key: …`` (``header`` looks a lower-case header name up)."""
    value = header("x-aisre-key")
    if value:
        return value.strip()
    auth = header("authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


_caller_tenant: ContextVar[str | None] = ContextVar("aisre_caller_tenant", default=None)


@contextmanager
def acting_for(tenant: str) -> Iterator[None]:
    """Run the block on behalf of ``tenant``: the store refuses any other tenant in it."""
    token = _caller_tenant.set(tenant)
    try:
        yield
    finally:
        _caller_tenant.reset(token)


@contextmanager
def as_the_process() -> Iterator[None]:
    """Run the block for the process itself, not the request's tenant: for process-wide
    state a request triggers (reloading every tenant's keys after one is created)."""
    token = _caller_tenant.set(None)
    try:
        yield
    finally:
        _caller_tenant.reset(token)


def bind_caller(tenant: str) -> None:
    """Set the caller's tenant for the rest of this context (one request)."""
    _caller_tenant.set(tenant)


def caller_tenant() -> str | None:
    """The tenant this request acts for; None outside requests (the process itself)."""
    return _caller_tenant.get()


def check_tenant(tenant: str) -> str:
    """``tenant`` if the current caller may see it; Forbidden otherwise."""
    caller = _caller_tenant.get()
    if caller is not None and caller != tenant:
        raise Forbidden(f"this key belongs to tenant {caller!r}; it cannot read tenant {tenant!r}")
    return tenant
