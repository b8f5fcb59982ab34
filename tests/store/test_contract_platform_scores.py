"""The platform score contract: scores of subjects (a model's drift, a dataset's quality)
stored one per (subject, name, time) and counted into score SLIs over subjects the same on
every backend of tests/store/conftest.py STORE_URLS: each score posted is one event in its
minute, good within [min, max], at backfill and as scores arrive; kept as long as the rollups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aisre.core.schema import MINUTE_NS
from aisre.core.timefmt import rfc3339
from aisre.evaluate.slo import sli_rule
from aisre.evaluate.specs import load_specs
from aisre.normalize.scores import parse_score_batch
from tests.store.conftest import OpenedStore
from tests.store.contract.data import NOW_NS

MIN = MINUTE_NS
T0 = NOW_NS - 2 * 60 * MIN  # two hours before the contract's clock
DRIFT = "drift.share_of_drifted_columns"
SLOS = """
slos:
  - name: churn-drift
    service: ml
    objective: 95
    sli: {kind: score, subject: 'model:churn-v3', score: drift.share_of_drifted_columns, max: 0.3}
  - name: orders-complete
    service: ml
    objective: 99
    sli: {kind: score, subject: 'dataset:orders', score: quality.share_of_missing_values, min: 0, max: 0.01}
"""


def _rules(tmp_path: Path) -> list[Any]:
    path = tmp_path / "slos.yaml"
    path.write_text(SLOS)
    return [r for spec in load_specs([path]) if (r := sli_rule(spec)) is not None]


def _post(store: Any, tenant: str, scores: list[tuple[str, str, int, float]]) -> int:
    items = [{"subject": s, "name": n, "time": rfc3339(t), "value": v} for s, n, t, v in scores]
    batch = parse_score_batch(items, tenant, NOW_NS)
    assert batch.refused == []
    return int(store.add_platform_scores(batch.platform))


def _minutes(store: Any, tenant: str, slo: str) -> dict[int, tuple[int, int]]:
    arrays = store.slo_minute_arrays(tenant, 0, 2**62, slo).get(slo)
    if arrays is None:
        return {}
    return {int(m): (int(g), int(t)) for m, g, t in zip(*arrays, strict=True) if int(t)}


# Minute 0: 0.1 (good); minute 1: 0.2 and 0.5 at two times (one good, one bad); minute 2:
# 0.3 (good: the bound is inclusive); minute 5: 0.8 (bad). Noise: another subject, another name.
FIRST = [
    ("model:churn-v3", DRIFT, T0 + 5 * 10**9, 0.1),
    ("model:churn-v3", DRIFT, T0 + MIN + 10 * 10**9, 0.2),
    ("model:churn-v3", DRIFT, T0 + MIN + 40 * 10**9, 0.5),
    ("model:churn-v3", DRIFT, T0 + 2 * MIN, 0.3),
    ("model:churn-v3", DRIFT, T0 + 5 * MIN + 59 * 10**9, 0.8),
    ("model:churn-v2", DRIFT, T0 + 5 * 10**9, 0.9),
    ("model:churn-v3", "drift.dataset_drift", T0 + 5 * 10**9, 1.0),
    ("dataset:orders", "quality.share_of_missing_values", T0 + 3 * MIN, 0.002),
    ("dataset:orders", "quality.share_of_missing_values", T0 + 4 * MIN, 0.05),
]


def test_scores_of_subjects_are_counted_at_backfill_and_as_they_arrive(contract_store: OpenedStore, tmp_path: Path) -> None:
    store = contract_store.store
    assert _post(store, "pa", FIRST) == len(FIRST)
    store.set_sli_rules("pa", _rules(tmp_path))  # backfill from the stored scores
    drift = {T0: (1, 1), T0 + MIN: (1, 2), T0 + 2 * MIN: (1, 1), T0 + 5 * MIN: (0, 1)}
    assert _minutes(store, "pa", "ml-churn-drift") == drift
    assert _minutes(store, "pa", "ml-orders-complete") == {T0 + 3 * MIN: (1, 1), T0 + 4 * MIN: (0, 1)}
    # Scores that arrive later are counted in their minutes (a late report, an old minute too).
    _post(store, "pa", [("model:churn-v3", DRIFT, T0 + 6 * MIN, 0.05), ("model:churn-v3", DRIFT, T0 + 5 * MIN, 0.6)])
    store.flush_rollups()
    assert _minutes(store, "pa", "ml-churn-drift") == {**drift, T0 + 5 * MIN: (0, 2), T0 + 6 * MIN: (1, 1)}


def test_the_same_score_posted_twice_is_kept_once_the_last_value_winning(contract_store: OpenedStore, tmp_path: Path) -> None:
    store = contract_store.store
    store.set_sli_rules("pb", _rules(tmp_path))
    at = T0 + 10 * MIN + 7 * 10**9
    # Twice in one request, then again in another: one score, the last value.
    assert _post(store, "pb", [("model:churn-v3", DRIFT, at, 0.9), ("model:churn-v3", DRIFT, at, 0.8)]) == 1
    assert _minutes(store, "pb", "ml-churn-drift") == {T0 + 10 * MIN: (0, 1)}
    _post(store, "pb", [("model:churn-v3", DRIFT, at, 0.1)])
    store.flush_rollups()
    assert _minutes(store, "pb", "ml-churn-drift") == {T0 + 10 * MIN: (1, 1)}
    rows = store.platform_scores("pb", subject="model:churn-v3")
    assert [(r["subject"], r["name"], r["time_ns"], r["value"]) for r in rows] == [("model:churn-v3", DRIFT, at, 0.1)]
    assert store.platform_scores("pb", subject="model:other") == []
    assert store.platform_scores("pb", name="nothing") == []


def test_platform_scores_are_read_by_subject_name_and_time_per_tenant(contract_store: OpenedStore) -> None:
    store = contract_store.store
    _post(store, "pc", [("model:a", "x", T0 + 3 * MIN, 3.0), ("model:a", "x", T0 + MIN, 1.0),
                        ("model:a", "y", T0 + 2 * MIN, 2.0), ("dataset:b", "x", T0, 0.0)])
    _post(store, "pd", [("model:a", "x", T0, 9.0)])
    rows = store.platform_scores("pc")
    assert [(r["subject"], r["name"], r["value"]) for r in rows] == [
        ("dataset:b", "x", 0.0), ("model:a", "x", 1.0), ("model:a", "y", 2.0), ("model:a", "x", 3.0)]
    assert rows[0]["source"] == "other" and rows[0]["comment"] is None and rows[0]["received_ns"] == NOW_NS
    assert [r["value"] for r in store.platform_scores("pc", subject="model:a", name="x")] == [1.0, 3.0]
    assert [r["value"] for r in store.platform_scores("pc", since_ns=T0 + MIN, until_ns=T0 + 3 * MIN)] == [1.0, 2.0]
    assert [r["value"] for r in store.platform_scores("pc", limit=1)] == [0.0]
    assert [r["value"] for r in store.platform_scores("pd")] == [9.0]


def test_platform_scores_expire_with_the_rollups(contract_store: OpenedStore) -> None:
    store = contract_store.store
    old = NOW_NS - 401 * 86_400 * 10**9  # past the default rollup retention of 400 days
    _post(store, "pe", [("model:a", "x", old, 1.0), ("model:a", "x", T0, 2.0)])
    store.expire(now_ns=NOW_NS)
    assert [r["value"] for r in store.platform_scores("pe")] == [2.0]

