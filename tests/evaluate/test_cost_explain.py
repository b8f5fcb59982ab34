"""Cost explanations refuse to guess, on a real DuckDB store with runs at chosen times: an
empty baseline, or one with a handful of runs, is insufficient_data with the counts and no
cause; a cause shown by too few runs is held back; with enough data the cause is named."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisre.core.errors import NotFound, PermanentError
from aisre.evaluate.cost import CostEngine
from aisre.evaluate.cost.explain import MIN_EXEMPLARS, MIN_RUNS, Minimums
from aisre.normalize.prices import default_catalog
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from aisre.store.duckdb.cost import DuckDBCost
from tests.otlp_factory import chat_runs

S = 10**9
MIN = 60 * S
HOUR = 3600 * S
T0 = int(dt.datetime(2026, 11, 16, 8, 0, tzinfo=dt.UTC).timestamp()) * S
BASELINE = (T0, T0 + HOUR)
CURRENT = (T0 + 2 * HOUR, T0 + 3 * HOUR)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path / "e.duckdb"))
    yield s
    s.close()


def _write(store: DuckDBStore, start_ns: int, n: int, input_tokens: int, prompt: str, step_ns: int = MIN) -> None:
    starts = [start_ns + i * step_ns for i in range(n)]
    flat = flatten(chat_runs(starts, [(input_tokens, 200)] * n, model="gpt-4o-mini", prompt=prompt), "t")
    store.submit_spans(flat.table, flat.resources).result(10)


def _cost(n: int, input_tokens: int) -> float:
    p = default_catalog().lookup("openai", "gpt-4o-mini", T0)[0]
    assert p is not None
    return n * (input_tokens * p.input + 200 * p.output) / 1e6


def _explain(store: DuckDBStore, minimums: Minimums | None = None) -> dict:
    store.flush_rollups()
    return CostEngine(DuckDBCost(store), minimums=minimums).explain("t", "ask", BASELINE, CURRENT)


def test_empty_baseline_is_insufficient_data_with_the_counts_and_no_cause(store: DuckDBStore) -> None:
    # A new install: the current window has 40 runs, the baseline none. It is not "traffic growth 100 %".
    _write(store, CURRENT[0], 40, 1000, "v1")
    doc = _explain(store)
    assert doc["status"] == "insufficient_data"
    assert doc["causes"] == [] and "decomposition" not in doc and "delta_usd" not in doc
    assert (doc["baseline"]["runs"], doc["baseline"]["billed_calls"], doc["baseline"]["cost_usd"]) == (0, 0, 0.0)
    assert (doc["current"]["runs"], doc["current"]["billed_calls"]) == (40, 40)
    assert doc["current"]["cost_usd"] == pytest.approx(_cost(40, 1000))
    assert doc["minimums"] == {"runs": MIN_RUNS, "billed_calls": MIN_RUNS, "exemplars": MIN_EXEMPLARS, "share": 0.05}
    assert doc["shortfalls"] == [f"baseline window: 0 runs, fewer than the {MIN_RUNS} needed",
                                 f"baseline window: 0 billed model calls, fewer than the {MIN_RUNS} needed"]
    assert doc["baseline"]["from"] == "2026-11-16T08:00:00.000000Z"


def test_a_handful_of_baseline_runs_is_still_insufficient(store: DuckDBStore) -> None:
    _write(store, BASELINE[0], 5, 1000, "v1", step_ns=10 * MIN)
    _write(store, CURRENT[0], 40, 1000, "v1")
    doc = _explain(store)
    assert doc["status"] == "insufficient_data" and doc["causes"] == []
    assert (doc["baseline"]["runs"], doc["current"]["runs"]) == (5, 40)
    assert doc["baseline"]["cost_usd"] == pytest.approx(_cost(5, 1000))
    assert doc["shortfalls"][0] == f"baseline window: 5 runs, fewer than the {MIN_RUNS} needed"
    # The minimum is a setting: at 5 runs the same data is explained (traffic, ×8).
    lowered = _explain(store, Minimums(runs=5))
    assert lowered["status"] == "explained"
    assert [c["cause"] for c in lowered["causes"]] == ["traffic_growth"]
    assert lowered["causes"][0]["share"] == pytest.approx(1.0)


def test_enough_data_names_the_cause(store: DuckDBStore) -> None:
    # Same traffic; prompt v2 doubles the input tokens of every current run.
    _write(store, BASELINE[0], 30, 1000, "v1")
    _write(store, CURRENT[0], 30, 2000, "v2")
    doc = _explain(store)
    assert doc["status"] == "explained" and doc["not_named"] == []
    assert doc["delta_usd"] == pytest.approx(_cost(30, 2000) - _cost(30, 1000))
    top = doc["causes"][0]
    assert top["cause"] == "prompt_regression" and top["share"] == pytest.approx(1.0)
    assert "v2" in top["evidence"]["versions"] and len(top["exemplar_trace_ids"]) == 5


def test_a_cause_too_few_runs_show_is_held_back(store: DuckDBStore) -> None:
    # Two current runs carry a new prompt version with 50× the input tokens: the token term is
    # most of the delta, but two runs are below the exemplar minimum, so no regression is named.
    _write(store, BASELINE[0], 30, 1000, "v1")
    _write(store, CURRENT[0], 28, 1000, "v1")
    _write(store, CURRENT[0] + 40 * MIN, 2, 50_000, "v9")
    doc = _explain(store)
    assert doc["status"] == "explained"
    assert [c["cause"] for c in doc["causes"]] == ["unexplained"]
    assert doc["causes"][0]["share"] == pytest.approx(1.0)
    assert [(n["cause"], n["reason"]) for n in doc["not_named"]] == [
        ("prompt_regression", f"2 runs of the current window show it, fewer than the {MIN_EXEMPLARS} needed")]
    assert "prompt regression not named" in doc["causes"][0]["evidence"]["summary"]
    # With the minimum at 2 exemplars, the same data names it.
    assert _explain(store, Minimums(exemplars=2))["causes"][0]["cause"] == "prompt_regression"


def test_no_runs_in_either_window_is_not_found_and_bad_minimums_are_refused(store: DuckDBStore) -> None:
    with pytest.raises(NotFound):
        _explain(store)
    for bad in ({"runs": 0}, {"exemplars": 0}, {"share": 1.0}):
        with pytest.raises(PermanentError):
            Minimums(**bad)



def test_equal_spend_summed_in_another_order_is_no_change() -> None:
    """Two windows with the same calls per model, their models summed in another order
    (0.1 + 0.2 + 0.3 != 0.3 + 0.2 + 0.1 in floats): no delta to split, so no model shift of
    1e-16 USD is named."""
    from aisre.evaluate.cost.explain import ModelUse, Window, decompose

    def window(start_ns: int, costs: list[tuple[str, float]]) -> Window:
        w = Window(start_ns, start_ns + HOUR, runs=30)
        for model, usd in costs:
            w.models[model] = ModelUse("openai", model, calls=10, billed=10, first=10, input_tokens=1000,
                                       output_tokens=100, cost_usd=usd)
        return w

    costs = [("a", 0.1), ("b", 0.2), ("c", 0.3)]
    base, cur = window(BASELINE[0], costs), window(CURRENT[0], costs[::-1])
    assert cur.cost_usd != base.cost_usd  # the rounding this guards against
    d = decompose(base, cur, dict.fromkeys("abc"))
    assert d["delta_usd"] == 0.0
    assert set(d["terms"].values()) == {0.0}
