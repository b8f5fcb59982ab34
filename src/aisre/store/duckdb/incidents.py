"""Changes, incidents, their timeline, action items and notification attempts in DuckDB.

Writes run on the store's writer thread (DuckDB has one writer); reads use the pooled
cursors. Rows go in and out as dicts; JSON columns are decoded on the way out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import duckdb
import orjson
import pyarrow as pa

from aisre.core.errors import NotFound, StaleState
from aisre.core.rows import Change, Incident
from aisre.store.change_detection import DETECTION_OVERLAP_NS, detect
from aisre.store.duckdb.rollups import MINUTE_NS

if TYPE_CHECKING:
    from aisre.store.duckdb.store import DuckDBStore

_JSON_COLUMNS = ("metadata", "evidence", "labels", "data")

INCIDENT_FIELDS = (
    "title", "journey", "slo", "severity", "state", "commander", "owner", "tier", "runbook", "source",
    "impact_start_ns", "first_alert_ns", "acknowledged_ns", "acknowledged_by", "mitigated_ns",
    "mitigated_by", "resolved_ns", "resolved_by", "evidence", "evidence_ns", "updated_ns",
)


def _dump(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_COLUMNS:
        if isinstance(row.get(key), str):
            row[key] = orjson.loads(row[key])
    return row


def _fetch(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class IncidentTables:
    """The incident-side tables of one :class:`DuckDBStore`."""

    def __init__(self, store: DuckDBStore) -> None:
        self._store = store
        self._seen: dict[str, dict[tuple[str, str], dict[str, int]]] = {}

    # -- plumbing ---------------------------------------------------------------------

    def _write(self, fn: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        """Run ``fn(conn)`` in one transaction on the writer thread; returns its result."""
        def run() -> Any:
            conn = self._store._conn
            conn.execute("BEGIN TRANSACTION")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            return result

        return self._store._writer.call(run).result(60)

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        return [_decode(r) for r in self._store._rows(sql, params)]

    # -- changes ----------------------------------------------------------------------

    def add_change(self, row: dict[str, Any]) -> Change:
        """Insert a change; returns it with its id."""
        def insert(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            return _insert_change(conn, row)

        return cast(Change, dict(self._write(insert)))

    def list_changes(
        self, tenant: str, since_ns: int | None = None, until_ns: int | None = None,
        journey: str | None = None, kind: str | None = None, limit: int = 200,
    ) -> list[Change]:
        """Changes newest first; a journey filter keeps changes naming it or naming none."""
        clauses: list[str] = ["tenant = ?"]
        params: list[Any] = [tenant]
        for clause, value in (("at_ns >= ?", since_ns), ("at_ns < ?", until_ns), ("kind = ?", kind)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if journey:
            clauses.append("(len(journeys) = 0 OR list_contains(journeys, ?))")
            params.append(journey)
        return cast(list[Change], self._rows(
            f"SELECT * FROM changes WHERE {' AND '.join(clauses)} ORDER BY at_ns DESC, id DESC LIMIT ?",
            [*params, limit],
        ))

    def detect_changes(self, tenant: str) -> list[Change]:
        """Record the service versions, models and prompt versions that first appeared in a
        journey's runs since the last call; returns the changes added. Reads only runs
        received since then (plus a short overlap), never the whole history."""
        return cast(list[Change], list(self._write(lambda conn: self._detect(conn, tenant))))

    def _detect(self, conn: duckdb.DuckDBPyConnection, tenant: str) -> list[dict[str, Any]]:
        seen = self._seen.get(tenant)
        if seen is None:
            seen = {}
            for journey, kind, value, first_ns in conn.execute(
                "SELECT journey, kind, value, first_ns FROM change_seen WHERE tenant = ?", [tenant]
            ).fetchall():
                seen.setdefault((journey, kind), {})[value] = first_ns
            self._seen[tenant] = seen
        mark = conn.execute("SELECT received_ns FROM change_cursor WHERE tenant = ?", [tenant]).fetchone()
        since = (mark[0] - DETECTION_OVERLAP_NS) if mark else -(2**62)
        found = conn.execute(_APPEARANCES, [tenant, since]).fetchall()
        if not found:
            return []
        latest = max(r[6] for r in found)
        added = detect(tenant, seen, found, _DuckDBChangeWrites(conn, tenant))
        conn.execute(
            "INSERT INTO change_cursor VALUES (?, ?) ON CONFLICT (tenant) DO UPDATE SET received_ns = "
            "greatest(change_cursor.received_ns, excluded.received_ns)",
            [tenant, latest],
        )
        return added

    def run_appearances(self, tenant: str, since_received_ns: int) -> list[tuple[Any, ...]]:
        """Per journey and value, its first run among runs received after the mark: what
        another control plane (store/split.py) detects changes from."""
        return [tuple(r.values()) for r in self._store._rows(_APPEARANCES, [tenant, since_received_ns])]

    # -- incidents --------------------------------------------------------------------

    def create_incident(
        self, row: dict[str, Any], events: list[dict[str, Any]], alerts: list[dict[str, Any]]
    ) -> Incident:
        """Insert an incident with its first timeline entries and alerts; returns it."""
        def insert(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            cols = ["tenant", "group_key", "opened_ns", *INCIDENT_FIELDS]
            values = [_dump(row.get(c)) if c == "evidence" else row.get(c) for c in cols]
            new = _fetch(conn.execute(
                f"INSERT INTO incidents ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) RETURNING *",
                values,
            ))[0]
            _insert_events(conn, new["id"], new["tenant"], events)
            _upsert_alerts(conn, new["id"], new["tenant"], alerts)
            return new

        return cast(Incident, _decode(self._write(insert)))

    def update_incident(
        self, tenant: str, incident_id: int, changes: dict[str, Any],
        events: list[dict[str, Any]] = (),  # type: ignore[assignment]
        alerts: list[dict[str, Any]] = (),  # type: ignore[assignment]
        expect_state: str | None = None,
    ) -> Incident:
        """Change fields, add timeline entries and alerts in one transaction. With
        ``expect_state`` the update applies only if the incident is still in that state
        (two people acknowledging at once: one wins); returns the incident as it stands."""
        def update(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            current = _fetch(conn.execute("SELECT * FROM incidents WHERE tenant = ? AND id = ?", [tenant, incident_id]))
            if not current:
                raise NotFound(f"no incident {incident_id}")
            if expect_state is not None and current[0]["state"] != expect_state:
                state = current[0]["state"]
                raise StaleState(f"incident {incident_id} is {state}, not {expect_state}", state)
            if changes:
                sets = ", ".join(f"{k} = ?" for k in changes)
                values = [_dump(v) if k == "evidence" else v for k, v in changes.items()]
                conn.execute(f"UPDATE incidents SET {sets} WHERE id = ?", [*values, incident_id])
            _insert_events(conn, incident_id, tenant, events)
            _upsert_alerts(conn, incident_id, tenant, alerts)
            return _fetch(conn.execute("SELECT * FROM incidents WHERE id = ?", [incident_id]))[0]

        return cast(Incident, _decode(self._write(update)))

    def get_incident(self, tenant: str, incident_id: int) -> Incident:
        rows = self._rows("SELECT * FROM incidents WHERE tenant = ? AND id = ?", [tenant, incident_id])
        if not rows:
            raise NotFound(f"no incident {incident_id}")
        return cast(Incident, rows[0])

    def open_incident_for(self, tenant: str, group_key: str) -> Incident | None:
        """The unresolved incident alerts with this key join, if any."""
        rows = self._rows(
            "SELECT * FROM incidents WHERE tenant = ? AND group_key = ? AND state != 'resolved' ORDER BY id DESC LIMIT 1",
            [tenant, group_key],
        )
        return cast(Incident, rows[0]) if rows else None

    def list_incidents(
        self, tenant: str, state: str | None = None, journey: str | None = None,
        since_ns: int | None = None, until_ns: int | None = None, limit: int = 100,
        with_evidence: bool = False,
    ) -> list[Incident]:
        """Incidents newest first; ``state='active'`` means not yet resolved."""
        clauses: list[str] = ["tenant = ?"]
        params: list[Any] = [tenant]
        if state == "active":
            clauses.append("state != 'resolved'")
        elif state:
            clauses.append("state = ?")
            params.append(state)
        for clause, value in (("journey = ?", journey), ("opened_ns >= ?", since_ns), ("opened_ns < ?", until_ns)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        columns = "*" if with_evidence else "* EXCLUDE (evidence)"
        return cast(list[Incident], self._rows(
            f"SELECT {columns} FROM incidents WHERE {' AND '.join(clauses)} ORDER BY opened_ns DESC, id DESC LIMIT ?",
            [*params, limit],
        ))

    def events(self, tenant: str, incident_id: int) -> list[dict[str, Any]]:
        """The incident's timeline, oldest first."""
        return self._rows(
            "SELECT * FROM incident_events WHERE tenant = ? AND incident_id = ? ORDER BY at_ns, id",
            [tenant, incident_id],
        )

    def alerts(self, tenant: str, incident_id: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM incident_alerts WHERE tenant = ? AND incident_id = ? ORDER BY started_ns, alert_key",
            [tenant, incident_id],
        )

    def incidents_of_alert(self, tenant: str, alert_key: str) -> list[dict[str, Any]]:
        """Incidents an alert is linked to (resolved ones too), newest first, with the link's end."""
        return self._rows(
            "SELECT i.* EXCLUDE (evidence), a.ended_ns AS alert_ended_ns FROM incidents i "
            "JOIN incident_alerts a ON a.incident_id = i.id "
            "WHERE a.tenant = ? AND a.alert_key = ? ORDER BY i.id DESC",
            [tenant, alert_key],
        )

    def incidents_for_alert_keys(self, tenant: str, keys: list[str]) -> dict[str, int]:
        """alert key → the newest incident it is linked to."""
        if not keys:
            return {}
        rows = self._store._rows(
            "SELECT alert_key, max(incident_id) AS incident_id FROM incident_alerts "
            # A join on the unnested keys, not list_contains per row: an alert storm asks for
            # tens of thousands of keys at once.
            "WHERE tenant = ? AND alert_key IN (SELECT unnest(?::VARCHAR[])) GROUP BY alert_key",
            [tenant, keys],
        )
        return {r["alert_key"]: int(r["incident_id"]) for r in rows}

    # -- action items -----------------------------------------------------------------

    def add_action_item(self, row: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        def insert(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            item = _fetch(conn.execute(
                "INSERT INTO action_items (incident_id, tenant, title, owner, due_ns, status, created_ns) "
                "VALUES (?, ?, ?, ?, ?, 'open', ?) RETURNING *",
                [row["incident_id"], row["tenant"], row["title"], row.get("owner"), row.get("due_ns"), row["created_ns"]],
            ))[0]
            _insert_event(conn, {**event, "incident_id": row["incident_id"], "tenant": row["tenant"]})
            return item

        return dict(self._write(insert))

    def update_action_item(self, tenant: str, item_id: int, changes: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        def update(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            rows = _fetch(conn.execute("SELECT * FROM action_items WHERE tenant = ? AND id = ?", [tenant, item_id]))
            if not rows:
                raise NotFound(f"no action item {item_id}")
            if changes:
                sets = ", ".join(f"{k} = ?" for k in changes)
                conn.execute(f"UPDATE action_items SET {sets} WHERE id = ?", [*changes.values(), item_id])
            _insert_event(conn, {**event, "incident_id": rows[0]["incident_id"], "tenant": tenant})
            return _fetch(conn.execute("SELECT * FROM action_items WHERE id = ?", [item_id]))[0]

        return dict(self._write(update))

    def action_items(self, tenant: str, incident_id: int | None = None) -> list[dict[str, Any]]:
        if incident_id is None:
            return self._rows("SELECT * FROM action_items WHERE tenant = ? ORDER BY id", [tenant])
        return self._rows(
            "SELECT * FROM action_items WHERE tenant = ? AND incident_id = ? ORDER BY id", [tenant, incident_id]
        )

    # -- notifications ----------------------------------------------------------------

    def add_notification_attempt(self, row: dict[str, Any]) -> None:
        cols = ["tenant", "incident_id", "receiver", "receiver_type", "event", "message_id", "attempt", "at_ns",
                "duration_ms", "status_code", "ok", "final", "error"]

        def insert(conn: duckdb.DuckDBPyConnection) -> None:
            conn.execute(
                f"INSERT INTO notification_attempts ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [row.get(c) for c in cols],
            )

        self._write(insert)

    def notification_attempts(self, tenant: str, incident_id: int | None = None) -> list[dict[str, Any]]:
        if incident_id is None:
            return self._rows("SELECT * FROM notification_attempts WHERE tenant = ? ORDER BY id", [tenant])
        return self._rows(
            "SELECT * FROM notification_attempts WHERE tenant = ? AND incident_id = ? ORDER BY id",
            [tenant, incident_id],
        )

    # -- what triage and impact read --------------------------------------------------

    def run_minutes(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        """Per-minute runs and failures of one journey over [start, end), from the rollups,
        brought up to date first: an alert from elsewhere (Alertmanager) can arrive within the
        second before the writer has rolled up the runs that explain it."""
        self._store.flush_rollups()
        return self._rows(
            "SELECT minute_ns, runs, failures, cost_usd, failed_cost_usd FROM run_minutes "
            "WHERE tenant = ? AND journey = ? AND minute_ns >= ? AND minute_ns < ? ORDER BY minute_ns",
            [tenant, journey, start_ns, end_ns],
        )

    def first_failure(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> int | None:
        rows = self._store._rows(
            "SELECT min(run_start_ns) AS t FROM journey_runs WHERE tenant = ? AND journey = ? AND outcome = 'failure' "
            "AND run_start_ns >= ? AND run_start_ns < ?",
            [tenant, journey, start_ns, end_ns],
        )
        return rows[0]["t"] if rows and rows[0]["t"] is not None else None

    def sample_runs(
        self, tenant: str, journey: str, start_ns: int, end_ns: int, outcome: str, limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` runs of one outcome, newest first, with what triage compares."""
        return self._store._rows(
            "SELECT trace_id, run_start_ns, duration_ns, failure_reason, service_version, prompt_name, prompt_version, "
            "models, user_id, tool_calls, retrieval_calls, llm_errors, cost_usd FROM journey_runs "
            "WHERE tenant = ? AND journey = ? AND outcome = ? AND run_start_ns >= ? AND run_start_ns < ? "
            "ORDER BY run_start_ns DESC LIMIT ?",
            [tenant, journey, outcome, start_ns, end_ns, limit],
        )

    def count_runs(self, tenant: str, journey: str, start_ns: int, end_ns: int, outcome: str) -> int:
        return int(self._store._rows(
            "SELECT count(*) AS n FROM journey_runs WHERE tenant = ? AND journey = ? AND outcome = ? "
            "AND run_start_ns >= ? AND run_start_ns < ?",
            [tenant, journey, outcome, start_ns, end_ns],
        )[0]["n"])

    def span_profile(self, tenant: str, trace_ids: list[str], start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        """Per trace and operation: spans, errored spans, summed duration, worst HTTP status, error types."""
        if not trace_ids:
            return []
        return self._store._rows(
            "SELECT trace_id, operation, is_root, count(*) AS spans, count(*) FILTER (WHERE status = 'error') AS errors, "
            "sum(duration_ns) AS duration_ns, max(http_status) AS http_status, "
            "list_distinct(list(error_type) FILTER (WHERE error_type IS NOT NULL)) AS error_types, "
            "count(*) FILTER (WHERE retry_attempt > 0) AS retries, "
            # Retrieval that found nothing: the data layer, whatever the span's status says.
            "count(*) FILTER (WHERE operation = 'retrieval' AND (TRY_CAST(attributes->>'$.\"db.response.returned_rows\"' AS BIGINT) = 0 "
            "OR attributes->>'$.\"aisre.retrieval.documents\"' = '[]')) AS empty_results "
            "FROM spans WHERE tenant = ? AND list_contains(?, trace_id) AND start_ns >= ? AND start_ns < ? "
            "GROUP BY ALL",
            [tenant, trace_ids, start_ns, end_ns],
        )

    def impact(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> dict[str, Any]:
        """Failed runs, distinct users among them and their cost over [start, end)."""
        mark = self._store.expired_before(tenant)
        if mark is not None and start_ns < mark:
            # Retention has deleted runs of this period: count them from the minute rollups,
            # which outlive the raw spans; who was affected went with the spans.
            row = self._store._rows(
                "SELECT coalesce(sum(runs), 0) AS runs, coalesce(sum(failures), 0) AS failed_runs, "
                "coalesce(sum(failed_cost_usd), 0) AS failed_cost_usd, coalesce(sum(cost_usd), 0) AS cost_usd "
                "FROM run_minutes WHERE tenant = ? AND journey = ? AND minute_ns >= ? AND minute_ns < ?",
                [tenant, journey, start_ns // MINUTE_NS * MINUTE_NS, end_ns],
            )[0]
            return {**row, "users": None, "all_users": None, "raw_expired": True}
        return self._store._rows(
            "SELECT count(*) AS runs, count(*) FILTER (WHERE outcome = 'failure') AS failed_runs, "
            "count(DISTINCT user_id) FILTER (WHERE outcome = 'failure') AS users, "
            "count(DISTINCT user_id) AS all_users, "
            "coalesce(sum(cost_usd) FILTER (WHERE outcome = 'failure'), 0) AS failed_cost_usd, "
            "coalesce(sum(cost_usd), 0) AS cost_usd "
            "FROM journey_runs WHERE tenant = ? AND journey = ? AND run_start_ns >= ? AND run_start_ns < ?",
            [tenant, journey, start_ns, end_ns],
        )[0]


_APPEARANCES = """
WITH r AS (
    SELECT journey, root_service, run_start_ns, service_version, prompt_name, prompt_version, models, last_received_ns
    FROM journey_runs WHERE tenant = ? AND has_root AND last_received_ns > ?
)
SELECT journey, 'deploy', service_version, NULL, min(run_start_ns), any_value(root_service), max(last_received_ns)
FROM r WHERE service_version IS NOT NULL GROUP BY journey, service_version
UNION ALL
SELECT journey, 'prompt', coalesce(prompt_name, '') || '@' || prompt_version, any_value(prompt_name),
    min(run_start_ns), any_value(root_service), max(last_received_ns)
FROM r WHERE prompt_version IS NOT NULL GROUP BY journey, prompt_name, prompt_version
UNION ALL
SELECT journey, 'model', model, NULL, min(run_start_ns), any_value(root_service), max(last_received_ns)
FROM (SELECT journey, root_service, run_start_ns, last_received_ns, unnest(models) AS model FROM r)
WHERE model IS NOT NULL GROUP BY journey, model
"""


class _DuckDBChangeWrites:
    """change_detection.detect's writes, as DuckDB SQL in the writer's transaction."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, tenant: str) -> None:
        self._conn, self._tenant = conn, tenant

    def seen_earlier(self, journey: str, kind: str, value: str, first_ns: int) -> None:
        self._conn.execute(
            "UPDATE change_seen SET first_ns = ? WHERE tenant = ? AND journey = ? AND kind = ? AND value = ?",
            [first_ns, self._tenant, journey, kind, value])

    def seen_new(self, journey: str, kind: str, value: str, first_ns: int) -> None:
        self._conn.execute("INSERT INTO change_seen VALUES (?, ?, ?, ?, ?)", [self._tenant, journey, kind, value, first_ns])

    def recorded(self, kind: str, version: str, prompt_name: str | None, journey: str) -> int | None:
        found = self._conn.execute(
            "SELECT id FROM changes WHERE tenant = ? AND kind = ? AND version = ? AND source = 'api' "
            "AND (prompt_name IS NULL OR prompt_name = ?) AND (len(journeys) = 0 OR list_contains(journeys, ?)) "
            "AND observed_ns IS NULL ORDER BY at_ns DESC LIMIT 1",
            [self._tenant, kind, version, prompt_name, journey],
        ).fetchone()
        return int(found[0]) if found else None

    def observed(self, change_id: int, first_ns: int) -> None:
        self._conn.execute("UPDATE changes SET observed_ns = ? WHERE id = ?", [first_ns, change_id])

    def insert(self, row: dict[str, Any]) -> dict[str, Any]:
        return _insert_change(self._conn, row)


def _insert_change(conn: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> dict[str, Any]:
    cols = ["tenant", "kind", "summary", "who", "at_ns", "services", "journeys", "version", "previous",
            "prompt_name", "link", "metadata", "source", "observed_ns", "created_ns"]
    values = [_dump(row.get(c)) if c == "metadata" else row.get(c) for c in cols]
    new = _fetch(conn.execute(
        f"INSERT INTO changes ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) RETURNING *", values
    ))[0]
    return _decode(new)


def _insert_event(conn: duckdb.DuckDBPyConnection, event: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO incident_events (incident_id, tenant, at_ns, kind, actor, message, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [event["incident_id"], event["tenant"], event["at_ns"], event["kind"], event["actor"], event["message"],
         _dump(event.get("data"))],
    )


def _insert_events(conn: duckdb.DuckDBPyConnection, incident_id: int, tenant: str, events: list[dict[str, Any]]) -> None:
    """Timeline entries of one incident; an alert storm brings thousands in one statement."""
    if len(events) < 8:
        for event in events:
            _insert_event(conn, {**event, "incident_id": incident_id, "tenant": tenant})
        return
    table = pa.table({
        "seq": pa.array(range(len(events)), pa.int64()),
        "incident_id": pa.array([incident_id] * len(events), pa.int64()),
        "tenant": [tenant] * len(events),
        "at_ns": pa.array([e["at_ns"] for e in events], pa.int64()),
        "kind": [e["kind"] for e in events], "actor": [e["actor"] for e in events],
        "message": [e["message"] for e in events], "data": [_dump(e.get("data")) for e in events],
    })
    conn.register("_new_events", table)
    try:
        conn.execute("INSERT INTO incident_events (incident_id, tenant, at_ns, kind, actor, message, data) "
                     "SELECT incident_id, tenant, at_ns, kind, actor, message, data FROM _new_events ORDER BY seq")
    finally:
        conn.unregister("_new_events")


def _upsert_alerts(conn: duckdb.DuckDBPyConnection, incident_id: int, tenant: str, alerts: list[dict[str, Any]]) -> None:
    """Alerts of one incident, as :func:`_upsert_alert` does one by one."""
    if len(alerts) < 8 or len({a["alert_key"] for a in alerts}) != len(alerts):
        for alert in alerts:
            _upsert_alert(conn, {**alert, "incident_id": incident_id, "tenant": tenant})
        return
    table = pa.table({
        "incident_id": pa.array([incident_id] * len(alerts), pa.int64()),
        "tenant": [tenant] * len(alerts),
        "alert_key": [a["alert_key"] for a in alerts], "source": [a["source"] for a in alerts],
        "name": [a["name"] for a in alerts], "severity": [a["severity"] for a in alerts],
        "started_ns": pa.array([a["started_ns"] for a in alerts], pa.int64()),
        "ended_ns": pa.array([a.get("ended_ns") for a in alerts], pa.int64()),
        "summary": pa.array([a.get("summary") for a in alerts], pa.string()),
        "labels": pa.array([_dump(a.get("labels")) for a in alerts], pa.string()),
    })
    conn.register("_new_alerts", table)
    try:
        conn.execute(
            "INSERT INTO incident_alerts (incident_id, tenant, alert_key, source, name, severity, started_ns, ended_ns, "
            "summary, labels) SELECT incident_id, tenant, alert_key, source, name, severity, started_ns, ended_ns, "
            "summary, labels FROM _new_alerts ON CONFLICT (tenant, alert_key, incident_id) DO UPDATE SET "
            "ended_ns = excluded.ended_ns, summary = coalesce(excluded.summary, incident_alerts.summary), "
            "severity = excluded.severity"
        )
    finally:
        conn.unregister("_new_alerts")


def _upsert_alert(conn: duckdb.DuckDBPyConnection, alert: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO incident_alerts (incident_id, tenant, alert_key, source, name, severity, started_ns, ended_ns, "
        "summary, labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, alert_key, incident_id) DO UPDATE SET "
        "ended_ns = excluded.ended_ns, summary = coalesce(excluded.summary, incident_alerts.summary), "
        "severity = excluded.severity",
        [alert["incident_id"], alert["tenant"], alert["alert_key"], alert["source"], alert["name"], alert["severity"],
         alert["started_ns"], alert.get("ended_ns"), alert.get("summary"), _dump(alert.get("labels"))],
    )
