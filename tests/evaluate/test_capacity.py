"""Capacity forecasts: a linearly growing utilisation series predicts its threshold crossing
within 10 %, with a band around it; a flat series never crosses; a linearly falling headroom
predicts when it reaches its floor; read from a real store, including a rate-limited model's
token throughput (from the cost minutes) against its limit. A tenant's own warning level moves
its crossing (another tenant keeps the built-in one), and the review lists the rate-limited
models with the gauges."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from aisre.core.errors import PermanentError
from aisre.core.pipeline import EncodedExport
from aisre.evaluate.capacity import (
    DAY_NS,
    HEADROOM_METRIC,
    MIN_MINUTES,
    RESOURCES,
    TOKENS_METRIC,
    capacity,
    capacity_review,
    forecast_capacity,
    forecast_row,
    levels_document,
    parse_levels,
    rate_limit_forecasts,
    resources_for,
    watched_resources,
)
from aisre.ingest.metrics import decode_metrics
from aisre.normalize.spans import flatten
from aisre.present.ui.report import capacity_threshold
from aisre.store.duckdb import DuckDBStore
from tests.metrics_otlp import MIN, T0, gauge, request
from tests.otlp_factory import chat_runs

HOUR = 60 * MIN


def _growing(minutes: int, start: float, per_hour: float, noise: float, seed: int = 3) -> tuple[list[int], list[float]]:
    rng = np.random.default_rng(seed)
    times = [T0 + i * MIN + MIN // 2 for i in range(minutes)]
    values = [start + per_hour * (i + 0.5) / 60 + float(rng.normal(0, noise)) for i in range(minutes)]
    return times, values


def test_linear_growth_predicts_the_crossing_within_ten_percent() -> None:
    # 6 hours of GPU utilisation growing 2 points an hour from 40 %, with ±2 points of noise:
    # at now (6 h) it is at 52 %, so 90 % is 19 hours away.
    times, values = _growing(360, 0.40, 0.02, 0.02)
    now = T0 + 6 * HOUR
    f = forecast_capacity(times, values, now, 0.90, 7 * 24 * HOUR)
    truth = now + 19 * HOUR
    assert f.crossing_ns is not None
    assert abs(f.crossing_ns - truth) <= 0.1 * (truth - now)
    assert abs(f.slope_per_hour - 0.02) < 0.002
    assert f.current is not None and abs(f.current - 0.52) < 0.01
    assert f.earliest_ns is not None and f.latest_ns is not None
    assert f.earliest_ns < f.crossing_ns < f.latest_ns
    assert all(lo < m < hi for lo, m, hi in zip(f.low, f.mean, f.high, strict=True))


def test_flat_or_falling_series_never_crosses() -> None:
    times, values = _growing(120, 0.5, 0.0, 0.01)
    assert forecast_capacity(times, values, T0 + 2 * HOUR, 0.9, 7 * 24 * HOUR).crossing_ns is None
    times, values = _growing(120, 0.8, -0.05, 0.0)
    assert forecast_capacity(times, values, T0 + 2 * HOUR, 0.9, 7 * 24 * HOUR).crossing_ns is None


def test_capacity_per_series_from_the_store(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "c.duckdb"), rollup_interval_ms=0)
    try:
        # Two GPUs: one grows 5 points an hour from 50 %, one stays at 30 %; a third pool is not selected.
        points = [(T0 + i * MIN + 10**9, 0.5 + 0.05 * i / 60, {"gpu": "0", "pool": "a"}) for i in range(240)]
        points += [(T0 + i * MIN + 10**9, 0.3, {"gpu": "1", "pool": "a"}) for i in range(240)]
        points += [(T0 + i * MIN + 10**9, 0.99, {"gpu": "2", "pool": "b"}) for i in range(240)]
        batch = decode_metrics(EncodedExport(request([gauge("gpu.utilization", points)]).SerializeToString(), "protobuf"), 1 << 20)
        store.submit_metrics("t", batch.points).result(30)
        now = T0 + 4 * HOUR
        out = capacity(store, "t", 'gpu.utilization{pool="a"}', 0.9, now, lookback_ns=4 * HOUR)
        assert [d["labels"]["gpu"] for d in out] == ["0", "1"]
        # At 4 h it is at 70 %: 90 % comes 4 hours later (the minute points sit 1 s in).
        assert abs(out[0]["crossing_ns"] - (now + 4 * HOUR)) <= 0.1 * 4 * HOUR
        assert out[1]["crossing"] is None
    finally:
        store.close()


def test_falling_headroom_predicts_reaching_its_floor_within_ten_percent() -> None:
    # 6 hours of rate-limit headroom falling 3 points an hour from 80 %, with ±2 points of
    # noise: at now (6 h) it is at 62 %, so 0 % is 62 / 3 = 20.67 hours away.
    times, values = _growing(360, 0.80, -0.03, 0.02)
    now = T0 + 6 * HOUR
    f = forecast_capacity(times, values, now, 0.0, 7 * 24 * HOUR, falling=True)
    truth = now + int(62 / 3 * HOUR)
    assert f.crossing_ns is not None
    assert abs(f.crossing_ns - truth) <= 0.1 * (truth - now)
    assert abs(f.slope_per_hour + 0.03) < 0.003
    assert f.current is not None and abs(f.current - 0.62) < 0.01
    # The band: the lower edge reaches the floor first, the upper edge last.
    assert f.earliest_ns is not None and f.latest_ns is not None
    assert f.earliest_ns < f.crossing_ns < f.latest_ns
    assert all(lo < m < hi for lo, m, hi in zip(f.low, f.mean, f.high, strict=True))
    assert f.mean[0] > f.mean[-1]  # the trend ahead falls
    # The same series forecast as a rise never reaches 0 %; a rising headroom never falls to it.
    assert forecast_capacity(times, values, now, 0.0, 7 * 24 * HOUR).crossing_ns == now  # already above 0
    times, values = _growing(120, 0.5, 0.02, 0.01)
    assert forecast_capacity(times, values, T0 + 2 * HOUR, 0.1, 7 * 24 * HOUR, falling=True).crossing_ns is None
    # Already under the floor: crossing now.
    assert forecast_capacity(times, values, T0 + 2 * HOUR, 0.9, 7 * 24 * HOUR, falling=True).crossing_ns == T0 + 2 * HOUR


def test_falling_series_needs_as_many_minutes_as_a_rising_one() -> None:
    times, values = _growing(MIN_MINUTES - 1, 0.8, -0.5, 0.0)
    pts = list(zip(times, values, strict=True))
    now = T0 + MIN_MINUTES * MIN
    short = forecast_row("headroom", {}, pts, 0.0, now, 7 * 24 * HOUR, falling=True)
    assert (short["enough_data"], short["minutes"], short["direction"]) == (False, MIN_MINUTES - 1, "falling")
    times, values = _growing(MIN_MINUTES, 0.8, -0.5, 0.0)
    enough = forecast_row("headroom", {}, list(zip(times, values, strict=True)), 0.0, now, 7 * 24 * HOUR, falling=True)
    assert enough["enough_data"] and enough["minutes"] == MIN_MINUTES


def _chat_minutes(store: DuckDBStore, model: str, minutes: range, tokens: list[tuple[int, int]]) -> None:
    """One run of ``model`` a second into each minute of ``minutes`` (from T0), with its tokens."""
    flat = flatten(chat_runs([T0 + i * MIN + 10**9 for i in minutes], tokens, model=model), "t")
    store.submit_spans(flat.table, flat.resources).result(10)


def test_rate_limited_token_throughput_and_headroom(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "r.duckdb"))
    try:
        # gpt-4o-mini: 2 hours of one call a minute, 21,000 tokens in minute 0 growing 200 tokens a
        # minute (±300 of noise), against a 100,000 tokens/min limit warned at 80 %.
        noise = [300 if i % 2 else -300 for i in range(120)]
        _chat_minutes(store, "gpt-4o-mini", range(120), [(20_000 + 200 * i + noise[i], 1_000) for i in range(120)])
        # gpt-4o: a limit but calls only in the last 10 minutes; claude: calls but no limit.
        _chat_minutes(store, "gpt-4o", range(110, 120), [(5_000 + 100 * (i % 3), 500) for i in range(10)])
        _chat_minutes(store, "claude-3-5-sonnet", range(120), [(90_000, 9_000)] * 120)
        store.flush_rollups()
        store.cost.put_rate_limit({"tenant": "t", "model": "gpt-4o-mini", "requests_per_min": None,
                                   "tokens_per_min": 100_000.0, "warn_at": 0.8})
        store.cost.put_rate_limit({"tenant": "t", "model": "gpt-4o", "requests_per_min": 500.0,
                                   "tokens_per_min": 30_000.0, "warn_at": 0.9})
        now = T0 + 120 * MIN + 20 * 10**9  # 20 s into minute 120, which has no calls yet and is not read
        items = {i["resource"]: i for i in rate_limit_forecasts(store.cost, "t", now, lookback_ns=3 * HOUR)}
        assert sorted(items) == ["Rate-limit headroom (gpt-4o)", "Rate-limit headroom (gpt-4o-mini)",
                                 "Token throughput (gpt-4o)", "Token throughput (gpt-4o-mini)"]

        tokens = items["Token throughput (gpt-4o-mini)"]
        assert (tokens["kind"], tokens["metric"], tokens["model"], tokens["unit"]) == (
            "rate_limit", TOKENS_METRIC, "gpt-4o-mini", "tokens/min")
        assert (tokens["limit"], tokens["warn_at"], tokens["threshold"]) == (100_000.0, 0.8, 80_000.0)
        w = tokens["worst"]
        assert w["labels"] == {"model": "gpt-4o-mini", "provider": "openai"}
        assert (w["minutes"], w["enough_data"], w["direction"]) == (120, True, "rising")
        assert abs(w["slope_per_hour"] - 12_000) < 200
        # The trend is 21,000 + 200 (t − ½) tokens at minute t: 80,000 at t = 295.5, i.e. 175.5
        # minutes after the end of minute 119 (now is 20 s later).
        truth = T0 + int(295.5 * MIN)
        assert abs(w["crossing_ns"] - truth) <= 0.1 * (truth - now)
        assert w["earliest_ns"] <= w["crossing_ns"] <= w["latest_ns"]

        headroom = items["Rate-limit headroom (gpt-4o-mini)"]
        assert (headroom["metric"], headroom["unit"], headroom["direction"], headroom["threshold"]) == (
            HEADROOM_METRIC, "ratio", "falling", 0.0)
        h = headroom["worst"]
        # 1 − tokens / limit: 79 % at minute 0, falling 12 points an hour; 0 at t = 395.5.
        assert abs(h["slope_per_hour"] + 0.12) < 0.002
        assert abs(h["current"] - (1 - (21_000 + 200 * (120 + 1 / 3 - 0.5)) / 100_000)) < 0.005
        truth = T0 + int(395.5 * MIN)
        assert abs(h["crossing_ns"] - truth) <= 0.1 * (truth - now)

        # Ten minutes of calls are not enough for a forecast; the headroom takes the tighter
        # limit: 5,500 of 30,000 tokens (18 %) against 1 of 500 calls.
        few = items["Token throughput (gpt-4o)"]["worst"]
        assert (few["minutes"], few["enough_data"]) == (10, False)
        assert abs(items["Rate-limit headroom (gpt-4o)"]["worst"]["history"][0]["value"] - (1 - 5_500 / 30_000)) < 1e-9

        # The capacity page's list holds them with the gauges (none here), soonest crossing first.
        listed = watched_resources(store, store.cost, "t", now, lookback_ns=3 * HOUR)
        assert [i["resource"] for i in listed][:2] == ["Token throughput (gpt-4o-mini)", "Rate-limit headroom (gpt-4o-mini)"]
        assert watched_resources(store, None, "t", now) == []
    finally:
        store.close()


def _gauge_minutes(store: DuckDBStore, tenant: str, metric: str, values: list[float]) -> None:
    """One point of ``metric`` a second into each minute from T0, for ``tenant``."""
    points = [(T0 + i * MIN + 10**9, v, {"hw.id": "gpu-0"}) for i, v in enumerate(values)]
    batch = decode_metrics(EncodedExport(request([gauge(metric, points)]).SerializeToString(), "protobuf"), 1 << 20)
    store.submit_metrics(tenant, batch.points).result(30)


def test_a_tenants_warning_level_moves_its_crossing_and_another_keeps_the_default(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "levels.duckdb"), rollup_interval_ms=0)
    try:
        # Both tenants: GPU utilisation growing 5 points an hour from 50 % over 4 hours (70 % now),
        # and a queue of 2-4 requests.
        gpu = [0.5 + 0.05 * i / 60 for i in range(240)]
        for tenant in ("t", "u"):
            _gauge_minutes(store, tenant, "hw.gpu.utilization", gpu)
            _gauge_minutes(store, tenant, "vllm.num_requests_waiting", [2.0 + i % 3 for i in range(240)])
        # Tenant t plans at 80 % and does not watch its queue; DCGM is named at its built-in level.
        store.put_capacity_levels("t", parse_levels({"levels": [
            {"metric": "hw.gpu.utilization", "threshold": 0.8}, {"metric": "vllm.num_requests_waiting", "enabled": False},
            {"metric": "DCGM_FI_DEV_GPU_UTIL", "threshold": None}]}))
        assert [(r["tenant"], r["metric"], r["threshold"], r["enabled"]) for r in store.capacity_levels("t")] == [
            ("t", "hw.gpu.utilization", 0.8, True), ("t", "vllm.num_requests_waiting", None, False)]
        assert store.capacity_levels("u") == []

        now = T0 + 4 * HOUR
        mine = {i["resource"]: i for i in watched_resources(store, None, "t", now, resources_for(store, "t"), lookback_ns=4 * HOUR)}
        theirs = {i["resource"]: i for i in watched_resources(store, None, "u", now, resources_for(store, "u"), lookback_ns=4 * HOUR)}
        assert sorted(mine) == ["GPU utilisation"] and sorted(theirs) == ["GPU utilisation", "Queue depth"]
        # 80 % is 2 hours away at 5 points an hour; the built-in 90 % is 4 hours away.
        own, default = mine["GPU utilisation"], theirs["GPU utilisation"]
        assert (own["threshold"], own["level_source"], own["worst"]["threshold"]) == (0.8, "tenant", 0.8)
        assert abs(own["worst"]["crossing_ns"] - (now + 2 * HOUR)) <= 0.1 * 2 * HOUR
        assert (default["threshold"], default["level_source"]) == (0.9, "built-in")
        assert abs(default["worst"]["crossing_ns"] - (now + 4 * HOUR)) <= 0.1 * 4 * HOUR
        assert abs(own["worst"]["slope_per_hour"] - default["worst"]["slope_per_hour"]) < 1e-12  # the same data

        # The review uses the tenant's levels too.
        review = capacity_review(store, "t", T0, T0 + DAY_NS, now, resources_for(store, "t"))
        assert [(c["resource"], c["threshold"], c["level_source"]) for c in review] == [("GPU utilisation", 0.8, "tenant")]
        assert review[0]["crossing"] == own["worst"]["crossing"]
        assert review[0]["daily_peak"] == [pytest.approx(0.5 + 0.05 * 239 / 60)]
        assert capacity_threshold(review[0]) == "80.0 % (tenant's level)"
        other = capacity_review(store, "u", T0, T0 + DAY_NS, now, resources_for(store, "u"))
        assert [(c["resource"], c["threshold"]) for c in other] == [("GPU utilisation", 0.9), ("Queue depth", 10.0)]

        # What GET /api/capacity/levels shows: every resource, the tenant's own marked.
        doc = {d["metric"]: d for d in levels_document(store.capacity_levels("t"))}
        assert list(doc) == [r.metric for r in RESOURCES]
        assert {k: doc["hw.gpu.utilization"][k] for k in ("default", "threshold", "enabled", "source")} == {
            "default": 0.9, "threshold": 0.8, "enabled": True, "source": "tenant"}
        assert (doc["vllm.num_requests_waiting"]["enabled"], doc["vllm.num_requests_waiting"]["threshold"]) == (False, 10.0)
        assert (doc["DCGM_FI_DEV_FB_USED"]["source"], doc["DCGM_FI_DEV_FB_USED"]["updated_ns"]) == ("built-in", None)
        # An empty list puts every resource back.
        store.put_capacity_levels("t", parse_levels({"levels": []}))
        back = watched_resources(store, None, "t", now, resources_for(store, "t"), lookback_ns=4 * HOUR)
        assert [(i["resource"], i["threshold"]) for i in back] == [("GPU utilisation", 0.9), ("Queue depth", 10.0)]
    finally:
        store.close()


@pytest.mark.parametrize(("body", "message"), [
    ([], 'the body is {"levels"'),
    ({"levels": {}}, 'the body is {"levels"'),
    ({"levels": [], "more": 1}, 'the body is {"levels"'),
    ({"levels": [1]}, "levels[0]: an object with metric"),
    ({"levels": [{"metric": "gpu.temperature", "threshold": 0.5}]},
     "levels[0].metric: 'gpu.temperature' is not a watched resource; known: hw.gpu.utilization, DCGM_FI_DEV_GPU_UTIL"),
    ({"levels": [{"threshold": 0.5}]}, "levels[0].metric: None is not a watched resource"),
    ({"levels": [{"metric": "hw.gpu.utilization", "threshold": 90}]},
     "levels[0].threshold: hw.gpu.utilization (GPU utilisation) is a ratio, above 0 and at most 1 (90 % is 0.9); got 90"),
    ({"levels": [{"metric": "DCGM_FI_DEV_GPU_UTIL", "threshold": 0}]}, "is a percentage, above 0 and at most 100; got 0"),
    ({"levels": [{"metric": "vllm.num_requests_waiting", "threshold": -1}]}, "is a positive number of requests; got -1"),
    ({"levels": [{"metric": "hw.gpu.utilization", "threshold": True}]}, "got True"),
    ({"levels": [{"metric": "hw.gpu.utilization", "threshold": "0.8"}]}, "got '0.8'"),
    ({"levels": [{"metric": "hw.gpu.utilization", "threshold": math.nan}]}, "got nan"),
    ({"levels": [{"metric": "hw.gpu.utilization", "enabled": "no"}]}, "levels[0].enabled: true or false; got 'no'"),
    ({"levels": [{"metric": "hw.gpu.utilization", "level": 0.8}]}, "levels[0]: unknown field 'level'"),
    ({"levels": [{"metric": "hw.gpu.utilization", "threshold": 0.8}, {"metric": "hw.gpu.utilization", "enabled": False}]},
     "levels[1].metric: 'hw.gpu.utilization' is given twice"),
])
def test_bad_levels_are_refused_with_what_is_wrong(body: object, message: str) -> None:
    with pytest.raises(PermanentError) as caught:
        parse_levels(body)
    assert message in str(caught.value)


def test_the_review_lists_rate_limited_models_with_the_gauges(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "review.duckdb"))
    try:
        # gpt-4o-mini: 2 hours of one call a minute, 21,000 tokens in minute 0 growing 200 a
        # minute (±300), against a 100,000 tokens/min limit warned at 80 %.
        noise = [300 if i % 2 else -300 for i in range(120)]
        tokens = [(20_000 + 200 * i + noise[i], 1_000) for i in range(120)]
        _chat_minutes(store, "gpt-4o-mini", range(120), tokens)
        store.flush_rollups()
        store.cost.put_rate_limit({"tenant": "t", "model": "gpt-4o-mini", "requests_per_min": None,
                                   "tokens_per_min": 100_000.0, "warn_at": 0.8})
        now = T0 + 120 * MIN + 20 * 10**9
        rows = {c["resource"]: c for c in capacity_review(store, "t", T0, T0 + DAY_NS, now, cost=store.cost)}
        assert sorted(rows) == ["Rate-limit headroom (gpt-4o-mini)", "Token throughput (gpt-4o-mini)"]
        forecasts = {i["resource"]: i["worst"] for i in rate_limit_forecasts(store.cost, "t", now, history=False)}

        throughput = rows["Token throughput (gpt-4o-mini)"]
        assert {k: throughput[k] for k in ("kind", "direction", "metric", "unit", "threshold", "limit", "warn_at", "model")} == {
            "kind": "rate_limit", "direction": "rising", "metric": TOKENS_METRIC, "unit": "tokens/min",
            "threshold": 80_000.0, "limit": 100_000.0, "warn_at": 0.8, "model": "gpt-4o-mini"}
        assert (throughput["minutes"], throughput["enough_data"]) == (120, True)
        assert abs(throughput["growth_per_day"] - 24 * 12_000) < 24 * 200
        truth = T0 + int(295.5 * MIN)
        assert abs(forecasts["Token throughput (gpt-4o-mini)"]["crossing_ns"] - truth) <= 0.1 * (truth - now)
        assert throughput["crossing"] == forecasts["Token throughput (gpt-4o-mini)"]["crossing"]
        # The day's busiest minute: minute 119, 20,000 + 23,800 + 300 input and 1,000 output tokens.
        busiest = max(i + o for i, o in tokens)
        assert busiest == 45_100 and throughput["daily_peak"] == [busiest]
        assert capacity_threshold(throughput) == "80,000 tokens/min (80 % of the limit)"

        headroom = rows["Rate-limit headroom (gpt-4o-mini)"]
        assert (headroom["direction"], headroom["threshold"], headroom["unit"]) == ("falling", 0.0, "ratio")
        assert headroom["crossing"] == forecasts["Rate-limit headroom (gpt-4o-mini)"]["crossing"]
        assert headroom["daily_peak"] == [pytest.approx(1 - busiest / 100_000)]  # the day's lowest headroom
        assert capacity_threshold(headroom) == "falls to 0.0 %"
        # The soonest crossing first: the throughput warns before the headroom runs out.
        assert list(rows) == ["Token throughput (gpt-4o-mini)", "Rate-limit headroom (gpt-4o-mini)"]
        # Without the cost store the review has the gauges only (none here).
        assert capacity_review(store, "t", T0, T0 + DAY_NS, now) == []
    finally:
        store.close()
