"""``aisre keys`` and ``aisre audit``: API keys (over the API, or straight in a stopped
server's store file with ``--db``) and the audit log."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Console

from aisre.core.auth import parse_expiry
from aisre.core.display import utc_text
from aisre.core.timefmt import rfc3339
from aisre.present.cli.client import get_json, send_json
from aisre.present.cli.common import (
    FormatOption,
    UrlOption,
    WideOption,
    call,
    emit_json,
    fail,
    listing,
    show,
)

console = Console()
DbOption = typer.Option(
    "", "--db", help="Work on this store file directly (the server must be stopped), or on a control store "
    "(postgresql://…, servers may run); else use --url"
)
TenantOption = typer.Option("default", "--tenant", help="Tenant of the key (with --db; over the API it is the caller's)")


def _offline(db: str) -> Any:
    """The store file opened directly, with a clear line if a running server holds it."""
    from aisre.present.api.auth import KeyRing
    from aisre.store.factory import CONTROL_BACKENDS, StoreUnavailable, open_control, open_store

    try:
        if db.partition("://")[0].lower() in CONTROL_BACKENDS:
            # Keys live in the control store, which running nodes share: no need to stop them.
            store = open_control(db)
        else:
            store = open_store(db, rollup_interval_ms=0)
    except StoreUnavailable as exc:
        fail(f"{exc.message}; stop the server or use --url with an admin key")
        raise
    return store, KeyRing(store, "default")


def build_keys_cli() -> typer.Typer:
    app = typer.Typer(help="API keys: create (secret shown once), list, revoke.", no_args_is_help=True)

    @app.callback()
    def keys() -> None:
        """API keys scoped to a tenant, with a role: ingest, read or admin."""

    @app.command("create")
    def create_cmd(
        role: str = typer.Option(..., "--role", help="ingest (send telemetry), read (GET) or admin (everything)"),
        name: str = typer.Option("", "--name", help="What the key is for, e.g. 'otel-collector prod'"),
        expires: str = typer.Option("", "--expires", help="Stop working after this long (90d, 12h, 2w) or at this RFC 3339 time; default never"),
        tenant: str = TenantOption,
        db: str = DbOption,
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """Create a key and print its secret once: store it now, aisre keeps only a digest."""
        expires_ns = call(lambda: parse_expiry(expires, time.time_ns(), "--expires")) if expires else None
        if db:
            store, ring = _offline(db)
            try:
                secret, record = call(lambda: ring.create(tenant, role, name, "cli", expires_ns))
            finally:
                store.close()
            data = {"key": secret, **{k: v for k, v in record.items() if k != "expires_ns"},
                    "expires": rfc3339(expires_ns)}
        else:
            body = {"role": role, "name": name, "expires_at": rfc3339(expires_ns)}
            data = call(lambda: send_json(url, "POST", "/api/keys", {k: v for k, v in body.items() if v is not None}))
        if fmt == "json":
            emit_json(data)
            return
        until = f", expires {data['expires']}" if data.get("expires") else ""
        console.print(f"key {data['key_id']} for tenant {data['tenant']!r}, role {data['role']}{until}:")
        console.print(data["key"], soft_wrap=True, highlight=False)
        console.print("[dim]send it as 'Authorization: Bearer <key>' (OTLP exporters: OTEL_EXPORTER_OTLP_HEADERS) "
                      "or set AISRE_KEY for the CLI[/]")

    @app.command("list")
    def list_cmd(tenant: str = TenantOption, db: str = DbOption, url: str = UrlOption, fmt: str = FormatOption,
                 wide: bool = WideOption) -> None:
        """Keys of the tenant: id, role, name, status, created, expires and revoked (never the secrets)."""
        if db:
            from aisre.present.api.admin import key_status

            store, _ = _offline(db)
            now = time.time_ns()
            try:
                rows = [
                    {**{k: v for k, v in r.items() if not k.endswith("_ns")}, "status": key_status(r, now),
                     "created": rfc3339(r["created_ns"]), "expires": rfc3339(r["expires_ns"]),
                     "revoked": rfc3339(r["revoked_ns"])}
                    for r in store.list_keys(tenant)
                ]
            finally:
                store.close()
        else:
            rows = call(lambda: get_json(url, "/api/keys"))["items"]
        if fmt == "json":
            emit_json({"items": rows})
            return
        table = listing("key id", "tenant", "role", "name", "status", "created", "expires", "revoked", wide=wide,
                        extra=(5, 7))
        for r in rows:
            table.add_row(r["key_id"], r["tenant"], r["role"], r["name"], r["status"], utc_text(r["created"], missing=""),
                          utc_text(r["expires"], missing="never"), utc_text(r["revoked"], missing=""))
        show(console, table, wide)

    @app.command("revoke")
    def revoke_cmd(key_id: str = typer.Argument(...), tenant: str = TenantOption, db: str = DbOption,
                   url: str = UrlOption) -> None:
        """Revoke a key; requests with it are refused from now on. Over the API the tenant's last
        admin key is refused (create another first); offline (--db) it is not."""
        if db:
            store, ring = _offline(db)
            try:
                call(lambda: ring.revoke(tenant, key_id, "cli"))
            finally:
                store.close()
        else:
            call(lambda: send_json(url, "DELETE", f"/api/keys/{key_id}"))
        console.print(f"revoked {key_id}")

    return app


def register_audit(app: typer.Typer) -> None:
    @app.command("audit")
    def audit_cmd(
        action: str = typer.Option("", "--action", help="An action (slo.apply) or a family (slo, key)"),
        since: str = typer.Option("", "--since", help="RFC 3339 time or look-back such as 24h"),
        limit: int = typer.Option(100, "--limit"),
        url: str = UrlOption,
        fmt: str = FormatOption,
        wide: bool = WideOption,
    ) -> None:
        """Who changed what in the control plane, and when (admin key)."""
        data = call(lambda: get_json(url, "/api/audit", {"action": action, "since": since, "limit": limit}))
        if fmt == "json":
            emit_json(data)
            return
        table = listing("time", "actor", "action", "target", "change", wide=wide, flex=(4,))
        for r in data["items"]:
            table.add_row(utc_text(r["at"]), r["actor"], r["action"], r["target"], _change(r["before"], r["after"]))
        show(console, table, wide)


def _change(before: Any, after: Any) -> str:
    if before is None:
        return "created"
    if after is None:
        return "deleted"
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return ", ".join(f"{k}: {before.get(k)} → {after.get(k)}" for k in keys) or "no change"
    return f"{len(before) if isinstance(before, list) else before} → {len(after) if isinstance(after, list) else after}"



