"""The SLO page of a journey SLO with platform dependencies, on a live server fed OTLP metrics:
while the journey burns it says which dependency burns ("burning because"), with the same
numbers as the API."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import wait_for
from tests.evaluate.test_slo_dependencies import MINUTES, SPECS, dependency_request

MIN = 60 * 10**9


def test_slo_page_says_which_dependency_burns(server_factory: Any, tmp_path: Path) -> None:
    specs = tmp_path / "slos.yaml"
    specs.write_text(SPECS)
    server = server_factory(tmp_path / "deps.duckdb", "--slos", str(specs))
    t0 = (time.time_ns() // MIN - MINUTES + 1) * MIN  # the last minute of data is the current one
    body = dependency_request(t0).SerializeToString()
    httpx.post(server.url + "/v1/metrics", content=body, headers={"Content-Type": "application/x-protobuf"},
               timeout=30).raise_for_status()

    def burning() -> dict[str, Any] | None:
        doc = httpx.get(server.url + "/api/slos/triage-success", timeout=30).json()
        return doc if doc.get("burning_because") and doc["total"] == MINUTES * 100 else None

    doc = wait_for(burning, 30, "the triage SLO burning with its GPU dependency")
    [because] = doc["burning_because"]
    # 90 hot GPU-minutes of the last hour's 240 against a 5 % budget: 7.5× (a little more once
    # the hour slides past the last minute of data).
    assert because["slo"] == "gpu-pool-gpu-util" and 7.5 - 1e-9 < because["burn_rate"] < 8
    page = httpx.get(server.url + "/slos/triage-success", timeout=30).text
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert re.search(r"Burning because: gpu-pool-gpu-util SLO, burn 7\.\d+×", text), text
    rows = re.findall(r'<tr data-slo="([^"]+)" data-burning="([^"]+)">', page)
    assert rows == [("gpu-pool-gpu-util", "true"), ("inference-latency", "false")]
    assert '<a href="/slos/gpu-pool-gpu-util">gpu-pool-gpu-util</a>' in page
