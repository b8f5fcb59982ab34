"""Platform scores (a subject's scores at a time: a model's drift, a dataset's quality) and
the score SLIs over subjects counted from them: each score posted is one event in the
minute of its time, good when within the rule's [min, max]."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from aisre.core.model import SliRule
from aisre.store.duckdb.semantics import good_sql
from aisre.store.duckdb.transaction import transaction

KEY = ("tenant", "subject", "name", "time_ns")
COLUMNS = "tenant, subject, name, value, source, comment, time_ns, minute_ns, received_ns"


def is_platform_rule(rule: SliRule) -> bool:
    """Whether ``rule`` is a score SLI over a subject's platform scores (not a journey's)."""
    return rule.kind == "score" and rule.subject is not None


def last_of_each_key(scores: pa.Table) -> pa.Table:
    """``scores`` with one row per (tenant, subject, name, time_ns): the last sent."""
    keys = list(zip(*(scores.column(c).to_pylist() for c in KEY), strict=True))
    last = {key: n for n, key in enumerate(keys)}
    if len(last) == len(keys):
        return scores
    return scores.take(pa.array(sorted(last.values()), type=pa.int64()))


def put_platform_scores(conn: duckdb.DuckDBPyConnection, scores: pa.Table) -> dict[str, set[int]]:
    """Store ``scores`` (writer thread, one transaction), each replacing a stored one of the
    same key; returns the minutes touched per tenant."""
    batch = last_of_each_key(scores)
    conn.register("new_platform_scores", batch)
    try:
        with transaction(conn):
            conn.execute(
                "DELETE FROM platform_scores p USING new_platform_scores b WHERE p.tenant = b.tenant "
                "AND p.subject = b.subject AND p.name = b.name AND p.time_ns = b.time_ns")
            conn.execute(f"INSERT INTO platform_scores SELECT {COLUMNS} FROM new_platform_scores")
    finally:
        conn.unregister("new_platform_scores")
    touched: dict[str, set[int]] = {}
    for tenant, minute in zip(batch.column("tenant").to_pylist(), batch.column("minute_ns").to_pylist(), strict=True):
        touched.setdefault(tenant, set()).add(int(minute))
    return touched


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def platform_counts_sql(rules: list[SliRule]) -> str:
    """Good and total scores of every platform rule per minute, in one scan of the tenant's
    platform scores over [start, end) (parameters: tenant, start, end)."""
    def match(r: SliRule) -> str:
        return f"subject = {_literal(r.subject or '')} AND name = {_literal(r.score or '')}"

    goods = ", ".join(f"count(*) FILTER (WHERE {match(r)} AND {good_sql(r, lambda field: 'value')})" for r in rules)
    totals = ", ".join(f"count(*) FILTER (WHERE {match(r)})" for r in rules)
    names = ", ".join(sorted({_literal(r.score or "") for r in rules}))
    return (f"SELECT minute_ns, [{goods}] AS goods, [{totals}] AS totals FROM platform_scores "
            f"WHERE tenant = ? AND minute_ns >= ? AND minute_ns < ? AND name IN ({names}) GROUP BY minute_ns")


def read_platform_scores(
    cur: duckdb.DuckDBPyConnection, tenant: str, subject: str | None, name: str | None,
    since_ns: int | None, until_ns: int | None, limit: int,
) -> list[dict[str, Any]]:
    """Stored platform scores, oldest first, filtered by subject, name and time."""
    clauses: list[str] = ["tenant = ?"]
    params: list[Any] = [tenant]
    for clause, value in (("subject = ?", subject), ("name = ?", name), ("time_ns >= ?", since_ns),
                          ("time_ns < ?", until_ns)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    cursor = cur.execute(
        f"SELECT subject, name, value, source, comment, time_ns, received_ns FROM platform_scores "
        f"WHERE {' AND '.join(clauses)} ORDER BY time_ns, subject, name LIMIT ?", [*params, limit])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
