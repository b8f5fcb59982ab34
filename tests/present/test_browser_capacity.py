"""The capacity page in headless Chromium at 1400×900, against a live server fed OTLP metrics
with known truth: a GPU growing linearly shows its forecast crossing (the API's, within 10 % of
the truth) on a chart with axes and unclashing labels; a queue with five minutes of data says
"not enough data (5 minutes)"; a model with a rate limit shows its token throughput against
the limit and its headroom falling to zero; no console errors and nothing scrolls sideways.
The review carries the same gauges and rate-limit resources."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, wait_for
from tests.metrics_otlp import gauge, request
from tests.otlp_factory import chat_runs
from tests.present.browser import SHOTS, sync_api
from tests.present.test_browser_fit import CHARTS, SIDEWAYS

pytestmark = pytest.mark.browser
MIN = 60 * 10**9
HOUR = 60 * MIN
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _ns(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1e9)


def test_capacity_page(page: sync_api.Page, server_factory: Any, tmp_path: Path) -> None:
    expect = sync_api.expect
    server: ServerProcess = server_factory(tmp_path / "capacity.duckdb")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    now = time.time_ns() // MIN * MIN
    # Three hours of two GPUs: gpu0 grows 4 points an hour to 72 % now (90 % is 4.5 hours
    # away), gpu1 idles at 50 %; and five minutes of a queue.
    gpus = [(now - (180 - i) * MIN + 10**9, 0.60 + 0.04 * i / 60, {"hw.id": "gpu0", "pool": "a100"}) for i in range(180)]
    gpus += [(now - (180 - i) * MIN + 10**9, 0.50, {"hw.id": "gpu1", "pool": "a100"}) for i in range(180)]
    queue = [(now - (5 - i) * MIN + 10**9, 2.0, {"pool": "a100"}) for i in range(5)]
    body = request([gauge("hw.gpu.utilization", gpus), gauge("vllm.num_requests_waiting", queue)]).SerializeToString()
    httpx.post(server.url + "/v1/metrics", content=body, headers=PROTOBUF, timeout=30).raise_for_status()
    api = httpx.get(server.url + "/api/capacity", params={"metric": "hw.gpu.utilization", "threshold": 0.9},
                    timeout=30).json()["items"]
    assert [d["labels"]["hw.id"] for d in api] == ["gpu0", "gpu1"]
    truth = now + 9 * HOUR // 2
    crossing = _ns(api[0]["crossing"])
    assert abs(crossing - truth) <= 0.1 * (truth - now)

    # An hour of gpt-4o-mini calls, one a minute, 10,500 tokens growing 50 a minute, against a
    # 50,000 tokens/min limit warned at 80 %: 40,000 about 9 hours after now, 50,000 after 12.
    runs = chat_runs([now - (60 - i) * MIN + 10**9 for i in range(60)], [(10_000 + 50 * i, 500) for i in range(60)],
                     model="gpt-4o-mini")
    httpx.post(server.url + "/v1/traces", content=runs.SerializeToString(), headers=PROTOBUF, timeout=30).raise_for_status()
    httpx.put(server.url + "/api/cost/rate-limits", json={"model": "gpt-4o-mini", "tokens_per_min": 50_000, "warn_at": 0.8},
              timeout=30).raise_for_status()
    wait_for(lambda: any(m["model"] == "gpt-4o-mini" and m["peak_tokens_per_min"] == 13_450 for m in httpx.get(
        server.url + "/api/cost/headroom", params={"since": "2h"}, timeout=30).json()["models"]), 30, "the calls in the cost minutes")

    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(server.url + "/capacity")
    expect(page.locator("nav a.active")).to_have_text("Capacity")
    panels = page.locator("section.capacity-resource")
    # Soonest crossing first: the GPU (4.5 h), the model's throughput (~9 h), its headroom
    # (~12 h), then the queue (no forecast).
    expect(panels).to_have_count(4)
    assert [panels.nth(i).get_attribute("data-resource") for i in range(4)] == [
        "GPU utilisation", "Token throughput (gpt-4o-mini)", "Rate-limit headroom (gpt-4o-mini)", "Queue depth"]
    gpu, queued = panels.nth(0), panels.nth(3)
    tokens, headroom = panels.nth(1), panels.nth(2)
    expect(tokens).to_have_attribute("data-kind", "rate_limit")
    expect(tokens.locator(".capacity-limit")).to_contain_text("against the limit of 50,000 tokens/min, warning at 40,000 tokens/min (80% of the limit)")
    expect(tokens.locator(".capacity-crossing")).to_have_attribute("data-crossing", re.compile(r"^\d{4}-"))
    expect(headroom).to_have_attribute("data-direction", "falling")
    expect(headroom.locator(".stat .label").nth(2)).to_have_text("Falls to 0.0%")
    expect(headroom.locator("svg .forecast-band")).to_have_count(1)
    expect(gpu).to_have_attribute("data-resource", "GPU utilisation")
    expect(gpu).to_have_attribute("data-enough", "true")
    shown = _ns(gpu.locator(".capacity-crossing").get_attribute("data-crossing") or "")
    assert abs(shown - crossing) <= MIN  # the page and the API forecast the same line
    expect(gpu.locator(".capacity-current")).to_have_text("72.0%")
    expect(gpu.locator(".capacity-growth")).to_have_text("+96.00 pts/day")
    expect(gpu.locator("table.capacity-series tbody tr")).to_have_count(2)
    expect(gpu.locator("svg .crossing-marker")).to_have_count(1)
    expect(gpu.locator("svg .forecast-band")).to_have_count(1)
    expect(queued).to_have_attribute("data-resource", "Queue depth")
    expect(queued.locator(".capacity-not-enough")).to_have_text("not enough data (5 minutes)")
    expect(queued.locator("svg .forecast-line")).to_have_count(0)
    charts = {c["id"]: c for c in page.evaluate(CHARTS)}
    assert (charts["capacity-chart-1"]["x"], charts["capacity-chart-1"]["y"]) == ("time (UTC)", "GPU utilisation (%)")
    assert (charts["capacity-chart-2"]["y"], charts["capacity-chart-3"]["y"]) == ("tokens per minute", "headroom (%)")
    assert charts["capacity-chart-4"]["y"] == "Queue depth (requests)"
    for chart in charts.values():
        assert chart["ticks"] >= 4 and chart["outside"] == [] and chart["overlaps"] == 0, chart
    page.screenshot(path=str(SHOTS / "capacity.png"), full_page=True)
    assert page.evaluate(SIDEWAYS) == []
    assert errors == []

    # The weekly review carries the same resources.
    md = httpx.get(server.url + "/api/report", params={"period": "week", "format": "markdown"}, timeout=60).text
    assert "## Saturation capacity" in md
    assert "| GPU utilisation | `hw.gpu.utilization` | 72.0 % | +96.00 pts |" in md
    assert "| Queue depth | `vllm.num_requests_waiting` | 2 requests | not enough data (5 minutes) |" in md
    # ... and the rate-limited model's throughput and headroom: the busiest minute is the
    # last one, 10,000 + 50 × 59 input and 500 output tokens.
    assert "| Token throughput (gpt-4o-mini) | `tokens per minute` |" in md
    assert "| 40,000 tokens/min (80 % of the limit) |" in md and "| falls to 0.0 % |" in md
    review = {c["resource"]: c for c in httpx.get(server.url + "/api/report", params={"period": "week", "format": "json"},
                                                  timeout=60).json()["capacity"]}
    throughput, left = review["Token throughput (gpt-4o-mini)"], review["Rate-limit headroom (gpt-4o-mini)"]
    assert (throughput["kind"], throughput["limit"], throughput["threshold"]) == ("rate_limit", 50_000, 40_000)
    assert max(p for p in throughput["daily_peak"] if p is not None) == 13_450
    assert min(p for p in left["daily_peak"] if p is not None) == pytest.approx(1 - 13_450 / 50_000)
