"""Capacity forecasts through a live server: GPU utilisation growing linearly over OTLP
metrics gives a crossing time within 10 % on GET /api/capacity and in `aisre capacity`; the
same server lists those series on GET /api/metrics/series and in `aisre metrics series`, and
without a metric GET /api/capacity lists a rate-limited model's token throughput (from the
cost minutes of its calls, sent as OTLP traces) against its limit, and its headroom; a warning
level set with PUT /api/capacity/levels moves the GPU's crossing there and on /capacity."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from typer.testing import CliRunner

from aisre.present.cli.main import build_cli
from tests.conftest import wait_for
from tests.metrics_otlp import MIN, gauge, request
from tests.otlp_factory import chat_runs

HOUR = 60 * MIN


def test_capacity_route_and_cli(server: Any) -> None:
    now = time.time_ns() // MIN * MIN
    start = now - 4 * HOUR
    # One GPU grows 5 points an hour and is at 70 % now: 90 % is 4 hours away. Another is flat.
    points = [(start + i * MIN + 30 * 10**9, 0.5 + 0.05 * (i + 0.5) / 60, {"gpu": "0"}) for i in range(240)]
    points += [(start + i * MIN + 30 * 10**9, 0.3, {"gpu": "1"}) for i in range(240)]
    r = httpx.post(server.url + "/v1/metrics", content=request([gauge("gpu.utilization", points)], service="gpu-pool")
                   .SerializeToString(), headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    # The same growing GPU under the name the built-in resource watches (another service, so
    # the series listing below keeps to gpu-pool).
    r = httpx.post(server.url + "/v1/metrics", content=request([gauge("hw.gpu.utilization", points[:240])],
                                                               service="gpu-hosts").SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    params = {"metric": "gpu.utilization", "threshold": "0.9", "lookback": "4h", "now": str(now)}
    doc = httpx.get(server.url + "/api/capacity", params={**params, "now": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1e9))}).json()
    first, second = doc["items"]
    assert first["labels"]["gpu"] == "0" and second["crossing"] is None
    assert abs(first["crossing_ns"] - (now + 4 * HOUR)) <= 0.1 * 4 * HOUR
    assert first["earliest_ns"] <= first["crossing_ns"] <= first["latest_ns"]
    assert abs(first["slope_per_hour"] - 0.05) < 0.005
    bad = httpx.get(server.url + "/api/capacity", params={"metric": "gpu.utilization"})
    assert bad.status_code == 400 and "threshold" in bad.json()["error"]

    result = CliRunner().invoke(build_cli(lambda *a: None), [
        "capacity", "gpu.utilization{gpu=\"0\"}", "--threshold", "0.9", "--lookback", "4h", "--url", server.url, "--format", "json"])
    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.output)["items"]
    assert item["crossing"] is not None and item["labels"]["gpu"] == "0"
    table = CliRunner(env={"COLUMNS": "220"}).invoke(build_cli(lambda *a: None), [
        "capacity", "gpu.utilization", "--threshold", "0.9", "--lookback", "4h", "--url", server.url])
    assert table.exit_code == 0 and "not within horizon" in table.output

    # The same server lists what was sent: two GPU series of 240 points over minutes 0-239.
    doc = httpx.get(server.url + "/api/metrics/series", params={"service": "gpu-pool"}).json()
    assert doc["next_cursor"] is None
    assert [(i["selector"], i["kind"], i["points"], i["first_seen_ns"], i["last_seen_ns"]) for i in doc["items"]] == [
        (f'gpu.utilization{{gpu="{g}",service.name="gpu-pool"}}', "gauge", 240, start, start + 239 * MIN) for g in "01"]
    paged = httpx.get(server.url + "/api/metrics/series", params={"limit": "1"}).json()
    assert len(paged["items"]) == 1 and paged["next_cursor"]
    assert httpx.get(server.url + "/api/metrics/series", params={"match": "{gpu=0}"}).status_code == 400
    listed = CliRunner().invoke(build_cli(lambda *a: None), [
        "metrics", "series", "--metric", "gpu.utilization", "--match", '{gpu="1"}', "--url", server.url, "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert [i["labels"]["gpu"] for i in json.loads(listed.output)["items"]] == ["1"]
    table = CliRunner(env={"COLUMNS": "220"}).invoke(build_cli(lambda *a: None), ["metrics", "series", "--url", server.url])
    assert table.exit_code == 0 and 'gpu.utilization{gpu="0",service.name="gpu-pool"}' in table.output

    # Without a metric: every watched resource. gpt-4o-mini, with a 50,000 tokens/min limit
    # warned at 80 %, made one call a minute over the last 40 minutes, 10,500 tokens in the
    # first growing 100 a minute: 40,000 at minute 295.5 of that run, 6,000 tokens an hour.
    first = now - 40 * MIN
    runs = chat_runs([first + i * MIN + 10**9 for i in range(40)], [(10_000 + 100 * i, 500) for i in range(40)],
                     model="gpt-4o-mini")
    assert httpx.post(server.url + "/v1/traces", content=runs.SerializeToString(),
                      headers={"Content-Type": "application/x-protobuf"}).status_code == 200
    assert httpx.put(server.url + "/api/cost/rate-limits", json={"model": "gpt-4o-mini", "tokens_per_min": 50_000,
                                                                 "warn_at": 0.8}).status_code == 200

    def rolled_up() -> bool:
        models = httpx.get(server.url + "/api/cost/headroom", params={"since": "2h"}).json()["models"]
        return any(m["model"] == "gpt-4o-mini" and m["peak_tokens_per_min"] == 14_400 for m in models)

    wait_for(rolled_up, 30, "the calls of gpt-4o-mini in the cost minutes")
    # As of 30 s into the current minute, so the whole minutes read are exactly the 40 sent.
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1e9 + 30))
    listed = httpx.get(server.url + "/api/capacity", params={"lookback": "2h", "now": at}).json()
    resources = {r["resource"]: r for r in listed["resources"]}
    tokens = resources["Token throughput (gpt-4o-mini)"]
    assert (tokens["kind"], tokens["limit"], tokens["threshold"], tokens["unit"]) == ("rate_limit", 50_000, 40_000, "tokens/min")
    w = tokens["worst"]
    assert (w["minutes"], w["enough_data"], w["labels"]["model"]) == (40, True, "gpt-4o-mini")
    assert abs(w["slope_per_hour"] - 6_000) < 60
    truth = first + int(295.5 * MIN)
    assert abs(w["crossing_ns"] - truth) <= 0.1 * (truth - now)
    headroom = resources["Rate-limit headroom (gpt-4o-mini)"]
    assert headroom["direction"] == "falling" and headroom["worst"]["crossing_ns"] > w["crossing_ns"]
    assert "Token throughput (gpt-4o-mini)" in httpx.get(server.url + "/capacity").text
    for bad in ({"threshold": "0.9"}, {"metric": "gpu.utilization", "threshold": "0.9", "direction": "sideways"}):
        r = httpx.get(server.url + "/api/capacity", params=bad)
        assert r.status_code == 400, (bad, r.text)

    # The tenant's own warning levels: the built-in 90 % for GPU utilisation first (4 hours
    # away), then 80 % (2 hours away) once set; the queue turned off. Refusals change nothing.
    levels = {lv["metric"]: lv for lv in httpx.get(server.url + "/api/capacity/levels").json()["levels"]}
    assert {k: levels["hw.gpu.utilization"][k] for k in ("threshold", "default", "source", "enabled")} == {
        "threshold": 0.9, "default": 0.9, "source": "built-in", "enabled": True}
    as_of = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1e9))

    def gpu_resource() -> dict[str, Any]:
        listed = httpx.get(server.url + "/api/capacity", params={"lookback": "4h", "now": as_of}).json()
        return next(r for r in listed["resources"] if r["resource"] == "GPU utilisation")

    built_in = gpu_resource()
    assert (built_in["threshold"], built_in["level_source"]) == (0.9, "built-in")
    assert abs(built_in["worst"]["crossing_ns"] - (now + 4 * HOUR)) <= 0.1 * 4 * HOUR
    put = httpx.put(server.url + "/api/capacity/levels", json={"levels": [
        {"metric": "hw.gpu.utilization", "threshold": 0.8}, {"metric": "vllm.num_requests_waiting", "enabled": False}]})
    assert put.status_code == 200, put.text
    levels = {lv["metric"]: lv for lv in put.json()["levels"]}
    assert (levels["hw.gpu.utilization"]["threshold"], levels["hw.gpu.utilization"]["source"]) == (0.8, "tenant")
    assert levels["vllm.num_requests_waiting"]["enabled"] is False
    own = gpu_resource()
    assert (own["threshold"], own["level_source"]) == (0.8, "tenant")
    assert abs(own["worst"]["crossing_ns"] - (now + 2 * HOUR)) <= 0.1 * 2 * HOUR
    page = httpx.get(server.url + "/capacity").text
    assert "warning at 80.0%" in page and "(this tenant's level; built-in 90.0%)" in page
    assert 'id="capacity-off"' in page and "<code>vllm.num_requests_waiting</code>" in page
    (audited,) = httpx.get(server.url + "/api/audit", params={"action": "capacity_levels"}).json()["items"]
    assert audited["before"] == [] and audited["after"][0] == {"metric": "hw.gpu.utilization", "threshold": 0.8,
                                                               "enabled": True}
    for body, message in (
        ({"levels": [{"metric": "hw.gpu.utilization", "threshold": 90}]}, "at most 1 (90 % is 0.9); got 90"),
        ({"levels": [{"metric": "gpu.temperature", "threshold": 0.5}]}, "'gpu.temperature' is not a watched resource"),
        ({"levels": "hw.gpu.utilization=0.8"}, 'the body is {"levels"'),
    ):
        r = httpx.put(server.url + "/api/capacity/levels", json=body)
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)
    assert httpx.put(server.url + "/api/capacity/levels", content=b"{").status_code == 400
    assert gpu_resource()["threshold"] == 0.8
    assert httpx.put(server.url + "/api/capacity/levels", json={"levels": []}).status_code == 200
    assert gpu_resource()["threshold"] == 0.9
