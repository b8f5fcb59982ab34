"""API keys at the door: who is calling, for which tenant, with which role.

Auth is on as soon as one key exists. Until then (a loopback-only install such as
``make demo``) every caller acts as admin of the default tenant; a public interface is
refused at start without keys (see ``app.check_bind``).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from aisre.core.auth import (
    ROLES,
    Forbidden,
    Principal,
    Role,
    Unauthenticated,
    bind_caller,
    digest,
    key_from_headers,
    new_secret,
)
from aisre.core.errors import PermanentError

COOKIE = "aisre_key"
# Reachable without a key: liveness, the login form and the UI's static assets.
PUBLIC_PATHS = ("/healthz", "/login")
# Reads that reveal who holds which access: admin only.
ADMIN_READS = ("/api/keys", "/api/audit")


class KeyTables(Protocol):
    def add_key(self, key: dict[str, Any], actor: str) -> None: ...

    def revoke_key(self, tenant: str, key_id: str, actor: str) -> dict[str, Any]: ...

    def active_keys(self) -> list[dict[str, Any]]: ...


class KeyRing:
    """Active keys by digest, loaded from the store and kept in step with create/revoke."""

    def __init__(self, store: KeyTables, default_tenant: str) -> None:
        self._store = store
        self._default = Principal("local", default_tenant, "admin", "auth off")
        self._lock = threading.Lock()
        self._by_digest: dict[str, Principal] = {}
        self.reload()

    def reload(self) -> None:
        keys = {
            row["digest"]: Principal(row["key_id"], row["tenant"], row["role"], row["name"])
            for row in self._store.active_keys()
        }
        with self._lock:
            self._by_digest = keys

    @property
    def enabled(self) -> bool:
        with self._lock:
            return bool(self._by_digest)

    def principal(self, secret: str | None) -> Principal:
        """Who ``secret`` is; the local admin while no key exists."""
        with self._lock:
            if not self._by_digest:
                return self._default
            if not secret:
                raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>' or 'x-aisre-key'")
            found = self._by_digest.get(digest(secret))
        if found is None:
            raise Unauthenticated("unknown or revoked API key")
        return found

    def tenant_for_headers(self, header: Callable[[str], str | None], need: Role = "ingest") -> str:
        """For the gRPC receiver: the tenant of the key in these headers, if it may ``need``."""
        principal = self.principal(key_from_headers(header))
        if not principal.may(need):
            raise Forbidden(f"key {principal.key_id} has role {principal.role!r}; this needs {need!r}")
        return principal.tenant

    def create(self, tenant: str, role: str, name: str, actor: str) -> tuple[str, dict[str, Any]]:
        """A new key: returns the secret (shown once) and its public record."""
        if role not in ROLES:
            raise PermanentError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        if not tenant.strip():
            raise PermanentError("tenant must not be empty")
        secret = new_secret()
        record = {"key_id": "k_" + secrets.token_hex(6), "tenant": tenant, "role": role, "name": name}
        self._store.add_key({**record, "digest": digest(secret)}, actor)
        self.reload()
        return secret, record

    def revoke(self, tenant: str, key_id: str, actor: str) -> dict[str, Any]:
        record = self._store.revoke_key(tenant, key_id, actor)
        self.reload()
        return record


def required_role(method: str, path: str) -> Role | None:
    """What a request needs: None for public paths."""
    if path in PUBLIC_PATHS or path.startswith("/static/"):
        return None
    # What machines send: telemetry, evaluation scores, Alertmanager alerts, deploy markers.
    if method == "POST" and path in ("/v1/traces", "/api/scores", "/api/alertmanager", "/api/changes"):
        return "ingest"
    if method == "POST" and path == "/api/gate":
        return "read"  # a judgment with the gate file in the body; changes nothing but history
    if path.startswith(ADMIN_READS):
        return "admin"
    if method in ("GET", "HEAD"):
        return "read"
    return "admin"


class AuthMiddleware:
    """Resolves the caller once per request and binds its tenant for the store's checks."""

    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        need = required_role(scope["method"], scope["path"])
        secret = key_from_headers(headers.get) or _cookie(headers.get("cookie"))
        try:
            principal = self.keys.principal(secret)
            if need is not None and not principal.may(need):
                raise Forbidden(f"key {principal.key_id} has role {principal.role!r}; this needs {need!r}")
        except (Unauthenticated, Forbidden) as error:
            if need is None:
                await self.app(scope, receive, send)
                return
            await _refuse(scope, send, error)
            return
        scope["aisre.principal"] = principal
        bind_caller(principal.tenant)
        await self.app(scope, receive, send)


def _cookie(raw: str | None) -> str | None:
    for part in (raw or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


async def _refuse(scope: Scope, send: Send, error: Exception) -> None:
    status = 401 if isinstance(error, Unauthenticated) else 403
    message = getattr(error, "message", str(error))
    headers = [(b"content-type", b"application/json")]
    accepts_html = any(k == b"accept" and b"text/html" in v for k, v in scope["headers"])
    if status == 401 and scope["method"] == "GET" and accepts_html:
        # A browser without a key goes to the login form.
        await send({"type": "http.response.start", "status": 303, "headers": [(b"location", b"/login")]})
        await send({"type": "http.response.body", "body": b""})
        return
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="aisre"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps({"error": message})})

