"""SRE Workbook ch. 5 numbers and Pyrra's windows, against evaluate.burn and evaluate.windows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml

from aisre.core.slo import format_duration, parse_duration
from aisre.evaluate import burn
from aisre.evaluate.windows import builtin_windows, pyrra_alert_windows, pyrra_windows
from tests.conftest import REFS

WB = yaml.safe_load((REFS / "google_sre_workbook" / "alerting_on_slos.yaml").read_text())
PYRRA = yaml.safe_load((REFS / "pyrra" / "windows.yaml").read_text())
PERIOD = timedelta(days=30)
SLO = 99.9


@pytest.mark.parametrize("row", WB["table_5_4_burn_rates"], ids=lambda r: str(r["burn_rate"]))
def test_table_5_4_time_to_exhaustion(row: dict[str, Any]) -> None:
    assert burn.burn_rate(row["error_rate"], SLO) == pytest.approx(row["burn_rate"])
    got = burn.time_to_exhaustion(PERIOD, row["burn_rate"])
    # The table rounds 43.2 minutes to 43m.
    assert got.total_seconds() == pytest.approx(parse_duration(row["time_to_exhaustion"]).total_seconds(), abs=30)


@pytest.mark.parametrize("row", WB["table_5_6_multi_burn_rate"] + WB["table_5_8_mwmb_recommended"],
                         ids=lambda r: f"{r.get('window', r.get('long_window'))}@{r['burn_rate']}")
def test_budget_consumed_and_burn_rate_per_window(row: dict[str, Any]) -> None:
    window = parse_duration(row.get("window") or row["long_window"])
    assert burn.budget_consumed(row["burn_rate"], window, PERIOD) == pytest.approx(row["budget_consumed"])
    assert burn.burn_rate_for_budget(row["budget_consumed"], window, PERIOD) == pytest.approx(row["burn_rate"])


def test_example_alert_pairs_are_the_builtin_30d_windows() -> None:
    w = builtin_windows()[PERIOD]
    example = WB["approach_6_example_prometheus_alerts"]
    pairs = [w.page_quick, w.page_slow, w.ticket_quick, w.ticket_slow]
    for pair, want in zip(pairs, example["page"] + example["ticket"], strict=True):
        assert (pair.long, pair.short) == (parse_duration(want["long"]), parse_duration(want["short"]))
        assert w.burn_factor(pair) == pytest.approx(want["burn_rate"])
    assert list(w.factors().values()) == [14.4, 6.0, 3.0, 1.0]


def test_worked_examples() -> None:
    # Approach 1: 10m window, total outage → 0.6 s; 0.1% errors for 10 min use 0.0231% of budget.
    assert burn.detection_time(SLO, 1.0, timedelta(minutes=10)).total_seconds() == pytest.approx(0.6)
    assert burn.budget_consumed(1, timedelta(minutes=10), PERIOD) == pytest.approx(0.000231, abs=1e-6)
    # Approach 2: 5% of budget → 36h window; total outage detected after 129.6 s.
    assert burn.burn_rate_for_budget(0.05, timedelta(hours=36), PERIOD) == pytest.approx(1)
    assert burn.detection_time(SLO, 1.0, timedelta(hours=36)).total_seconds() == pytest.approx(129.6)
    # Approach 3: a 1h total outage spends 1h/720h/0.001 = 139 % of the budget.
    assert burn.budget_consumed(burn.burn_rate(1.0, SLO), timedelta(hours=1), PERIOD) == pytest.approx(1.39, abs=0.01)
    # Approach 4: 5% in 1h → burn rate 36; total outage detected in 2.16 min; 35x exhausts in 20.57h.
    assert burn.burn_rate_for_budget(0.05, timedelta(hours=1), PERIOD) == pytest.approx(36)
    assert burn.detection_time(SLO, 1.0, timedelta(hours=1), 36).total_seconds() / 60 == pytest.approx(2.16)
    assert burn.time_to_exhaustion(PERIOD, 35).total_seconds() / 3600 == pytest.approx(20.57, abs=0.01)
    # Approach 6: 15% errors against 1h@14.4 (threshold 1.44 %) fire after 5.76 min.
    assert burn.alert_threshold(14.4, SLO) == pytest.approx(0.0144)
    assert burn.detection_time(SLO, 0.15, timedelta(hours=1), 14.4).total_seconds() / 60 == pytest.approx(5.76)
    # Low traffic: 10% hourly error rate is a 100x burn; one failure is 13.9% of a month's budget.
    low = WB["low_traffic_example"]
    assert burn.burn_rate(0.10, SLO) == pytest.approx(100)
    assert 1 / (burn.error_budget(SLO) * 10 * 720) == pytest.approx(float(low["stated_in_chapter"]["budget_consumed"].rstrip("%")) / 100, abs=1e-3)


def _pyrra_rows(key: str) -> list[tuple[str, timedelta, timedelta, timedelta, float]]:
    return [(r["severity"], parse_duration(r["for"]), parse_duration(r["long"]), parse_duration(r["short"]),
             float(r["factor"])) for r in PYRRA["windows"][key]]


@pytest.mark.parametrize("key", ["28d", "2w", "7d", "30d"])
def test_pyrra_windows(key: str) -> None:
    # 28d is asserted by Pyrra's Test_windows and 2w by its README; 7d/30d are derived rows.
    period = parse_duration(key)
    got = [(w.severity, w.for_, w.long, w.short, w.factor) for w in pyrra_windows(period)]
    assert got == _pyrra_rows(key)
    as_sloth = pyrra_alert_windows(period)
    assert list(as_sloth.factors().values()) == pytest.approx([14, 7, 2, 1])


def test_pyrra_2w_recording_windows_match_readme() -> None:
    ws = pyrra_windows(timedelta(weeks=2))
    windows = sorted({w.short for w in ws} | {w.long for w in ws})
    names = [f"http_requests:burnrate{burn_name}" for burn_name in map(format_duration, windows)]
    assert names == PYRRA["readme_2w_recording_rules"][1:]
