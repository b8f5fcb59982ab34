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
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisre.core.model import TimeRange
from aisre.normalize.journeys import JourneyRule
from aisre.normalize.runs import trace_partials_of
from aisre.store.protocol import SpanExport, Store

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

    @property
    def verified(self) -> bool:
        return not self.mismatches


class CopyState:
    """The last trace id copied per tenant, in a JSON file replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.after: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    def save(self, tenant: str, last_trace_id: str) -> None:
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


def as_dict(report: CopyReport) -> dict[str, Any]:
    """The report as JSON-able data."""
    return {
        "verified": report.verified,
        "tenants": dict(report.totals),
        "mismatches": [vars(m) for m in report.mismatches],
    }
