"""Agent policy tables of the PostgreSQL control store: applied sets, decision records,
violations and the judged marks (rows as the DuckDB store's, store/duckdb/policy.py).

Several aisre processes share this database: applying a set takes a per-tenant
transaction lock, so "the newest set" is never ambiguous across nodes. The runs judged and
the policy scores live in the span store; store/split.py composes the two halves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def jsonb(value: Any) -> Any:
    """A JSONB parameter, encoded as the rest of the control store's (store.py ``_json``)."""
    from aisre.store.postgres.store import _json

    return _json(value)


def audit(conn: Any, tenant: str, actor: str, action: str, target: str, before: Any, after: Any) -> None:
    """One audit record in the caller's transaction (store.py ``_audit``)."""
    from aisre.store.postgres.store import _audit

    _audit(conn, tenant, actor, action, target, before, after)

# What the audit trail keeps of a decision record (as store/duckdb/policy.py audit_entry).
_AUDITED = ("id", "source", "result", "journey", "trace_id", "span_id", "bundle", "policies", "rules", "reasons",
            "input_digest", "input")
_DECISION_COLUMNS = ("id, tenant, at_ns, source, journey, trace_id, span_id, result, bundle, policies, rules, reasons, "
                     "input_digest, input")
_VIOLATION_COLUMNS = ("trace_id, journey, run_start_ns, policy, version, rule, kind, effect, message, count, span_id, "
                      "span_ids, start_ns")
_RUN_COLUMNS = ("trace_id, journey, run_start_ns, bundle, last_received_ns, evaluated_ns, actions, violations, "
                "guardrail_checks, guardrail_trips, undetermined")


class PostgresPolicyTables:
    """Mixed into PostgresControl (``_rows`` and ``_write`` are its plumbing)."""

    _rows: Callable[..., list[dict[str, Any]]]
    _write: Callable[[Callable[[Any], Any]], Any]

    def put_policy_set(self, row: dict[str, Any]) -> dict[str, Any]:
        """Keep a newly applied policy set and audit the change with the set before and after,
        in one transaction under a per-tenant lock."""

        def write(conn: Any) -> dict[str, Any]:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('aisre.policy_sets'), hashtext(%s))", [row["tenant"]])
            found = conn.execute(
                "SELECT bundle, policies, applied_ns FROM policy_sets WHERE tenant = %s ORDER BY applied_ns DESC LIMIT 1",
                [row["tenant"]]).fetchone()
            before = None if found is None else {"bundle": found["bundle"], "policies": found["policies"]}
            after = {"bundle": row["bundle"], "policies": row["policies"]}
            # Strictly increasing per tenant, so "the set in force at t" is never ambiguous.
            now = max(int(row.get("applied_ns") or time.time_ns()), int(found["applied_ns"]) + 1 if found else 0)
            conn.execute(
                "INSERT INTO policy_sets (tenant, bundle, applied_ns, actor, source, policies) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [row["tenant"], row["bundle"], now, row["actor"], row["source"], jsonb(row["policies"])])
            audit(conn, row["tenant"], row["actor"], "policy.apply", "policies", before, after)
            return {**after, "applied_ns": now, "before": before}

        return dict(self._write(write))

    def policy_sets(self, tenant: str, limit: int = 50) -> list[dict[str, Any]]:
        """Applied policy sets, newest first (the first is in force)."""
        return self._rows(
            "SELECT tenant, bundle, applied_ns, actor, source, policies FROM policy_sets WHERE tenant = %s "
            "ORDER BY applied_ns DESC LIMIT %s", [tenant, int(limit)])

    def policy_tenants(self) -> list[str]:
        """Every tenant that has applied a policy set (what the judging pass visits)."""
        return [str(r["tenant"]) for r in self._rows("SELECT DISTINCT tenant FROM policy_sets ORDER BY tenant")]

    def add_decisions(self, rows: list[dict[str, Any]]) -> None:
        """Append decision records; denies and warnings also go to the audit trail, in the
        same transaction (with the input as redacted, never in clear)."""
        if not rows:
            return
        params = [
            [r["id"], r["tenant"], r["at_ns"], r["source"], r.get("journey"), r.get("trace_id"), r.get("span_id"),
             r["result"], r.get("bundle"), jsonb(r["policies"]), [str(x) for x in r["rules"]], jsonb(r["reasons"]),
             r["input_digest"], jsonb(r.get("input"))]
            for r in rows
        ]
        exported = [r for r in rows if r["result"] == "deny" or r.get("reasons")]

        def write(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO policy_decisions ({_DECISION_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", params)
            for r in exported:
                audit(conn, r["tenant"], str(r.get("actor") or "policy"), f"policy.decide.{r['result']}",
                      f"decision:{r['id']}", None, {k: r.get(k) for k in _AUDITED})

        self._write(write)

    def list_decisions(
        self, tenant: str, journey: str | None = None, rule: str | None = None, result: str | None = None,
        since_ns: int | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Decision records, newest first, filtered by journey, rule and result."""
        clauses: list[str] = ["tenant = %s"]
        params: list[Any] = [tenant]
        for clause, value in (("journey = %s", journey), ("result = %s", result), ("%s = ANY(rules)", rule)):
            if value:
                clauses.append(clause)
                params.append(value)
        if since_ns is not None:
            clauses.append("at_ns >= %s")
            params.append(since_ns)
        return self._rows(
            f"SELECT {_DECISION_COLUMNS} FROM policy_decisions WHERE {' AND '.join(clauses)} "
            "ORDER BY at_ns DESC, id LIMIT %s", [*params, int(limit)])

    def save_policy_marks(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """Replace one trace's violations and its judged mark, in one transaction."""

        def write(conn: Any) -> None:
            conn.execute("DELETE FROM policy_violations WHERE tenant = %s AND trace_id = %s",
                         [row["tenant"], row["trace_id"]])
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO policy_violations (tenant, {_VIOLATION_COLUMNS}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [[v["tenant"], v["trace_id"], v.get("journey"), v["run_start_ns"], v["policy"], v["version"],
                          v["rule"], v["kind"], v["effect"], v["message"], float(v["count"]), v["span_id"],
                          [str(s) for s in v["span_ids"]], v["start_ns"]] for v in rows])
            conn.execute(
                f"INSERT INTO policy_runs (tenant, {_RUN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, trace_id) DO UPDATE SET journey = excluded.journey, "
                "run_start_ns = excluded.run_start_ns, bundle = excluded.bundle, "
                "last_received_ns = excluded.last_received_ns, evaluated_ns = excluded.evaluated_ns, "
                "actions = excluded.actions, violations = excluded.violations, "
                "guardrail_checks = excluded.guardrail_checks, guardrail_trips = excluded.guardrail_trips, "
                "undetermined = excluded.undetermined",
                [row["tenant"], row["trace_id"], row.get("journey"), row["run_start_ns"], row.get("bundle"),
                 row["last_received_ns"], time.time_ns(), row["actions"], len(rows), row["guardrail_checks"],
                 row["guardrail_trips"], [str(u) for u in row["undetermined"]]])

        self._write(write)

    def policy_marks(self, tenant: str, trace_ids: list[str]) -> dict[str, int]:
        """The judged state (last_received_ns) of those of ``trace_ids`` already judged."""
        if not trace_ids:
            return {}
        return {str(r["trace_id"]): int(r["last_received_ns"]) for r in self._rows(
            "SELECT trace_id, last_received_ns FROM policy_runs WHERE tenant = %s AND trace_id = ANY(%s)",
            [tenant, list(trace_ids)])}

    def policy_cursor(self, tenant: str) -> int | None:
        """Runs of the tenant received before this were all judged at some point (None: start
        from the first run); what the split store's runs_to_judge reads from."""
        rows = self._rows("SELECT received_ns FROM policy_cursor WHERE tenant = %s", [tenant])
        return int(rows[0]["received_ns"]) if rows else None

    def put_policy_cursor(self, tenant: str, received_ns: int) -> None:
        """Move the tenant's judging cursor (to the oldest run still to judge)."""
        self._write(lambda conn: conn.execute(
            "INSERT INTO policy_cursor VALUES (%s, %s) ON CONFLICT (tenant) DO UPDATE SET received_ns = excluded.received_ns",
            [tenant, int(received_ns)]))

    def list_violations(
        self, tenant: str, trace_id: str | None = None, journey: str | None = None, rule: str | None = None,
        since_ns: int | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Violations found over traces, newest run first."""
        clauses: list[str] = ["tenant = %s"]
        params: list[Any] = [tenant]
        for column, value in (("trace_id", trace_id), ("journey", journey), ("rule", rule)):
            if value:
                clauses.append(f"{column} = %s")
                params.append(value)
        if since_ns is not None:
            clauses.append("run_start_ns >= %s")
            params.append(since_ns)
        return self._rows(
            f"SELECT {_VIOLATION_COLUMNS} FROM policy_violations WHERE {' AND '.join(clauses)} "
            "ORDER BY run_start_ns DESC, start_ns LIMIT %s", [*params, int(limit)])

    def policy_run(self, tenant: str, trace_id: str) -> dict[str, Any] | None:
        """How a trace was last judged (None if not yet)."""
        rows = self._rows(f"SELECT {_RUN_COLUMNS} FROM policy_runs WHERE tenant = %s AND trace_id = %s",
                          [tenant, trace_id])
        return rows[0] if rows else None

    def violation_counts(self, tenant: str, since_ns: int, bucket_ns: int) -> list[dict[str, Any]]:
        """Per policy, rule and bucket of run start time: violating runs (and how many runs were judged)."""
        # Integer division, as DuckDB's // for the positive run starts.
        return self._rows(
            "WITH v AS (SELECT policy, rule, effect, run_start_ns / %s * %s AS bucket_ns, "
            "count(DISTINCT trace_id) AS runs FROM policy_violations WHERE tenant = %s AND run_start_ns >= %s "
            "GROUP BY 1, 2, 3, 4), "
            "j AS (SELECT run_start_ns / %s * %s AS bucket_ns, count(*) AS judged FROM policy_runs "
            "WHERE tenant = %s AND run_start_ns >= %s GROUP BY 1) "
            "SELECT v.policy, v.rule, v.effect, v.bucket_ns::bigint AS bucket_ns, v.runs, "
            "coalesce(j.judged, 0) AS judged FROM v LEFT JOIN j USING (bucket_ns) ORDER BY policy, rule, bucket_ns",
            [bucket_ns, bucket_ns, tenant, since_ns, bucket_ns, bucket_ns, tenant, since_ns])

    def policy_totals(self, tenant: str, since_ns: int, until_ns: int) -> list[dict[str, Any]]:
        """Per journey, runs started in [since, until): judged, with a deny / a warn violation,
        violations, guardrail checks and trips."""
        return self._rows(
            "WITH v AS (SELECT trace_id, bool_or(effect = 'deny') AS denied, bool_or(effect = 'warn') AS warned "
            "FROM policy_violations WHERE tenant = %s AND run_start_ns >= %s AND run_start_ns < %s GROUP BY trace_id) "
            "SELECT coalesce(p.journey, '') AS journey, count(*) AS judged, "
            "count(*) FILTER (WHERE v.denied) AS denied_runs, count(*) FILTER (WHERE v.warned) AS warned_runs, "
            "sum(p.violations)::bigint AS violations, sum(p.guardrail_checks)::bigint AS guardrail_checks, "
            "sum(p.guardrail_trips)::bigint AS guardrail_trips, "
            "count(*) FILTER (WHERE p.guardrail_trips > 0) AS tripped_runs, "
            "count(*) FILTER (WHERE p.guardrail_checks > 0) AS checked_runs "
            "FROM policy_runs p LEFT JOIN v USING (trace_id) "
            "WHERE p.tenant = %s AND p.run_start_ns >= %s AND p.run_start_ns < %s "
            "GROUP BY coalesce(p.journey, '') ORDER BY journey",
            [tenant, since_ns, until_ns, tenant, since_ns, until_ns])

    def expire_policy_records(self, cutoff_ns: int, max_rows: int = 5000) -> dict[str, int]:
        """One bounded step: delete up to ``max_rows`` decision records made before
        ``cutoff_ns`` and up to ``max_rows`` judged runs started before it, with their
        violations (every tenant), in one transaction; returns what was deleted."""
        limit = max(1, int(max_rows))

        def write(conn: Any) -> dict[str, int]:
            decisions = conn.execute(
                "DELETE FROM policy_decisions WHERE id IN (SELECT id FROM policy_decisions WHERE at_ns < %s LIMIT %s)",
                [int(cutoff_ns), limit]).rowcount
            runs = conn.execute(
                "DELETE FROM policy_runs WHERE (tenant, trace_id) IN (SELECT tenant, trace_id FROM policy_runs "
                "WHERE run_start_ns < %s LIMIT %s) RETURNING tenant, trace_id", [int(cutoff_ns), limit]).fetchall()
            violations = 0
            if runs:
                violations = conn.execute(
                    "DELETE FROM policy_violations v USING unnest(%s::text[], %s::text[]) AS e(tenant, trace_id) "
                    "WHERE v.tenant = e.tenant AND v.trace_id = e.trace_id",
                    [[r["tenant"] for r in runs], [r["trace_id"] for r in runs]]).rowcount
            return {"decisions": int(decisions), "runs": len(runs), "violations": int(violations)}

        return dict(self._write(write))
