"""The metric series contract: what every backend of tests/store/conftest.py STORE_URLS
answers about the series a tenant sent (``metric_series``, ``metric_series_stats``) and the
listing built on them (derive/metric_series.py, behind GET /api/metrics/series): the same
series, first and last minutes and point counts, filters, pages and tenants on each."""

from __future__ import annotations

from typing import Any

import pytest

from aisre.core.auth import Forbidden, acting_for
from aisre.core.errors import PermanentError
from aisre.core.pipeline import EncodedExport
from aisre.core.rows import MetricSeriesStats, row_problems
from aisre.core.series import parse_selector
from aisre.core.timefmt import rfc3339
from aisre.derive.metric_series import SeriesQuery, list_series
from aisre.ingest.metrics import decode_metrics
from tests.metrics_otlp import MIN, T0, counter, gauge, histogram, request
from tests.store.conftest import OpenedStore

S = 10**9


def _send(store: Any, tenant: str, service: str, *metrics: Any) -> None:
    batch = decode_metrics(EncodedExport(request(list(metrics), service=service).SerializeToString(), "protobuf"), 1 << 20)
    result = store.submit_metrics(tenant, batch.points).result(60)
    assert result.over_limit == 0


@pytest.fixture(scope="module")
def sent(contract_store: OpenedStore) -> OpenedStore:
    """Tenant ``ma``: a counter of two codes over minutes 0-2 (api), a gauge of two GPUs over
    minutes 0-4 (gpu-pool), a histogram over minutes 1-2 (api); tenant ``mb``: one gauge."""
    store = contract_store.store
    codes = [(T0 + i * MIN + 30 * S, 10.0 * (i + 1), {"code": code}) for i in range(3) for code in ("200", "500")]
    _send(store, "ma", "api", counter("requests", codes),
          histogram("latency", [0.5, 2.0], [(T0 + i * MIN + 20 * S, [i, 1, 0], {}) for i in (1, 2)]))
    gpus = [(T0 + i * MIN + s * S, 0.5, {"gpu": g}) for i in range(5) for s in (10, 40) for g in ("0", "1")]
    _send(store, "ma", "gpu-pool", gauge("gpu.util", gpus))
    # The same counter export again (a retry) adds no points.
    _send(store, "ma", "api", counter("requests", codes))
    _send(store, "mb", "other", gauge("gpu.util", [(T0 + 7 * MIN, 0.1, {"gpu": "9"})]))
    return contract_store


def _ids(store: Any, tenant: str) -> dict[tuple[str, str], int]:
    return {(r["metric"], r["labels"]): int(r["series_id"]) for r in store.metric_series(tenant)}


def test_series_stats_are_first_and_last_minute_and_points(sent: OpenedStore) -> None:
    store = sent.store
    ids = _ids(store, "ma")
    assert len(ids) == 5
    stats = {s["series_id"]: s for s in store.metric_series_stats("ma", sorted(ids.values()))}
    for row in stats.values():
        assert row_problems(dict(row), MetricSeriesStats) == []

    def of(metric: str, labels: str) -> tuple[int, int, int]:
        s = stats[ids[(metric, labels)]]
        return (s["first_minute_ns"] - T0) // MIN, (s["last_minute_ns"] - T0) // MIN, s["points"]

    assert of("requests", '{"code":"500","service.name":"api"}') == (0, 2, 3)
    assert of("gpu.util", '{"gpu":"1","service.name":"gpu-pool"}') == (0, 4, 10)
    assert of("latency", '{"service.name":"api"}') == (1, 2, 2)
    assert store.metric_series_stats("ma", []) == []
    # Another tenant's ids answer nothing for this one.
    other = list(_ids(store, "mb").values())
    assert store.metric_series_stats("ma", other) == []
    assert [s["points"] for s in store.metric_series_stats("mb", other)] == [1]


def test_listing_filters_and_describes_each_series(sent: OpenedStore) -> None:
    store = sent.store
    page = list_series(store, SeriesQuery("ma"))
    assert page["next_cursor"] is None
    assert [(i["metric"], i["labels"].get("code") or i["labels"].get("gpu")) for i in page["items"]] == [
        ("gpu.util", "0"), ("gpu.util", "1"), ("latency", None), ("requests", "200"), ("requests", "500")]
    gpu1 = page["items"][1]
    assert gpu1 == {
        "metric": "gpu.util", "kind": "gauge", "unit": "1", "labels": {"gpu": "1", "service.name": "gpu-pool"},
        "selector": 'gpu.util{gpu="1",service.name="gpu-pool"}', "meaning": None,
        "first_seen": rfc3339(T0), "first_seen_ns": T0, "last_seen": rfc3339(T0 + 4 * MIN),
        "last_seen_ns": T0 + 4 * MIN, "points": 10,
    }
    latency = page["items"][2]
    assert (latency["kind"], latency["unit"], latency["points"], latency["first_seen_ns"]) == ("histogram", "s", 2, T0 + MIN)
    # Each selector picks exactly its series.
    for item in page["items"]:
        sel = parse_selector(item["selector"])
        assert [i for i in page["items"] if sel.matches(i["metric"], i["labels"])] == [item]

    def names(**kw: Any) -> list[str]:
        return [i["selector"] for i in list_series(store, SeriesQuery("ma", **kw))["items"]]

    assert names(metric="requests") == ['requests{code="200",service.name="api"}', 'requests{code="500",service.name="api"}']
    assert names(match='{code=~"5.."}') == ['requests{code="500",service.name="api"}']
    assert names(match='requests{code!="500"}') == ['requests{code="200",service.name="api"}']
    assert names(metric="gpu.util", match='requests{code="500"}') == []
    assert names(service="api", match='{code=""}') == ['latency{service.name="api"}']
    assert names(service="gpu-pool") == ['gpu.util{gpu="0",service.name="gpu-pool"}', 'gpu.util{gpu="1",service.name="gpu-pool"}']
    assert names(metric="nope") == []
    # The other tenant sees its own series only.
    assert [i["selector"] for i in list_series(store, SeriesQuery("mb"))["items"]] == ['gpu.util{gpu="9",service.name="other"}']


def test_listing_pages_by_cursor(sent: OpenedStore) -> None:
    store = sent.store
    seen, cursor, pages = [], None, 0
    while True:
        page = list_series(store, SeriesQuery("ma", limit=2, cursor=cursor))
        seen += [i["selector"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == [i["selector"] for i in list_series(store, SeriesQuery("ma"))["items"]]
    # A filter applies across pages: two api counters, one a page.
    first = list_series(store, SeriesQuery("ma", metric="requests", limit=1))
    second = list_series(store, SeriesQuery("ma", metric="requests", limit=1, cursor=first["next_cursor"]))
    assert [i["labels"]["code"] for i in first["items"] + second["items"]] == ["200", "500"]
    assert second["next_cursor"] is None
    for bad in (SeriesQuery("ma", limit=0), SeriesQuery("ma", limit=1001), SeriesQuery("ma", cursor="zzz"),
                SeriesQuery("ma", match='{code=~"("}'), SeriesQuery("ma", match="{code=200}")):
        with pytest.raises(PermanentError):
            list_series(store, bad)


def test_a_caller_of_one_tenant_cannot_list_another(sent: OpenedStore) -> None:
    store = sent.store
    ids = list(_ids(store, "ma").values())
    with acting_for("mb"):
        assert [i["labels"]["gpu"] for i in list_series(store, SeriesQuery("mb"))["items"]] == ["9"]
        for call in (lambda: list_series(store, SeriesQuery("ma")), lambda: store.metric_series_stats("ma", ids)):
            with pytest.raises(Forbidden, match="cannot read tenant 'ma'"):
                call()
