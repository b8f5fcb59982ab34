"""DuckDB reads for the telemetry checker: a bounded sample of a period's spans, whole traces."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from aisre.core.model import SpanSample, SpanSampleQuery


class CheckQueries:
    """Mixed into DuckDBStore: reads through its reader pool."""

    if TYPE_CHECKING:

        def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]: ...

    def span_sample(self, q: SpanSampleQuery) -> SpanSample:
        """The newest traces with spans in the period, whole, until ``q.limit`` spans are taken."""
        clauses: list[str] = ["tenant = ?"]
        params: list[Any] = [q.tenant]
        for clause, value in (("start_ns >= ?", q.since_ns), ("start_ns < ?", q.until_ns), ("service = ?", q.service)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if q.journey is not None:
            clauses.append("trace_id IN (SELECT trace_id FROM journey_runs WHERE tenant = ? AND journey = ?)")
            params += [q.tenant, q.journey]
        # Whole traces, newest first: a check of a trace cut in two would report its root's
        # run without its model calls (or calls without their run's prompt version). Only a
        # newest trace larger than the whole limit is cut, so the sample is never empty.
        rows = self._rows(
            f"""
            WITH period AS (SELECT * FROM spans WHERE {" AND ".join(clauses)}),
            per_trace AS (SELECT trace_id, max(start_ns) AS last_ns, count(*) AS n FROM period GROUP BY trace_id),
            ranked AS (
                SELECT trace_id, n, sum(n) OVER () AS seen,
                    sum(n) OVER (ORDER BY last_ns DESC, trace_id DESC ROWS UNBOUNDED PRECEDING) AS upto
                FROM per_trace
            )
            SELECT p.* EXCLUDE (tenant, events, links), r.seen AS _seen
            FROM period p JOIN ranked r USING (trace_id)
            WHERE r.upto <= ? OR r.upto = r.n
            ORDER BY p.start_ns DESC, p.span_id LIMIT ?
            """,
            [*params, q.limit, q.limit],
        )
        seen = int(rows[0].pop("_seen")) if rows else 0
        for row in rows[1:]:
            del row["_seen"]
        trace_ids = sorted({r["trace_id"] for r in rows})
        resource_ids = sorted({r["resource_id"] for r in rows})
        resources = {
            int(r["resource_id"]): orjson.loads(r["resource"])
            for r in self._rows(
                "SELECT resource_id, resource FROM resources WHERE tenant = ? AND list_contains(?, resource_id)",
                [q.tenant, resource_ids],
            )
        } if rows else {}
        journeys: dict[str, tuple[str | None, bool]] = {}
        if rows:
            for t in self._rows(
                "SELECT trace_id, coalesce(journey_attr, journey_rule) AS named, "
                "CASE WHEN has_root THEN root_name END AS root FROM traces "
                "WHERE tenant = ? AND list_contains(?, trace_id)",
                [q.tenant, trace_ids],
            ):
                journeys[t["trace_id"]] = (t["named"] or t["root"], t["named"] is not None)
        return SpanSample(rows, resources, journeys, seen)
