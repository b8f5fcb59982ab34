"""DuckDB reads for the service catalog: services and what they call, from the spans of a period."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# What a span calls, from the columns normalize/ filled (operation, provider, models, tool)
# and the attributes OTel semantic conventions name for databases and HTTP clients.
_DB = "coalesce(json_extract_string(attributes, '$.\"db.system.name\"'), json_extract_string(attributes, '$.\"db.system\"'))"
_SERVER = (
    "coalesce(json_extract_string(attributes, '$.\"server.address\"'), "
    "regexp_extract(json_extract_string(attributes, '$.\"url.full\"'), '^[a-zA-Z]+://([^/:?#]+)', 1), "
    "json_extract_string(attributes, '$.\"net.peer.name\"'))"
)
_HTTP = (
    "(json_extract_string(attributes, '$.\"http.request.method\"') IS NOT NULL "
    "OR json_extract_string(attributes, '$.\"http.method\"') IS NOT NULL "
    "OR json_extract_string(attributes, '$.\"url.full\"') IS NOT NULL)"
)
_MODEL = "coalesce(nullif(response_model, ''), nullif(request_model, ''))"
_CLASSIFIED = f"""
    SELECT service, trace_id, status, duration_ns,
        CASE
            WHEN operation IN ('chat', 'text_completion', 'embeddings') AND {_MODEL} IS NOT NULL THEN 'model'
            WHEN operation = 'retrieval' THEN 'vector_store'
            WHEN operation = 'execute_tool' THEN 'tool'
            WHEN {_DB} IS NOT NULL THEN 'database'
            WHEN kind = 'client' AND {_HTTP} AND {_SERVER} IS NOT NULL THEN 'http'
        END AS dep_kind,
        CASE
            WHEN operation IN ('chat', 'text_completion', 'embeddings') AND {_MODEL} IS NOT NULL THEN {_MODEL}
            WHEN operation = 'retrieval' THEN coalesce({_DB}, nullif(name, ''), 'retrieval')
            WHEN operation = 'execute_tool' THEN coalesce(nullif(tool_name, ''), nullif(name, ''), 'tool')
            WHEN {_DB} IS NOT NULL THEN {_DB}
            ELSE {_SERVER}
        END AS dep_name,
        CASE WHEN operation IN ('chat', 'text_completion', 'embeddings') THEN coalesce(provider, '') ELSE '' END AS dep_provider
    FROM period
"""


class CatalogQueries:
    """Mixed into DuckDBStore: reads through its reader pool."""

    if TYPE_CHECKING:

        def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]: ...

    def dependency_calls(self, tenant: str, since_ns: int | None = None, until_ns: int | None = None) -> dict[str, list[dict[str, Any]]]:
        """Per service: spans, traces, errors and journeys; per service × journey × what it
        calls (model, vector store, tool, database, HTTP host, another traced service): calls,
        errors and latency (mean, p50, p95 in ms)."""
        clauses: list[str] = ["tenant = ?"]
        params: list[Any] = [tenant]
        if since_ns is not None:
            clauses.append("start_ns >= ?")
            params.append(since_ns)
        if until_ns is not None:
            clauses.append("start_ns < ?")
            params.append(until_ns)
        period = f"period AS (SELECT * FROM spans WHERE {' AND '.join(clauses)})"
        journeys = "journeys AS (SELECT trace_id, max(journey) AS journey FROM period GROUP BY trace_id)"
        services = self._rows(
            f"""WITH {period}, {journeys}
            SELECT p.service, count(*) AS spans, count(DISTINCT p.trace_id) AS traces,
                count(*) FILTER (WHERE p.status = 'error') AS errors,
                count(*) FILTER (WHERE p.is_root) AS roots,
                list(DISTINCT j.journey ORDER BY j.journey) FILTER (WHERE j.journey IS NOT NULL) AS journeys,
                min(p.start_ns) AS first_ns, max(p.start_ns) AS last_ns
            FROM period p LEFT JOIN journeys j USING (trace_id)
            WHERE p.service IS NOT NULL GROUP BY p.service ORDER BY p.service""",
            list(params),
        )
        stats = (
            "count(*) AS calls, count(*) FILTER (WHERE status = 'error') AS errors, "
            "avg(duration_ns) / 1e6 AS mean_ms, quantile_cont(duration_ns, 0.5) / 1e6 AS p50_ms, "
            "quantile_cont(duration_ns, 0.95) / 1e6 AS p95_ms"
        )
        deps = self._rows(
            f"""WITH {period}, {journeys}, classified AS ({_CLASSIFIED})
            SELECT c.service, coalesce(j.journey, '') AS journey, c.dep_kind AS kind, c.dep_provider AS provider,
                c.dep_name AS name, {stats}
            FROM classified c LEFT JOIN journeys j USING (trace_id)
            WHERE c.dep_kind IS NOT NULL AND c.dep_name IS NOT NULL AND c.service IS NOT NULL
            GROUP BY ALL ORDER BY 1, 2, 3, 4, 5""",
            list(params),
        )
        # A span whose parent belongs to another service: the parent's service calls this one.
        edges = self._rows(
            f"""WITH {period}, {journeys}
            SELECT p.service, coalesce(j.journey, '') AS journey, 'service' AS kind, '' AS provider, c.service AS name,
                count(*) AS calls, count(*) FILTER (WHERE c.status = 'error') AS errors,
                avg(c.duration_ns) / 1e6 AS mean_ms, quantile_cont(c.duration_ns, 0.5) / 1e6 AS p50_ms,
                quantile_cont(c.duration_ns, 0.95) / 1e6 AS p95_ms
            FROM period c JOIN period p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
            LEFT JOIN journeys j ON j.trace_id = c.trace_id
            WHERE p.service IS NOT NULL AND c.service IS NOT NULL AND p.service <> c.service
            GROUP BY ALL ORDER BY 1, 2, 5""",
            list(params),
        )
        return {"services": services, "dependencies": deps + edges}
