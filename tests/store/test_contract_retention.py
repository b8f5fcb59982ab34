"""Retention and externally counted SLO minutes, the same on every backend of
tests/store/conftest.py STORE_URLS.

One store per backend for the module: raw spans of tenant ``retained`` are kept one day,
every other tenant's for ever; minute rollups 400 days. The store's clock is the test's
(``CLOCK``), and the runs are stamped two hours before the real time, so a server's own
TTL (ClickHouse applies it in the background against the server's clock) has nothing to
take before the test asks for expiry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from aisre.core.errors import NotFound
from aisre.core.model import RunQuery, SliRule
from aisre.core.schema import MINUTE_NS, SCORE_ARROW_SCHEMA
from aisre.normalize.spans import flatten
from aisre.store.factory import open_store
from tests.otlp_factory import journey_request
from tests.store.conftest import STORE_URLS

DAY = 86_400 * 10**9
# Two hours before now, at the start of a minute plus 10 s (a request's runs share a minute).
T = (time.time_ns() - 2 * 3600 * 10**9) // MINUTE_NS * MINUTE_NS + 10 * 10**9
CLOCK = [T + 10 * MINUTE_NS]
RULES = [SliRule(slo="ask-ok", journey="ask", kind="outcome"),
         SliRule(slo="ask-chat", journey="ask", kind="step", operation="chat", latency_ns=10**9)]
PROM = SliRule(slo="api-avail", journey="api", kind="prometheus")


@pytest.fixture(scope="module", params=STORE_URLS, ids=lambda url: url.split(":", 1)[0])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("retention")
    url = str(request.param).format(dir=folder, name=re.sub(r"\W", "_", folder.name))
    CLOCK[0] = T + 10 * MINUTE_NS
    s = open_store(url, retention_days=0, retention_overrides={"retained": 1}, retention_interval_s=3600,
                   rollup_retention_days=400, clock=lambda: CLOCK[0])
    try:
        yield s
    finally:
        s.close()


def _send(store: Any, tenant: str, traces: int, start_ns: int) -> list[str]:
    request, ids = journey_request(traces, start_ns=start_ns)
    flat = flatten(request, tenant)
    assert store.submit_spans(flat.table, flat.resources).result(60) == 3 * traces
    return ids


def _slo(store: Any, tenant: str) -> dict[str, tuple[list[int], int, int]]:
    arrays = store.slo_minute_arrays(tenant, 0, 2**62)
    return {slo: ([int(m) for m in a[0]], int(a[1].sum()), int(a[2].sum())) for slo, a in arrays.items()}


def _by_model(store: Any, tenant: str) -> list[dict[str, Any]]:
    return sorted(store.cost.breakdown(tenant, None, None, by=("model",)), key=lambda r: str(r["model"]))


def test_spans_past_retention_expire_and_their_minutes_keep_their_counts(store: Any) -> None:
    """Spans, runs and scores of a one-day tenant go once a day has passed; a tenant kept
    for ever keeps them; the run, cost and SLO minutes of the expired runs stay, even when
    those minutes are asked to be recounted."""
    for tenant in ("retained", "kept"):
        store.set_sli_rules(tenant, RULES)
    ids = _send(store, "retained", 5, T)
    kept = _send(store, "kept", 5, T)
    scores = pa.Table.from_pylist(
        [{"tenant": "retained", "trace_id": ids[0], "span_id": None, "name": "groundedness", "value": 0.9,
          "label": None, "source": "model", "comment": None, "time_ns": T, "received_ns": T}],
        schema=SCORE_ARROW_SCHEMA)
    assert store.add_scores(scores) == []
    store.flush_rollups()
    counted = {"slo": _slo(store, "retained"), "runs": store.incidents.run_minutes("retained", "ask", 0, 2**62),
               "cost": _by_model(store, "retained")}
    minute = T // MINUTE_NS * MINUTE_NS
    assert counted["slo"] == {"ask-ok": ([minute], 5, 5), "ask-chat": ([minute], 5, 5)}
    assert [(r["minute_ns"], r["runs"], r["failures"]) for r in counted["runs"]] == [(minute, 5, 0)]
    assert sorted((r["model"], r["calls"]) for r in counted["cost"]) == [("gpt-4o-mini", 5), ("text-embedding-3-small", 5)]
    assert store.count_spans("retained") == 15

    before = store.expiry.spans
    CLOCK[0] = T + DAY + 2 * MINUTE_NS  # a day after the runs ended: the one-day tenant's spans are due
    store.expire()
    assert store.expiry.spans - before == 15
    assert store.count_spans("retained") == 0
    assert store.list_runs(RunQuery("retained")) == []
    assert store.trace_ids_with_prefix("retained", ids[0][:4]) == []
    with pytest.raises(NotFound):
        store.get_trace("retained", ids[0])
    # Rollups outlive the raw data, also when their minutes are recounted (a repair).
    store.rebuild_rollups("retained", T - MINUTE_NS, T + MINUTE_NS)
    store.flush_rollups()
    assert _slo(store, "retained") == counted["slo"]
    assert store.incidents.run_minutes("retained", "ask", 0, 2**62) == counted["runs"]
    assert _by_model(store, "retained") == counted["cost"]
    assert store.metric_totals("retained")["runs"][0]["runs"] == 5
    # The tenant kept for ever is untouched.
    assert store.count_spans("kept") == 15
    assert sorted(store.trace_ids_with_prefix("kept", "", limit=100)) == sorted(kept)
    assert store.retention("retained")["retention_days"] == 1
    assert store.retention("kept")["rollup_retention_days"] == 400


def test_external_slo_minutes_are_replaced_in_their_range_and_never_recounted(store: Any) -> None:
    """put_slo_minutes replaces a Prometheus-read SLO's minutes in [start, end) (rows outside
    it, and rows with no events, are ignored); recounting the rollups leaves them as put."""
    store.set_sli_rules("prom", [PROM])
    m0 = T // MINUTE_NS * MINUTE_NS
    store.put_slo_minutes("prom", "api-avail", m0, m0 + 3 * MINUTE_NS,
                          [(m0, 9, 10), (m0 + MINUTE_NS, 10, 10), (m0 + 2 * MINUTE_NS, 0, 0), (m0 + 5 * MINUTE_NS, 1, 1)])
    assert _slo(store, "prom") == {"api-avail": ([m0, m0 + MINUTE_NS], 19, 20)}
    generation, _ = store.slo_changes("prom", 0)
    # Read again: the second minute now has fewer events, the first none at all.
    store.put_slo_minutes("prom", "api-avail", m0, m0 + 2 * MINUTE_NS, [(m0 + MINUTE_NS, 4, 5)])
    assert _slo(store, "prom") == {"api-avail": ([m0 + MINUTE_NS], 4, 5)}
    later, changed = store.slo_changes("prom", generation)
    assert later > generation and changed is not None and {m0, m0 + MINUTE_NS} <= changed
    store.rebuild_rollups("prom", m0 - MINUTE_NS, m0 + 3 * MINUTE_NS)
    store.set_sli_rules("prom", [PROM])
    store.flush_rollups()
    assert _slo(store, "prom") == {"api-avail": ([m0 + MINUTE_NS], 4, 5)}


def test_minute_rollups_expire_after_rollup_retention(store: Any) -> None:
    """400 days after a minute, its run and SLO counts go too (last: it empties the store's
    rollups of those minutes for the tests before it)."""
    m0 = T // MINUTE_NS * MINUTE_NS
    assert _slo(store, "kept")["ask-ok"][2] == 5
    CLOCK[0] = m0 + MINUTE_NS + 400 * DAY + 1
    store.expire()
    assert _slo(store, "kept") == {}
    assert _slo(store, "prom") == {}
    assert store.incidents.run_minutes("kept", "ask", 0, 2**62) == []
