"""What agent policy reads from, and writes to, the ClickHouse span store besides the other
runs' calls (store/clickhouse/reads.py): the runs to judge, a session's later runs
(re-judging), and each judged run's policy scores. The policy sets, decision records,
violations and judged marks live in the control store (store/postgres/policy.py);
store/split.py composes the two."""

from __future__ import annotations

import time
from typing import Any, Protocol

import pyarrow as pa

from aisre.core.schema import MINUTE_NS, SCORE_ARROW_SCHEMA
from aisre.store.clickhouse.client import Client
from aisre.store.clickhouse.semantics import LISTING_COLUMNS, journey_runs_sql
from aisre.store.duckdb.policy import POLICY_SCORE, POLICY_SCORE_SOURCE, TRIP_SCORE, policy_scores
from aisre.store.writer import Writer

_JUDGE_COLUMNS = (*LISTING_COLUMNS, "root_service", "last_received_ns", "session_id")


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Host(Protocol):
    client: Client
    _writer: Writer

    def _mark_dirty(self, touched: dict[str, set[int]]) -> None: ...

    def _stamped(self, table: pa.Table) -> pa.Table: ...


class ClickHousePolicyReads:
    """Mixed into ClickHouseStore."""

    def policy_candidate_runs(self: _Host, tenant: str, since_received_ns: int, limit: int = 500) -> list[dict[str, Any]]:
        """Runs (traces with a root) received at or after ``since_received_ns``, oldest
        received first: what the split store checks against the judged marks."""
        # Only traces with a part received since then are merged (the key prunes the rest).
        where = ("tenant = {tenant:String} AND trace_id IN (SELECT trace_id FROM run_parts "
                 "WHERE tenant = {tenant:String} AND last_received_ns >= {since:Int64})")
        return self.client.query(
            f"SELECT trace_id, journey, run_start_ns, root_service, last_received_ns, session_id "
            f"FROM ({journey_runs_sql(where, _JUDGE_COLUMNS)}) WHERE has_root AND last_received_ns >= {{since:Int64}} "
            "ORDER BY last_received_ns, trace_id LIMIT {limit:UInt64}",
            {"tenant": tenant, "since": int(since_received_ns), "limit": int(limit)}).to_pylist()

    def policy_session_runs(
        self: _Host, tenant: str, session: str, after_ns: int, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Runs of one session (as stored) started after ``after_ns``, oldest first: trace_id,
        run_start_ns, last_received_ns."""
        # A run started after ``after_ns`` ends after it: only those traces are merged.
        where = ("tenant = {tenant:String} AND trace_id IN (SELECT trace_id FROM run_parts "
                 "WHERE tenant = {tenant:String} AND end_ns > {after:Int64})")
        return self.client.query(
            f"SELECT trace_id, run_start_ns, last_received_ns FROM ({journey_runs_sql(where, _JUDGE_COLUMNS)}) "
            "WHERE has_root AND session_id = {session:String} AND run_start_ns > {after:Int64} "
            "ORDER BY run_start_ns, trace_id LIMIT {limit:UInt64}",
            {"tenant": tenant, "session": session, "after": int(after_ns), "limit": int(limit)}).to_pylist()

    def put_policy_scores(self: _Host, row: dict[str, Any], violated: bool) -> None:
        """Replace one judged trace's policy scores and recount its run-start minute."""

        def write() -> None:
            # A lightweight delete, then the new rows: a reader sees the old verdict, none or the
            # new one, never both. A run judged the first time has none: the point read (the
            # table's key) spares the delete, which costs far more.
            where = (f"tenant = {_literal(row['tenant'])} AND trace_id = {_literal(row['trace_id'])} "
                     f"AND name IN ({_literal(POLICY_SCORE)}, {_literal(TRIP_SCORE)}) AND span_id IS NULL "
                     f"AND source = {_literal(POLICY_SCORE_SOURCE)}")
            if self.client.query(f"SELECT count() AS n FROM scores WHERE {where}").column("n")[0].as_py():
                self.client.command(f"DELETE FROM scores WHERE {where}")
            now = time.time_ns()
            scores = policy_scores(row, violated)
            comment = f"agent policy {row.get('bundle') or ''}".strip()
            table = pa.Table.from_pylist(
                [{"tenant": row["tenant"], "trace_id": row["trace_id"], "span_id": None, "name": name, "value": value,
                  "label": None, "source": POLICY_SCORE_SOURCE, "comment": comment, "time_ns": now, "received_ns": now}
                 for name, value in scores], schema=SCORE_ARROW_SCHEMA)
            self.client.insert_arrow("scores", self._stamped(table), {"insert_deduplicate": 0})

        self._writer.call(write).result(60)
        start = int(row["run_start_ns"])
        self._mark_dirty({row["tenant"]: {start - start % MINUTE_NS}})
