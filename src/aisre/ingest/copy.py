"""``aisre store copy``: move a team's stored traces from one store to another (DuckDB to
ClickHouse, when one machine is outgrown), resumably, and prove the copy whole.

Traces are read back a page of whole traces at a time in trace-id order and go through
the target's own ingest path (per-trace partials, the target's ``prepare``, its writer), so
the target assembles runs and rollups exactly as if the spans had arrived there. After
each committed page the last trace id is written to a state file: an interrupted copy
resumes after it, and a page sent twice is stored once (exactly-once ingest). The
verification compares, per tenant, spans, runs, failures, tokens and cost on both sides.
SLO minutes are not copied: the target recounts them from the runs when a server starts
on it with the SLO specs.

Metric data is kept only as rollups (raw OTLP points are not), so it cannot be recounted on
the target: ``copy_metrics`` moves it as stored (``MetricExport``). Per tenant, first each
series with its kept cumulative point (so the next point sent to the target is an increase
over the last one the source saw, not counted again from zero), then each (series, minute)
folded into one row, then the platform scores; each a page at a time in key order, the last
key saved after each page (``metrics:<part>:<tenant>``). The target stores only keys it does
not hold yet, so a page sent twice adds nothing; a minute or series the target's own ingest
wrote first is kept as the target has it. The verification compares per tenant the series,
per metric the minutes' sum of value and of points, and the platform scores' count and sum.

With ``--control postgresql://…`` the control plane goes too (``copy_control``): keys and
the auth latch, the audit log, alert episodes, incidents with their alert links, timeline,
action items and notification attempts, changes (and what change detection has seen),
gate verdicts, price overrides, budgets, rate limits, retention settings and capacity warning
levels. Rows move
as stored, ids and timestamps kept, so an incident still points at its alerts and an
audit id at its record; each table goes a page at a time in key order, the last key
saved after each page (resumable like the spans; a page sent again is skipped row by row),
and its row count is compared on both sides. Id sequences are then moved past the copied
ids. The agent policy tables go the same way (``POLICY_TABLES``): applied sets, decision
records, judged-run marks, their violations and the judging cursor (when the source keeps
one). The DuckDB file keeps a few JSON documents under other column names
(``policies_json`` is PostgreSQL's ``policies``): ``ControlTable.renamed`` maps them.
Violations have no key of their own (a trace's violations are replaced whole each time it is
judged), so they go a whole trace at a time: a page never splits a trace, and a trace sent
again replaces what the target holds of it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from aisre.core.model import TimeRange
from aisre.core.schema import PLATFORM_SCORE_ARROW_SCHEMA
from aisre.normalize.journeys import JourneyRule
from aisre.normalize.runs import trace_partials_of
from aisre.store.protocol import (
    ControlExport,
    ControlImport,
    MetricExport,
    PlatformScores,
    SpanExport,
    Store,
)

PAGE_TRACES = 2000


@dataclass
class TenantCopy:
    """How far one tenant's copy has got."""

    tenant: str
    traces: int = 0
    spans: int = 0
    remaining: int = 0  # traces still to copy after the last page
    done: bool = False


@dataclass
class Mismatch:
    tenant: str
    figure: str
    source: float
    target: float


@dataclass
class CopyReport:
    tenants: list[TenantCopy] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    totals: dict[str, dict[str, float]] = field(default_factory=dict)  # tenant -> figure -> value (source)
    control: dict[str, dict[str, int]] = field(default_factory=dict)  # table -> {source, target} rows

    @property
    def verified(self) -> bool:
        return not self.mismatches


class CopyState:
    """How far the copy got, in a JSON file replaced atomically: the last trace id copied
    per tenant, and the last key copied per control-plane table (``control:<table>``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.after: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def save(self, tenant: str, last_trace_id: Any) -> None:
        self.after[tenant] = last_trace_id
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.after, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def copy_traces(
    source: SpanExport, target: Store, state: CopyState, rules: tuple[JourneyRule, ...] = (),
    page_traces: int = PAGE_TRACES, on_page: Callable[[TenantCopy], None] | None = None,
    max_pages: int | None = None,
) -> list[TenantCopy]:
    """Copy every tenant's traces after where ``state`` says the last copy stopped; returns
    per tenant what this call copied. ``max_pages`` stops early (to test resuming)."""
    out: list[TenantCopy] = []
    pages = 0
    for tenant in source.span_tenants():
        progress = TenantCopy(tenant)
        out.append(progress)
        while max_pages is None or pages < max_pages:
            page = source.export_traces(tenant, state.after.get(tenant, ""), page_traces)
            if page.last_trace_id is None:
                progress.done = True
                break
            scores = page.scores if page.scores.num_rows else None
            partials = trace_partials_of(page.spans, rules)
            target.submit_prepared(target.prepare(page.spans, partials, page.resources, scores)).result(600)
            state.save(tenant, page.last_trace_id)
            progress.traces += page.traces
            progress.spans += page.spans.num_rows
            progress.remaining = page.remaining
            pages += 1
            if on_page is not None:
                on_page(progress)
        if not progress.done:
            break
    target.flush_rollups()
    return out


def totals(store: Store, tenant: str) -> dict[str, float]:
    """What a copy must keep: spans, runs, failures, model calls, tokens and cost, for one tenant."""
    summaries = store.journey_summaries(TimeRange(tenant))
    by_model = store.cost.breakdown(tenant, None, None, by=("model",))
    return {
        "spans": float(store.count_spans(tenant)),
        "runs": float(sum(s["runs"] for s in summaries)),
        "failures": float(sum(s["failures"] for s in summaries)),
        "run_cost_usd": float(sum(s["cost_usd"] or 0.0 for s in summaries)),
        "model_calls": float(sum(r["calls"] for r in by_model)),
        "input_tokens": float(sum(r["input_tokens"] for r in by_model)),
        "output_tokens": float(sum(r["output_tokens"] for r in by_model)),
        "call_cost_usd": float(sum(r["cost_usd"] for r in by_model)),
    }


def verify(source: Store, target: Store, tenants: list[str]) -> CopyReport:
    """Compare each tenant's totals on both sides (money to a relative 1e-9)."""
    report = CopyReport()
    for tenant in tenants:
        ours, theirs = totals(source, tenant), totals(target, tenant)
        report.totals[tenant] = ours
        for figure, value in ours.items():
            other = theirs[figure]
            same = math.isclose(value, other, rel_tol=1e-9, abs_tol=1e-12) if figure.endswith("usd") else value == other
            if not same:
                report.mismatches.append(Mismatch(tenant, figure, value, other))
    return report


# --- metric rollups and platform scores ----------------------------------------------------

METRIC_PARTS = ("series", "minutes", "scores")  # in this order: minutes are read through their series
METRIC_PAGE_ROWS = 5000


class MetricTarget(MetricExport, PlatformScores, Protocol):
    """Where metric rollups and platform scores are copied to."""


@dataclass
class MetricCopy:
    """How far one tenant's metric copy has got (rows sent by this call, of which new on the target)."""

    tenant: str
    series: int = 0
    minutes: int = 0
    scores: int = 0
    new: int = 0
    done: bool = False


def copy_metrics(
    source: MetricExport, target: MetricTarget, state: CopyState, page_rows: int = METRIC_PAGE_ROWS,
    on_page: Callable[[MetricCopy, str, int], None] | None = None, max_pages: int | None = None,
) -> list[MetricCopy]:
    """Copy every tenant's metric series (with their kept points), minute rows and platform
    scores into ``target`` (a ``MetricExport`` and ``PlatformScores``) after where ``state``
    says the last copy stopped. ``max_pages`` stops early (to test resuming);
    ``on_page(progress, part, rows_in_page)`` follows it."""
    out: list[MetricCopy] = []
    pages = 0
    for tenant in source.metric_tenants():
        progress = MetricCopy(tenant)
        out.append(progress)
        for part in METRIC_PARTS:
            mark = f"metrics:{part}:{tenant}"
            while True:
                if max_pages is not None and pages >= max_pages:
                    return out
                after = state.after.get(mark)
                if part == "series":
                    series = source.export_metric_series(tenant, after, page_rows)
                    rows: list[Any] = series
                    if series:
                        progress.new += target.import_metric_series(tenant, series)
                        last: Any = series[-1]["series_id"]
                elif part == "minutes":
                    page = source.export_metric_minutes(tenant, after, page_rows)
                    rows = page.rows
                    if page.rows:
                        progress.new += target.import_metric_minutes(tenant, page.rows)
                        last = page.after
                else:
                    scores = source.export_platform_scores(tenant, after, page_rows)
                    rows = scores
                    if scores:
                        # Stored as sent (received time kept); a score sent again replaces itself.
                        target.add_platform_scores(pa.Table.from_pylist(
                            [dict(r) for r in scores], schema=PLATFORM_SCORE_ARROW_SCHEMA))
                        last = [scores[-1]["subject"], scores[-1]["name"], scores[-1]["time_ns"]]
                if not rows:
                    break
                state.save(mark, last)
                setattr(progress, part, getattr(progress, part) + len(rows))
                pages += 1
                if on_page is not None:
                    on_page(progress, part, len(rows))
        progress.done = True
    return out


def verify_metrics(source: MetricExport, target: MetricExport, report: CopyReport, tenants: list[str] | None = None) -> CopyReport:
    """Compare each tenant's series count, per metric the minutes' value and point sums, and
    the platform scores' count and sum on both sides (sums of values to a relative 1e-9), into
    ``report``."""
    for tenant in source.metric_tenants() if tenants is None else tenants:
        ours, theirs = source.metric_copy_totals(tenant), target.metric_copy_totals(tenant)
        report.totals.setdefault(tenant, {}).update(ours)
        for figure in sorted(set(ours) | set(theirs)):
            value, other = ours.get(figure, 0.0), theirs.get(figure, 0.0)
            exact = figure.endswith("points") or figure in ("metric series", "platform scores")
            same = value == other if exact else math.isclose(value, other, rel_tol=1e-9, abs_tol=1e-9)
            if not same:
                report.mismatches.append(Mismatch(tenant, figure, value, other))
    return report


def as_dict(report: CopyReport) -> dict[str, Any]:
    """The report as JSON-able data."""
    return {
        "verified": report.verified,
        "tenants": dict(report.totals),
        "control": dict(report.control),
        "mismatches": [vars(m) for m in report.mismatches],
    }


# --- the control plane ---------------------------------------------------------------------


@dataclass(frozen=True)
class ControlTable:
    """A control-plane table and the key it is paged (and resumed) by. ``renamed``: source
    column → target column, where the two stores name one differently. ``whole``: the key
    is not unique but names a group of rows that is always written whole (a trace's
    violations): pages hold whole groups, and a group sent again replaces the target's."""

    name: str
    key: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...] = ()
    whole: bool = False


CONTROL_TABLES: tuple[ControlTable, ...] = (
    ControlTable("api_keys", ("key_id",)),
    ControlTable("control_flags", ("name",)),  # the auth latch: set with the first key, never cleared
    ControlTable("audit_log", ("id",)),
    ControlTable("alerts", ("id",)),
    ControlTable("incidents", ("id",)),
    ControlTable("incident_alerts", ("tenant", "alert_key", "incident_id")),
    ControlTable("incident_events", ("id",)),
    ControlTable("action_items", ("id",)),
    ControlTable("notification_attempts", ("id",)),
    ControlTable("changes", ("id",)),
    ControlTable("change_seen", ("tenant", "journey", "kind", "value")),
    ControlTable("change_cursor", ("tenant",)),
    ControlTable("gate_verdicts", ("id",)),
    ControlTable("price_overrides", ("tenant", "model", "effective_ns")),
    ControlTable("cost_budgets", ("tenant", "name")),
    ControlTable("rate_limits", ("tenant", "model")),
    ControlTable("retention", ("tenant",)),
    ControlTable("capacity_levels", ("tenant", "metric")),
)
# The agent-policy tables (store/postgres/migrations/0070_policies.sql). The DuckDB file
# keeps JSON documents as text under a ``_json`` name; PostgreSQL as JSONB under the plain one.
POLICY_TABLES: tuple[ControlTable, ...] = (
    ControlTable("policy_sets", ("tenant", "applied_ns"), renamed=(("policies_json", "policies"),)),
    ControlTable("policy_decisions", ("id",), renamed=(
        ("policies_json", "policies"), ("reasons_json", "reasons"), ("input_json", "input"))),
    ControlTable("policy_runs", ("tenant", "trace_id")),
    ControlTable("policy_violations", ("tenant", "trace_id"), whole=True),
    ControlTable("policy_cursor", ("tenant",)),  # the split store's judging cursor; a DuckDB file has none
)
PAGE_ROWS = 5000


@dataclass
class TableCopy:
    """What one control-plane table's copy did."""

    table: str
    rows: int = 0  # rows sent by this call
    new: int = 0  # of which the target did not have yet
    done: bool = False


def copy_control(
    source: ControlExport, target: ControlImport, state: CopyState,
    tables: tuple[ControlTable, ...] = CONTROL_TABLES + POLICY_TABLES, page_rows: int = PAGE_ROWS,
    on_page: Callable[[TableCopy, int], None] | None = None, max_pages: int | None = None,
) -> list[TableCopy]:
    """Copy every control-plane table from ``source`` (a DuckDB file) into ``target`` (the
    PostgreSQL control store), after where ``state`` says the last copy stopped; then move
    the target's id sequences past the copied ids. ``max_pages`` stops early (to test
    resuming); ``on_page(progress, rows_in_page)`` follows it."""
    out: list[TableCopy] = []
    pages = 0
    for table in tables:
        progress = TableCopy(table.name)
        out.append(progress)
        mark = f"control:{table.name}"
        if not source.control_count(table.name):  # empty, or a file older than the table
            progress.done = True
            continue
        while max_pages is None or pages < max_pages:
            after = state.after.get(mark)
            if table.whole:
                rows = _whole_groups(source, table, after, page_rows)
            else:
                rows = source.export_control(table.name, table.key, after, page_rows)
            if not rows:
                progress.done = True
                break
            progress.new += target.import_control(
                table.name, _renamed(rows, table.renamed), replace=table.key if table.whole else None)
            state.save(mark, [rows[-1][k] for k in table.key])
            progress.rows += len(rows)
            pages += 1
            if on_page is not None:
                on_page(progress, len(rows))
        if not progress.done:
            return out
    target.finish_import()
    return out


def _whole_groups(source: ControlExport, table: ControlTable, after: list[Any] | None, page_rows: int) -> list[dict[str, Any]]:
    """About ``page_rows`` rows of ``table`` after ``after``, in whole key groups: a full page
    drops its last group (it may go on past the page; the next page starts with it), and a
    page holding one group only is read again, larger, until that group is whole."""
    limit = max(1, page_rows)
    while True:
        rows = source.export_control(table.name, table.key, after, limit)
        if len(rows) < limit:
            return rows  # the end of the table: every group in it whole
        last = [rows[-1][k] for k in table.key]
        # Rows come in key order, so the last group is the page's tail.
        whole = [r for r in rows if [r[k] for k in table.key] != last]
        if whole:
            return whole
        limit *= 2


def _renamed(rows: list[dict[str, Any]], renamed: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """The rows with the source's column names changed to the target's."""
    if not renamed:
        return rows
    names = dict(renamed)
    return [{names.get(k, k): v for k, v in row.items()} for row in rows]


def verify_control(
    source: ControlExport, target: ControlImport, report: CopyReport,
    tables: tuple[ControlTable, ...] = CONTROL_TABLES + POLICY_TABLES,
) -> CopyReport:
    """Compare every control-plane table's row count on both sides, into ``report``."""
    for table in tables:
        ours, theirs = source.control_count(table.name), target.control_count(table.name)
        report.control[table.name] = {"source": ours, "target": theirs}
        if ours != theirs:
            report.mismatches.append(Mismatch("control", f"{table.name} rows", float(ours), float(theirs)))
    return report
