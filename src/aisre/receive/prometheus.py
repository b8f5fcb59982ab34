"""Read a Prometheus (or compatible) server's query API at minute resolution.

``query_range`` with a 60 s step evaluated at minute ends: the value at ``t`` covers the
minute before ``t`` (``increase(x[1m])``, ``avg_over_time(x[1m])``), so it belongs to minute
``t - 60 s``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx

from aisre.core.errors import PermanentError, RetryableError

MINUTE_NS = 60 * 10**9
# Prometheus refuses a query_range of more than 11,000 points.
MAX_POINTS = 10_000


class PrometheusClient:
    """A small client of ``/api/v1/query_range`` (blocking; run it off the event loop)."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout_s)

    def minutes(self, query: str, start_ns: int, end_ns: int) -> dict[int, float]:
        """Values of ``query`` per minute of [start_ns, end_ns) (minute start → value, summed
        over the result's series); a minute the query has no sample for is left out."""
        out: dict[int, float] = {}
        for minute, value in self._samples(query, start_ns, end_ns):
            out[minute] = out.get(minute, 0.0) + value
        return out

    def series_minutes(self, query: str, start_ns: int, end_ns: int) -> dict[int, list[float]]:
        """Values of ``query`` per minute of [start_ns, end_ns), one per series of the result
        that has a sample at the minute's end (a threshold SLI's events)."""
        out: dict[int, list[float]] = {}
        for minute, value in self._samples(query, start_ns, end_ns):
            out.setdefault(minute, []).append(value)
        return out

    def label_values(self, label: str, match: str, start_ns: int, end_ns: int) -> list[str]:
        """Values ``label`` takes on the series ``match`` selects in [start_ns, end_ns)
        (``/api/v1/label/<label>/values``), e.g. a histogram's ``le`` bounds."""
        params = {"match[]": match, "start": f"{start_ns / 1e9:.3f}", "end": f"{end_ns / 1e9:.3f}"}
        data = self._get(f"/api/v1/label/{label}/values", params, match)
        return [str(v) for v in data] if isinstance(data, list) else []

    def _samples(self, query: str, start_ns: int, end_ns: int) -> Iterator[tuple[int, float]]:
        first = start_ns // MINUTE_NS * MINUTE_NS
        while first < end_ns:
            last = min(end_ns, first + MAX_POINTS * MINUTE_NS)
            params = {
                "query": query,
                "start": f"{(first + MINUTE_NS) / 1e9:.3f}",
                "end": f"{last / 1e9:.3f}",
                "step": "60s",
            }
            data = self._get("/api/v1/query_range", params, query)
            for series in (data or {}).get("result", []):
                for at, value in series.get("values", []):
                    v = float(value)
                    if math.isnan(v):
                        continue
                    yield round(float(at) * 1e9) - MINUTE_NS, v
            first = last

    def _get(self, path: str, params: dict[str, str], what: str) -> Any:
        try:
            response = self._http.get(f"{self.url}{path}", params=params)
        except httpx.HTTPError as exc:
            raise RetryableError(f"cannot reach Prometheus at {self.url}: {exc}", 30, overloaded=False) from None
        if response.status_code == 400 or response.status_code == 422:
            raise PermanentError(f"Prometheus refused {what!r}: {response.text[:300]}")
        if response.status_code != 200:
            raise RetryableError(f"Prometheus answered {response.status_code}", 30, overloaded=False)
        return response.json().get("data")

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
