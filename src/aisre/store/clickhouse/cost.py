"""Cost on ClickHouse: the per-minute model-call rollup and the reads cost breakdowns and
spike explanations are built from (the ClickHouse half of store/duckdb/cost.py). Prices,
budgets and rate limits are control-plane tables, not yet here (issue 17)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from aisre.core.errors import PermanentError
from aisre.core.rows import CostBreakdown, RunCounts
from aisre.core.schema import LLM_OPERATIONS, MINUTE_NS
from aisre.normalize.semantics import COST_DIMENSIONS, COST_MINUTE_MEASURES
from aisre.store.clickhouse.semantics import journey_runs_sql, journey_sql
from aisre.store.protocol import ExemplarRank

if TYPE_CHECKING:
    from aisre.store.clickhouse.store import ClickHouseStore

_STEP_SLACK_NS = 3600 * 10**9  # spans of a run start after its root; counted this far
_LLM = "(" + ", ".join(f"'{op}'" for op in sorted(LLM_OPERATIONS)) + ")"
_COUNTS = tuple(m.name for m in COST_MINUTE_MEASURES)
_KEYS = "tenant, journey, minute_ns, provider, model, prompt_version, service_version"


def recount_sql(runs: str) -> str:
    """cost_minutes rows (without version) of the model calls of ``runs`` (merged runs whose
    root starts in [{start}, {end}) of {tenant})."""
    return f"""
SELECT {_KEYS},
    toInt64(count()), toInt64(countIf(billed)), toInt64(countIf(billed AND NOT resent)), toInt64(countIf(resent)),
    toInt64(countIf(retry_attempt > 0)), toInt64(countIf(billed AND retry_attempt > 0)),
    toInt64(countIf(status = 'error')), toInt64(countIf(http_status = 429)), toInt64(countIf(http_status >= 500)),
    toInt64(sum(ifNull(input_tokens, 0))), toInt64(sum(ifNull(output_tokens, 0))),
    toInt64(sum(ifNull(cached_input_tokens, 0))), sum(ifNull(cost_usd, 0)),
    sumIf(ifNull(cost_usd, 0), retry_attempt > 0), sumIf(ifNull(cost_usd, 0), failed),
    toInt64(countIf(billed AND price_version IS NULL)),
    toInt64(sumIf(ifNull(input_tokens, 0) + ifNull(output_tokens, 0), billed AND price_version IS NULL))
FROM (
    SELECT *,
        -- A re-send: a retry (same parent and model) after an attempt of the same call
        -- that was answered, and billed; a retry after a 429 or 5xx costs nothing extra.
        billed AND retry_attempt > 0 AND sum(toInt64(billed)) OVER (
            PARTITION BY trace_id, parent_span_id, request_model, call_no ORDER BY start_ns, span_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) > 0 AS resent
    FROM (
        SELECT *,
            -- Attempts of one call share a number: a first attempt starts the next one.
            sum(toInt64(retry_attempt = 0)) OVER (
                PARTITION BY trace_id, parent_span_id, request_model ORDER BY start_ns, span_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS call_no
        FROM (
            SELECT t.tenant AS tenant, t.trace_id AS trace_id, s.parent_span_id AS parent_span_id,
                ifNull(s.request_model, '') AS request_model, s.start_ns AS start_ns, s.span_id AS span_id,
                t.failed AS failed, t.j AS journey, t.minute_ns AS minute_ns,
                ifNull(s.provider, '') AS provider,
                coalesce(s.response_model, s.request_model, '') AS model,
                ifNull(t.prompt_version, '') AS prompt_version,
                ifNull(t.service_version, '') AS service_version,
                ifNull(s.input_tokens, 0) + ifNull(s.output_tokens, 0) > 0 AS billed,
                ifNull(s.retry_attempt, 0) AS retry_attempt,
                s.status AS status, s.http_status AS http_status, s.input_tokens AS input_tokens,
                s.output_tokens AS output_tokens, s.cached_input_tokens AS cached_input_tokens,
                s.cost_usd AS cost_usd, s.price_version AS price_version
            FROM spans AS s INNER JOIN (
                SELECT tenant, trace_id, failed, prompt_version, service_version, {journey_sql()} AS j,
                    intDiv(root_start_ns, {MINUTE_NS}) * {MINUTE_NS} AS minute_ns
                FROM {runs}
                WHERE has_root AND root_start_ns >= {{start:Int64}} AND root_start_ns < {{end:Int64}}
            ) AS t ON s.trace_id = t.trace_id
            WHERE s.tenant = {{tenant:String}} AND s.operation IN {_LLM}
              AND s.start_ns >= {{start:Int64}} AND s.start_ns < {{end:Int64}} + {_STEP_SLACK_NS}
        )
    )
)
GROUP BY {_KEYS}
"""


DIMENSIONS = COST_DIMENSIONS
_SUMS = ", ".join(f"sum({c}) AS {c}" for c in _COUNTS)
_EXEMPLAR_ORDER: dict[str, str] = {
    "retries": "retries DESC, cost_usd DESC, trace_id",
    "input_tokens": "input_tokens DESC, trace_id",
    "recent": "run_start_ns DESC, trace_id",
    "cost": "cost_usd DESC, trace_id",
}


class _Filter:
    def __init__(self, tenant: str, since_ns: int | None, until_ns: int | None) -> None:
        self.clauses = ["tenant = {tenant:String}"]
        self.params: dict[str, Any] = {"tenant": tenant}
        if since_ns is not None:
            self.clauses.append("minute_ns >= {since:Int64}")
            self.params["since"] = (since_ns // MINUTE_NS) * MINUTE_NS
        if until_ns is not None:
            self.clauses.append("minute_ns < {until:Int64}")
            self.params["until"] = until_ns

    def eq(self, column: str, value: str | None) -> _Filter:
        if value is not None:
            self.clauses.append(f"{column} = {{{column}:String}}")
            self.params[column] = value
        return self

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


def _windows(windows: Sequence[tuple[int, int]]) -> tuple[str, str]:
    cases = ", ".join(f"minute_ns >= {int(a)} AND minute_ns < {int(b)}, {i}" for i, (a, b) in enumerate(windows))
    within = " OR ".join(f"(minute_ns >= {int(a)} AND minute_ns < {int(b)})" for a, b in windows)
    return f"multiIf({cases}, NULL)", within


class ClickHouseCostReads:
    """Cost reads on a :class:`ClickHouseStore`: sums of `cost_minutes` and `run_minutes`."""

    def __init__(self, store: ClickHouseStore) -> None:
        self._store = store

    def _rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self._store.client.query(sql, params).to_pylist())

    def breakdown(
        self, tenant: str, since_ns: int | None, until_ns: int | None, by: Sequence[str] = ("journey",),
        bucket_ns: int | None = None, journey: str | None = None, model: str | None = None,
    ) -> list[CostBreakdown]:
        """Sums of `cost_minutes` grouped by ``by`` (and a time bucket, as ``bucket_ns``)."""
        unknown = [d for d in by if d not in DIMENSIONS]
        if unknown:
            raise PermanentError(f"cannot group cost by {unknown}; choose from {', '.join(DIMENSIONS)}")
        keys = list(by)
        if bucket_ns is not None:
            keys.insert(0, f"intDiv(minute_ns, {int(bucket_ns)}) * {int(bucket_ns)} AS bucket_ns")
        f = _Filter(tenant, since_ns, until_ns).eq("journey", journey).eq("model", model)
        select = f"SELECT {', '.join(keys)}, " if keys else "SELECT "
        tail = (" GROUP BY ALL ORDER BY " + ("bucket_ns, sum(cost_usd) DESC" if bucket_ns is not None else "sum(cost_usd) DESC")
                if keys else "")
        return cast(list[CostBreakdown], self._rows(f"{select}{_SUMS} FROM cost_minutes FINAL WHERE {f.sql} AND calls > 0{tail}", f.params))

    def run_counts(
        self, tenant: str, since_ns: int | None, until_ns: int | None, by_journey: bool = False,
        bucket_ns: int | None = None, journey: str | None = None,
    ) -> list[RunCounts]:
        """Runs, failures and cost of failed runs from `run_minutes`."""
        keys = ["journey"] if by_journey else []
        if bucket_ns is not None:
            keys.insert(0, f"intDiv(minute_ns, {int(bucket_ns)}) * {int(bucket_ns)} AS bucket_ns")
        f = _Filter(tenant, since_ns, until_ns).eq("journey", journey)
        select = (", ".join(keys) + ", ") if keys else ""
        group = " GROUP BY ALL" if keys else ""
        return cast(list[RunCounts], self._rows(
            f"SELECT {select}sum(runs) AS runs, sum(failures) AS failures, sum(cost_usd) AS run_cost_usd, "
            f"sum(failed_cost_usd) AS failed_cost_usd FROM run_minutes FINAL WHERE {f.sql} AND runs > 0{group}",
            f.params))

    def model_windows(self, tenant: str, journey: str, windows: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        """Per window index × provider × model × prompt version × release: the sums."""
        case, within = _windows(windows)
        return self._rows(
            f"SELECT {case} AS w, provider, model, prompt_version, service_version, {_SUMS} FROM cost_minutes FINAL "
            f"WHERE tenant = {{tenant:String}} AND journey = {{journey:String}} AND calls > 0 AND ({within}) GROUP BY ALL",
            {"tenant": tenant, "journey": journey})

    def run_windows(self, tenant: str, journey: str, windows: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        """Runs and failures per window index."""
        case, within = _windows(windows)
        return self._rows(
            f"SELECT {case} AS w, sum(runs) AS runs, sum(failures) AS failures, sum(cost_usd) AS cost_usd, "
            f"sum(llm_calls) AS llm_calls, sum(retries) AS retries FROM run_minutes FINAL "
            f"WHERE tenant = {{tenant:String}} AND journey = {{journey:String}} AND runs > 0 AND ({within}) GROUP BY ALL",
            {"tenant": tenant, "journey": journey})

    def version_first_seen(self, tenant: str, journey: str, column: str, before_ns: int) -> dict[str, int]:
        """First minute each prompt version (or release) was seen in the journey, before ``before_ns``."""
        if column not in ("prompt_version", "service_version"):
            raise ValueError(column)
        rows = self._rows(
            f"SELECT {column} AS v, min(minute_ns) AS first FROM cost_minutes FINAL WHERE tenant = {{tenant:String}} "
            "AND journey = {journey:String} AND minute_ns < {before:Int64} AND calls > 0 GROUP BY v",
            {"tenant": tenant, "journey": journey, "before": before_ns})
        return {r["v"]: int(r["first"]) for r in rows}

    def _run_ids(self, where: str, order: str, params: dict[str, Any]) -> list[str]:
        rows = self._rows(
            f"SELECT trace_id FROM ({journey_runs_sql('tenant = {tenant:String}')}) WHERE journey = {{journey:String}} "
            f"AND has_root AND run_start_ns >= {{start:Int64}} AND run_start_ns < {{end:Int64}}{where} "
            f"ORDER BY {order} LIMIT {{limit:UInt64}}", params)
        return [r["trace_id"] for r in rows]

    def exemplars(
        self, tenant: str, journey: str, start_ns: int, end_ns: int, rank: ExemplarRank,
        prompt_versions: Sequence[str] | None = None, service_versions: Sequence[str] | None = None, limit: int = 5,
    ) -> list[str]:
        """Trace ids of runs in the window, picked and ranked as ``rank`` says."""
        where = " AND retries > 0" if rank == "retries" else ""
        params: dict[str, Any] = {"tenant": tenant, "journey": journey, "start": start_ns, "end": end_ns, "limit": limit}
        if prompt_versions is not None:
            where += " AND has({pv:Array(String)}, prompt_version)"
            params["pv"] = list(prompt_versions)
        if service_versions is not None:
            where += " AND has({sv:Array(String)}, service_version)"
            params["sv"] = list(service_versions)
        return self._run_ids(where, _EXEMPLAR_ORDER[rank], params)

    def model_exemplars(self, tenant: str, journey: str, start_ns: int, end_ns: int, model: str, limit: int = 5) -> list[str]:
        """Costliest runs in the window that called ``model``."""
        return self._run_ids(" AND has(models, {model:String})", "cost_usd DESC, trace_id",
                             {"tenant": tenant, "journey": journey, "start": start_ns, "end": end_ns, "limit": limit,
                              "model": model})

    def peak_minutes(self, tenant: str, since_ns: int, until_ns: int) -> list[dict[str, Any]]:
        """Per model: busiest minute by calls and by tokens, and the average per minute."""
        return self._rows(
            "SELECT provider, model, max(calls) AS peak_rpm, argMax(minute_ns, calls) AS peak_rpm_minute_ns, "
            "max(tokens) AS peak_tpm, argMax(minute_ns, tokens) AS peak_tpm_minute_ns, sum(calls) AS calls, "
            "sum(tokens) AS tokens, count() AS active_minutes FROM ("
            "SELECT provider, model, minute_ns, sum(calls) AS calls, sum(input_tokens + output_tokens) AS tokens "
            "FROM cost_minutes FINAL WHERE tenant = {tenant:String} AND minute_ns >= {since:Int64} "
            "AND minute_ns < {until:Int64} AND calls > 0 GROUP BY provider, model, minute_ns"
            ") GROUP BY provider, model ORDER BY peak_tpm DESC",
            {"tenant": tenant, "since": (since_ns // MINUTE_NS) * MINUTE_NS, "until": until_ns})

    def unpriced(self, tenant: str, since_ns: int | None, until_ns: int | None) -> list[dict[str, Any]]:
        """Models with billed calls the catalog could not price."""
        f = _Filter(tenant, since_ns, until_ns)
        return self._rows(
            "SELECT provider, model, sum(unpriced_calls) AS calls, sum(unpriced_tokens) AS tokens, "
            "min(minute_ns) AS first_minute_ns, max(minute_ns) AS last_minute_ns "
            f"FROM cost_minutes FINAL WHERE {f.sql} AND calls > 0 AND unpriced_calls > 0 GROUP BY provider, model "
            "ORDER BY tokens DESC", f.params)
