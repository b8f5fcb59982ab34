"""The impact-start rule on per-minute counts with known truth."""

from __future__ import annotations

from aisre.evaluate.impact import MINUTE_NS, REACH_MIN, find_stretch

T0 = 1_790_000_000 * 10**9 // MINUTE_NS * MINUTE_NS


def _minutes(bad: list[int], total: int = 10) -> list[tuple[int, int, int]]:
    return [(T0 + i * MINUTE_NS, total, b) for i, b in enumerate(bad)]


def _start(minutes: list[tuple[int, int, int]], threshold: float, alert_ns: int) -> int | None:
    stretch = find_stretch(minutes, threshold, alert_ns)
    return None if stretch is None else stretch.start_ns


def test_walks_back_over_bad_minutes_across_short_gaps() -> None:
    # Minutes 3..8: bad except minute 5 (a gap of one good minute); 0..2 good.
    stretch = find_stretch(_minutes([0, 0, 0, 5, 6, 0, 7, 8, 9]), 0.01, T0 + 8 * MINUTE_NS + 5 * 10**9)
    assert stretch is not None
    assert (stretch.start_ns, stretch.last_ns, stretch.bad_minutes, stretch.bad_events, stretch.events) == (
        T0 + 3 * MINUTE_NS, T0 + 8 * MINUTE_NS, 5, 35, 60)
    # Two quiet minutes (no traffic) inside a stretch are tolerated too; three end it.
    quiet = [(T0, 10, 5), (T0 + 3 * MINUTE_NS, 10, 5), (T0 + 4 * MINUTE_NS, 10, 5)]
    assert _start(quiet, 0.01, T0 + 4 * MINUTE_NS) == T0
    quiet[0] = (T0 - MINUTE_NS, 10, 5)
    assert _start(quiet, 0.01, T0 + 4 * MINUTE_NS) == T0 + 3 * MINUTE_NS


def test_stray_failures_start_nothing() -> None:
    # One failure two hours before a 10-minute outage: the outage's first minute, not the stray.
    bad = [0] * 130
    bad[0] = 1
    for i in range(120, 130):
        bad[i] = 3
    stretch = find_stretch(_minutes(bad), 0.005, T0 + 129 * MINUTE_NS)
    assert stretch is not None and stretch.start_ns == T0 + 120 * MINUTE_NS
    # The stray alone (an alert right after it): fewer than 3 bad events is no stretch.
    assert find_stretch(_minutes(bad), 0.005, T0 + 7 * 10**9) is None
    assert find_stretch(_minutes([1, 0, 1]), 0.005, T0 + 2 * MINUTE_NS) is None


def test_the_stretch_must_reach_the_alert() -> None:
    # Bad minutes 0..4, then three good minutes up to the alert's (5, 6 and the alert's 7): not its stretch.
    assert find_stretch(_minutes([5, 5, 5, 5, 5, 0, 0, 0]), 0.01, T0 + 7 * MINUTE_NS) is None
    # Two good minutes (5 and the alert's 6): it reaches.
    assert _start(_minutes([5, 5, 5, 5, 5, 0, 0]), 0.01, T0 + 6 * MINUTE_NS) == T0
    # A minute at or below the threshold is not bad: 1 of 10 against a 10 % threshold.
    assert find_stretch(_minutes([1, 1, 1, 1]), 0.1, T0 + 3 * MINUTE_NS) is None


def test_a_page_reaches_back_over_its_short_window() -> None:
    # A 5-minute outage that ended 10 minutes before a page (late telemetry, or the 30 m pair
    # still burning): within a page's 30-minute reach, not within the default 2 minutes.
    bad = [5] * 5 + [0] * 10
    alert = T0 + 14 * MINUTE_NS
    assert find_stretch(_minutes(bad), 0.01, alert) is None
    stretch = find_stretch(_minutes(bad), 0.01, alert, reach=REACH_MIN["page"])
    assert stretch is not None and (stretch.start_ns, stretch.last_ns) == (T0, T0 + 4 * MINUTE_NS)
    # Once the outage is further back than the reach, it no longer explains the alert.
    assert find_stretch(_minutes([5] * 5 + [0] * 40), 0.01, T0 + 44 * MINUTE_NS, reach=REACH_MIN["page"]) is None
