"""ML-platform job SLIs over spans on ClickHouse: what store/duckdb/jobs.py counts
(``pipeline``: runs that succeed; ``deadline``: a successful run ended by each scheduled
deadline; ``dataset_freshness``: the newest dataset update is young enough each minute), over
the same runs and updates, found the same way."""

from __future__ import annotations

from aisre.core.model import SliRule
from aisre.core.schema import MINUTE_NS
from aisre.core.slo import DATASET_ATTRIBUTE
from aisre.store.clickhouse.client import Client
from aisre.store.duckdb.jobs import deadlines, freshness_minutes, freshness_window


def _attr(key: str) -> str:
    return f"JSONExtract(ifNull(attributes, '{{}}'), '{key}', 'Nullable(String)')"


# A run: a span carrying cicd.pipeline.name (not a task span), or a root job span named after
# the pipeline. ok: its cicd.pipeline.result, else its status; NULL when not counted.
_RUNS = f"""
SELECT trace_id, span_id, received_ns, start_ns, end_ns, multiIf(
    r IS NULL, ifNull(status, '') != 'error',
    r = 'success', true,
    r IN ('cancellation', 'skip'), NULL,
    false) AS ok
FROM (
    SELECT trace_id, span_id, received_ns, start_ns, end_ns, status, lower({_attr('cicd.pipeline.result')}) AS r
    FROM spans
    WHERE tenant = {{tenant:String}} AND (
        ({_attr('cicd.pipeline.name')} = {{name:String}} AND {_attr('cicd.pipeline.task.name')} IS NULL)
        OR (ifNull(is_root, false) AND name = {{name:String}} AND {_attr('cicd.pipeline.name')} IS NULL))
)
"""


def _dataset_freshness(client: Client, tenant: str, rule: SliRule, start: int, end: int, now_ns: int) -> list[tuple[int, int, int]]:
    # Updates: spans whose aisre.dataset attribute names the dataset (the writer stores a span
    # delivered twice once); only their end times matter.
    updates = (f"SELECT end_ns FROM spans WHERE tenant = {{tenant:String}} "
               f"AND position(ifNull(attributes, ''), '{DATASET_ATTRIBUTE}') > 0 "
               f"AND {_attr(DATASET_ATTRIBUTE)} = {{name:String}}")
    params = {"tenant": tenant, "name": rule.dataset or "", "start": int(start), "hi": int(min(end, now_ns)),
              "lo": int(freshness_window(rule, start))}
    # As store/duckdb does: the newest update by start only as far back as it can matter.
    row = client.query(f"SELECT max(end_ns) AS b, count() AS n FROM ({updates}) "
                       "WHERE end_ns > {lo:Int64} AND end_ns <= {start:Int64}", params).to_pylist()[0]
    before = int(row["b"]) if row["n"] else None
    begun = before is not None or bool(client.query(
        f"SELECT 1 AS x FROM ({updates}) WHERE end_ns <= {{start:Int64}} LIMIT 1", params).to_pylist())
    later = [int(r["end_ns"]) for r in client.query(
        f"SELECT DISTINCT end_ns FROM ({updates}) WHERE end_ns > {{start:Int64}} AND end_ns <= {{hi:Int64}} ORDER BY end_ns",
        params).to_pylist()]
    first = start if begun else (later[0] if later else None)
    return freshness_minutes(rule, first, before, later, start, end, now_ns)


def job_slo_counts(client: Client, tenant: str, rule: SliRule, start: int, end: int, now_ns: int) -> list[tuple[int, int, int]]:
    """(minute_ns, good, total) of one job SLI over [start, end)."""
    if rule.kind == "dataset_freshness":
        return _dataset_freshness(client, tenant, rule, start, end, now_ns)
    params = {"tenant": tenant, "name": rule.pipeline or "", "start": int(start), "end": int(end)}
    if rule.kind == "pipeline":
        # A run stored twice is one run: the first copy received counts (as store/duckdb does).
        rows = client.query(
            f"SELECT intDiv(start_ns, {MINUTE_NS}) * {MINUTE_NS} AS m, countIf(ok) AS g, count() AS t FROM ("
            f"SELECT start_ns, ok FROM ({_RUNS}) WHERE start_ns >= {{start:Int64}} AND start_ns < {{end:Int64}} "
            "ORDER BY received_ns LIMIT 1 BY trace_id, span_id"
            ") WHERE ok IS NOT NULL GROUP BY m ORDER BY m", params).to_pylist()
        return [(int(r["m"]), int(r["g"]), int(r["t"])) for r in rows]
    if rule.kind != "deadline" or rule.period_ns is None:
        return []
    period = rule.period_ns
    # Deadlines count from the pipeline's first run (not from 1970) up to now (not the future).
    first = client.query(f"SELECT min(start_ns) AS f, count() AS n FROM ({_RUNS})", params).to_pylist()[0]
    if not first["n"]:
        return []
    due = deadlines(rule, max(start, int(first["f"])), min(end, now_ns + 1))
    if not due:
        return []
    ends = [int(r["end_ns"]) for r in client.query(
        f"SELECT end_ns FROM ({_RUNS}) WHERE ok AND end_ns > {{lo:Int64}} AND end_ns <= {{hi:Int64}}",
        {**params, "lo": due[0] - period, "hi": due[-1]}).to_pylist()]
    out = []
    for d in due:
        good = int(any(d - period < e <= d for e in ends))
        out.append(((d // MINUTE_NS) * MINUTE_NS, good, 1))
    return out
