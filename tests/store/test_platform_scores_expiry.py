"""Platform scores outlive raw spans: on every backend of tests/store/conftest.py
STORE_URLS, scores posted for minutes whose spans have expired are still counted (in its own
module: chdb holds one folder per process, and the contract module's store is open)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aisre.normalize.spans import flatten
from aisre.store.factory import open_store
from tests.otlp_factory import journey_request
from tests.store.conftest import STORE_URLS
from tests.store.contract.data import NOW_NS
from tests.store.test_contract_platform_scores import DRIFT, MIN, _minutes, _post, _rules

BACKENDS = pytest.mark.parametrize("url", STORE_URLS, ids=lambda url: url.split(":", 1)[0])


@BACKENDS
def test_scores_in_minutes_whose_spans_expired_are_still_counted(tmp_path: Path, url: str) -> None:
    """Raw spans expire long before the rollups; a span-driven recount leaves such minutes
    alone, but platform scores, kept with the rollups, are counted in them too."""
    day = 86_400 * 10**9
    store = open_store(url.format(dir=tmp_path, name=re.sub(r"\W", "_", tmp_path.name)),
                       retention_days=1, retention_interval_s=3600, rollup_interval_ms=3_600_000, clock=lambda: NOW_NS)
    try:
        old = NOW_NS - 3 * day
        request, _ = journey_request(2, start_ns=old)
        flat = flatten(request, "t", received_ns=old)
        store.submit_spans(flat.table, flat.resources).result(30)
        store.expire(now_ns=NOW_NS)
        assert store.count_spans("t") == 0
        store.set_sli_rules("t", _rules(tmp_path))
        _post(store, "t", [("model:churn-v3", DRIFT, old, 0.5), ("model:churn-v3", DRIFT, old + MIN, 0.1)])
        store.flush_rollups()
        minute = old // MIN * MIN
        assert _minutes(store, "t", "ml-churn-drift") == {minute: (0, 1), minute + MIN: (1, 1)}
    finally:
        store.close()
