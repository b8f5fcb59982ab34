"""API keys, roles and the caller's tenant.

A key belongs to one tenant and has one role: ``ingest`` (send telemetry and scores),
``read`` (every GET) or ``admin`` (everything, including keys and SLOs). Keys are random
256-bit secrets, so a SHA-256 digest is enough to store them: there is nothing to
brute-force, and a slow password hash would only slow every request down.

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

from aisre.core.errors import AisreError

Role = Literal["ingest", "read", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
KEY_PREFIX = "aisre_"


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
        return self.role == "admin" or self.role == need


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
