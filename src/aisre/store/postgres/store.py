"""The control plane on PostgreSQL: keys and the auth latch, the audit log, alert episodes,
incidents (timeline, alert links, action items, notification attempts), changes, gate
verdicts, per-tenant retention settings, price overrides, budgets, rate limits and capacity
warning levels, and the agent policy sets, decision records, violations and judged marks
(policy.py).

Rows go in and come out as the DuckDB store's do (store/duckdb/control.py, incidents.py,
gate.py, cost.py), so the contract suite holds both to one answer. Unlike DuckDB, several
aisre processes share this database: rules that must hold across them are written as
single conditional statements or row locks, never as a check in Python followed by a
write (an incident update expecting a state is one UPDATE … WHERE state = …; revoking
the last admin key locks the tenant's admin keys first; change detection takes a
per-tenant transaction lock). Run reads (what a change is detected from) come from the
span store, handed in by the split store (store/split.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

import orjson

from aisre.core.errors import Conflict, LeaseLost, NotFound, PermanentError, StaleState
from aisre.core.rows import CapacityLevel, CostBudget, PriceOverride, RateLimit, columns
from aisre.store.change_detection import DETECTION_OVERLAP_NS, detect
from aisre.store.fencing import Fence, current_fence
from aisre.store.postgres.connections import Connections, connect, migrate
from aisre.store.postgres.policy import PostgresPolicyTables

AUTH_LATCH = "auth_required"

INCIDENT_FIELDS = (
    "title", "journey", "slo", "severity", "state", "commander", "owner", "tier", "runbook", "source",
    "impact_start_ns", "first_alert_ns", "acknowledged_ns", "acknowledged_by", "mitigated_ns",
    "mitigated_by", "resolved_ns", "resolved_by", "evidence", "evidence_ns", "updated_ns",
)
# The incident row as every backend returns it (the version column stays inside).
_INCIDENT_COLUMNS = ("id", "tenant", "group_key", "opened_ns", *(c for c in INCIDENT_FIELDS if c != "evidence"))
_INCIDENT_LIST = ", ".join(_INCIDENT_COLUMNS)
_INCIDENT_ROW = _INCIDENT_LIST + ", evidence"
_ACTION_ITEM_FIELDS = ("title", "owner", "due_ns", "status", "done_ns")


_OVERRIDE = columns(PriceOverride)
_BUDGET = columns(CostBudget)
_RATE_LIMIT = columns(RateLimit)
_CAPACITY_LEVEL = columns(CapacityLevel)

def _json(value: Any) -> Any:
    """A JSONB parameter (None stays NULL); the same encoding as the DuckDB store's."""
    if value is None:
        return None
    from psycopg.types.json import Jsonb

    return Jsonb(value, dumps=lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode())


def _audit_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


def _columns(changes: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = [k for k in changes if k not in allowed]
    if unknown:
        raise PermanentError(f"{what} has no field {', '.join(map(repr, unknown))}")


def has_active_keys(dsn: str) -> bool:
    """Whether the control store holds a key neither revoked nor expired (False when its
    tables do not exist yet, or the server cannot be reached: the server's start says why)."""
    try:
        conn = connect(dsn)
    except Exception:
        return False
    try:
        if conn.execute("SELECT to_regclass('api_keys') AS t").fetchone()["t"] is None:
            return False
        row = conn.execute(
            "SELECT count(*) AS n FROM api_keys WHERE revoked_ns IS NULL AND (expires_ns IS NULL OR expires_ns > %s)",
            [time.time_ns()]).fetchone()
        return bool(row["n"])
    finally:
        conn.close()


class PostgresControl(PostgresPolicyTables):
    """Control-plane tables in one PostgreSQL database (``dsn``: a postgresql:// URL); the
    agent policy tables are in store/postgres/policy.py."""

    backend = "postgresql"

    def __init__(self, dsn: str, *, pool_size: int = 4) -> None:
        self.dsn = dsn
        self._pool = Connections(dsn, pool_size)
        with self._pool() as conn:
            self._schema_version = migrate(conn)
        self.incidents = PostgresIncidents(self)
        self.cost = PostgresCostSettings(self)

    # -- plumbing ------------------------------------------------------------------

    def _rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._pool() as conn:
            return list(conn.execute(sql, params).fetchall())

    def _write(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(conn)`` in one transaction; returns its result. Inside an evaluation pass
        (store/fencing.py) the pass's lease term is checked first, in the same transaction."""
        fence = current_fence()
        with self._pool() as conn, conn.transaction():
            if fence is not None:
                _check_fence(conn, fence)
            return fn(conn)

    def fenced_call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` (a write to another store) while the pass's lease term is checked and
        held: the lease row stays locked FOR SHARE until ``fn`` returns, so no node takes the
        lease over in the middle. Without a fence, just ``fn()``."""
        fence = current_fence()
        if fence is None:
            return fn()
        with self._pool() as conn, conn.transaction():
            _check_fence(conn, fence)
            return fn()

    def schema_version(self) -> int:
        return self._schema_version

    def close(self) -> None:
        self._pool.close()

    def connect(self) -> Any:
        """A connection of its own (outside the pool), e.g. for the lease."""
        return connect(self.dsn)

    # -- copying a control plane in (aisre store copy --control) -------------------------

    def _columns_of(self, table: str) -> dict[str, str]:
        """Column name → data type of ``table`` ({} when there is no such table)."""
        rows = self._rows(
            "SELECT column_name AS name, data_type AS type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s", [table])
        return {r["name"]: r["type"] for r in rows}

    def import_control(self, table: str, rows: list[dict[str, Any]], replace: tuple[str, ...] | None = None) -> int:
        """Insert exported control-plane rows as they were (ids and timestamps kept), skipping
        those already here (a page sent again after an interrupted copy); returns how many were
        new. With ``replace`` (columns naming a group of rows that has no key of its own, as a
        trace's violations), the groups the rows belong to are deleted first, in the same
        transaction, so a group sent again replaces itself. Columns this table lacks are
        refused; JSON documents arrive as text."""
        if not rows:
            return 0
        columns = self._columns_of(table)
        if not columns:
            raise PermanentError(f"the control store has no table {table!r}")
        names = list(rows[0])
        unknown = [n for n in (*names, *(replace or ())) if n not in columns]
        if unknown:
            raise PermanentError(f"{table}: the control store has no column {', '.join(unknown)}")
        marks = ", ".join("%s::jsonb" if columns[n] == "jsonb" else "%s" for n in names)

        def value(name: str, v: Any) -> Any:
            if isinstance(v, dict | list) and columns[name] in ("jsonb", "text"):
                return json.dumps(v)  # a document the source handed over decoded
            return v

        groups = list(dict.fromkeys(tuple(row.get(k) for k in replace) for row in rows)) if replace else []

        def write(conn: Any) -> int:
            before = conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]
            with conn.cursor() as cur:
                if replace:
                    cur.executemany(f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = %s' for k in replace)}",
                                    [list(g) for g in groups])
                cur.executemany(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                    [[value(n, row.get(n)) for n in names] for row in rows])
            return int(conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]) - int(before)

        return int(self._write(write))

    def control_count(self, table: str) -> int:
        """Rows in ``table`` (0 when there is no such table)."""
        if not self._columns_of(table):
            return 0
        return int(self._rows(f"SELECT count(*) AS n FROM {table}")[0]["n"])

    def finish_import(self) -> None:
        """Move every id sequence past the largest id copied in, so rows made from now on get
        new ids (an incident's links and the audit log keep pointing at the copied ones)."""
        serial = self._rows(
            "SELECT table_name AS t FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND column_name = 'id' AND column_default LIKE 'nextval%%'")
        def move(conn: Any) -> None:
            for row in serial:
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence(%s, 'id'), coalesce(max(id), 0) + 1, false) FROM {row['t']}",
                    [row["t"]])

        self._write(move)

    # -- keys and audit --------------------------------------------------------------

    def add_key(self, key: dict[str, Any], actor: str) -> None:
        """Store a new key (digest only) and audit it; the first key ever latches auth on, in
        the same transaction."""
        row = {"expires_ns": None, **key, "created_ns": time.time_ns(), "created_by": actor}

        def write(conn: Any) -> None:
            conn.execute(
                "INSERT INTO api_keys (key_id, digest, tenant, role, name, created_ns, created_by, expires_ns) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [row["key_id"], row["digest"], row["tenant"], row["role"], row["name"], row["created_ns"], actor,
                 row["expires_ns"]],
            )
            conn.execute(
                "INSERT INTO control_flags (name, set_ns, set_by) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [AUTH_LATCH, row["created_ns"], actor],
            )
            public = {k: row[k] for k in ("key_id", "tenant", "role", "name", "expires_ns")}
            _audit(conn, row["tenant"], actor, "key.create", row["key_id"], None, public)

        self._write(write)

    def revoke_key(self, tenant: str, key_id: str, actor: str, keep_admin: bool = False) -> dict[str, Any]:
        """Revoke a key; with ``keep_admin`` the tenant's last usable admin key is refused
        (Conflict). The tenant's admin keys are locked first, so two nodes revoking two
        admin keys at once cannot both pass the check."""

        def write(conn: Any) -> dict[str, Any]:
            if keep_admin:
                conn.execute("SELECT key_id FROM api_keys WHERE tenant = %s AND role = 'admin' ORDER BY key_id FOR UPDATE",
                             [tenant])
            found = conn.execute(
                "SELECT key_id, tenant, role, name, revoked_ns FROM api_keys WHERE key_id = %s AND tenant = %s "
                "FOR UPDATE", [key_id, tenant]).fetchone()
            if found is None:
                raise NotFound(f"no key {key_id!r} in tenant {tenant!r}")
            before = dict(found)
            if before["revoked_ns"] is not None:
                return before
            now = time.time_ns()
            if keep_admin and before["role"] == "admin":
                others = conn.execute(
                    "SELECT count(*) AS n FROM api_keys WHERE tenant = %s AND role = 'admin' AND key_id <> %s "
                    "AND revoked_ns IS NULL AND (expires_ns IS NULL OR expires_ns > %s)", [tenant, key_id, now],
                ).fetchone()
                if not others["n"]:
                    raise Conflict(
                        f"{key_id} is the last admin key of tenant {tenant!r}; revoking it would leave nobody "
                        "able to manage keys. Create another admin key first (POST /api/keys "
                        '{"role": "admin"}), then revoke this one'
                    )
            conn.execute("UPDATE api_keys SET revoked_ns = %s, revoked_by = %s WHERE key_id = %s", [now, actor, key_id])
            after = {**before, "revoked_ns": now}
            _audit(conn, tenant, actor, "key.revoke", key_id, before, after)
            return after

        return dict(self._write(write))

    def active_keys(self) -> list[dict[str, Any]]:
        """Every unrevoked key with its digest and expiry (all tenants): what auth loads."""
        return self._rows("SELECT key_id, digest, tenant, role, name, expires_ns FROM api_keys WHERE revoked_ns IS NULL")

    def auth_latched(self) -> bool:
        """Whether this control plane has ever had a key."""
        return bool(self._rows("SELECT 1 AS x FROM control_flags WHERE name = %s", [AUTH_LATCH]))

    def list_keys(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's keys, revoked and expired ones included (never digests)."""
        return self._rows(
            "SELECT key_id, tenant, role, name, created_ns, created_by, expires_ns, revoked_ns, revoked_by "
            "FROM api_keys WHERE tenant = %s ORDER BY created_ns, key_id", [tenant])

    def audit(self, tenant: str, actor: str, action: str, target: str, before: Any, after: Any) -> None:
        """Append one audit record."""
        self._write(lambda conn: _audit(conn, tenant, actor, action, target, before, after))

    def list_audit(
        self, tenant: str, action: str | None = None, since_ns: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Audit records, newest first."""
        clauses: list[str] = ["tenant = %s"]
        params: list[Any] = [tenant]
        if action:
            clauses.append("(action = %s OR starts_with(action, %s || '.'))")
            params += [action, action]
        if since_ns is not None:
            clauses.append("at_ns >= %s")
            params.append(since_ns)
        rows = self._rows(
            f"SELECT * FROM audit_log WHERE {' AND '.join(clauses)} ORDER BY at_ns DESC, id DESC LIMIT %s",
            [*params, limit])
        for row in rows:
            for side in ("before", "after"):
                raw = row.pop(f"{side}_json")
                row[side] = json.loads(raw) if raw is not None else None
        return rows

    # -- alert episodes ----------------------------------------------------------------

    def active_alerts(self, tenant: str) -> list[dict[str, Any]]:
        """Alerts still pending or firing, by id."""
        return self._rows("SELECT * FROM alerts WHERE tenant = %s AND state <> 'resolved' ORDER BY id", [tenant])

    def list_alerts(self, tenant: str, state: str | None = None, slo: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Alert episodes, newest first."""
        clauses: list[str] = ["tenant = %s"]
        params: list[Any] = [tenant]
        for clause, value in (("state = %s", state), ("slo = %s", slo)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return self._rows(
            f"SELECT * FROM alerts WHERE {' AND '.join(clauses)} ORDER BY pending_since_ns DESC, id DESC LIMIT %s",
            [*params, limit])

    def save_alerts(self, rows: list[dict[str, Any]]) -> None:
        """Insert new episodes (no id; the id is set on the dict) and update known ones."""
        if not rows:
            return

        def write(conn: Any) -> None:
            for row in rows:
                if row.get("id") is None:
                    found = conn.execute(
                        "INSERT INTO alerts (tenant, slo, journey, severity, state, pending_since_ns, started_ns, "
                        "ended_ns, peak_burn, updated_ns, summary) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                        "RETURNING id",
                        [row["tenant"], row["slo"], row["journey"], row["severity"], row["state"],
                         row["pending_since_ns"], row["started_ns"], row["ended_ns"], row["peak_burn"],
                         row["updated_ns"], row["summary"]],
                    ).fetchone()
                    row["id"] = int(found["id"])
                else:
                    conn.execute(
                        "UPDATE alerts SET state = %s, started_ns = %s, ended_ns = %s, peak_burn = %s, updated_ns = %s, "
                        "summary = %s WHERE id = %s AND tenant = %s",
                        [row["state"], row["started_ns"], row["ended_ns"], row["peak_burn"], row["updated_ns"],
                         row["summary"], row["id"], row["tenant"]],
                    )

        self._write(write)

    # -- gate verdicts -------------------------------------------------------------------

    def save_gate_verdict(self, row: dict[str, Any]) -> int:
        """Store one verdict with its evidence document; returns its id."""
        found = self._write(lambda conn: conn.execute(
            "INSERT INTO gate_verdicts (tenant, journey, baseline, candidate, verdict, score, baseline_runs, "
            "candidate_runs, decided_ns, document) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [row["tenant"], row["journey"], row["baseline"], row["candidate"], row["verdict"], row.get("score"),
             row["baseline_runs"], row["candidate_runs"], row["decided_ns"], orjson.dumps(row["document"]).decode()],
        ).fetchone())
        return int(found["id"])

    def list_gate_verdicts(self, tenant: str, journey: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest verdicts first, without their documents."""
        sql = ("SELECT id, journey, baseline, candidate, verdict, score, baseline_runs, candidate_runs, decided_ns "
               "FROM gate_verdicts WHERE tenant = %s")
        params: list[Any] = [tenant]
        if journey is not None:
            sql += " AND journey = %s"
            params.append(journey)
        return self._rows(sql + " ORDER BY decided_ns DESC, id DESC LIMIT %s", [*params, limit])

    def get_gate_verdict(self, tenant: str, verdict_id: int) -> dict[str, Any]:
        """One verdict's evidence document; NotFound for an unknown id."""
        rows = self._rows("SELECT document FROM gate_verdicts WHERE tenant = %s AND id = %s", [tenant, verdict_id])
        if not rows:
            raise NotFound(f"no gate verdict with id {verdict_id}")
        document: dict[str, Any] = orjson.loads(rows[0]["document"])
        document["id"] = verdict_id
        return document

    # -- retention settings (the span store applies them) -----------------------------------

    def retention_setting(self, tenant: str) -> float | None:
        """The tenant's retention of raw spans set through the API, if any."""
        rows = self._rows("SELECT days FROM retention WHERE tenant = %s", [tenant])
        return float(rows[0]["days"]) if rows else None

    def put_retention(self, tenant: str, days: float | None) -> None:
        """Set (or, with None, clear) the tenant's retention setting."""
        if days is None:
            self._write(lambda conn: conn.execute("DELETE FROM retention WHERE tenant = %s", [tenant]))
        else:
            self._write(lambda conn: conn.execute(
                "INSERT INTO retention VALUES (%s, %s, %s) ON CONFLICT (tenant) DO UPDATE SET days = excluded.days, "
                "updated_ns = excluded.updated_ns", [tenant, days, time.time_ns()]))

    def retention_settings(self) -> dict[str, float]:
        """Every tenant's retention setting (what a span store loads at start)."""
        return {r["tenant"]: float(r["days"]) for r in self._rows("SELECT tenant, days FROM retention")}


    # -- capacity warning levels -------------------------------------------------------------

    def capacity_levels(self, tenant: str) -> list[CapacityLevel]:
        """The tenant's own capacity warning levels, by metric."""
        return cast(list[CapacityLevel], self._rows(
            f"SELECT {_CAPACITY_LEVEL} FROM capacity_levels WHERE tenant = %s ORDER BY metric", [tenant]))

    def put_capacity_levels(self, tenant: str, rows: list[dict[str, Any]]) -> None:
        """Replace the tenant's capacity warning levels with ``rows``, in one transaction."""
        now = time.time_ns()

        def write(conn: Any) -> None:
            conn.execute("DELETE FROM capacity_levels WHERE tenant = %s", [tenant])
            if not rows:
                return
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO capacity_levels (tenant, metric, threshold, enabled, updated_ns) VALUES (%s, %s, %s, %s, %s)",
                    [[tenant, r["metric"], r["threshold"], bool(r["enabled"]), now] for r in rows])

        self._write(write)


def _check_fence(conn: Any, fence: Fence) -> None:
    """Refuse (LeaseLost) unless the lease still has the pass's term and has not expired; the
    row stays locked FOR SHARE until the transaction ends, so a takeover waits for it."""
    row = conn.execute(
        "SELECT term, expires_at < clock_timestamp() AS expired FROM leases WHERE name = %s FOR SHARE",
        [fence.lease]).fetchone()
    if row is None or int(row["term"]) != fence.term or row["expired"]:
        now = "none" if row is None else f"term {row['term']}{', expired' if row['expired'] else ''}"
        raise LeaseLost(f"lease {fence.lease!r}: this pass holds term {fence.term}, the lease has {now}; "
                        "another node evaluates now, so this write is refused")


def _audit(conn: Any, tenant: str, actor: str, action: str, target: str, before: Any, after: Any) -> None:
    conn.execute(
        "INSERT INTO audit_log (tenant, at_ns, actor, action, target, before_json, after_json) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [tenant, time.time_ns(), actor, action, target, _audit_text(before), _audit_text(after)],
    )


# What a change is detected from: per (journey, kind, value) the first run carrying it.
# (journey, kind, value, prompt_name, first_ns, service, last_received_ns)
Appearances = Callable[[str, int], list[tuple[Any, ...]]]


class PostgresIncidents:
    """Incidents, their timeline, alert links, action items, notifications and changes."""

    def __init__(self, control: PostgresControl) -> None:
        self._control = control

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        return self._control._rows(sql, params)

    # -- changes -------------------------------------------------------------------------

    def add_change(self, row: dict[str, Any]) -> dict[str, Any]:
        """Insert a change; returns it with its id."""
        return dict(self._control._write(lambda conn: _insert_change(conn, row)))

    def list_changes(
        self, tenant: str, since_ns: int | None = None, until_ns: int | None = None,
        journey: str | None = None, kind: str | None = None, limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Changes newest first; a journey filter keeps changes naming it or naming none."""
        clauses: list[str] = ["tenant = %s"]
        params: list[Any] = [tenant]
        for clause, value in (("at_ns >= %s", since_ns), ("at_ns < %s", until_ns), ("kind = %s", kind)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if journey:
            clauses.append("(cardinality(journeys) = 0 OR %s = ANY(journeys))")
            params.append(journey)
        return self._rows(
            f"SELECT * FROM changes WHERE {' AND '.join(clauses)} ORDER BY at_ns DESC, id DESC LIMIT %s",
            [*params, limit])

    def detect_changes_from(self, tenant: str, appearances: Appearances) -> list[dict[str, Any]]:
        """Record the service versions, models and prompt versions that first appeared in a
        journey's runs since the last call, as ``appearances(tenant, since_received_ns)``
        reports them from the span store; returns the changes added. One node at a time per
        tenant (a transaction lock), and what was seen is read from the table each time, so
        nodes taking turns never record a change twice."""
        return list(self._control._write(lambda conn: self._detect(conn, tenant, appearances)))

    def _detect(self, conn: Any, tenant: str, appearances: Appearances) -> list[dict[str, Any]]:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('aisre.detect_changes'), hashtext(%s))", [tenant])
        seen: dict[tuple[str, str], dict[str, int]] = {}
        for r in conn.execute("SELECT journey, kind, value, first_ns FROM change_seen WHERE tenant = %s", [tenant]):
            seen.setdefault((r["journey"], r["kind"]), {})[r["value"]] = r["first_ns"]
        mark = conn.execute("SELECT received_ns FROM change_cursor WHERE tenant = %s", [tenant]).fetchone()
        since = (mark["received_ns"] - DETECTION_OVERLAP_NS) if mark else -(2**62)
        found = appearances(tenant, since)
        if not found:
            return []
        latest = max(r[6] for r in found)
        added = detect(tenant, seen, found, _PostgresChangeWrites(conn, tenant))
        conn.execute(
            "INSERT INTO change_cursor VALUES (%s, %s) ON CONFLICT (tenant) DO UPDATE SET received_ns = "
            "greatest(change_cursor.received_ns, excluded.received_ns)", [tenant, latest])
        return added

    # -- incidents -----------------------------------------------------------------------

    def create_incident(
        self, row: dict[str, Any], events: list[dict[str, Any]], alerts: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Insert an incident with its first timeline entries and alerts; returns it. If another
        node opened an incident of the same group meanwhile (the unresolved one of a group is
        unique), the entries and alerts join that one and it is returned, ``_joined`` set."""
        cols = ["tenant", "group_key", "opened_ns", *INCIDENT_FIELDS]

        def insert(conn: Any) -> dict[str, Any]:
            values = [_json(row.get(c)) if c == "evidence" else row.get(c) for c in cols]
            entries = events
            new = conn.execute(
                f"INSERT INTO incidents ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
                f"ON CONFLICT (tenant, group_key) WHERE state <> 'resolved' DO NOTHING RETURNING {_INCIDENT_ROW}",
                values).fetchone()
            if new is None:
                found = conn.execute(
                    f"UPDATE incidents SET version = version + 1 WHERE tenant = %s AND group_key = %s "
                    f"AND state <> 'resolved' RETURNING {_INCIDENT_ROW}", [row["tenant"], row["group_key"]]).fetchone()
                if found is None:  # opened and resolved by others within this instant
                    raise Conflict(f"incident group {row['group_key']!r} changed concurrently; try again")
                new = {**found, "_joined": True}
                # The timeline keeps one "opened" entry, the creator's: ours tell of a joining alert.
                entries = [{**e, "kind": "alert", "message": f"joined as it opened: {e['message']}"}
                           if e.get("kind") == "opened" else e for e in events]
            _insert_events(conn, new["id"], new["tenant"], entries)
            _upsert_alerts(conn, new["id"], new["tenant"], alerts)
            return dict(new)

        return dict(self._control._write(insert))

    def update_incident(
        self, tenant: str, incident_id: int, changes: dict[str, Any],
        events: list[dict[str, Any]] = (),  # type: ignore[assignment]
        alerts: list[dict[str, Any]] = (),  # type: ignore[assignment]
        expect_state: str | None = None,
    ) -> dict[str, Any]:
        """Change fields, add timeline entries and alerts in one transaction. With
        ``expect_state`` the update applies only if the incident is still in that state: one
        conditional UPDATE (the row's version grows by one), so of two nodes acknowledging at
        once exactly one wins and the other gets StaleState with the state it found."""
        _columns(changes, INCIDENT_FIELDS, "an incident")

        def update(conn: Any) -> dict[str, Any]:
            sets = "".join(f"{k} = %s, " for k in changes)
            values = [_json(v) if k == "evidence" else v for k, v in changes.items()]
            where, params = "tenant = %s AND id = %s", [tenant, incident_id]
            if expect_state is not None:
                where += " AND state = %s"
                params.append(expect_state)
            new = conn.execute(
                f"UPDATE incidents SET {sets}version = version + 1 WHERE {where} RETURNING {_INCIDENT_ROW}",
                [*values, *params]).fetchone()
            if new is None:
                current = conn.execute(f"SELECT {_INCIDENT_ROW} FROM incidents WHERE tenant = %s AND id = %s",
                                       [tenant, incident_id]).fetchone()
                if current is None:
                    raise NotFound(f"no incident {incident_id}")
                state = current["state"]
                raise StaleState(f"incident {incident_id} is {state}, not {expect_state}", state)
            _insert_events(conn, incident_id, tenant, events)
            _upsert_alerts(conn, incident_id, tenant, alerts)
            return dict(new)

        return dict(self._control._write(update))

    def get_incident(self, tenant: str, incident_id: int) -> dict[str, Any]:
        rows = self._rows(f"SELECT {_INCIDENT_ROW} FROM incidents WHERE tenant = %s AND id = %s", [tenant, incident_id])
        if not rows:
            raise NotFound(f"no incident {incident_id}")
        return rows[0]

    def open_incident_for(self, tenant: str, group_key: str) -> dict[str, Any] | None:
        """The unresolved incident alerts with this key join, if any."""
        rows = self._rows(
            f"SELECT {_INCIDENT_ROW} FROM incidents WHERE tenant = %s AND group_key = %s AND state <> 'resolved' "
            "ORDER BY id DESC LIMIT 1", [tenant, group_key])
        return rows[0] if rows else None

    def list_incidents(
        self, tenant: str, state: str | None = None, journey: str | None = None,
        since_ns: int | None = None, until_ns: int | None = None, limit: int = 100,
        with_evidence: bool = False,
    ) -> list[dict[str, Any]]:
        """Incidents newest first; ``state='active'`` means not yet resolved."""
        clauses: list[str] = ["tenant = %s"]
        params: list[Any] = [tenant]
        if state == "active":
            clauses.append("state <> 'resolved'")
        elif state:
            clauses.append("state = %s")
            params.append(state)
        for clause, value in (("journey = %s", journey), ("opened_ns >= %s", since_ns), ("opened_ns < %s", until_ns)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        columns = _INCIDENT_ROW if with_evidence else _INCIDENT_LIST
        return self._rows(
            f"SELECT {columns} FROM incidents WHERE {' AND '.join(clauses)} ORDER BY opened_ns DESC, id DESC LIMIT %s",
            [*params, limit])

    def events(self, tenant: str, incident_id: int) -> list[dict[str, Any]]:
        """The incident's timeline, oldest first."""
        return self._rows("SELECT * FROM incident_events WHERE tenant = %s AND incident_id = %s ORDER BY at_ns, id",
                          [tenant, incident_id])

    def alerts(self, tenant: str, incident_id: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM incident_alerts WHERE tenant = %s AND incident_id = %s ORDER BY started_ns, alert_key",
            [tenant, incident_id])

    def incidents_of_alert(self, tenant: str, alert_key: str) -> list[dict[str, Any]]:
        """Incidents an alert is linked to (resolved ones too), newest first, with the link's end."""
        columns = ", ".join(f"i.{c}" for c in _INCIDENT_COLUMNS)
        return self._rows(
            f"SELECT {columns}, a.ended_ns AS alert_ended_ns FROM incidents i JOIN incident_alerts a "
            "ON a.incident_id = i.id AND a.tenant = i.tenant WHERE a.tenant = %s AND a.alert_key = %s ORDER BY i.id DESC",
            [tenant, alert_key])

    def incidents_for_alert_keys(self, tenant: str, keys: list[str]) -> dict[str, int]:
        """alert key → the newest incident it is linked to."""
        if not keys:
            return {}
        rows = self._rows(
            "SELECT alert_key, max(incident_id) AS incident_id FROM incident_alerts WHERE tenant = %s "
            "AND alert_key = ANY(%s) GROUP BY alert_key", [tenant, list(keys)])
        return {r["alert_key"]: int(r["incident_id"]) for r in rows}

    # -- action items ----------------------------------------------------------------------

    def add_action_item(self, row: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        def insert(conn: Any) -> dict[str, Any]:
            item = conn.execute(
                "INSERT INTO action_items (incident_id, tenant, title, owner, due_ns, status, created_ns) "
                "VALUES (%s, %s, %s, %s, %s, 'open', %s) RETURNING *",
                [row["incident_id"], row["tenant"], row["title"], row.get("owner"), row.get("due_ns"), row["created_ns"]],
            ).fetchone()
            _insert_event(conn, {**event, "incident_id": row["incident_id"], "tenant": row["tenant"]})
            return dict(item)

        return dict(self._control._write(insert))

    def update_action_item(self, tenant: str, item_id: int, changes: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        _columns(changes, _ACTION_ITEM_FIELDS, "an action item")

        def update(conn: Any) -> dict[str, Any]:
            sets = ", ".join(f"{k} = %s" for k in changes) or "id = id"
            item = conn.execute(f"UPDATE action_items SET {sets} WHERE tenant = %s AND id = %s RETURNING *",
                                [*changes.values(), tenant, item_id]).fetchone()
            if item is None:
                raise NotFound(f"no action item {item_id}")
            _insert_event(conn, {**event, "incident_id": item["incident_id"], "tenant": tenant})
            return dict(item)

        return dict(self._control._write(update))

    def action_items(self, tenant: str, incident_id: int | None = None) -> list[dict[str, Any]]:
        if incident_id is None:
            return self._rows("SELECT * FROM action_items WHERE tenant = %s ORDER BY id", [tenant])
        return self._rows("SELECT * FROM action_items WHERE tenant = %s AND incident_id = %s ORDER BY id",
                          [tenant, incident_id])

    # -- notifications -----------------------------------------------------------------------

    def add_notification_attempt(self, row: dict[str, Any]) -> None:
        cols = ["tenant", "incident_id", "receiver", "receiver_type", "event", "message_id", "attempt", "at_ns",
                "duration_ms", "status_code", "ok", "final", "error"]
        self._control._write(lambda conn: conn.execute(
            f"INSERT INTO notification_attempts ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
            [row.get(c) for c in cols]))

    def notification_attempts(self, tenant: str, incident_id: int | None = None) -> list[dict[str, Any]]:
        if incident_id is None:
            return self._rows("SELECT * FROM notification_attempts WHERE tenant = %s ORDER BY id", [tenant])
        return self._rows("SELECT * FROM notification_attempts WHERE tenant = %s AND incident_id = %s ORDER BY id",
                          [tenant, incident_id])


class _PostgresChangeWrites:
    """change_detection.detect's writes, as PostgreSQL SQL in the detecting transaction."""

    def __init__(self, conn: Any, tenant: str) -> None:
        self._conn, self._tenant = conn, tenant

    def seen_earlier(self, journey: str, kind: str, value: str, first_ns: int) -> None:
        self._conn.execute(
            "UPDATE change_seen SET first_ns = %s WHERE tenant = %s AND journey = %s AND kind = %s AND value = %s",
            [first_ns, self._tenant, journey, kind, value])

    def seen_new(self, journey: str, kind: str, value: str, first_ns: int) -> None:
        self._conn.execute("INSERT INTO change_seen VALUES (%s, %s, %s, %s, %s)",
                           [self._tenant, journey, kind, value, first_ns])

    def recorded(self, kind: str, version: str, prompt_name: str | None, journey: str) -> int | None:
        found = self._conn.execute(
            "SELECT id FROM changes WHERE tenant = %s AND kind = %s AND version = %s AND source = 'api' "
            "AND (prompt_name IS NULL OR prompt_name = %s) AND (cardinality(journeys) = 0 OR %s = ANY(journeys)) "
            "AND observed_ns IS NULL ORDER BY at_ns DESC LIMIT 1",
            [self._tenant, kind, version, prompt_name, journey],
        ).fetchone()
        return int(found["id"]) if found else None

    def observed(self, change_id: int, first_ns: int) -> None:
        self._conn.execute("UPDATE changes SET observed_ns = %s WHERE id = %s", [first_ns, change_id])

    def insert(self, row: dict[str, Any]) -> dict[str, Any]:
        return _insert_change(self._conn, row)


def _insert_change(conn: Any, row: dict[str, Any]) -> dict[str, Any]:
    cols = ["tenant", "kind", "summary", "who", "at_ns", "services", "journeys", "version", "previous",
            "prompt_name", "link", "metadata", "source", "observed_ns", "created_ns"]
    values = [_json(row.get(c)) if c == "metadata" else row.get(c) for c in cols]
    for i, c in enumerate(cols):
        if c in ("services", "journeys"):
            values[i] = [str(v) for v in (values[i] or [])]
    return dict(conn.execute(
        f"INSERT INTO changes ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) RETURNING *", values,
    ).fetchone())


def _insert_event(conn: Any, event: dict[str, Any]) -> None:
    _insert_events(conn, event["incident_id"], event["tenant"], [event])


def _insert_events(conn: Any, incident_id: int, tenant: str, events: list[dict[str, Any]]) -> None:
    """Timeline entries of one incident, in order (an alert storm brings thousands: one batch)."""
    if not events:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO incident_events (incident_id, tenant, at_ns, kind, actor, message, data) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [[incident_id, tenant, e["at_ns"], e["kind"], e["actor"], e["message"], _json(e.get("data"))]
             for e in events])


def _upsert_alerts(conn: Any, incident_id: int, tenant: str, alerts: list[dict[str, Any]]) -> None:
    """Alert links of one incident: new ones inserted, known ones get their end and severity
    (their summary kept when the update brings none)."""
    if not alerts:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO incident_alerts (incident_id, tenant, alert_key, source, name, severity, started_ns, "
            "ended_ns, summary, labels) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (tenant, alert_key, incident_id) DO UPDATE SET ended_ns = excluded.ended_ns, "
            "summary = coalesce(excluded.summary, incident_alerts.summary), severity = excluded.severity",
            [[incident_id, tenant, a["alert_key"], a["source"], a["name"], a["severity"], a["started_ns"],
              a.get("ended_ns"), a.get("summary"), _json(a.get("labels"))] for a in alerts])


class PostgresCostSettings:
    """Price overrides, budgets and rate limits (the cost figures live in the span store)."""

    def __init__(self, control: PostgresControl) -> None:
        self._control = control

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        return self._control._rows(sql, params)

    def list_overrides(self, tenant: str | None = None) -> list[PriceOverride]:
        if tenant is None:
            return cast(list[PriceOverride], self._rows(f"SELECT {_OVERRIDE} FROM price_overrides ORDER BY tenant, model, effective_ns", []))
        return cast(list[PriceOverride], self._rows(
            f"SELECT {_OVERRIDE} FROM price_overrides WHERE tenant = %s ORDER BY model, effective_ns", [tenant]))

    def put_override(self, row: dict[str, Any]) -> None:
        self._control._write(lambda conn: conn.execute(
            "INSERT INTO price_overrides (tenant, model, provider, input, output, cached_input, effective_ns, created_ns) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, model, effective_ns) DO UPDATE SET "
            "provider = excluded.provider, input = excluded.input, output = excluded.output, "
            "cached_input = excluded.cached_input, created_ns = excluded.created_ns",
            [row["tenant"], row["model"], row["provider"], float(row["input"]), float(row["output"]),
             float(row["cached_input"]), row["effective_ns"], time.time_ns()]))

    def delete_override(self, tenant: str, model: str) -> int:
        n = self._control._write(lambda conn: conn.execute(
            "DELETE FROM price_overrides WHERE tenant = %s AND model = %s", [tenant, model]).rowcount)
        if not n:
            raise NotFound(f"no price override for model {model!r}")
        return int(n)

    def budget_tenants(self, tenant: str | None = None) -> list[str]:
        """Tenants with at least one budget (for the budget alert loop, not requests)."""
        where, params = ("WHERE tenant = %s", [tenant]) if tenant is not None else ("", [])
        return [r["tenant"] for r in self._rows(f"SELECT DISTINCT tenant FROM cost_budgets {where} ORDER BY tenant", params)]

    def list_budgets(self, tenant: str) -> list[CostBudget]:
        return cast(list[CostBudget], self._rows(f"SELECT {_BUDGET} FROM cost_budgets WHERE tenant = %s ORDER BY name", [tenant]))

    def put_budget(self, row: dict[str, Any]) -> None:
        self._control._write(lambda conn: conn.execute(
            "INSERT INTO cost_budgets (tenant, name, journey, period, amount_usd, thresholds, created_ns) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, name) DO UPDATE SET journey = excluded.journey, "
            "period = excluded.period, amount_usd = excluded.amount_usd, thresholds = excluded.thresholds, "
            "created_ns = excluded.created_ns",
            [row["tenant"], row["name"], row["journey"], row["period"], float(row["amount_usd"]),
             [float(t) for t in row["thresholds"]], time.time_ns()]))

    def delete_budget(self, tenant: str, name: str) -> None:
        n = self._control._write(lambda conn: conn.execute(
            "DELETE FROM cost_budgets WHERE tenant = %s AND name = %s", [tenant, name]).rowcount)
        if not n:
            raise NotFound(f"no cost budget named {name!r}")

    def list_rate_limits(self, tenant: str) -> list[RateLimit]:
        return cast(list[RateLimit], self._rows(f"SELECT {_RATE_LIMIT} FROM rate_limits WHERE tenant = %s ORDER BY model", [tenant]))

    def put_rate_limit(self, row: dict[str, Any]) -> None:
        self._control._write(lambda conn: conn.execute(
            "INSERT INTO rate_limits (tenant, model, requests_per_min, tokens_per_min, warn_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, model) DO UPDATE SET "
            "requests_per_min = excluded.requests_per_min, tokens_per_min = excluded.tokens_per_min, "
            "warn_at = excluded.warn_at",
            [row["tenant"], row["model"], row["requests_per_min"], row["tokens_per_min"], row["warn_at"]]))
