"""ClickHouse reads that scan a period's spans: the telemetry checker's sample, the service
catalog's dependency calls, and the agent-policy usage of other traces. Each answers what
its DuckDB counterpart (store/duckdb/check.py, catalog.py, policy.py) answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from aisre.core.model import SpanSample, SpanSampleQuery
from aisre.core.schema import SPAN_COLUMN_NAMES

if TYPE_CHECKING:
    from aisre.store.clickhouse.client import Client

_SAMPLE_COLUMNS = [c for c in SPAN_COLUMN_NAMES if c not in ("tenant", "events", "links")]


def _attr(key: str) -> str:
    """A string attribute, NULL when the span does not carry it (as DuckDB's json_extract_string)."""
    return f"JSONExtract(ifNull(attributes, '{{}}'), '{key}', 'Nullable(String)')"


_DB = f"coalesce({_attr('db.system.name')}, {_attr('db.system')})"
_SERVER = (f"coalesce({_attr('server.address')}, extract({_attr('url.full')}, '^[a-zA-Z]+://([^/:?#]+)'), "
           f"{_attr('net.peer.name')})")
_HTTP = f"({_attr('http.request.method')} IS NOT NULL OR {_attr('http.method')} IS NOT NULL OR {_attr('url.full')} IS NOT NULL)"
_MODEL = "coalesce(nullIf(response_model, ''), nullIf(request_model, ''))"
_GENAI = "operation IN ('chat', 'text_completion', 'embeddings')"
_CLASSIFIED = f"""
    SELECT service, trace_id, status, duration_ns,
        multiIf(
            {_GENAI} AND {_MODEL} IS NOT NULL, 'model',
            operation = 'retrieval', 'vector_store',
            operation = 'execute_tool', 'tool',
            {_DB} IS NOT NULL, 'database',
            kind = 'client' AND {_HTTP} AND {_SERVER} IS NOT NULL, 'http',
            NULL) AS dep_kind,
        multiIf(
            {_GENAI} AND {_MODEL} IS NOT NULL, {_MODEL},
            operation = 'retrieval', coalesce({_DB}, nullIf(name, ''), 'retrieval'),
            operation = 'execute_tool', coalesce(nullIf(tool_name, ''), nullIf(name, ''), 'tool'),
            {_DB} IS NOT NULL, {_DB},
            {_SERVER}) AS dep_name,
        if({_GENAI}, coalesce(provider, ''), '') AS dep_provider
    FROM period
"""
# DuckDB's quantile_cont interpolates between the two nearest values, as quantileExactInclusive does.
_LATENCY = ("avg({d}) / 1e6 AS mean_ms, quantileExactInclusive(0.5)({d}) / 1e6 AS p50_ms, "
            "quantileExactInclusive(0.95)({d}) / 1e6 AS p95_ms")
_TOKENS = ("if(s.operation = 'execute_tool', 0, ifNull(s.input_tokens, 0) + ifNull(s.output_tokens, 0))")
_COST = "if(s.operation = 'execute_tool', 0.0, ifNull(s.cost_usd, 0.0))"


class SpanReads:
    """Mixed into ClickHouseStore: reads of a period's spans."""

    if TYPE_CHECKING:
        client: Client

    def _query_rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self.client.query(sql, params).to_pylist()

    def span_sample(self, q: SpanSampleQuery) -> SpanSample:
        """The newest traces with spans in the period, whole, until ``q.limit`` spans are taken."""
        clauses = ["tenant = {tenant:String}"]
        params: dict[str, Any] = {"tenant": q.tenant, "limit": int(q.limit)}
        for clause, name, value in (("start_ns >= {since:Int64}", "since", q.since_ns),
                                    ("start_ns < {until:Int64}", "until", q.until_ns),
                                    ("service = {service:String}", "service", q.service)):
            if value is not None:
                clauses.append(clause)
                params[name] = value
        if q.journey is not None:
            # The run's journey as journey_runs names it (attribute, rule, else the root's name).
            clauses.append(
                "trace_id IN (SELECT trace_id FROM run_parts WHERE tenant = {tenant:String} GROUP BY trace_id "
                "HAVING coalesce(argMinMerge(journey_attr), argMinMerge(journey_rule), argMinMerge(root_name), "
                "'(incomplete)') = {journey:String})")
            params["journey"] = q.journey
        # Whole traces, newest first (see store/duckdb/check.py): only a newest trace larger
        # than the whole limit is cut, so the sample is never empty.
        rows = self._query_rows(
            f"""
            WITH period AS (SELECT {', '.join(_SAMPLE_COLUMNS)} FROM spans WHERE {' AND '.join(clauses)}),
            ranked AS (
                SELECT trace_id, n, sum(n) OVER () AS seen,
                    sum(n) OVER (ORDER BY last_ns DESC, trace_id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS upto
                FROM (SELECT trace_id, max(start_ns) AS last_ns, count() AS n FROM period GROUP BY trace_id)
            )
            SELECT {', '.join(f'p.{c} AS {c}' for c in _SAMPLE_COLUMNS)}, r.seen AS _seen
            FROM period AS p INNER JOIN ranked AS r ON p.trace_id = r.trace_id
            WHERE r.upto <= {{limit:UInt64}} OR r.upto = r.n
            ORDER BY p.start_ns DESC, p.span_id LIMIT {{limit:UInt64}}
            """, params)
        seen = int(rows[0]["_seen"]) if rows else 0
        for row in rows:
            del row["_seen"]
        trace_ids = sorted({r["trace_id"] for r in rows})
        resource_ids = sorted({int(r["resource_id"]) for r in rows})
        resources: dict[int, Any] = {}
        journeys: dict[str, tuple[str | None, bool]] = {}
        if rows:
            for r in self._query_rows(
                "SELECT resource_id, any(resource) AS resource FROM resources WHERE tenant = {tenant:String} "
                "AND resource_id IN {ids:Array(Int64)} GROUP BY resource_id", {"tenant": q.tenant, "ids": resource_ids}):
                resources[int(r["resource_id"])] = orjson.loads(r["resource"])
            for t in self._query_rows(
                "SELECT trace_id, coalesce(argMinMerge(journey_attr), argMinMerge(journey_rule)) AS named, "
                "if(max(has_root), argMinMerge(root_name), NULL) AS root FROM run_parts "
                "WHERE tenant = {tenant:String} AND trace_id IN {ids:Array(String)} GROUP BY trace_id",
                {"tenant": q.tenant, "ids": trace_ids}):
                journeys[t["trace_id"]] = (t["named"] or t["root"], t["named"] is not None)
        return SpanSample(rows, resources, journeys, seen)

    def dependency_calls(self, tenant: str, since_ns: int | None = None, until_ns: int | None = None) -> dict[str, list[dict[str, Any]]]:
        """Per service: spans, traces, errors and journeys; per service × journey × what it
        calls (model, vector store, tool, database, HTTP host, another traced service): calls,
        errors and latency (mean, p50, p95 in ms)."""
        clauses = ["tenant = {tenant:String}"]
        params: dict[str, Any] = {"tenant": tenant}
        if since_ns is not None:
            clauses.append("start_ns >= {since:Int64}")
            params["since"] = since_ns
        if until_ns is not None:
            clauses.append("start_ns < {until:Int64}")
            params["until"] = until_ns
        period = (
            "period AS (SELECT trace_id, span_id, parent_span_id, name, kind, service, status, is_root, start_ns, "
            "duration_ns, journey, operation, provider, request_model, response_model, tool_name, attributes "
            f"FROM spans WHERE {' AND '.join(clauses)})"
        )
        journeys = "journeys AS (SELECT trace_id, max(journey) AS journey FROM period GROUP BY trace_id)"
        services = self._query_rows(
            f"""WITH {period}, {journeys}
            SELECT p.service AS service, count() AS spans, uniqExact(p.trace_id) AS traces,
                countIf(p.status = 'error') AS errors, countIf(ifNull(p.is_root, false)) AS roots,
                arraySort(groupUniqArrayIf(assumeNotNull(j.journey), j.journey IS NOT NULL)) AS journeys,
                min(p.start_ns) AS first_ns, max(p.start_ns) AS last_ns
            FROM period AS p LEFT JOIN journeys AS j ON j.trace_id = p.trace_id
            WHERE p.service IS NOT NULL GROUP BY p.service ORDER BY p.service""", params)
        for s in services:
            # DuckDB's list() of no rows is NULL: a service no journey names has none.
            s["journeys"] = list(s["journeys"]) or None
        deps = self._query_rows(
            f"""WITH {period}, {journeys}, classified AS ({_CLASSIFIED})
            SELECT c.service AS service, ifNull(j.journey, '') AS journey, assumeNotNull(c.dep_kind) AS kind,
                c.dep_provider AS provider, assumeNotNull(c.dep_name) AS name, count() AS calls,
                countIf(c.status = 'error') AS errors, {_LATENCY.format(d='c.duration_ns')}
            FROM classified AS c LEFT JOIN journeys AS j ON j.trace_id = c.trace_id
            WHERE c.dep_kind IS NOT NULL AND c.dep_name IS NOT NULL AND c.service IS NOT NULL
            GROUP BY c.service, j.journey, c.dep_kind, c.dep_provider, c.dep_name
            ORDER BY c.service, ifNull(j.journey, ''), c.dep_kind, c.dep_provider, c.dep_name""", params)
        # A span whose parent belongs to another service: the parent's service calls this one.
        edges = self._query_rows(
            f"""WITH {period}, {journeys}
            SELECT p.service AS service, ifNull(j.journey, '') AS journey, 'service' AS kind, '' AS provider,
                c.service AS name, count() AS calls, countIf(c.status = 'error') AS errors,
                {_LATENCY.format(d='c.duration_ns')}
            FROM period AS c INNER JOIN period AS p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
            LEFT JOIN journeys AS j ON j.trace_id = c.trace_id
            WHERE p.service IS NOT NULL AND c.service IS NOT NULL AND p.service != c.service
            GROUP BY p.service, j.journey, c.service ORDER BY p.service, ifNull(j.journey, ''), c.service""", params)
        return {"services": services, "dependencies": deps + edges}

    def _usage_filter(self, tenant: str, since_ns: int, until_ns: int, exclude_trace_id: str,
                      sessions: list[str] | None) -> tuple[str, dict[str, Any]]:
        """FROM/WHERE of the other traces' tool and model calls in a window (of some sessions)."""
        params: dict[str, Any] = {"tenant": tenant, "exclude": exclude_trace_id, "since": int(since_ns),
                                  "until": int(until_ns)}
        where = ("FROM spans AS s WHERE s.tenant = {tenant:String} AND s.trace_id != {exclude:String} "
                 "AND s.operation IN ('execute_tool', 'chat', 'text_completion') "
                 "AND s.start_ns >= {since:Int64} AND s.start_ns < {until:Int64}")
        if sessions is not None:
            params["sessions"] = list(sessions)
            where += (" AND s.trace_id IN (SELECT trace_id FROM run_parts WHERE tenant = {tenant:String} "
                      "GROUP BY trace_id HAVING argMinMerge(session_id) IN {sessions:Array(String)})")
        return where, params

    def policy_usage(
        self, tenant: str, since_ns: int, until_ns: int, exclude_trace_id: str = "",
        sessions: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Tool and model calls of the tenant's other traces started in [since_ns, until_ns)
        (only traces of these sessions when given): start_ns, kind, tokens, cost_usd."""
        where, params = self._usage_filter(tenant, since_ns, until_ns, exclude_trace_id, sessions)
        return self._query_rows(
            "SELECT s.start_ns AS start_ns, if(s.operation = 'execute_tool', 'tool', 'model') AS kind, "
            f"{_TOKENS} AS tokens, {_COST} AS cost_usd {where}", params)

    def policy_usage_by_trace(
        self, tenant: str, since_ns: int, until_ns: int, sessions: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The same calls as policy_usage (every trace), summed per trace: trace_id,
        model_calls, tool_calls, tokens, cost_usd (what running counts are seeded from)."""
        where, params = self._usage_filter(tenant, since_ns, until_ns, "", sessions)
        return self._query_rows(
            "SELECT s.trace_id AS trace_id, countIf(s.operation != 'execute_tool') AS model_calls, "
            f"countIf(s.operation = 'execute_tool') AS tool_calls, sum({_TOKENS}) AS tokens, sum({_COST}) AS cost_usd "
            f"{where} GROUP BY s.trace_id ORDER BY s.trace_id", params)

    def policy_usage_totals(
        self, tenant: str, since_ns: int, until_ns: int, exclude_trace_id: str = "",
        sessions: list[str] | None = None,
    ) -> dict[str, Any]:
        """The same calls as policy_usage, summed in the store: model_calls, tool_calls, tokens, cost_usd."""
        where, params = self._usage_filter(tenant, since_ns, until_ns, exclude_trace_id, sessions)
        return self._query_rows(
            "SELECT countIf(s.operation != 'execute_tool') AS model_calls, countIf(s.operation = 'execute_tool') AS tool_calls, "
            f"sum({_TOKENS}) AS tokens, sum({_COST}) AS cost_usd {where}", params)[0]
