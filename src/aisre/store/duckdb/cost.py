"""Cost tables in DuckDB: the per-minute model-call rollup, price overrides, budgets, rate
limits, and the reads cost breakdowns and spike explanations are built from (DESIGN §5).

Everything a breakdown or an explanation sums comes from `cost_minutes` and `run_minutes`
(time buckets, not spans); only exemplar trace ids read `traces`, a few rows at a time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import duckdb
import pyarrow as pa

from aisre.core.errors import NotFound, PermanentError
from aisre.core.rows import CostBreakdown, CostBudget, PriceOverride, RateLimit, RunCounts, columns
from aisre.core.schema import MINUTE_NS
from aisre.normalize.conventions import CACHE_WRITE_INPUT_TOKENS
from aisre.normalize.semantics import COST_DIMENSIONS, COST_MINUTE_MEASURES
from aisre.store.duckdb.semantics import LLM_OPERATIONS_SQL, cost_minutes_sql
from aisre.store.protocol import ExemplarRank

if TYPE_CHECKING:
    from aisre.store.duckdb.store import DuckDBStore

_REBUILD = cost_minutes_sql()


def rebuild_cost_minutes(conn: duckdb.DuckDBPyConnection, tenant: str, start: int, end: int) -> None:
    """Replace the cost rollup of [start, end) (inside the caller's transaction)."""
    conn.execute("DELETE FROM cost_minutes WHERE tenant = ? AND minute_ns >= ? AND minute_ns < ?", [tenant, start, end])
    conn.execute(_REBUILD, [tenant, start, end, tenant, start, end])


DIMENSIONS = COST_DIMENSIONS
_OVERRIDE = columns(PriceOverride)
_BUDGET = columns(CostBudget)
_RATE_LIMIT = columns(RateLimit)
# Zero, not NULL, over no rows: every backend answers an empty range the same way.
_SUMS = ", ".join(f"coalesce(sum({m.name}), 0) AS {m.name}" for m in COST_MINUTE_MEASURES)


class _Filter:
    def __init__(self, tenant: str, since_ns: int | None, until_ns: int | None) -> None:
        self.clauses = ["tenant = ?"]
        self.params: list[Any] = [tenant]
        if since_ns is not None:
            self.clauses.append("minute_ns >= ?")
            self.params.append((since_ns // MINUTE_NS) * MINUTE_NS)
        if until_ns is not None:
            self.clauses.append("minute_ns < ?")
            self.params.append(until_ns)

    def eq(self, column: str, value: str | None) -> _Filter:
        if value is not None:
            self.clauses.append(f"{column} = ?")
            self.params.append(value)
        return self

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


_EXEMPLAR_ORDER: dict[str, str] = {
    "retries": "retries DESC, cost_usd DESC, trace_id",
    "input_tokens": "input_tokens DESC, trace_id",
    "recent": "run_start_ns DESC, trace_id",
    "cost": "cost_usd DESC, trace_id",
}


class DuckDBCost:
    """Cost reads and writes on a :class:`DuckDBStore` (writes go through its writer)."""

    def __init__(self, store: DuckDBStore) -> None:
        self._store = store

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        return self._store._rows(sql, params)

    def _write(self, fn: Callable[[], Any], timeout_s: float = 600) -> Any:
        return self._store._writer.call(fn).result(timeout_s)

    # -- breakdowns ----------------------------------------------------------------

    def breakdown(
        self,
        tenant: str,
        since_ns: int | None,
        until_ns: int | None,
        by: Sequence[str] = ("journey",),
        bucket_ns: int | None = None,
        journey: str | None = None,
        model: str | None = None,
    ) -> list[CostBreakdown]:
        """Sums of `cost_minutes` grouped by ``by`` (and a time bucket, as ``bucket_ns``)."""
        unknown = [d for d in by if d not in DIMENSIONS]
        if unknown:
            raise PermanentError(f"cannot group cost by {unknown}; choose from {', '.join(DIMENSIONS)}")
        keys = list(by)
        if bucket_ns is not None:
            keys.insert(0, f"(minute_ns // {int(bucket_ns)}) * {int(bucket_ns)} AS bucket_ns")
        f = _Filter(tenant, since_ns, until_ns).eq("journey", journey).eq("model", model)
        group = f"SELECT {', '.join(keys)}, " if keys else "SELECT "
        tail = " GROUP BY ALL ORDER BY " + (
            "bucket_ns, cost_usd DESC" if bucket_ns is not None else "cost_usd DESC"
        ) if keys else ""
        return cast(list[CostBreakdown], self._rows(f"{group}{_SUMS} FROM cost_minutes WHERE {f.sql}{tail}", f.params))

    def run_counts(
        self,
        tenant: str,
        since_ns: int | None,
        until_ns: int | None,
        by_journey: bool = False,
        bucket_ns: int | None = None,
        journey: str | None = None,
    ) -> list[RunCounts]:
        """Runs, failures and cost of failed runs from `run_minutes`."""
        keys = (["journey"] if by_journey else [])
        if bucket_ns is not None:
            keys.insert(0, f"(minute_ns // {int(bucket_ns)}) * {int(bucket_ns)} AS bucket_ns")
        f = _Filter(tenant, since_ns, until_ns).eq("journey", journey)
        select = (", ".join(keys) + ", ") if keys else ""
        group = " GROUP BY ALL" if keys else ""
        return cast(list[RunCounts], self._rows(
            f"SELECT {select}coalesce(sum(runs), 0) AS runs, coalesce(sum(failures), 0) AS failures, "
            f"coalesce(sum(cost_usd), 0) AS run_cost_usd, coalesce(sum(failed_cost_usd), 0) AS failed_cost_usd "
            f"FROM run_minutes WHERE {f.sql}{group}",
            f.params,
        ))

    def model_windows(self, tenant: str, journey: str, windows: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        """Per window index × provider × model × prompt version × release: the sums."""
        cases = " ".join(f"WHEN minute_ns >= {int(a)} AND minute_ns < {int(b)} THEN {i}" for i, (a, b) in enumerate(windows))
        spans = " OR ".join(f"(minute_ns >= {int(a)} AND minute_ns < {int(b)})" for a, b in windows)
        return self._rows(
            f"SELECT CASE {cases} END AS w, provider, model, prompt_version, service_version, {_SUMS} "
            f"FROM cost_minutes WHERE tenant = ? AND journey = ? AND ({spans}) GROUP BY ALL",
            [tenant, journey],
        )

    def run_windows(self, tenant: str, journey: str, windows: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        """Runs and failures per window index."""
        cases = " ".join(f"WHEN minute_ns >= {int(a)} AND minute_ns < {int(b)} THEN {i}" for i, (a, b) in enumerate(windows))
        spans = " OR ".join(f"(minute_ns >= {int(a)} AND minute_ns < {int(b)})" for a, b in windows)
        return self._rows(
            f"SELECT CASE {cases} END AS w, sum(runs) AS runs, sum(failures) AS failures, sum(cost_usd) AS cost_usd, "
            f"sum(llm_calls) AS llm_calls, sum(retries) AS retries "
            f"FROM run_minutes WHERE tenant = ? AND journey = ? AND ({spans}) GROUP BY ALL",
            [tenant, journey],
        )

    def version_first_seen(self, tenant: str, journey: str, column: str, before_ns: int) -> dict[str, int]:
        """First minute each prompt version (or release) was seen in the journey, before ``before_ns``."""
        if column not in ("prompt_version", "service_version"):
            raise ValueError(column)
        rows = self._rows(
            f"SELECT {column} AS v, min(minute_ns) AS first FROM cost_minutes WHERE tenant = ? AND journey = ? "
            f"AND minute_ns < ? GROUP BY ALL",
            [tenant, journey, before_ns],
        )
        return {r["v"]: int(r["first"]) for r in rows}

    def exemplars(
        self, tenant: str, journey: str, start_ns: int, end_ns: int, rank: ExemplarRank,
        prompt_versions: Sequence[str] | None = None, service_versions: Sequence[str] | None = None, limit: int = 5,
    ) -> list[str]:
        """Trace ids of runs in the window, picked and ranked as ``rank`` says: retried runs by
        retries, or by input tokens, newest first, or costliest first; optionally only runs
        on the given prompt versions or releases."""
        where, params = ["retries > 0"] if rank == "retries" else [], []
        if prompt_versions is not None:
            where.append("list_contains(?, prompt_version)")
            params.append(list(prompt_versions))
        if service_versions is not None:
            where.append("list_contains(?, service_version)")
            params.append(list(service_versions))
        order = _EXEMPLAR_ORDER[rank]
        rows = self._rows(
            f"SELECT trace_id FROM journey_runs WHERE tenant = ? AND journey = ? AND has_root "
            f"AND run_start_ns >= ? AND run_start_ns < ? {''.join(' AND ' + w for w in where)} ORDER BY {order} LIMIT ?",
            [tenant, journey, start_ns, end_ns, *params, limit],
        )
        return [r["trace_id"] for r in rows]

    def model_exemplars(self, tenant: str, journey: str, start_ns: int, end_ns: int, model: str, limit: int = 5) -> list[str]:
        """Costliest runs in the window that called ``model``."""
        rows = self._rows(
            "SELECT trace_id FROM journey_runs WHERE tenant = ? AND journey = ? AND has_root "
            "AND run_start_ns >= ? AND run_start_ns < ? AND list_contains(models, ?) "
            "ORDER BY cost_usd DESC, trace_id LIMIT ?",
            [tenant, journey, start_ns, end_ns, model, limit],
        )
        return [r["trace_id"] for r in rows]

    def peak_minutes(self, tenant: str, since_ns: int, until_ns: int) -> list[dict[str, Any]]:
        """Per model: busiest minute by calls and by tokens, and the average per minute."""
        return self._rows(
            """
            WITH m AS (
                SELECT provider, model, minute_ns, sum(calls) AS calls,
                    sum(input_tokens + output_tokens) AS tokens
                FROM cost_minutes WHERE tenant = ? AND minute_ns >= ? AND minute_ns < ?
                GROUP BY ALL
            )
            SELECT provider, model, max(calls) AS peak_rpm, arg_max(minute_ns, calls) AS peak_rpm_minute_ns,
                max(tokens) AS peak_tpm, arg_max(minute_ns, tokens) AS peak_tpm_minute_ns,
                sum(calls) AS calls, sum(tokens) AS tokens, count(*) AS active_minutes
            FROM m GROUP BY ALL ORDER BY peak_tpm DESC
            """,
            [tenant, (since_ns // MINUTE_NS) * MINUTE_NS, until_ns],
        )

    def unpriced(self, tenant: str, since_ns: int | None, until_ns: int | None) -> list[dict[str, Any]]:
        """Models with billed calls the catalog could not price."""
        f = _Filter(tenant, since_ns, until_ns)
        return self._rows(
            f"SELECT provider, model, sum(unpriced_calls) AS calls, sum(unpriced_tokens) AS tokens, "
            f"min(minute_ns) AS first_minute_ns, max(minute_ns) AS last_minute_ns "
            f"FROM cost_minutes WHERE {f.sql} AND unpriced_calls > 0 GROUP BY ALL ORDER BY tokens DESC",
            f.params,
        )

    # -- price overrides -------------------------------------------------------------

    def list_overrides(self, tenant: str | None = None) -> list[PriceOverride]:
        if tenant is None:
            return cast(list[PriceOverride], self._rows(f"SELECT {_OVERRIDE} FROM price_overrides ORDER BY tenant, model, effective_ns", []))
        return cast(list[PriceOverride], self._rows(
            f"SELECT {_OVERRIDE} FROM price_overrides WHERE tenant = ? ORDER BY model, effective_ns", [tenant]))

    def put_override(self, row: dict[str, Any]) -> None:
        def write() -> None:
            self._store._conn.execute(
                "INSERT OR REPLACE INTO price_overrides (tenant, model, provider, input, output, cached_input, "
                "effective_ns, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [row["tenant"], row["model"], row["provider"], row["input"], row["output"], row["cached_input"],
                 row["effective_ns"], time.time_ns()],
            )
        self._write(write, 60)

    def delete_override(self, tenant: str, model: str) -> int:
        def write() -> int:
            found = self._store._conn.execute(
                "SELECT count(*) FROM price_overrides WHERE tenant = ? AND model = ?", [tenant, model]
            ).fetchone()
            self._store._conn.execute("DELETE FROM price_overrides WHERE tenant = ? AND model = ?", [tenant, model])
            return int(found[0]) if found else 0
        n = int(self._write(write, 60))
        if not n:
            raise NotFound(f"no price override for model {model!r}")
        return n

    # -- budgets and rate limits -------------------------------------------------------

    def budget_tenants(self, tenant: str | None = None) -> list[str]:
        """Tenants with at least one budget (for the process's budget alert loop, not requests)."""
        where, params = ("WHERE tenant = ?", [tenant]) if tenant is not None else ("", [])
        return [r["tenant"] for r in self._rows(f"SELECT DISTINCT tenant FROM cost_budgets {where} ORDER BY tenant", params)]

    def list_budgets(self, tenant: str) -> list[CostBudget]:
        return cast(list[CostBudget], self._rows(f"SELECT {_BUDGET} FROM cost_budgets WHERE tenant = ? ORDER BY name", [tenant]))

    def put_budget(self, row: dict[str, Any]) -> None:
        def write() -> None:
            self._store._conn.execute(
                "INSERT OR REPLACE INTO cost_budgets (tenant, name, journey, period, amount_usd, thresholds, created_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [row["tenant"], row["name"], row["journey"], row["period"], row["amount_usd"], row["thresholds"], time.time_ns()],
            )
        self._write(write, 60)

    def delete_budget(self, tenant: str, name: str) -> None:
        def write() -> int:
            found = self._store._conn.execute(
                "SELECT count(*) FROM cost_budgets WHERE tenant = ? AND name = ?", [tenant, name]
            ).fetchone()
            self._store._conn.execute("DELETE FROM cost_budgets WHERE tenant = ? AND name = ?", [tenant, name])
            return int(found[0]) if found else 0
        if not self._write(write, 60):
            raise NotFound(f"no cost budget named {name!r}")

    def list_rate_limits(self, tenant: str) -> list[RateLimit]:
        return cast(list[RateLimit], self._rows(f"SELECT {_RATE_LIMIT} FROM rate_limits WHERE tenant = ? ORDER BY model", [tenant]))

    def put_rate_limit(self, row: dict[str, Any]) -> None:
        def write() -> None:
            self._store._conn.execute(
                "INSERT OR REPLACE INTO rate_limits (tenant, model, requests_per_min, tokens_per_min, warn_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [row["tenant"], row["model"], row["requests_per_min"], row["tokens_per_min"], row["warn_at"]],
            )
        self._write(write, 60)

    # -- reprice -------------------------------------------------------------------------

    def priced_models(self, tenant: str, since_ns: int, until_ns: int) -> list[tuple[str, str]]:
        """(provider, model) of every model call in the range: what a reprice must price."""
        rows = self._rows(
            f"SELECT DISTINCT coalesce(provider, '') AS p, coalesce(response_model, request_model, '') AS m "
            f"FROM spans WHERE tenant = ? AND operation IN {LLM_OPERATIONS_SQL} AND start_ns >= ? AND start_ns < ?",
            [tenant, since_ns, until_ns],
        )
        return [(r["p"], r["m"]) for r in rows]

    def reprice(self, tenant: str, since_ns: int, until_ns: int, prices: pa.Table) -> dict[str, Any]:
        """Recompute `cost_usd` and `price_version` of the range's model calls from ``prices``
        (provider, model, from_ns, to_ns, version, input, output, cached_input, optionally
        cache_write_input; a null version means unpriced), then their runs' costs and the
        rollups of their minutes."""
        return dict(self._write(lambda: self._reprice(tenant, since_ns, until_ns, prices)))

    def _reprice(self, tenant: str, since_ns: int, until_ns: int, prices: pa.Table) -> dict[str, Any]:
        store = self._store
        conn = store._conn
        where = f"s.tenant = ? AND s.operation IN {LLM_OPERATIONS_SQL} AND s.start_ns >= ? AND s.start_ns < ?"
        params = [tenant, since_ns, until_ns]
        conn.register("reprice_prices", prices)
        conn.execute("BEGIN TRANSACTION")
        try:
            before = conn.execute(
                f"SELECT count(*), coalesce(sum(cost_usd), 0) FROM spans s WHERE {where}", params
            ).fetchone()
            conn.execute(
                f"""
                UPDATE spans AS s SET
                    cost_usd = CASE WHEN p.version IS NULL THEN 0.0 ELSE (
                        (coalesce(s.input_tokens, 0) - least(coalesce(s.cached_input_tokens, 0), coalesce(s.input_tokens, 0))) * p.input
                        + least(coalesce(s.cached_input_tokens, 0), coalesce(s.input_tokens, 0)) * p.cached_input
                        + {_cache_write_premium(prices)}
                        + coalesce(s.output_tokens, 0) * p.output) / 1000000.0 END,
                    price_version = p.version
                FROM reprice_prices p
                WHERE {where}
                  AND coalesce(s.provider, '') = p.provider
                  AND coalesce(s.response_model, s.request_model, '') = p.model
                  AND s.start_ns >= p.from_ns AND s.start_ns < p.to_ns
                """,
                params,
            )
            after = conn.execute(
                f"SELECT coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE price_version IS NULL "
                f"AND coalesce(input_tokens, 0) + coalesce(output_tokens, 0) > 0) FROM spans s WHERE {where}",
                params,
            ).fetchone()
            touched = conn.execute(
                f"""
                UPDATE traces AS t SET cost_usd = x.cost
                FROM (
                    SELECT trace_id, coalesce(sum(cost_usd), 0) AS cost FROM spans
                    WHERE tenant = ? AND trace_id IN (SELECT DISTINCT trace_id FROM spans s WHERE {where})
                    GROUP BY trace_id
                ) AS x
                WHERE t.tenant = ? AND t.trace_id = x.trace_id
                RETURNING t.tenant, t.has_root, t.root_start_ns
                """,
                [tenant, *params, tenant],
            ).fetchall()
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        finally:
            with contextlib.suppress(duckdb.Error):
                conn.unregister("reprice_prices")
        minutes: dict[str, set[int]] = {}
        for t, has_root, start in touched:
            if has_root and start is not None:
                minutes.setdefault(t, set()).add((start // MINUTE_NS) * MINUTE_NS)
        store._mark_dirty(minutes)
        store.refresh_rollups()
        assert before is not None and after is not None
        return {
            "spans": int(before[0]),
            "runs": len(touched),
            "cost_before_usd": float(before[1]),
            "cost_after_usd": float(after[0]),
            "unpriced_calls": int(after[1]),
        }


def _cache_write_premium(prices: pa.Table) -> str:
    """SQL for what cache writes cost beyond the input price: their count has no column (it
    stays in the span's attributes, under any of CACHE_WRITE_INPUT_TOKENS' names)."""
    if "cache_write_input" not in prices.column_names:
        return "0"
    names = ", ".join(
        f"TRY_CAST(json_extract_string(s.attributes, '$.\"{name}\"') AS BIGINT)" for name in CACHE_WRITE_INPUT_TOKENS
    )
    uncached = "coalesce(s.input_tokens, 0) - least(coalesce(s.cached_input_tokens, 0), coalesce(s.input_tokens, 0))"
    return f"greatest(least(coalesce({names}, 0), {uncached}), 0) * (p.cache_write_input - p.input)"
