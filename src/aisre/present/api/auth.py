"""API keys at the door: who is calling, for which tenant, with which role.

Whether a key is needed is decided at start (setting ``auth``: ``auto``, ``required`` or
``off``) and can only switch on while the server runs, when the first key is created: a
store that has ever had a key keeps auth on after every key is revoked, and a public
interface always needs keys (see ``core.auth.auth_required`` and ``app.check_bind``).
With auth off (loopback, no key ever, e.g. ``make demo``) every caller acts as admin of the
default tenant.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from aisre.core.auth import (
    ROLES,
    Forbidden,
    Principal,
    Role,
    Unauthenticated,
    as_the_process,
    auth_required,
    bind_caller,
    digest,
    key_from_headers,
    new_secret,
)
from aisre.core.errors import Conflict, PermanentError
from aisre.core.timefmt import rfc3339
from aisre.store.protocol import KeyTables

COOKIE = "aisre_key"
# Reachable without a key: liveness, the login form and the UI's static assets.
PUBLIC_PATHS = ("/healthz", "/login", "/logout")
# Reads that reveal who holds which access, or other tenants: admin only.
ADMIN_READS = ("/api/keys", "/api/audit", "/metrics/all", "/api/policy/decisions")
_FALSE = {"0", "false", "no", "off", ""}
GATE_RECORD_HINT = (
    "recording a release verdict needs an ingest or admin key; judge without recording with "
    "record=false (aisre gate --no-record)"
)


class KeyRing:
    """Active keys by digest, loaded from the store and kept in step with create/revoke.

    ``mode`` and ``public`` (a non-loopback interface) decide with the store's latch whether
    keys are required; once required, nothing that happens to keys makes them optional again.
    """

    def __init__(
        self, store: KeyTables, default_tenant: str, mode: str = "auto", public: bool = False,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._store = store
        self._default = Principal("local", default_tenant, "admin", "auth off")
        self._mode = mode
        self._public = public
        self._clock = clock
        self._lock = threading.Lock()
        self._by_digest: dict[str, tuple[Principal, int | None]] = {}
        self._required = auth_required(mode, False, public)
        self.reload()

    def reload(self) -> None:
        """Re-read the keys (and the latch) from the store: every tenant's, whoever asked."""
        with as_the_process():
            rows = self._store.active_keys()
        keys = {
            row["digest"]: (Principal(row["key_id"], row["tenant"], row["role"], row["name"]), row.get("expires_ns"))
            for row in rows
        }
        latched = bool(rows) or self._store.auth_latched()
        required = auth_required(self._mode, latched, self._public)
        with self._lock:
            self._by_digest = keys
            self._required = self._required or required  # one way: on, never back off

    @property
    def enabled(self) -> bool:
        """Whether requests need a key."""
        with self._lock:
            return self._required

    def ever_had_keys(self) -> bool:
        """Whether the store has ever held a key (its auth latch)."""
        return self._store.auth_latched()

    def principal(self, secret: str | None) -> Principal:
        """Who ``secret`` is; the local admin while auth is off."""
        with self._lock:
            if not self._required:
                return self._default
            if not secret:
                raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>' or 'x-aisre-key'")
            found = self._by_digest.get(digest(secret))
        if found is None:
            raise Unauthenticated("unknown or revoked API key")
        principal, expires_ns = found
        if expires_ns is not None and expires_ns <= self._clock():
            raise Unauthenticated(
                f"API key {principal.key_id} expired at {rfc3339(expires_ns)}; "
                "ask an admin of your tenant for a new key (aisre keys create)"
            )
        return principal

    def tenant_for_headers(self, header: Callable[[str], str | None], need: Role = "ingest") -> str:
        """For the gRPC receiver: the tenant of the key in these headers, if it may ``need``."""
        principal = self.principal(key_from_headers(header))
        if not principal.may(need):
            raise Forbidden(f"key {principal.key_id} has role {principal.role!r}; this needs {need!r}")
        return principal.tenant

    def create(
        self, tenant: str, role: str, name: str, actor: str, expires_ns: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new key: returns the secret (shown once) and its public record."""
        if role not in ROLES:
            raise PermanentError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        if not tenant.strip():
            raise PermanentError("tenant must not be empty")
        if expires_ns is not None and expires_ns <= self._clock():
            raise PermanentError(f"expires_at must be in the future; got {rfc3339(expires_ns)}")
        secret = new_secret()
        record = {"key_id": "k_" + secrets.token_hex(6), "tenant": tenant, "role": role, "name": name,
                  "expires_ns": expires_ns}
        self._store.add_key({**record, "digest": digest(secret)}, actor)
        self.reload()
        return secret, record

    def create_over_api(
        self, tenant: str, role: str, name: str, actor: str, expires_ns: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Like :meth:`create`, but the store's first key must be an admin key: it turns auth
        on for good, and a first read or ingest key would leave nobody able to manage keys."""
        if role != "admin" and not self.ever_had_keys():
            raise Conflict(
                "the first key of this store turns auth on for good, so it must be an admin key "
                '(POST /api/keys {"role": "admin"}); create read and ingest keys with it afterwards'
            )
        return self.create(tenant, role, name, actor, expires_ns)

    def revoke(self, tenant: str, key_id: str, actor: str, keep_admin: bool = False) -> dict[str, Any]:
        """Revoke a key; with ``keep_admin`` the tenant's last usable admin key is refused (409)."""
        record = self._store.revoke_key(tenant, key_id, actor, keep_admin)
        self.reload()
        return record


def gate_records(method: str, query: str) -> bool:
    """Whether a request to /api/gate keeps its verdict: POST by default, GET only with
    ``record=true``; a ``record`` value that is not plainly false counts as recording."""
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "record"]
    if not values:
        return method == "POST"
    return any(v.lower() not in _FALSE for v in values)


def required_roles(method: str, path: str, query: str = "") -> tuple[Role, ...] | None:
    """The roles any of which a request needs (admin always qualifies); None for public paths."""
    if path in PUBLIC_PATHS or path.startswith("/static/"):
        return None
    # What machines send: telemetry, evaluation scores, Alertmanager alerts, deploy markers.
    if method == "POST" and path in ("/v1/traces", "/v1/metrics", "/api/scores", "/api/alertmanager", "/api/changes",
                                     "/api/scores/evidently"):
        return ("ingest",)
    if method == "POST" and path == "/api/events":
        return ("ingest",)  # pipeline runs and dataset updates, sent by schedulers' hooks
    if method == "POST" and path in ("/api/gameday/start", "/api/gameday/stop"):
        return ("ingest",)  # drill markers, sent like deploy markers
    if method == "POST" and path == "/api/policy/decide":
        return ("ingest",)  # an agent runtime asks with the key it sends its traces with
    if path == "/api/gate" and method in ("GET", "HEAD", "POST"):
        # Judging only reads; keeping the verdict writes history and the audit log, which a
        # release pipeline does with the key it sends deploy markers with.
        return ("ingest",) if gate_records(method, query) else ("read", "ingest")
    if method == "POST" and path == "/gate":
        return ("ingest",)  # the UI's "Judge now" keeps the verdict
    if method == "POST" and path.startswith("/api/readiness/"):
        return ("read", "ingest")  # a template in the body; the checklist only reads
    if path.startswith(ADMIN_READS):
        return ("admin",)
    if method in ("GET", "HEAD"):
        return ("read",)
    return ("admin",)


def _forbidden(principal: Principal, need: tuple[Role, ...], path: str) -> Forbidden:
    if path in ("/api/gate", "/gate") and need == ("ingest",):
        return Forbidden(f"key {principal.key_id} has role {principal.role!r}; {GATE_RECORD_HINT}")
    return Forbidden(f"key {principal.key_id} has role {principal.role!r}; this needs {' or '.join(repr(n) for n in need)}")


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
        query = scope.get("query_string", b"").decode("latin-1")
        need = required_roles(scope["method"], scope["path"], query)
        header_secret = key_from_headers(headers.get)
        secret = header_secret or _cookie(headers.get("cookie"))
        try:
            principal = self.keys.principal(secret)
            if need is not None and not principal.may_any(need):
                raise _forbidden(principal, need, scope["path"])
            from_cookie = header_secret is None and secret and principal.key_id != "local"
            if from_cookie and scope["method"] != "POST" and need == ("ingest",):
                # The one GET that writes (/api/gate?record=true): the SameSite=Lax cookie rides
                # along on links from other sites, so a link must not record with it.
                raise Forbidden("record=true on a GET needs the key in a header (Authorization or x-aisre-key), "
                                "not the browser's cookie; the UI records with its Judge now form")
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
        # The page asked for comes back as ?next= so signing in lands there.
        wanted = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
        location = "/login" if wanted in ("", "/") else "/login?" + urlencode({"next": wanted})
        await send({"type": "http.response.start", "status": 303, "headers": [(b"location", location.encode("latin-1"))]})
        await send({"type": "http.response.body", "body": b""})
        return
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="aisre"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps({"error": message})})

