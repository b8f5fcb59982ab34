"""ML-platform job SLIs over spans (DESIGN §4, docs/metrics.md): ``pipeline`` (runs that
succeed), ``deadline`` (a successful run ended by each scheduled deadline) and
``dataset_freshness`` (the newest update of a dataset is young enough, each minute).

A run is a span carrying OTel CI/CD ``cicd.pipeline.name`` (not a task span, which also
carries ``cicd.pipeline.task.name``), or a root job span named after the pipeline. Its result
is ``cicd.pipeline.result`` when present (success good; failure, error, timeout bad;
cancellation and skip not counted), else the span status (error bad).
"""

from __future__ import annotations

import bisect

import duckdb

from aisre.core.model import SliRule
from aisre.core.schema import MINUTE_NS
from aisre.core.slo import DATASET_ATTRIBUTE, JOB_SLI_KINDS

__all__ = ["JOB_SLI_KINDS", "deadlines", "freshness_minutes", "freshness_window", "job_slo_counts", "next_deadline",
           "passed_minutes"]

_RUNS = """
SELECT trace_id, span_id, received_ns, start_ns, end_ns, CASE
    WHEN r IS NULL THEN status IS DISTINCT FROM 'error'
    WHEN r = 'success' THEN true
    WHEN r IN ('cancellation', 'skip') THEN NULL
    ELSE false END AS ok
FROM (
    SELECT trace_id, span_id, received_ns, start_ns, end_ns, status,
        lower(json_extract_string(attributes, '$."cicd.pipeline.result"')) AS r
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


def passed_minutes(last_ns: int | None, now_ns: int) -> set[int]:
    """Minutes that ended in (last_ns, now_ns] (at most the last 1440): a freshness minute is
    counted once it ended, so a dataset that stops updating goes bad without new data."""
    if last_ns is None:
        last_ns = now_ns
    first = max(last_ns // MINUTE_NS * MINUTE_NS, now_ns // MINUTE_NS * MINUTE_NS - 1440 * MINUTE_NS)
    return {m - MINUTE_NS for m in range(first, now_ns + 1, MINUTE_NS) if last_ns < m <= now_ns}


def freshness_minutes(
    rule: SliRule, first: int | None, before: int | None, updates: list[int], start: int, end: int, now_ns: int
) -> list[tuple[int, int, int]]:
    """(minute_ns, good, total) of a dataset-freshness SLI over [start, end): one event a
    minute from the minute the dataset's ``first`` update ended by, for minutes ended by
    ``now_ns``; good when the newest update that ended by the minute's end (``before``: the
    newest at or before ``start``, then the sorted ``updates`` after it) is at most
    ``rule.max_value`` seconds old."""
    if first is None:
        return []
    bound = round(float(rule.max_value or 0.0) * 1e9)
    lo = max(start // MINUTE_NS * MINUTE_NS, (first - 1) // MINUTE_NS * MINUTE_NS)
    hi = min(end, now_ns - MINUTE_NS + 1)
    out = []
    for m in range(lo, hi, MINUTE_NS):
        i = bisect.bisect_right(updates, m + MINUTE_NS)
        newest = updates[i - 1] if i else before
        good = newest is not None and m + MINUTE_NS - newest <= bound
        out.append((m, int(good), 1))
    return out


# The text test first: it is cheap, and most spans carry no dataset at all.
_UPDATES = f"""
SELECT end_ns FROM spans
WHERE tenant = ? AND contains(CAST(attributes AS VARCHAR), '{DATASET_ATTRIBUTE}')
  AND json_extract_string(attributes, '$."{DATASET_ATTRIBUTE}"') = ?
"""


def freshness_window(rule: SliRule, start: int) -> int:
    """Updates ending at or before this are too old to make any minute from ``start`` on
    fresh: only whether one exists matters (the dataset's minutes are counted, and bad)."""
    return max(start - round(float(rule.max_value or 0.0) * 1e9) - MINUTE_NS, -(2**63) + 1)


def _dataset_freshness(
    conn: duckdb.DuckDBPyConnection, tenant: str, rule: SliRule, start: int, end: int, now_ns: int
) -> list[tuple[int, int, int]]:
    name = rule.dataset or ""
    # The newest update by ``start`` is read only as far back as it can still matter, so a
    # pass scans recent spans; an older one only says the dataset's counting has begun.
    (before,) = conn.execute(
        f"SELECT max(end_ns) FROM ({_UPDATES}) WHERE end_ns > ? AND end_ns <= ?",
        [tenant, name, freshness_window(rule, start), start],
    ).fetchall()[0]
    begun = before is not None or bool(conn.execute(
        f"SELECT 1 FROM ({_UPDATES}) WHERE end_ns <= ? LIMIT 1", [tenant, name, start]).fetchall())
    updates = [int(e) for (e,) in conn.execute(
        f"SELECT DISTINCT end_ns FROM ({_UPDATES}) WHERE end_ns > ? AND end_ns <= ? ORDER BY 1",
        [tenant, name, start, min(end, now_ns)],
    ).fetchall()]
    first = start if begun else (updates[0] if updates else None)
    return freshness_minutes(rule, first, int(before) if before is not None else None, updates, start, end, now_ns)


def job_slo_counts(
    conn: duckdb.DuckDBPyConnection, tenant: str, rule: SliRule, start: int, end: int, now_ns: int
) -> list[tuple[int, int, int]]:
    """(minute_ns, good, total) of one job SLI over [start, end)."""
    if rule.kind == "dataset_freshness":
        return _dataset_freshness(conn, tenant, rule, start, end, now_ns)
    name = rule.pipeline or ""
    if rule.kind == "pipeline":
        # A run stored twice (a copy re-sent after the store's dedup window, e.g. an event
        # re-posted days later) is one run: the first copy received counts.
        rows = conn.execute(
            f"SELECT (start_ns // {MINUTE_NS}) * {MINUTE_NS} AS m, count(*) FILTER (WHERE ok), count(*) FROM ("
            f"SELECT start_ns, ok FROM ({_RUNS}) WHERE start_ns >= ? AND start_ns < ? "
            "QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY received_ns) = 1"
            ") WHERE ok IS NOT NULL GROUP BY 1 ORDER BY 1",
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
