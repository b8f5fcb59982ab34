"""DuckDB queries for the release gate: populations of runs selected by attribute, verdicts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

import duckdb
import numpy as np
import orjson

from aisre.core.errors import NotFound, PermanentError
from aisre.core.population import Population, PopulationQuery, RunSelector
from aisre.core.rows import GateVerdictSummary
from aisre.store.writer import Writer

_ATTRIBUTE_KEY = re.compile(r"^[A-Za-z0-9_.\-/]+$")


def _selector_sql(sel: RunSelector) -> tuple[str, list[Any]]:
    column = sel.column
    if column == "models":
        return "list_contains(t.models, ?)", [sel.value]
    if column is not None:
        return f"t.{column} = ?", [sel.value]
    if not _ATTRIBUTE_KEY.match(sel.key):
        raise PermanentError(f"selector key {sel.key!r} may only hold letters, digits and . _ - /")
    path = f'$."{sel.key}"'
    # Any span of the run carrying the attribute (or its resource carrying it) selects the run.
    return (
        "EXISTS (SELECT 1 FROM spans s LEFT JOIN resources r "
        "ON r.tenant = s.tenant AND r.resource_id = s.resource_id "
        "WHERE s.tenant = t.tenant AND s.trace_id = t.trace_id "
        "AND (json_extract_string(s.attributes, ?) = ? OR json_extract_string(r.resource, ?) = ?))",
        [path, sel.value, path, sel.value],
    )


class GateQueries:
    """Mixed into DuckDBStore: reads through its reader pool, writes through its writer thread."""

    _conn: duckdb.DuckDBPyConnection
    _writer: Writer

    if TYPE_CHECKING:

        def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]: ...

    def gate_population(self, q: PopulationQuery) -> Population:
        """Completed runs of ``q.journey`` matching every selector, oldest first, with score means."""
        clauses = [
            "t.tenant = ?", "t.has_root", "coalesce(t.journey_attr, t.journey_rule, t.root_name) = ?",
            "t.root_start_ns >= ?", "t.root_start_ns < ?",
        ]
        params: list[Any] = [q.tenant, q.journey, q.since_ns, q.until_ns]
        for sel in q.selectors:
            clause, values = _selector_sql(sel)
            clauses.append(clause)
            params.extend(values)
        runs = self._rows(
            "SELECT t.trace_id, t.root_start_ns AS start_ns, t.failed, "
            "(t.root_end_ns - t.root_start_ns) / 1e6 AS duration_ms, t.cost_usd, "
            "t.input_tokens + t.output_tokens AS tokens "
            f"FROM traces t WHERE {' AND '.join(clauses)} ORDER BY t.root_start_ns, t.trace_id LIMIT ?",
            [*params, q.limit],
        )
        ids = [r["trace_id"] for r in runs]
        scores: dict[str, np.ndarray] = {}
        if ids:
            position = {trace: i for i, trace in enumerate(ids)}
            rows = self._rows(
                "SELECT trace_id, name, avg(value) AS value FROM scores "
                "WHERE tenant = ? AND value IS NOT NULL AND list_contains(?, trace_id) GROUP BY trace_id, name",
                [q.tenant, ids],
            )
            for row in rows:
                # A run without a given score is NaN there: the metric's NaN strategy decides.
                arr = scores.setdefault(row["name"], np.full(len(ids), np.nan))
                arr[position[row["trace_id"]]] = row["value"]
        return Population(
            trace_ids=ids,
            start_ns=np.array([r["start_ns"] for r in runs], dtype=np.int64),
            failed=np.array([1.0 if r["failed"] else 0.0 for r in runs], dtype=np.float64),
            duration_ms=np.array([r["duration_ms"] for r in runs], dtype=np.float64),
            cost_usd=np.array([r["cost_usd"] for r in runs], dtype=np.float64),
            tokens=np.array([r["tokens"] for r in runs], dtype=np.float64),
            scores=scores,
        )

    def save_gate_verdict(self, row: dict[str, Any]) -> int:
        """Store one verdict (with its evidence document); returns its id."""
        values = [
            row["tenant"], row["journey"], row["baseline"], row["candidate"], row["verdict"], row.get("score"),
            row["baseline_runs"], row["candidate_runs"], row["decided_ns"], orjson.dumps(row["document"]).decode(),
        ]

        def insert() -> int:
            result = self._conn.execute(
                "INSERT INTO gate_verdicts (tenant, journey, baseline, candidate, verdict, score, baseline_runs, "
                "candidate_runs, decided_ns, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                values,
            ).fetchone()
            assert result is not None
            return int(result[0])

        return int(self._writer.call(insert).result(60))

    def list_gate_verdicts(self, tenant: str, journey: str | None = None, limit: int = 50) -> list[GateVerdictSummary]:
        """Newest verdicts first, without their documents."""
        sql = (
            "SELECT id, journey, baseline, candidate, verdict, score, baseline_runs, candidate_runs, decided_ns "
            "FROM gate_verdicts WHERE tenant = ?"
        )
        params: list[Any] = [tenant]
        if journey is not None:
            sql += " AND journey = ?"
            params.append(journey)
        return cast(list[GateVerdictSummary], self._rows(sql + " ORDER BY decided_ns DESC, id DESC LIMIT ?", [*params, limit]))

    def get_gate_verdict(self, tenant: str, verdict_id: int) -> dict[str, Any]:
        """One verdict's evidence document; NotFound for an unknown id."""
        rows = self._rows("SELECT document FROM gate_verdicts WHERE tenant = ? AND id = ?", [tenant, verdict_id])
        if not rows:
            raise NotFound(f"no gate verdict with id {verdict_id}")
        document: dict[str, Any] = orjson.loads(rows[0]["document"])
        document["id"] = verdict_id
        return document
