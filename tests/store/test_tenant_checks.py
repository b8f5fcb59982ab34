"""The store refuses a tenant other than the caller's, whatever a route passes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisre.core.auth import Forbidden, acting_for
from aisre.core.model import RunQuery, SpanSampleQuery, TimeRange
from aisre.evaluate.slo import SloEngine
from aisre.store.duckdb import DuckDBStore


def test_reads_for_another_tenant_are_refused(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    engine = SloEngine(store)
    try:
        with acting_for("b"):
            assert store.list_runs(RunQuery(tenant="b")) == []
            calls = [
                lambda: store.list_runs(RunQuery(tenant="a")),
                lambda: store.journey_summaries(TimeRange(tenant="a")),
                lambda: store.get_trace("a", "00" * 16),
                lambda: store.list_alerts("a"),
                lambda: store.list_audit("a"),
                lambda: store.list_keys("a"),
                lambda: store.metric_totals("a"),
                lambda: store.span_sample(SpanSampleQuery(tenant="a")),
                lambda: engine.statuses("a"),
                lambda: engine.specs("a"),
            ]
            for call in calls:
                with pytest.raises(Forbidden, match="cannot read tenant 'a'"):
                    call()
        # Outside a request (the process itself: evaluator, benchmarks) every tenant is readable.
        assert store.list_runs(RunQuery(tenant="a")) == []
    finally:
        store.close()
