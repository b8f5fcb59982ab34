"""The one money, time and tick format (core/display.py) on the values issue 16 found."""

from __future__ import annotations

from datetime import UTC, datetime

from aisre.core import display


def test_money_one_format() -> None:
    cases = {
        3.2e-7: "$0.00000032", 50.0: "$50.00", 5000: "$5,000.00", 8.843e-05: "$0.0000884",
        -4.51e-19: "$0", 0.0: "$0", 0.00182: "$0.00182", 0.0379: "$0.0379", 0.5: "$0.50",
        0.999: "$0.999", 1.5: "$1.50", -1.2: "-$1.20", 1234567.891: "$1,234,567.89",
    }
    assert {v: display.money(v) for v in cases} == cases
    assert display.money(None) == "—" and display.money(None, missing="-") == "-"
    assert display.money(float("nan")) == "—"


def test_utc_without_microseconds() -> None:
    assert display.utc_text("2026-12-05T09:00:00.123456Z") == "2026-12-05 09:00:00"
    assert display.utc_text(1_764_925_200 * 10**9) == "2025-12-05 09:00:00"
    assert display.utc_text(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), seconds=False) == "2026-01-02 03:04"
    assert display.utc_text(None) == "—" and display.utc_text("soon") == "soon"


def test_round_ticks() -> None:
    assert display.nice_ticks(0, 0.7654) == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert display.nice_ticks(0, 3) == [0.0, 1.0, 2.0, 3.0]
    step = display.nice_step(0.0416)
    assert [display.money_tick(v, step) for v in display.nice_ticks(0, 0.0416)] == ["$0", "$0.02", "$0.04", "$0.06"]
    assert [display.money_tick(v, 0.25) for v in (0.25, 0.5)] == ["$0.25", "$0.50"]
    assert [display.number_tick(v, 2.5) for v in (0, 2.5, 5)] == ["0", "2.5", "5.0"]
    # Ticks on whole minutes/hours/days, the date only where it changes.
    t0 = datetime(2026, 12, 5, 8, 58, 30, tzinfo=UTC).timestamp()
    assert display.time_ticks(t0, t0 + 480) == [
        (t0 + 90, "Dec 05 09:00"), (t0 + 210, "09:02"), (t0 + 330, "09:04"), (t0 + 450, "09:06"),
    ]
    days = display.time_ticks(t0, t0 + 28 * 86400)
    assert len(days) <= 6 and all(label.startswith(("Dec", "Jan")) for _, label in days)


def test_round_bounds_never_count_above_the_bound() -> None:
    stored = tuple(round(1.25**i, 3) for i in range(0, 61))  # ms, as the rollups keep them
    picked = display.round_bounds(stored, (0.5, 5, 10, 100, 1000))
    assert [b for b, _ in picked] == [5, 10, 100, 1000]
    assert all(stored[i] <= b and (i + 1 == len(stored) or stored[i + 1] > b) for b, i in picked)
