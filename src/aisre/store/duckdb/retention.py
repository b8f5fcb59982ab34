"""Retention of raw spans and traces, and duplicate spans (exactly-once ingest).

Raw data (spans, their traces rows and their scores) expires per tenant after
``retention_days``; minute rollups (run, SLO and cost minutes) are kept for
``rollup_retention_days``, as are agent policy decision records and violations (by the
decision's time and the run's start); other control-plane records (alerts, incidents,
verdicts, the audit log) are never expired. Expiry deletes at most ``step_traces`` traces per
transaction on the writer thread, so ingest waits for one such commit at most.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

_PICK = "SELECT trace_id FROM traces WHERE tenant = ? AND end_ns < ? LIMIT ?"
# A span starts no later than its trace ends, so start_ns < cutoff lets zone maps skip
# every row group of younger spans.
_DELETE_SPANS = "DELETE FROM spans WHERE tenant = ? AND start_ns < ? AND trace_id IN (SELECT trace_id FROM expiring)"
_DELETE_SCORES = "DELETE FROM scores WHERE tenant = ? AND trace_id IN (SELECT trace_id FROM expiring)"
_DELETE_TRACES = "DELETE FROM traces WHERE tenant = ? AND trace_id IN (SELECT trace_id FROM expiring)"
ROLLUP_TABLES = ("run_minutes", "slo_minutes", "cost_minutes", "metric_minutes", "platform_scores")


@dataclass
class ExpiryStats:
    """What expiry has deleted since the store opened, and how."""

    spans: int = 0
    traces: int = 0
    steps: int = 0
    rollup_minutes: int = 0
    last_step_traces: int = 0
    # Agent policy records past rollup_retention_days: decision records, and judged runs
    # with their violations.
    decisions: int = 0
    violations: int = 0
    judged_runs: int = 0

    def count_policy(self, deleted: dict[str, int]) -> bool:
        """Add one policy expiry step's counts; True when it deleted anything."""
        self.decisions += int(deleted.get("decisions", 0))
        self.violations += int(deleted.get("violations", 0))
        self.judged_runs += int(deleted.get("runs", 0))
        return any(deleted.values())


def expire_step(
    conn: duckdb.DuckDBPyConnection, tenant: str, cutoff_ns: int, step_traces: int, mark_ns: int
) -> tuple[int, int]:
    """Delete up to ``step_traces`` traces of ``tenant`` that ended before ``cutoff_ns``,
    with their spans and scores, in one transaction; returns (traces, spans) deleted.

    Nothing is marked for a rollup rebuild: the minutes keep the counts made while the
    spans were there, and ``mark_ns`` (recorded in the same transaction) tells later
    rebuilds to leave every minute before it alone.
    """
    picked = conn.execute(_PICK, [tenant, cutoff_ns, step_traces]).fetchall()
    if not picked:
        return 0, 0
    conn.register("expiring", pa.table({"trace_id": [row[0] for row in picked]}))
    conn.execute("BEGIN TRANSACTION")
    try:
        # fetchall, not fetchone: a result left half-read blocks the connection's next statement.
        row = conn.execute(_DELETE_SPANS, [tenant, cutoff_ns]).fetchall()[0]
        conn.execute(_DELETE_SCORES, [tenant])
        conn.execute(_DELETE_TRACES, [tenant])
        conn.execute("INSERT OR REPLACE INTO expiry_marks VALUES (?, ?)", [tenant, mark_ns])
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.unregister("expiring")
    return len(picked), int(row[0]) if row else 0


def expire_rollups(conn: duckdb.DuckDBPyConnection, cutoff_ns: int) -> int:
    """Delete minute rollups older than ``cutoff_ns`` (every tenant); returns rows deleted."""
    deleted = 0
    conn.execute("BEGIN TRANSACTION")
    try:
        for table in ROLLUP_TABLES:
            row = conn.execute(f"DELETE FROM {table} WHERE minute_ns < ?", [cutoff_ns]).fetchall()[0]
            deleted += int(row[0]) if row else 0
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return deleted


def duplicate_keys(
    conn: duckdb.DuckDBPyConnection, suspects: pa.Table, since_ns: int
) -> set[tuple[str, str, str]]:
    """The (tenant, trace_id, span_id) of ``suspects`` already stored among spans received
    at or after ``since_ns`` (zone maps on received_ns keep the scan to that stretch)."""
    conn.register("suspects", suspects)
    try:
        rows = conn.execute(
            "SELECT DISTINCT s.tenant, s.trace_id, s.span_id FROM spans s "
            "SEMI JOIN suspects k ON s.tenant = k.tenant AND s.trace_id = k.trace_id AND s.span_id = k.span_id "
            "WHERE s.received_ns >= ?",
            [since_ns],
        ).fetchall()
    finally:
        conn.unregister("suspects")
    return {(str(t), str(i), str(s)) for t, i, s in rows}
