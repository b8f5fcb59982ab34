"""Read a Prometheus (or compatible) server's query API at minute resolution.

``query_range`` with a 60 s step evaluated at minute ends: the value at ``t`` covers the
minute before ``t`` (``increase(x[1m])``), so it is the count of minute ``t - 60 s``.
"""

from __future__ import annotations

import math

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
        """Values of ``query`` per minute of [start_ns, end_ns) (minute start → value); a
        minute the query has no sample for is left out."""
        out: dict[int, float] = {}
        first = start_ns // MINUTE_NS * MINUTE_NS
        while first < end_ns:
            last = min(end_ns, first + MAX_POINTS * MINUTE_NS)
            params = {
                "query": query,
                "start": f"{(first + MINUTE_NS) / 1e9:.3f}",
                "end": f"{last / 1e9:.3f}",
                "step": "60s",
            }
            try:
                response = self._http.get(f"{self.url}/api/v1/query_range", params=params)
            except httpx.HTTPError as exc:
                raise RetryableError(f"cannot reach Prometheus at {self.url}: {exc}", 30, overloaded=False) from None
            if response.status_code == 400 or response.status_code == 422:
                raise PermanentError(f"Prometheus refused {query!r}: {response.text[:300]}")
            if response.status_code != 200:
                raise RetryableError(f"Prometheus answered {response.status_code}", 30, overloaded=False)
            data = response.json().get("data", {})
            for series in data.get("result", []):
                for at, value in series.get("values", []):
                    v = float(value)
                    if math.isnan(v):
                        continue
                    minute = round(float(at) * 1e9) - MINUTE_NS
                    out[minute] = out.get(minute, 0.0) + v
            first = last
        return out

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
