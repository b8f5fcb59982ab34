"""``aisre keys`` and ``aisre audit``: API keys (over the API, or straight in a stopped
server's store file with ``--db``) and the audit log."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from aisre.core.timefmt import rfc3339
from aisre.present.cli.client import get_json, send_json
from aisre.present.cli.common import FormatOption, UrlOption, call, emit_json, fail

console = Console()
DbOption = typer.Option(
    "", "--db", help="Work on this store file directly (the server must be stopped); else use --url"
)
TenantOption = typer.Option("default", "--tenant", help="Tenant of the key (with --db; over the API it is the caller's)")


def _offline(db: str) -> Any:
    """The store file opened directly, with a clear line if a running server holds it."""
    import duckdb

    from aisre.present.api.auth import KeyRing
    from aisre.store.duckdb import DuckDBStore

    try:
        store = DuckDBStore(db, rollup_interval_ms=0)
    except duckdb.IOException as exc:
        fail(f"cannot open {db}: {exc}; stop the server or use --url with an admin key")
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
        tenant: str = TenantOption,
        db: str = DbOption,
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """Create a key and print its secret once: store it now, aisre keeps only a digest."""
        if db:
            store, ring = _offline(db)
            try:
                secret, record = call(lambda: ring.create(tenant, role, name, "cli"))
            finally:
                store.close()
            data = {"key": secret, **record}
        else:
            data = call(lambda: send_json(url, "POST", "/api/keys", {"role": role, "name": name}))
        if fmt == "json":
            emit_json(data)
            return
        console.print(f"key {data['key_id']} for tenant {data['tenant']!r}, role {data['role']}:")
        console.print(data["key"], soft_wrap=True, highlight=False)
        console.print("[dim]send it as 'Authorization: Bearer <key>' (OTLP exporters: OTEL_EXPORTER_OTLP_HEADERS) "
                      "or set AISRE_KEY for the CLI[/]")

    @app.command("list")
    def list_cmd(tenant: str = TenantOption, db: str = DbOption, url: str = UrlOption, fmt: str = FormatOption) -> None:
        """Keys of the tenant: id, role, name, created and revoked (never the secrets)."""
        if db:
            store, _ = _offline(db)
            try:
                rows = [
                    {**r, "created": rfc3339(r.pop("created_ns")), "revoked": rfc3339(r.pop("revoked_ns"))}
                    for r in store.list_keys(tenant)
                ]
            finally:
                store.close()
        else:
            rows = call(lambda: get_json(url, "/api/keys"))["items"]
        if fmt == "json":
            emit_json({"items": rows})
            return
        table = Table("key id", "tenant", "role", "name", "created", "revoked")
        for r in rows:
            table.add_row(r["key_id"], r["tenant"], r["role"], r["name"], r["created"] or "", r["revoked"] or "")
        console.print(table)

    @app.command("revoke")
    def revoke_cmd(key_id: str = typer.Argument(...), tenant: str = TenantOption, db: str = DbOption,
                   url: str = UrlOption) -> None:
        """Revoke a key; requests with it are refused from now on."""
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
    ) -> None:
        """Who changed what in the control plane, and when (admin key)."""
        data = call(lambda: get_json(url, "/api/audit", {"action": action, "since": since, "limit": limit}))
        if fmt == "json":
            emit_json(data)
            return
        table = Table("time", "actor", "action", "target", "change")
        for r in data["items"]:
            table.add_row(r["at"], r["actor"], r["action"], r["target"], _change(r["before"], r["after"]))
        console.print(table)


def _change(before: Any, after: Any) -> str:
    if before is None:
        return "created"
    if after is None:
        return "deleted"
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return ", ".join(f"{k}: {before.get(k)} → {after.get(k)}" for k in keys) or "no change"
    return f"{len(before) if isinstance(before, list) else before} → {len(after) if isinstance(after, list) else after}"



