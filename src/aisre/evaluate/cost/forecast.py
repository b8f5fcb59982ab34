"""Spend forecasts with statsforecast (imported on first use: it pulls in pandas).

Hourly cost is forecast to the end of a budget period: MSTL (daily seasonality, AutoETS
trend) with two days of history or more, the historic average below that. The library's
prediction interval comes back with it, clipped at zero (spend never goes negative).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

HOUR_NS = 3600 * 10**9


@dataclass(frozen=True)
class Forecast:
    hours_ns: list[int]  # start of each forecast hour
    mean: list[float]
    low: list[float]  # 80 % interval
    high: list[float]
    model: str


def forecast_hourly(start_ns: int, values: list[float], horizon: int) -> Forecast:
    """Forecast ``horizon`` hours after an hourly series that starts at ``start_ns``."""
    first = start_ns + len(values) * HOUR_NS
    hours = [first + i * HOUR_NS for i in range(horizon)]
    if horizon <= 0:
        return Forecast([], [], [], [], "none")
    if not values or not any(values):
        zeros = [0.0] * horizon
        return Forecast(hours, zeros, zeros, zeros, "no spend yet")
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS, HistoricAverage

    model: Any
    if len(values) >= 48:
        model = MSTL(season_length=24, trend_forecaster=AutoETS(model="ZZN"))
        name = "MSTL(24h) + AutoETS"
    else:
        model = HistoricAverage()
        name = "HistoricAverage"
    frame = pd.DataFrame({
        "unique_id": "spend",
        "ds": pd.to_datetime(np.arange(len(values), dtype=np.int64) * HOUR_NS + start_ns, utc=True).tz_localize(None),
        "y": np.asarray(values, dtype=float),
    })
    result = StatsForecast(models=[model], freq="h").forecast(df=frame, h=horizon, level=[80])
    label = type(model).__name__
    mean = np.clip(result[label].to_numpy(), 0, None)
    low = np.clip(result[f"{label}-lo-80"].to_numpy(), 0, None)
    high = np.clip(result[f"{label}-hi-80"].to_numpy(), 0, None)
    return Forecast(hours, mean.tolist(), low.tolist(), high.tolist(), name)
