"""Capacity forecasts: a linearly growing utilisation series predicts its threshold crossing
within 10 %, with a band around it; a flat series never crosses; read from a real store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aisre.core.pipeline import EncodedExport
from aisre.evaluate.capacity import capacity, forecast_capacity
from aisre.ingest.metrics import decode_metrics
from aisre.store.duckdb import DuckDBStore
from tests.metrics_otlp import MIN, T0, gauge, request

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
