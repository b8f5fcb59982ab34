"""Control-plane tables of the DuckDB store: API keys, the auth latch, the append-only audit log
and each tenant's capacity warning levels."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol, cast

import duckdb

from aisre.core.errors import Conflict, NotFound
from aisre.core.rows import ApiKey, AuditEntry, CapacityLevel, columns
from aisre.store.duckdb.transaction import transaction
from aisre.store.writer import Writer


def has_active_keys(path: str) -> bool:
    """Whether the store file at ``path`` holds a key neither revoked nor expired (read-only;
    False if absent). Read before the server opens the file, so it may predate migrations."""
    if path == ":memory:" or not Path(path).exists():
        return False
    conn = duckdb.connect(path, read_only=True)
    try:
        columns = {
            str(row[0])
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'api_keys'"
            ).fetchall()
        }
        if not columns:
            return False
        sql = "SELECT count(*) FROM api_keys WHERE revoked_ns IS NULL"
        params: list[Any] = []
        if "expires_ns" in columns:
            sql += " AND (expires_ns IS NULL OR expires_ns > ?)"
            params.append(time.time_ns())
        row = conn.execute(sql, params).fetchone()
        return bool(row and row[0])
    finally:
        conn.close()


class _Host(Protocol):
    _conn: duckdb.DuckDBPyConnection
    _writer: Writer

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]: ...


AUTH_LATCH = "auth_required"
_CAPACITY_LEVEL = columns(CapacityLevel)


class ControlTables:
    """Mixed into DuckDBStore; writes go through its writer thread like every other write."""

    def add_key(self: _Host, key: dict[str, Any], actor: str) -> None:
        """Store a new key (its digest, never the secret) and audit it, in one transaction;
        the first key ever also latches auth on for this store, in the same transaction."""
        row = {"expires_ns": None, **key, "created_ns": time.time_ns(), "created_by": actor}

        def write() -> None:
            conn = self._conn
            conn.execute("BEGIN TRANSACTION")
            try:
                conn.execute(
                    "INSERT INTO api_keys (key_id, digest, tenant, role, name, created_ns, created_by, expires_ns) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [row["key_id"], row["digest"], row["tenant"], row["role"], row["name"],
                     row["created_ns"], actor, row["expires_ns"]],
                )
                conn.execute(
                    "INSERT INTO control_flags (name, set_ns, set_by) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    [AUTH_LATCH, row["created_ns"], actor],
                )
                public = {k: row[k] for k in ("key_id", "tenant", "role", "name", "expires_ns")}
                _audit(conn, row["tenant"], actor, "key.create", row["key_id"], None, public)
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise

        self._writer.call(write).result(60)

    def revoke_key(
        self: _Host, tenant: str, key_id: str, actor: str, keep_admin: bool = False
    ) -> dict[str, Any]:
        """Revoke a key. With ``keep_admin`` (the API), the tenant's last usable admin key is
        refused with Conflict: the check and the update run in one writer call, so two
        concurrent revocations cannot both pass it."""

        def write() -> dict[str, Any]:
            conn = self._conn
            found = conn.execute(
                "SELECT key_id, tenant, role, name, revoked_ns FROM api_keys WHERE key_id = ? AND tenant = ?",
                [key_id, tenant],
            ).fetchone()
            if found is None:
                raise NotFound(f"no key {key_id!r} in tenant {tenant!r}")
            before = dict(zip(("key_id", "tenant", "role", "name", "revoked_ns"), found, strict=True))
            if before["revoked_ns"] is not None:
                return before
            now = time.time_ns()
            if keep_admin and before["role"] == "admin":
                others = conn.execute(
                    "SELECT count(*) FROM api_keys WHERE tenant = ? AND role = 'admin' AND key_id <> ? "
                    "AND revoked_ns IS NULL AND (expires_ns IS NULL OR expires_ns > ?)",
                    [tenant, key_id, now],
                ).fetchone()
                if not others or not others[0]:
                    raise Conflict(
                        f"{key_id} is the last admin key of tenant {tenant!r}; revoking it would leave nobody "
                        "able to manage keys. Create another admin key first (POST /api/keys "
                        '{"role": "admin"}), then revoke this one; or revoke it offline with the server '
                        "stopped (aisre keys revoke --db FILE)"
                    )
            conn.execute("BEGIN TRANSACTION")
            try:
                conn.execute(
                    "UPDATE api_keys SET revoked_ns = ?, revoked_by = ? WHERE key_id = ?", [now, actor, key_id]
                )
                after = {**before, "revoked_ns": now}
                _audit(conn, tenant, actor, "key.revoke", key_id, before, after)
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            return after

        result: dict[str, Any] = self._writer.call(write).result(60)
        return result

    def active_keys(self: _Host) -> list[dict[str, Any]]:
        """Every unrevoked key with its digest and expiry: what the authenticator loads (all tenants)."""
        return self._rows(
            "SELECT key_id, digest, tenant, role, name, expires_ns FROM api_keys WHERE revoked_ns IS NULL"
        )

    def auth_latched(self: _Host) -> bool:
        """Whether this store has ever had a key (then auth stays on whatever keys remain)."""
        return bool(self._rows("SELECT 1 AS x FROM control_flags WHERE name = ?", [AUTH_LATCH]))

    def list_keys(self: _Host, tenant: str) -> list[ApiKey]:
        """The tenant's keys, revoked and expired ones included (never digests)."""
        return cast(list[ApiKey], self._rows(
            "SELECT key_id, tenant, role, name, created_ns, created_by, expires_ns, revoked_ns, revoked_by "
            "FROM api_keys WHERE tenant = ? ORDER BY created_ns, key_id",
            [tenant],
        ))

    def audit(self: _Host, tenant: str, actor: str, action: str, target: str, before: Any, after: Any) -> None:
        """Append one audit record (its own transaction, on the writer thread)."""
        self._writer.call(lambda: _audit(self._conn, tenant, actor, action, target, before, after)).result(60)

    def list_audit(
        self: _Host, tenant: str, action: str | None = None, since_ns: int | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Audit records, newest first."""
        clauses: list[str] = ["tenant = ?"]
        params: list[Any] = [tenant]
        if action:
            clauses.append("(action = ? OR starts_with(action, ? || '.'))")
            params += [action, action]
        if since_ns is not None:
            clauses.append("at_ns >= ?")
            params.append(since_ns)
        rows = self._rows(
            f"SELECT * FROM audit_log WHERE {' AND '.join(clauses)} ORDER BY at_ns DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        for row in rows:
            for side in ("before", "after"):
                raw = row.pop(f"{side}_json")
                row[side] = json.loads(raw) if raw is not None else None
        return cast(list[AuditEntry], rows)


    def capacity_levels(self: _Host, tenant: str) -> list[CapacityLevel]:
        """The tenant's own capacity warning levels, by metric."""
        return cast(list[CapacityLevel], self._rows(
            f"SELECT {_CAPACITY_LEVEL} FROM capacity_levels WHERE tenant = ? ORDER BY metric", [tenant]))

    def put_capacity_levels(self: _Host, tenant: str, rows: list[dict[str, Any]]) -> None:
        """Replace the tenant's capacity warning levels with ``rows``, in one transaction."""
        now = time.time_ns()

        def write() -> None:
            with transaction(self._conn) as conn:
                conn.execute("DELETE FROM capacity_levels WHERE tenant = ?", [tenant])
                for row in rows:
                    conn.execute(
                        "INSERT INTO capacity_levels (tenant, metric, threshold, enabled, updated_ns) VALUES (?, ?, ?, ?, ?)",
                        [tenant, row["metric"], row["threshold"], bool(row["enabled"]), now])

        self._writer.call(write).result(60)


def _audit(
    conn: duckdb.DuckDBPyConnection, tenant: str, actor: str, action: str, target: str, before: Any, after: Any
) -> None:
    conn.execute(
        "INSERT INTO audit_log (tenant, at_ns, actor, action, target, before_json, after_json) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [tenant, time.time_ns(), actor, action, target,
         None if before is None else json.dumps(before, default=str, sort_keys=True),
         None if after is None else json.dumps(after, default=str, sort_keys=True)],
    )
