"""Budgets, burn rates and alert replay over minute counts (SRE Workbook ch. 5)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from aisre.evaluate.budget import MINUTE_NS, MinuteSeries, evaluate, replay
from aisre.evaluate.windows import windows_for

DAY = 1440
START = 1_790_000_000 * 10**9 // MINUTE_NS * MINUTE_NS
PERIOD = timedelta(days=30)


def _steady(days: int = 30, per_minute: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    total = np.full(days * DAY, per_minute, dtype=np.int64)
    return total.copy(), total


def test_workbook_outage_pages_within_predicted_minutes_and_resolves() -> None:
    """15 % errors for 10 minutes on a 99.9 % SLO: the 1h/5m pair at 14.4x (1.44 %) fires
    once the hour window reaches 1.44 % (5.76 min in) and stops when the 5m window clears."""
    good, total = _steady()
    outage = 20 * DAY
    good[outage : outage + 10] = 850
    series = MinuteSeries(START, good, total)
    alerts = replay(series, 99.9, PERIOD, windows_for(PERIOD))
    assert [a.severity for a in alerts] == ["page"]
    page = alerts[0]
    assert page.start_ns == START + (outage + 6) * MINUTE_NS  # first minute end past 5.76 min
    assert page.end_ns == START + (outage + 15) * MINUTE_NS  # 5 min after the errors stop
    assert page.peak_burn == pytest.approx(0.15 * 10 / 60 / 0.001)


def test_no_traffic_burns_nothing_and_full_failure_exhausts() -> None:
    empty = MinuteSeries.from_lists(START, [0] * 5000, [0] * 5000)
    status = evaluate(empty, 99.5, timedelta(days=28), windows_for(timedelta(days=28)))
    assert (status.sli, status.total, status.remaining_ratio) == (None, 0, 1.0)
    assert not status.page and not status.ticket and status.time_to_exhaustion is None

    # A journey whose first two hours all fail: the 28-day budget (0.5 % of the period's
    # events at the observed rate) is 201.6 minutes of full outage, 120 of them are spent.
    down = MinuteSeries.from_lists(START, [0] * 120, [10] * 120)
    status = evaluate(down, 99.5, timedelta(days=28), windows_for(timedelta(days=28)))
    assert status.sli == 0.0
    assert status.remaining_ratio == pytest.approx(1 - 120 / (0.005 * 28 * DAY))
    assert status.data is not None and not status.data.complete
    assert status.data.observed == timedelta(hours=2) and status.data.projected_events == 10 * 28 * DAY
    assert status.burn_rates["1h"] == pytest.approx(200.0)
    # Windows longer than the data burn their observed share: 3 d holds 2 h of failures.
    assert status.burn_rates["3d"] == pytest.approx(200.0 * 120 / (3 * DAY))
    assert status.page

    # Exhausted once more than the budget is spent: 202 minutes of full outage.
    down = MinuteSeries.from_lists(START, [0] * 202, [10] * 202)
    assert evaluate(down, 99.5, timedelta(days=28), windows_for(timedelta(days=28))).remaining_ratio < 0


def test_objective_100_is_refused() -> None:
    series = MinuteSeries.from_lists(START, [1], [1])
    with pytest.raises(ValueError, match="objective must be > 0 and < 100"):
        evaluate(series, 100, PERIOD, windows_for(PERIOD))


def test_budget_arithmetic_and_time_to_exhaustion() -> None:
    good, total = _steady(days=30, per_minute=100)
    good[-60:] = 98  # 2 % errors in the last hour: burn rate 20 on 99.9 %
    status = evaluate(MinuteSeries(START, good, total), 99.9, PERIOD, windows_for(PERIOD), burn_down_points=10)
    assert status.total == 30 * DAY * 100
    assert status.spent_events == 120
    assert status.budget_events == pytest.approx(0.001 * status.total)
    assert status.remaining_ratio == pytest.approx(1 - 120 / (0.001 * status.total))
    assert status.burn_rates["1h"] == pytest.approx(20.0)
    assert status.burn_rates["5m"] == pytest.approx(20.0)
    # At burn 20, a full budget lasts 30d/20 = 36 h; what is left lasts that share of it.
    assert status.time_to_exhaustion == PERIOD * status.remaining_ratio / 20.0
    page_quick = next(c for c in status.conditions if c.name == "page_quick")
    assert page_quick.factor == pytest.approx(14.4) and page_quick.firing
    assert len(status.burn_down) == 10
    assert status.burn_down[0][1] == 1.0 and status.burn_down[-1][1] == pytest.approx(status.remaining_ratio)


def test_28d_factors_are_sloths() -> None:
    factors = windows_for(timedelta(days=28)).factors()
    assert factors == {
        "page_quick": 13.44,
        "page_slow": 5.6000000000000005,
        "ticket_quick": 2.8000000000000003,
        "ticket_slow": 0.9333333333333333,
    }


def test_timeslices_count_good_slices_not_events() -> None:
    from aisre.evaluate.budget import timeslices

    # Four 5-minute slices: 100 % good, 90 % good, no traffic, 99 % good.
    good = [10] * 5 + [9] * 5 + [0] * 5 + [99, 100, 100, 100, 100]
    total = [10] * 5 + [10] * 5 + [0] * 5 + [100] * 5
    sliced = timeslices(MinuteSeries.from_lists(START, good, total), 5, 95.0)
    assert sliced.total.tolist() == [0, 0, 0, 0, 1] + [0, 0, 0, 0, 1] + [0] * 5 + [0, 0, 0, 0, 1]
    assert sliced.good.tolist() == [0, 0, 0, 0, 1] + [0] * 5 + [0] * 5 + [0, 0, 0, 0, 1]
    ratio = timeslices(MinuteSeries.from_lists(START, good, total), 5, 95.0, ratio=True)
    assert ratio.good.sum() == 1_000_000 + 900_000 + 998_000 and ratio.total.sum() == 3_000_000


def test_a_young_slos_burn_down_spans_its_data_not_the_period() -> None:
    # 30 days of minutes, traffic only in the last two hours.
    total = np.zeros(30 * DAY, dtype=np.int64)
    total[-120:] = 10
    good = total.copy()
    good[-30:] = 9
    status = evaluate(MinuteSeries(START, good, total), 99.9, PERIOD, windows_for(PERIOD), burn_down_points=12)
    times = [t for t, _ in status.burn_down]
    assert len(times) == 12
    assert times[0] == START + (30 * DAY - 120 + 1) * MINUTE_NS  # the end of the first minute with events
    assert status.burn_down[0][1] == 1.0 and status.burn_down[-1][1] == pytest.approx(status.remaining_ratio)
