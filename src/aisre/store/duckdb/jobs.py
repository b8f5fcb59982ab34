"""ML-platform job SLIs over spans (DESIGN §4, docs/metrics.md): ``pipeline`` (runs that
succeed) and ``deadline`` (a successful run ended by each scheduled deadline).

A run is a span carrying OTel CI/CD ``cicd.pipeline.name`` (not a task span, which also
carries ``cicd.pipeline.task.name``), or a root job span named after the pipeline. Its result
is ``cicd.pipeline.result`` when present (success good; failure, error, timeout bad;
cancellation and skip not counted), else the span status (error bad).
"""

from __future__ import annotations

import duckdb

from aisre.core.model import SliRule
from aisre.core.schema import MINUTE_NS

JOB_SLI_KINDS = frozenset({"pipeline", "deadline"})

_RUNS = """
SELECT start_ns, end_ns, CASE
    WHEN r IS NULL THEN status IS DISTINCT FROM 'error'
    WHEN r = 'success' THEN true
    WHEN r IN ('cancellation', 'skip') THEN NULL
    ELSE false END AS ok
FROM (
    SELECT start_ns, end_ns, status, lower(json_extract_string(attributes, '$."cicd.pipeline.result"')) AS r
    FROM spans
    WHERE tenant = ? AND (
        (json_extract_string(attributes, '$."cicd.pipeline.name"') = ?
         AND json_extract_string(attributes, '$."cicd.pipeline.task.name"') IS NULL)
        OR (is_root AND name = ? AND json_extract_string(attributes, '$."cicd.pipeline.name"') IS NULL))
)
"""


def deadlines(rule: SliRule, start: int, end: int) -> list[int]:
    """The rule's deadline instants in [start, end)."""
    if rule.period_ns is None or rule.deadline_at_ns is None or end <= start:
        return []
    period, at = rule.period_ns, rule.deadline_at_ns
    first = ((start - at + period - 1) // period) * period + at
    return list(range(first, end, period))


def next_deadline(rule: SliRule, at_ns: int) -> int | None:
    """The first deadline at or after ``at_ns`` (the one a run ending then counts for)."""
    found = deadlines(rule, at_ns, at_ns + (rule.period_ns or 0))
    return found[0] if found else None


def job_slo_counts(
    conn: duckdb.DuckDBPyConnection, tenant: str, rule: SliRule, start: int, end: int, now_ns: int
) -> list[tuple[int, int, int]]:
    """(minute_ns, good, total) of one job SLI over [start, end)."""
    name = rule.pipeline or ""
    if rule.kind == "pipeline":
        rows = conn.execute(
            f"SELECT (start_ns // {MINUTE_NS}) * {MINUTE_NS} AS m, count(*) FILTER (WHERE ok), count(*) "
            f"FROM ({_RUNS}) WHERE ok IS NOT NULL AND start_ns >= ? AND start_ns < ? GROUP BY 1 ORDER BY 1",
            [tenant, name, name, start, end],
        ).fetchall()
        return [(int(m), int(g), int(t)) for m, g, t in rows]
    if rule.kind != "deadline" or rule.period_ns is None:
        return []
    period = rule.period_ns
    # Deadlines count from the pipeline's first run (not from 1970) up to now (not the future).
    first = conn.execute(f"SELECT min(start_ns) FROM ({_RUNS})", [tenant, name, name]).fetchall()[0][0]
    if first is None:
        return []
    due = deadlines(rule, max(start, int(first)), min(end, now_ns + 1))
    if not due:
        return []
    ends = [int(e) for (e,) in conn.execute(
        f"SELECT end_ns FROM ({_RUNS}) WHERE ok AND end_ns > ? AND end_ns <= ?",
        [tenant, name, name, due[0] - period, due[-1]],
    ).fetchall()]
    out = []
    for d in due:
        good = int(any(d - period < e <= d for e in ends))
        out.append(((d // MINUTE_NS) * MINUTE_NS, good, 1))
    return out
