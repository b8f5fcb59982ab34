"""Agent policy tables of the DuckDB store: applied sets, decision records, violations."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from aisre.store.duckdb.control import _audit
from aisre.store.duckdb.retention import ExpiryStats
from aisre.store.duckdb.rollups import minute_of
from aisre.store.duckdb.transaction import transaction
from aisre.store.writer import Writer

# Per judged run, kept as scores (replaced when the run is judged again) so score SLIs, the
# gate and the trace view read them like any evaluation: 1 = a deny violation (or a
# guardrail trip), 0 = none.
POLICY_SCORE = "policy_violation"
TRIP_SCORE = "guardrail_trip"
POLICY_SCORE_SOURCE = "heuristic"


class _Host(Protocol):
    _conn: duckdb.DuckDBPyConnection
    _writer: Writer
    expiry: ExpiryStats

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]: ...

    def _mark_dirty(self, touched: dict[str, set[int]]) -> None: ...


def audit_entry(record: dict[str, Any]) -> dict[str, Any]:
    """What the audit trail keeps of a decision record: id, result, rules, reasons, policy
    versions, trace/span and the keyed input digest, with the input as already redacted."""
    keys = ("id", "source", "result", "journey", "trace_id", "span_id", "bundle", "policies", "rules", "reasons",
            "input_digest", "input")
    return {k: record.get(k) for k in keys}


_TOKENS = ("CASE WHEN s.operation = 'execute_tool' THEN 0 "
           "ELSE coalesce(s.input_tokens, 0) + coalesce(s.output_tokens, 0) END")
_COST = "CASE WHEN s.operation = 'execute_tool' THEN 0.0 ELSE coalesce(s.cost_usd, 0.0) END"


def _usage_filter(tenant: str, since_ns: int, until_ns: int, exclude_trace_id: str,
                  sessions: list[str] | None) -> tuple[str, list[Any]]:
    """FROM/WHERE of the other traces' tool and model calls in a window (of some sessions)."""
    join, params = "", [tenant]
    if sessions is not None:
        join = ("JOIN traces t ON t.tenant = s.tenant AND t.trace_id = s.trace_id "
                f"AND t.session_id IN ({', '.join('?' for _ in sessions) or 'NULL'})")
        params = [*sessions, tenant]
    return (f"FROM spans s {join} WHERE s.tenant = ? AND s.trace_id <> ? "
            "AND s.operation IN ('execute_tool', 'chat', 'text_completion') AND s.start_ns >= ? AND s.start_ns < ?",
            [*params, exclude_trace_id, int(since_ns), int(until_ns)])


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class PolicyTables:
    """Mixed into DuckDBStore; writes go through its writer thread."""

    def put_policy_set(self: _Host, row: dict[str, Any]) -> dict[str, Any]:
        """Keep a newly applied policy set (tenant, bundle, source, policies, actor) and audit the
        change with the set before and after, in one transaction."""

        def write() -> dict[str, Any]:
            conn = self._conn
            found = conn.execute(
                "SELECT bundle, policies_json FROM policy_sets WHERE tenant = ? ORDER BY applied_ns DESC LIMIT 1",
                [row["tenant"]],
            ).fetchone()
            before = None if found is None else {"bundle": found[0], "policies": json.loads(found[1])}
            after = {"bundle": row["bundle"], "policies": row["policies"]}
            # Strictly increasing per tenant, so "the set in force at t" is never ambiguous.
            last = conn.execute("SELECT max(applied_ns) FROM policy_sets WHERE tenant = ?", [row["tenant"]]).fetchone()
            now = max(int(row.get("applied_ns") or time.time_ns()), int(last[0] or 0) + 1 if last else 0)
            with transaction(conn):
                conn.execute(
                    "INSERT INTO policy_sets (tenant, bundle, applied_ns, actor, source, policies_json) VALUES (?, ?, ?, ?, ?, ?)",
                    [row["tenant"], row["bundle"], now, row["actor"], row["source"], _dumps(row["policies"])],
                )
                _audit(conn, row["tenant"], row["actor"], "policy.apply", "policies", before, after)
            return {**after, "applied_ns": now, "before": before}

        result: dict[str, Any] = self._writer.call(write).result(60)
        return result

    def policy_sets(self: _Host, tenant: str, limit: int = 50) -> list[dict[str, Any]]:
        """Applied policy sets, newest first (the first is in force)."""
        rows = self._rows(
            "SELECT tenant, bundle, applied_ns, actor, source, policies_json FROM policy_sets WHERE tenant = ? "
            "ORDER BY applied_ns DESC LIMIT ?",
            [tenant, int(limit)],
        )
        for r in rows:
            r["policies"] = json.loads(r.pop("policies_json"))
        return rows

    def policy_tenants(self: _Host) -> list[str]:
        """Every tenant that has applied a policy set (what the judging pass visits)."""
        return [str(r["tenant"]) for r in self._rows("SELECT DISTINCT tenant FROM policy_sets ORDER BY tenant")]

    def add_decisions(self: _Host, rows: list[dict[str, Any]]) -> None:
        """Append decision records (never updated or deleted)."""
        if not rows:
            return
        params = [
            [r["id"], r["tenant"], r["at_ns"], r["source"], r.get("journey"), r.get("trace_id"), r.get("span_id"),
             r["result"], r.get("bundle"), _dumps(r["policies"]), list(r["rules"]), _dumps(r["reasons"]),
             r["input_digest"], None if r.get("input") is None else _dumps(r["input"])]
            for r in rows
        ]
        # Denies and warnings also go to the audit trail (like OPA's decision-log sink), in the
        # same transaction: the audit entry carries the decision id and the record as redacted,
        # never the clear input.
        exported = [r for r in rows if r["result"] == "deny" or r.get("reasons")]

        def write() -> None:
            conn = self._conn
            with transaction(conn):
                conn.executemany(
                    "INSERT INTO policy_decisions (id, tenant, at_ns, source, journey, trace_id, span_id, result, bundle, "
                    "policies_json, rules, reasons_json, input_digest, input_json) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params,
                )
                for r in exported:
                    _audit(conn, r["tenant"], str(r.get("actor") or "policy"), f"policy.decide.{r['result']}",
                           f"decision:{r['id']}", None, audit_entry(r))

        self._writer.call(write).result(60)

    def list_decisions(
        self: _Host, tenant: str, journey: str | None = None, rule: str | None = None, result: str | None = None,
        since_ns: int | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Decision records, newest first, filtered by journey, rule and result."""
        clauses: list[str] = ["tenant = ?"]
        params: list[Any] = [tenant]
        for column, value in (("journey", journey), ("result", result)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if rule:
            clauses.append("list_contains(rules, ?)")
            params.append(rule)
        if since_ns is not None:
            clauses.append("at_ns >= ?")
            params.append(since_ns)
        rows = self._rows(
            f"SELECT * FROM policy_decisions WHERE {' AND '.join(clauses)} ORDER BY at_ns DESC, id LIMIT ?",
            [*params, int(limit)],
        )
        for r in rows:
            r["policies"] = json.loads(r.pop("policies_json"))
            r["reasons"] = json.loads(r.pop("reasons_json"))
            raw = r.pop("input_json")
            r["input"] = None if raw is None else json.loads(raw)
        return rows

    def runs_to_judge(self: _Host, tenant: str, limit: int = 500) -> list[dict[str, Any]]:
        """Runs (traces with a root) never judged, or changed by spans received since they were."""
        return self._rows(
            "SELECT r.trace_id, r.journey, r.run_start_ns, r.root_service, r.last_received_ns FROM journey_runs r "
            "LEFT JOIN policy_runs p ON p.tenant = r.tenant AND p.trace_id = r.trace_id "
            "WHERE r.tenant = ? AND r.has_root AND (p.trace_id IS NULL OR r.last_received_ns > p.last_received_ns) "
            "ORDER BY r.last_received_ns LIMIT ?",
            [tenant, int(limit)],
        )

    def policy_usage(
        self: _Host, tenant: str, since_ns: int, until_ns: int, exclude_trace_id: str = "",
        sessions: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Tool and model calls of the tenant's other traces started in [since_ns, until_ns)
        (only traces of these sessions when given): start_ns, kind, tokens, cost_usd."""
        where, params = _usage_filter(tenant, since_ns, until_ns, exclude_trace_id, sessions)
        return self._rows(
            "SELECT s.start_ns, CASE WHEN s.operation = 'execute_tool' THEN 'tool' ELSE 'model' END AS kind, "
            f"{_TOKENS} AS tokens, {_COST} AS cost_usd {where}", params)

    def policy_usage_totals(
        self: _Host, tenant: str, since_ns: int, until_ns: int, exclude_trace_id: str = "",
        sessions: list[str] | None = None,
    ) -> dict[str, Any]:
        """The same calls as policy_usage, summed in the store (an inline decision needs only
        the totals): model_calls, tool_calls, tokens, cost_usd."""
        where, params = _usage_filter(tenant, since_ns, until_ns, exclude_trace_id, sessions)
        rows = self._rows(
            "SELECT count(*) FILTER (WHERE s.operation <> 'execute_tool') AS model_calls, "
            "count(*) FILTER (WHERE s.operation = 'execute_tool') AS tool_calls, "
            f"coalesce(sum({_TOKENS}), 0) AS tokens, coalesce(sum({_COST}), 0.0) AS cost_usd {where}", params)
        return rows[0]

    def policy_usage_by_trace(
        self: _Host, tenant: str, since_ns: int, until_ns: int, sessions: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The same calls as policy_usage (every trace), summed per trace: trace_id,
        model_calls, tool_calls, tokens, cost_usd (what running counts are seeded from)."""
        where, params = _usage_filter(tenant, since_ns, until_ns, "", sessions)
        return self._rows(
            "SELECT s.trace_id, count(*) FILTER (WHERE s.operation <> 'execute_tool') AS model_calls, "
            "count(*) FILTER (WHERE s.operation = 'execute_tool') AS tool_calls, "
            f"coalesce(sum({_TOKENS}), 0) AS tokens, coalesce(sum({_COST}), 0.0) AS cost_usd {where} "
            "GROUP BY s.trace_id ORDER BY s.trace_id", params)

    def save_policy_run(self: _Host, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """Replace one trace's violations (``rows``), its judged mark (``row``) and its policy
        scores in one transaction."""

        def write() -> None:
            conn = self._conn
            with transaction(conn):
                _write_marks(conn, row, rows)
                _write_scores(conn, row, any(v["effect"] == "deny" for v in rows))

        self._writer.call(write).result(60)
        # Score SLIs count per run-start minute: that minute is rebuilt with the new verdict.
        self._mark_dirty({row["tenant"]: {minute_of(int(row["run_start_ns"]))}})

    def save_policy_marks(self: _Host, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """Replace one trace's violations and its judged mark (the control-plane half of
        save_policy_run), in one transaction."""

        def write() -> None:
            conn = self._conn
            with transaction(conn):
                _write_marks(conn, row, rows)

        self._writer.call(write).result(60)

    def put_policy_scores(self: _Host, row: dict[str, Any], violated: bool) -> None:
        """Replace one judged trace's policy scores (the span-store half of save_policy_run)
        and rebuild its run-start minute."""

        def write() -> None:
            conn = self._conn
            with transaction(conn):
                _write_scores(conn, row, violated)

        self._writer.call(write).result(60)
        self._mark_dirty({row["tenant"]: {minute_of(int(row["run_start_ns"]))}})

    def policy_candidate_runs(self: _Host, tenant: str, since_received_ns: int, limit: int = 500) -> list[dict[str, Any]]:
        """Runs (traces with a root) received at or after ``since_received_ns``, oldest
        received first: what a split store checks against the judged marks."""
        return self._rows(
            "SELECT trace_id, journey, run_start_ns, root_service, last_received_ns, session_id FROM journey_runs "
            "WHERE tenant = ? AND has_root AND last_received_ns >= ? ORDER BY last_received_ns, trace_id LIMIT ?",
            [tenant, int(since_received_ns), int(limit)],
        )

    def policy_session_runs(
        self: _Host, tenant: str, session: str, after_ns: int, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Runs of one session (as stored) started after ``after_ns``, oldest first: trace_id,
        run_start_ns, last_received_ns."""
        return self._rows(
            "SELECT trace_id, run_start_ns, last_received_ns FROM journey_runs WHERE tenant = ? AND has_root "
            "AND session_id = ? "
            "AND run_start_ns > ? ORDER BY run_start_ns, trace_id LIMIT ?",
            [tenant, session, int(after_ns), int(limit)],
        )

    def policy_marks(self: _Host, tenant: str, trace_ids: list[str]) -> dict[str, int]:
        """The judged state (last_received_ns) of those of ``trace_ids`` already judged."""
        if not trace_ids:
            return {}
        marks = ", ".join("?" for _ in trace_ids)
        return {str(r["trace_id"]): int(r["last_received_ns"]) for r in self._rows(
            f"SELECT trace_id, last_received_ns FROM policy_runs WHERE tenant = ? AND trace_id IN ({marks})",
            [tenant, *trace_ids])}

    def expire_policy_records(self: _Host, cutoff_ns: int, max_rows: int = 5000) -> dict[str, int]:
        """One bounded step: delete up to ``max_rows`` decision records made before
        ``cutoff_ns`` and up to ``max_rows`` judged runs started before it, with their
        violations (every tenant); returns what was deleted."""
        deleted: dict[str, int] = self._writer.call(lambda: expire_policy_step(self._conn, cutoff_ns, max_rows)).result(600)
        self.expiry.count_policy(deleted)
        return deleted

    def list_violations(
        self: _Host, tenant: str, trace_id: str | None = None, journey: str | None = None, rule: str | None = None,
        since_ns: int | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Violations found over traces, newest run first."""
        clauses: list[str] = ["tenant = ?"]
        params: list[Any] = [tenant]
        for column, value in (("trace_id", trace_id), ("journey", journey), ("rule", rule)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since_ns is not None:
            clauses.append("run_start_ns >= ?")
            params.append(since_ns)
        return self._rows(
            f"SELECT * EXCLUDE (tenant) FROM policy_violations WHERE {' AND '.join(clauses)} "
            "ORDER BY run_start_ns DESC, start_ns LIMIT ?",
            [*params, int(limit)],
        )

    def violation_counts(self: _Host, tenant: str, since_ns: int, bucket_ns: int) -> list[dict[str, Any]]:
        """Per policy, rule and bucket of run start time: violating runs (and how many runs were judged)."""
        return self._rows(
            "WITH v AS (SELECT policy, rule, effect, run_start_ns // ? * ? AS bucket_ns, count(DISTINCT trace_id) AS runs "
            "FROM policy_violations WHERE tenant = ? AND run_start_ns >= ? GROUP BY ALL), "
            "j AS (SELECT run_start_ns // ? * ? AS bucket_ns, count(*) AS judged FROM policy_runs "
            "WHERE tenant = ? AND run_start_ns >= ? GROUP BY ALL) "
            "SELECT v.*, coalesce(j.judged, 0) AS judged FROM v LEFT JOIN j USING (bucket_ns) ORDER BY policy, rule, bucket_ns",
            [bucket_ns, bucket_ns, tenant, since_ns, bucket_ns, bucket_ns, tenant, since_ns],
        )

    def policy_totals(self: _Host, tenant: str, since_ns: int, until_ns: int) -> list[dict[str, Any]]:
        """Per journey, runs started in [since, until): judged, with a deny / a warn violation,
        violations, guardrail checks and trips (what a scorecard reads)."""
        return self._rows(
            "WITH v AS (SELECT trace_id, bool_or(effect = 'deny') AS denied, bool_or(effect = 'warn') AS warned "
            "FROM policy_violations WHERE tenant = ? AND run_start_ns >= ? AND run_start_ns < ? GROUP BY trace_id) "
            "SELECT coalesce(p.journey, '') AS journey, count(*) AS judged, "
            "count(*) FILTER (WHERE v.denied) AS denied_runs, count(*) FILTER (WHERE v.warned) AS warned_runs, "
            "sum(p.violations) AS violations, sum(p.guardrail_checks) AS guardrail_checks, "
            "sum(p.guardrail_trips) AS guardrail_trips, count(*) FILTER (WHERE p.guardrail_trips > 0) AS tripped_runs, "
            "count(*) FILTER (WHERE p.guardrail_checks > 0) AS checked_runs "
            "FROM policy_runs p LEFT JOIN v USING (trace_id) "
            "WHERE p.tenant = ? AND p.run_start_ns >= ? AND p.run_start_ns < ? GROUP BY ALL ORDER BY journey",
            [tenant, since_ns, until_ns, tenant, since_ns, until_ns],
        )

    def policy_run(self: _Host, tenant: str, trace_id: str) -> dict[str, Any] | None:
        """How a trace was last judged (None if not yet)."""
        rows = self._rows("SELECT * EXCLUDE (tenant) FROM policy_runs WHERE tenant = ? AND trace_id = ?", [tenant, trace_id])
        return rows[0] if rows else None


def _write_marks(conn: duckdb.DuckDBPyConnection, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    conn.execute("DELETE FROM policy_violations WHERE tenant = ? AND trace_id = ?", [row["tenant"], row["trace_id"]])
    if rows:
        conn.executemany(
            "INSERT INTO policy_violations (tenant, trace_id, journey, run_start_ns, policy, version, rule, kind, "
            "effect, message, count, span_id, span_ids, start_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[v["tenant"], v["trace_id"], v.get("journey"), v["run_start_ns"], v["policy"], v["version"], v["rule"],
              v["kind"], v["effect"], v["message"], float(v["count"]), v["span_id"], list(v["span_ids"]),
              v["start_ns"]] for v in rows],
        )
    conn.execute(
        "INSERT OR REPLACE INTO policy_runs (tenant, trace_id, journey, run_start_ns, bundle, last_received_ns, "
        "evaluated_ns, actions, violations, guardrail_checks, guardrail_trips, undetermined) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [row["tenant"], row["trace_id"], row.get("journey"), row["run_start_ns"], row.get("bundle"),
         row["last_received_ns"], time.time_ns(), row["actions"], len(rows), row["guardrail_checks"],
         row["guardrail_trips"], list(row["undetermined"])],
    )


def _write_scores(conn: duckdb.DuckDBPyConnection, row: dict[str, Any], violated: bool) -> None:
    conn.execute(
        "DELETE FROM scores WHERE tenant = ? AND trace_id = ? AND span_id IS NULL AND source = ? AND name IN (?, ?)",
        [row["tenant"], row["trace_id"], POLICY_SCORE_SOURCE, POLICY_SCORE, TRIP_SCORE],
    )
    now = time.time_ns()
    conn.executemany(
        "INSERT INTO scores (tenant, trace_id, span_id, name, value, label, source, comment, time_ns, "
        "received_ns) VALUES (?, ?, NULL, ?, ?, NULL, ?, ?, ?, ?)",
        [[row["tenant"], row["trace_id"], name, value, POLICY_SCORE_SOURCE,
          f"agent policy {row.get('bundle') or ''}".strip(), now, now] for name, value in policy_scores(row, violated)],
    )


def policy_scores(row: dict[str, Any], violated: bool) -> list[tuple[str, float]]:
    """The scores a judged run gets: policy_violation always, guardrail_trip when checked."""
    scores = [(POLICY_SCORE, 1.0 if violated else 0.0)]
    if row["guardrail_checks"]:
        scores.append((TRIP_SCORE, 1.0 if row["guardrail_trips"] else 0.0))
    return scores


def expire_policy_step(conn: duckdb.DuckDBPyConnection, cutoff_ns: int, max_rows: int) -> dict[str, int]:
    """Delete up to ``max_rows`` decision records before ``cutoff_ns`` and up to ``max_rows``
    judged runs started before it with their violations, in one transaction."""
    limit = max(1, int(max_rows))
    with transaction(conn):
        decisions = conn.execute(
            "DELETE FROM policy_decisions WHERE id IN (SELECT id FROM policy_decisions WHERE at_ns < ? LIMIT ?)",
            [int(cutoff_ns), limit]).fetchall()[0][0]
        runs = conn.execute(
            "SELECT tenant, trace_id FROM policy_runs WHERE run_start_ns < ? LIMIT ?", [int(cutoff_ns), limit]).fetchall()
        violations = 0
        if runs:
            conn.register("expiring_runs", pa.table({"tenant": [r[0] for r in runs], "trace_id": [r[1] for r in runs]}))
            try:
                violations = conn.execute(
                    "DELETE FROM policy_violations v USING expiring_runs e WHERE v.tenant = e.tenant "
                    "AND v.trace_id = e.trace_id").fetchall()[0][0]
                conn.execute("DELETE FROM policy_runs p USING expiring_runs e WHERE p.tenant = e.tenant "
                             "AND p.trace_id = e.trace_id")
            finally:
                conn.unregister("expiring_runs")
    return {"decisions": int(decisions), "runs": len(runs), "violations": int(violations)}
