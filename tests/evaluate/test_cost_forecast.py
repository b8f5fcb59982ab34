"""Budget forecasts on a real DuckDB store, with spans written at chosen times: a journey's
first 40 minutes (or 3 hours) of steady spend is carried forward at its run rate, so a
monthly budget it exhausts in ~9 h is projected to run out ~9 h after its first run; two
days of hourly history switch to the seasonal model. No wall clock: every call takes now."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisre.core.timefmt import rfc3339
from aisre.evaluate.cost import CostEngine
from aisre.evaluate.cost.forecast import RUN_RATE, SEASONAL, crossing, forecast_run_rate, steps
from aisre.normalize.prices import default_catalog
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from aisre.store.duckdb.cost import DuckDBCost
from tests.otlp_factory import chat_runs

S = 10**9
MIN = 60 * S
HOUR = 3600 * S
T0 = int(dt.datetime(2026, 11, 16, 10, 0, 7, tzinfo=dt.UTC).timestamp()) * S  # the journey's first run
# Two runs a minute, alternating 0.8× and 1.2× of 15,000 input and 880 output gpt-4o tokens:
# $0.0463 a run on average, $5.556 an hour, so a $50 budget lasts 9.0 h from the first run.
TOKENS = [(12_000, 704), (18_000, 1056)]
BUDGET = 50.0
EXHAUSTION_TOLERANCE_NS = 15 * MIN  # under 3 % of the 9 h


def _price() -> tuple[float, float]:
    p = default_catalog().lookup("openai", "gpt-4o", T0)[0]
    assert p is not None
    return p.input / 1e6, p.output / 1e6


def _rate_per_ns() -> float:
    pin, pout = _price()
    per_run = sum(i * pin + o * pout for i, o in TOKENS) / len(TOKENS)
    return 2 * per_run / MIN


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path / "f.duckdb"))
    yield s
    s.close()


def _steady(store: DuckDBStore, start_ns: int, until_ns: int, journey: str = "ask") -> int:
    """Runs every 30 s from ``start_ns`` to before ``until_ns``; returns how many."""
    starts = list(range(start_ns, until_ns, 30 * S))
    tokens = [TOKENS[i % 2] for i in range(len(starts))]
    for i in range(0, len(starts), 2000):
        flat = flatten(chat_runs(starts[i:i + 2000], tokens[i:i + 2000], journey=journey), "t")
        store.submit_spans(flat.table, flat.resources).result(30)
    store.flush_rollups()
    return len(starts)


def _ns(stamp: str) -> int:
    return int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 10**6) * 1000


@pytest.mark.parametrize("observed_ns", [40 * MIN, 3 * HOUR], ids=["40min", "3h"])
def test_young_history_is_forecast_at_its_run_rate_and_exhausts_on_time(store: DuckDBStore, observed_ns: int) -> None:
    now = T0 + observed_ns
    runs = _steady(store, T0, now)
    cost = CostEngine(DuckDBCost(store))
    cost.put_budget("t", {"name": "ask-monthly", "journey": "ask", "period": "month", "amount_usd": BUDGET})
    doc = cost.budget("t", "ask-monthly", now)
    pin, pout = _price()
    spent = sum((TOKENS[i % 2][0] * pin + TOKENS[i % 2][1] * pout) for i in range(runs))
    assert doc["spent_usd"] == pytest.approx(spent, rel=1e-9)
    assert doc["forecast_model"] == RUN_RATE
    # The basis: from the first run's minute to now, every complete minute a bucket.
    first_minute = T0 // MIN * MIN
    assert doc["forecast_basis"] == {"observed_s": pytest.approx((now - first_minute) / S), "buckets": (now - first_minute) // MIN,
                                     "bucket_s": 60, "since": rfc3339(first_minute)}
    truth = T0 + int(BUDGET / _rate_per_ns())
    assert abs(truth - T0 - 9 * HOUR) < MIN  # the data says what the test claims
    exhaustion = _ns(doc["projected_exhaustion"])
    assert now < exhaustion < now + 24 * HOUR
    assert abs(exhaustion - truth) < EXHAUSTION_TOLERANCE_NS, (doc["projected_exhaustion"], rfc3339(truth))
    # The month's forecast is the rate carried to its end, far past the budget; the band holds it.
    end = _ns(doc["period_end"])
    expected = spent + _rate_per_ns() * (end - now)
    assert doc["forecast_usd"] == pytest.approx(expected, rel=0.02)
    assert doc["forecast_low_usd"] < doc["forecast_usd"] < doc["forecast_high_usd"]
    assert doc["forecast_low_usd"] > BUDGET  # even the low edge of the band runs out this month
    assert doc["alert"] == 1.0
    # The series ends at the period end, and its cumulative mean is the forecast.
    series = doc["forecast_series"]
    assert series[0]["time"] == rfc3339((now // HOUR + 1) * HOUR) and series[-1]["time"] == rfc3339(end)
    assert series[-1]["cumulative_usd"] == pytest.approx(doc["forecast_usd"])
    assert doc["as_of"] == rfc3339(now)


def test_two_days_of_hourly_history_use_the_seasonal_model(store: DuckDBStore) -> None:
    start = T0 - 50 * HOUR
    now = T0
    _steady(store, start, now)
    cost = CostEngine(DuckDBCost(store))
    cost.put_budget("t", {"name": "b", "journey": "ask", "period": "month", "amount_usd": 1.0})
    doc = cost.budgets("t", now)[0]
    assert doc["forecast_model"] == SEASONAL
    assert doc["forecast_basis"]["bucket_s"] == 3600 and doc["forecast_basis"]["buckets"] >= 48
    # A budget the steady spend reaches 9 h from now: the seasonal path finds it within the hour.
    amount = doc["spent_usd"] + _rate_per_ns() * 9 * HOUR
    cost.put_budget("t", {"name": "b", "journey": "ask", "period": "month", "amount_usd": amount})
    doc = cost.budgets("t", now)[0]
    assert abs(_ns(doc["projected_exhaustion"]) - (now + 9 * HOUR)) < HOUR


def test_no_spend_yet_forecasts_nothing(store: DuckDBStore) -> None:
    cost = CostEngine(DuckDBCost(store))
    cost.put_budget("t", {"name": "b", "period": "week", "amount_usd": 5.0})
    doc = cost.budgets("t", T0)[0]
    assert (doc["spent_usd"], doc["forecast_usd"], doc["projected_exhaustion"], doc["alert"]) == (0.0, 0.0, None, None)
    assert doc["forecast_model"] == "no spend yet" and doc["forecast_basis"]["buckets"] == 0


def test_run_rate_interval_narrows_with_history_and_steady_spend_has_none() -> None:
    now = T0 // MIN * MIN + 30 * MIN
    end = now + 10 * HOUR
    steady = {T0 // MIN * MIN + i * MIN: 1.0 for i in range(31)}
    fc = forecast_run_rate(T0 // MIN * MIN, steady, now, end)
    # 31 USD over 30 minutes (the current minute's spend counts, its span is 0 s long).
    assert sum(fc.mean) == pytest.approx(31 / 30 * 600)
    assert sum(fc.low) == pytest.approx(sum(fc.mean)) and sum(fc.high) == pytest.approx(sum(fc.mean))
    noisy = {T0 // MIN * MIN + i * MIN: (0.5 if i % 2 else 1.5) for i in range(30)}
    short = forecast_run_rate(T0 // MIN * MIN + 20 * MIN, noisy, now, end)
    long = forecast_run_rate(T0 // MIN * MIN, noisy, now, end)
    width = [sum(f.high) - sum(f.low) for f in (short, long)]
    assert width[0] > width[1] > 0
    assert all(v >= 0 for f in (short, long) for v in (*f.low, *f.high))


def test_crossing_is_interpolated_inside_the_step() -> None:
    ends = steps(10 * MIN, 3 * HOUR)
    assert ends == [HOUR, 2 * HOUR, 3 * HOUR]
    # 5 spent; 50 more in the first 50 minutes, then 60 an hour: 80 is reached at 1 h 25 min.
    assert crossing(10 * MIN, 5.0, ends, [50.0, 60.0, 60.0], 80.0) == HOUR + 25 * MIN
    assert crossing(10 * MIN, 5.0, ends, [50.0, 60.0, 60.0], 500.0) is None
    assert crossing(10 * MIN, 90.0, ends, [1.0, 1.0, 1.0], 80.0) == 10 * MIN
