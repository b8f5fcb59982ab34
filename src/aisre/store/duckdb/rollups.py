"""Minute rollups of journey runs, rebuilt for the minutes each commit touched.

A commit says which (tenant, minute) its runs start in; the writer rebuilds those
minutes from `traces` about once a second, in its own transaction. Rebuilding instead
of adding keeps late spans honest: a root that arrives late, or a child that turns a
run into a failure, changes the minute it belongs to, and nothing is counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import duckdb
import pyarrow as pa

from aisre.core.model import SliRule
from aisre.core.schema import MINUTE_NS
from aisre.store.duckdb.cost import rebuild_cost_minutes
from aisre.store.duckdb.jobs import JOB_SLI_KINDS, job_slo_counts
from aisre.store.duckdb.metrics import METRIC_SLI_KINDS, metric_slo_counts
from aisre.store.duckdb.platform_scores import is_platform_rule, platform_counts_sql
from aisre.store.duckdb.semantics import (
    STEP_SLACK_NS,
    good_predicate,
    good_sql,
    journey_sql,
    run_minutes_sql,
)

_REBUILD = run_minutes_sql()


_DELETE = "DELETE FROM run_minutes WHERE tenant = ? AND minute_ns >= ? AND minute_ns < ?"


def minute_of(ns: int) -> int:
    """Start of the minute ``ns`` falls in."""
    return (ns // MINUTE_NS) * MINUTE_NS


def ranges(minutes: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted minutes → half-open [start, end) ranges of consecutive minutes."""
    out: list[tuple[int, int]] = []
    for minute in sorted(set(minutes)):
        if out and out[-1][1] == minute:
            out[-1] = (out[-1][0], minute + MINUTE_NS)
        else:
            out.append((minute, minute + MINUTE_NS))
    return out


def rebuild(
    conn: duckdb.DuckDBPyConnection,
    dirty: dict[str, set[int]],
    rules: dict[str, list[SliRule]] | None = None,
    now_ns: int | None = None,
) -> int:
    """Rebuild the given minutes per tenant in one transaction; returns minutes rebuilt."""
    count = 0
    conn.execute("BEGIN TRANSACTION")
    try:
        for tenant, minutes in dirty.items():
            for start, end in ranges(minutes):
                conn.execute(_DELETE, [tenant, start, end])
                conn.execute(_REBUILD, [tenant, start, end])
                rebuild_slo_minutes(conn, tenant, (rules or {}).get(tenant, []), start, end, now_ns)
                rebuild_cost_minutes(conn, tenant, start, end)
                count += (end - start) // MINUTE_NS
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return count


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"




def step_counts_sql(rules: list[SliRule]) -> str:
    """One join of spans to their runs counting good and total step spans of every rule,
    per minute of the run's start (so a late span lands in its run's minute)."""
    def good(r: SliRule) -> str:
        return good_sql(r, lambda field: f"s.{field}")

    def match(r: SliRule) -> str:
        return f"j = {_literal(r.journey)} AND s.operation = {_literal(r.operation or '')}"

    goods = ", ".join(f"count(*) FILTER (WHERE {match(r)} AND {good(r)})" for r in rules)
    totals = ", ".join(f"count(*) FILTER (WHERE {match(r)})" for r in rules)
    operations = ", ".join(sorted({_literal(r.operation or "") for r in rules}))
    return f"""
SELECT minute_ns, [{goods}] AS goods, [{totals}] AS totals
FROM (
    SELECT s.operation, s.status, s.duration_ns,
        {journey_sql("t.")} AS j,
        (t.root_start_ns // {MINUTE_NS}) * {MINUTE_NS} AS minute_ns
    FROM spans s
    JOIN traces t ON t.tenant = s.tenant AND t.trace_id = s.trace_id
    WHERE s.tenant = ? AND s.operation IN ({operations})
      AND s.start_ns >= ? AND s.start_ns < ? + {STEP_SLACK_NS}
      AND t.tenant = ? AND t.has_root AND t.root_start_ns >= ? AND t.root_start_ns < ?
) AS s
GROUP BY minute_ns
"""


def score_counts_sql(rules: list[SliRule]) -> str:
    """Good and total runs per score rule per minute: a run's value is the mean of its
    numeric scores of that name (several evaluators, or re-evaluations)."""
    def match(r: SliRule) -> str:
        return f"j = {_literal(r.journey)} AND name = {_literal(r.score or '')}"

    def good(r: SliRule) -> str:
        return good_sql(r, lambda field: "v")

    goods = ", ".join(f"count(*) FILTER (WHERE {match(r)} AND {good(r)})" for r in rules)
    totals = ", ".join(f"count(*) FILTER (WHERE {match(r)})" for r in rules)
    names = ", ".join(sorted({_literal(r.score or "") for r in rules}))
    return f"""
SELECT minute_ns, [{goods}] AS goods, [{totals}] AS totals
FROM (
    SELECT t.trace_id, s.name, avg(s.value) AS v,
        any_value({journey_sql("t.")}) AS j,
        any_value((t.root_start_ns // {MINUTE_NS}) * {MINUTE_NS}) AS minute_ns
    FROM scores s
    JOIN traces t ON t.tenant = s.tenant AND t.trace_id = s.trace_id
    WHERE s.tenant = ? AND s.name IN ({names}) AND s.value IS NOT NULL
      AND t.tenant = ? AND t.has_root AND t.root_start_ns >= ? AND t.root_start_ns < ?
    GROUP BY t.trace_id, s.name
)
GROUP BY minute_ns
"""


def slo_counts_sql(rules: list[SliRule]) -> str:
    """One scan of `traces` counting good and total runs of every rule per minute."""
    goods = ", ".join(
        f"count(*) FILTER (WHERE j = {_literal(r.journey)} AND {good_predicate(r)})" for r in rules
    )
    totals = ", ".join(f"count(*) FILTER (WHERE j = {_literal(r.journey)})" for r in rules)
    return f"""
SELECT minute_ns, [{goods}] AS goods, [{totals}] AS totals
FROM (
    SELECT *, {journey_sql()} AS j,
        (root_start_ns // {MINUTE_NS}) * {MINUTE_NS} AS minute_ns
    FROM traces
    WHERE tenant = ? AND has_root AND root_start_ns >= ? AND root_start_ns < ?
)
GROUP BY minute_ns
"""


def rebuild_slo_minutes(
    conn: duckdb.DuckDBPyConnection, tenant: str, rules: list[SliRule], start: int, end: int,
    now_ns: int | None = None,
) -> None:
    """Replace ``rules``' minute counts in [start, end) (inside the caller's transaction);
    deadlines after ``now_ns`` (default: the clock) are not due yet."""
    # Prometheus-sourced SLIs are written by their reader (put_slo_minutes), never recounted.
    rules = [r for r in rules if r.kind != "prometheus"]
    if not rules:
        return
    names = [r.slo for r in rules]
    conn.execute(
        "DELETE FROM slo_minutes WHERE tenant = ? AND minute_ns >= ? AND minute_ns < ? AND list_contains(?, slo)",
        [tenant, start, end, names],
    )
    out: dict[str, list[Any]] = {"tenant": [], "slo": [], "minute_ns": [], "good": [], "total": []}
    metric_rules = [r for r in rules if r.kind in METRIC_SLI_KINDS]
    job_rules = [r for r in rules if r.kind in JOB_SLI_KINDS]
    run_rules = [r for r in rules
                 if r.kind not in ("step", "score") and r.kind not in METRIC_SLI_KINDS and r.kind not in JOB_SLI_KINDS]
    step_rules = [r for r in rules if r.kind == "step"]
    score_rules = [r for r in rules if r.kind == "score" and not is_platform_rule(r)]
    platform_rules = [r for r in rules if is_platform_rule(r)]
    counted: list[tuple[list[str], list[tuple[Any, ...]]]] = []
    if run_rules:
        counted.append(([r.slo for r in run_rules], conn.execute(slo_counts_sql(run_rules), [tenant, start, end]).fetchall()))
    if step_rules:
        params = [tenant, start, end, tenant, start, end]
        counted.append(([r.slo for r in step_rules], conn.execute(step_counts_sql(step_rules), params).fetchall()))
    if score_rules:
        params = [tenant, tenant, start, end]
        counted.append(([r.slo for r in score_rules], conn.execute(score_counts_sql(score_rules), params).fetchall()))
    if platform_rules:
        params = [tenant, start, end]
        counted.append(([r.slo for r in platform_rules], conn.execute(platform_counts_sql(platform_rules), params).fetchall()))
    now = now_ns if now_ns is not None else time.time_ns()
    per_rule = [(rule, metric_slo_counts(conn, tenant, rule, start, end)) for rule in metric_rules]
    per_rule += [(rule, job_slo_counts(conn, tenant, rule, start, end, now)) for rule in job_rules]
    for rule, counts in per_rule:
        for minute, good, total in counts:
            out["tenant"].append(tenant)
            out["slo"].append(rule.slo)
            out["minute_ns"].append(minute)
            out["good"].append(good)
            out["total"].append(total)
    for rule_names, rows in counted:
        for minute, goods, totals in rows:
            for name, good, total in zip(rule_names, goods, totals, strict=True):
                if total:
                    out["tenant"].append(tenant)
                    out["slo"].append(name)
                    out["minute_ns"].append(minute)
                    out["good"].append(good)
                    out["total"].append(total)
    if out["slo"]:
        conn.register("new_slo_minutes", pa.table(out))
        try:
            conn.execute("INSERT INTO slo_minutes SELECT * FROM new_slo_minutes")
        finally:
            conn.unregister("new_slo_minutes")
