"""Platform scores on ClickHouse: what store/duckdb/platform_scores.py keeps and counts
(a subject's scores at a time; score SLIs over subjects, one event per score), in a
ReplacingMergeTree whose newest version of a (tenant, subject, name, time) wins."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from aisre.core.model import SliRule
from aisre.store.clickhouse.client import Client
from aisre.store.clickhouse.semantics import good_sql
from aisre.store.duckdb.platform_scores import last_of_each_key


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def put_platform_scores(client: Client, scores: pa.Table, version: int) -> dict[str, set[int]]:
    """Insert ``scores`` as version ``version`` of their keys; returns the minutes touched."""
    batch = last_of_each_key(scores)
    client.insert_arrow("platform_scores", batch.append_column("version", pa.array([version] * batch.num_rows, pa.int64())),
                        {"insert_deduplicate": 0})
    touched: dict[str, set[int]] = {}
    for tenant, minute in zip(batch.column("tenant").to_pylist(), batch.column("minute_ns").to_pylist(), strict=True):
        touched.setdefault(tenant, set()).add(int(minute))
    return touched


def platform_counts(client: Client, tenant: str, rules: list[SliRule], start: int, end: int) -> list[tuple[str, int, int, int]]:
    """(slo, minute_ns, good, total) of every platform score rule over [start, end)."""
    if not rules:
        return []

    def match(r: SliRule) -> str:
        return f"subject = {_literal(r.subject or '')} AND name = {_literal(r.score or '')}"

    goods = ", ".join(f"toInt64(countIf({match(r)} AND {good_sql(r, lambda field: 'value')}))" for r in rules)
    totals = ", ".join(f"toInt64(countIf({match(r)}))" for r in rules)
    names = ", ".join(sorted({_literal(r.score or "") for r in rules}))
    found = client.query(
        f"SELECT minute_ns, [{goods}] AS goods, [{totals}] AS totals FROM platform_scores FINAL "
        "WHERE tenant = {tenant:String} AND minute_ns >= {start:Int64} AND minute_ns < {end:Int64} "
        f"AND name IN ({names}) GROUP BY minute_ns",
        {"tenant": tenant, "start": int(start), "end": int(end)})
    out = []
    for minute, goods_row, totals_row in zip(*(found.column(c).to_pylist() for c in ("minute_ns", "goods", "totals")),
                                             strict=True):
        for rule, good, total in zip(rules, goods_row, totals_row, strict=True):
            if total:
                out.append((rule.slo, int(minute), int(good), int(total)))
    return out


def read_platform_scores(
    client: Client, tenant: str, subject: str | None, name: str | None,
    since_ns: int | None, until_ns: int | None, limit: int,
) -> list[dict[str, Any]]:
    """Stored platform scores, oldest first, filtered by subject, name and time."""
    clauses = ["tenant = {tenant:String}"]
    params: dict[str, Any] = {"tenant": tenant, "limit": int(limit)}
    for clause, key, value in (("subject = {subject:String}", "subject", subject), ("name = {name:String}", "name", name),
                               ("time_ns >= {since:Int64}", "since", since_ns), ("time_ns < {until:Int64}", "until", until_ns)):
        if value is not None:
            clauses.append(clause)
            params[key] = value
    rows = client.query(
        "SELECT subject, name, value, source, comment, time_ns, received_ns FROM platform_scores FINAL "
        f"WHERE {' AND '.join(clauses)} ORDER BY time_ns, subject, name LIMIT {{limit:UInt64}}", params).to_pylist()
    return [{k: (int(v) if k in ("time_ns", "received_ns") else v) for k, v in r.items()} for r in rows]
