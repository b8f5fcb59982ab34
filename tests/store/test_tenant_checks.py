"""Tenant scoping is enforced once, by the guard open_store puts around every backend:
a caller bound to tenant B reaches nothing of tenant A through any method."""

from __future__ import annotations

import inspect
from pathlib import Path

import pyarrow as pa
import pytest

from aisre.core.auth import Forbidden, acting_for
from aisre.core.model import RunQuery, SpanSampleQuery, TimeRange
from aisre.core.population import PopulationQuery
from aisre.core.schema import SCORE_ARROW_SCHEMA
from aisre.evaluate.slo import SloEngine
from aisre.normalize.spans import flatten
from aisre.store import protocol
from aisre.store.factory import open_store
from aisre.store.guard import GUARDED_PARTS, TenantGuard
from tests.otlp_factory import journey_request

# Arguments that carry a tenant of their own: a query, a row, rows, Arrow rows.
TENANT_CARRIERS = {"q", "r", "row", "rows", "key", "scores", "prepared", "spans"}


def _public_methods(obj: object) -> dict[str, inspect.Signature]:
    out = {}
    for name in dir(type(obj)):
        if name.startswith("_"):
            continue
        attr = getattr(type(obj), name)
        if isinstance(attr, property) or not callable(attr):
            continue
        out[name] = inspect.signature(getattr(obj, name))
    return out


def test_every_backend_method_is_tenant_scoped_or_declared_process_wide(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.duckdb"), guarded=False)
    try:
        parts = [store, *(getattr(store, part) for part in GUARDED_PARTS)]
        unclassified = []
        for part in parts:
            for name, signature in _public_methods(part).items():
                params = set(signature.parameters)
                scoped = "tenant" in params or params & TENANT_CARRIERS
                declared = name in protocol.PROCESS_WIDE | protocol.OPEN_TO_EVERY_CALLER
                if not scoped and not declared:
                    unclassified.append(f"{type(part).__name__}.{name}{signature}")
        assert unclassified == []
    finally:
        store.close()


def test_reads_and_writes_for_another_tenant_are_refused(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.duckdb"))
    assert isinstance(store, TenantGuard)
    engine = SloEngine(store)
    scores_of_a = pa.Table.from_pylist(
        [{"tenant": "a", "trace_id": "00" * 16, "name": "groundedness", "value": 0.9}],
        schema=pa.schema([SCORE_ARROW_SCHEMA.field(n) for n in ("tenant", "trace_id", "name", "value")]),
    )
    try:
        with acting_for("b"):
            assert store.list_runs(RunQuery(tenant="b")) == []
            assert store.incidents.list_incidents("b") == []
            assert store.cost.list_budgets("b") == []
            calls = [
                lambda: store.list_runs(RunQuery(tenant="a")),
                lambda: store.journey_summaries(TimeRange(tenant="a")),
                lambda: store.get_trace("a", "00" * 16),
                lambda: store.list_alerts("a"),
                lambda: store.list_audit("a"),
                lambda: store.list_keys("a"),
                lambda: store.metric_totals("a"),
                lambda: store.gate_population(PopulationQuery("a", "ask", (), 0, 1)),
                lambda: store.save_alerts([{"tenant": "a", "key": "k"}]),
                lambda: store.set_retention("a", 3),
                lambda: store.add_scores(scores_of_a),
                lambda: store.incidents.list_incidents("a"),
                lambda: store.incidents.add_change({"tenant": "a", "kind": "deploy"}),
                lambda: store.cost.list_budgets("a"),
                lambda: store.cost.put_budget({"tenant": "a", "name": "x"}),
                lambda: store.cost.exemplars("a", "ask", 0, 1, "cost"),
                lambda: store.span_sample(SpanSampleQuery(tenant="a")),
                lambda: engine.statuses("a"),
                lambda: engine.specs("a"),
            ]
            for call in calls:
                with pytest.raises(Forbidden, match="cannot read tenant 'a'"):
                    call()
            # Process-wide upkeep is not a tenant's to call; harmless figures are.
            with pytest.raises(Forbidden, match="acts for every tenant"):
                store.active_keys()
            assert store.auth_latched() is False
        # Outside a request (the process itself: evaluator, benchmarks) every tenant is readable.
        assert store.list_runs(RunQuery(tenant="a")) == []
        assert store.active_keys() == []
    finally:
        store.close()


def test_an_unnamed_tenant_means_the_callers_own(tmp_path: Path) -> None:
    """Methods where no tenant means "every tenant" give a bound caller its own rows only."""
    store = open_store(str(tmp_path / "s.duckdb"))
    try:
        for tenant, traces in (("a", 3), ("b", 2)):
            flat = flatten(journey_request(traces)[0], tenant)
            store.submit_spans(flat.table, flat.resources).result(30)
        store.cost.put_budget({"tenant": "a", "name": "x", "journey": "ask", "period": "month",
                               "amount_usd": 1.0, "thresholds": [0.5]})
        assert store.count_spans() == 15  # three spans a journey
        assert store.cost.budget_tenants() == ["a"]
        with acting_for("b"):
            assert store.count_spans() == 6
            assert store.stats()["spans"] == 6
            assert store.cost.budget_tenants() == []
        with acting_for("a"):
            assert store.count_spans() == 9
            assert store.cost.budget_tenants() == ["a"]
    finally:
        store.close()
