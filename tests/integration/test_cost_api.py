"""Cost attribution, prices, reprice, unpriced models and budgets through a live server."""

from __future__ import annotations

import datetime as dt
import os
import time

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aisre.normalize.prices import default_catalog
from tests.conftest import CAPTURES, ServerProcess, capture_files, capture_truth
from tests.otlp_factory import _kv


def journey_request(*, journey: str, model: str, input_tokens: int, output_tokens: int) -> ExportTraceServiceRequest:
    """One run: a root and one chat call of ``model`` with the given usage."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "svc"), _kv("service.version", "1.0")])
    spans = rs.scope_spans.add().spans
    trace_id, root_id, t0 = os.urandom(16), os.urandom(8), time.time_ns()
    spans.append(Span(trace_id=trace_id, span_id=root_id, name="POST /ask", kind=Span.SPAN_KIND_SERVER,
                      start_time_unix_nano=t0, end_time_unix_nano=t0 + 900_000,
                      attributes=[_kv("aisre.journey", journey)]))
    spans.append(Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id, name=f"chat {model}",
                      start_time_unix_nano=t0 + 1000, end_time_unix_nano=t0 + 800_000,
                      attributes=[_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                                  _kv("gen_ai.request.model", model), _kv("gen_ai.usage.input_tokens", input_tokens),
                                  _kv("gen_ai.usage.output_tokens", output_tokens)]))
    return request


def _post_capture(server: ServerProcess, capture: str) -> None:
    for path in capture_files(capture):
        r = httpx.post(server.url + "/v1/traces", content=path.read_bytes(),
                       headers={"content-type": "application/x-protobuf"}, timeout=30)
        assert r.status_code == 200, r.text


def _breakdown(server: ServerProcess, **params: str) -> dict:
    r = httpx.get(server.url + "/api/cost/breakdown", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _wait_rollups(server: ServerProcess, runs: int, input_tokens: int | None = None) -> dict:
    """The breakdown by model once the rollups hold every run (and, if given, every input
    token: the last commits may add only child spans to runs already counted)."""
    deadline = time.monotonic() + 30
    while True:
        doc = _breakdown(server, by="model")
        tokens = sum(g["input_tokens"] for g in doc["groups"])
        if (doc["total"]["runs"] == runs and input_tokens in (None, tokens)) or time.monotonic() > deadline:
            return doc
        time.sleep(0.3)


@pytest.mark.parametrize("capture", CAPTURES)
def test_capture_tokens_and_costs_per_model_match_truth(server_factory, tmp_path, capture: str) -> None:
    server = server_factory(tmp_path / f"{capture}.duckdb")
    _post_capture(server, capture)
    truth = capture_truth(capture)
    doc = _wait_rollups(server, sum(truth["driver"]["journeys"].values()),
                        sum(t["input_tokens"] for t in truth["provider_truth_by_model"].values()))
    by_model = {g["model"]: g for g in doc["groups"]}
    assert set(by_model) == set(truth["provider_truth_by_model"])
    by_journey = _breakdown(server, by="journey")["groups"]
    assert sum(g["runs"] for g in by_journey) == doc["total"]["runs"]
    # A model is divided by the runs of the journeys it was called in (docs/cost.md).
    runs_of = {g["journey"]: g["runs"] for g in by_journey}
    journeys_of: dict[str, set[str]] = {}
    for g in _breakdown(server, by="model,journey")["groups"]:
        journeys_of.setdefault(g["model"], set()).add(g["journey"])
    for name, g in by_model.items():
        assert g["runs"] == sum(runs_of[j] for j in journeys_of[name]), name
        assert g["cost_per_1k_runs_usd"] == pytest.approx(1000 * g["cost_usd"] / g["runs"]), name
    assert all(g["cost_per_1k_runs_usd"] == pytest.approx(1000 * g["cost_usd"] / g["runs"]) for g in by_journey)
    catalog = default_catalog()
    for model, t in truth["provider_truth_by_model"].items():
        g = by_model[model]
        assert (g["input_tokens"], g["output_tokens"]) == (t["input_tokens"], t["output_tokens"]), model
        assert g["billed_calls"] == t["calls_ok"], model
        assert g["calls"] == truth["spans_by_model"][model]["spans"], model
        price = catalog.lookup("openai", model, dt.datetime.now(dt.UTC).timestamp() * 1e9)[0]
        cached = g["cached_input_tokens"]
        expected = ((t["input_tokens"] - cached) * price.input + cached * price.cached_input
                    + t["output_tokens"] * price.output) / 1e6
        assert g["cost_usd"] == pytest.approx(expected, rel=1e-9), model
        assert g["unpriced_calls"] == 0
    assert doc["unpriced"] == []
    # Span-level retry marks see the siblings of one export batch (a retry whose failed
    # sibling came in another batch counts for the run, not the span).
    assert 0 < doc["total"]["retry_calls"] <= truth["driver"]["app_level_retries"]
    assert 0 < doc["total"]["retry_cost_share"] < 1


def test_price_override_reprice_and_unpriced_models(server) -> None:
    # Two runs: one on a listed model, one on a model no catalog lists.
    body = journey_request(journey="ask", model="gpt-4o-mini", input_tokens=1000, output_tokens=200)
    unknown = journey_request(journey="ask", model="in-house-llm-7b", input_tokens=500, output_tokens=50)
    for req in (body, unknown):
        r = httpx.post(server.url + "/v1/traces", content=req.SerializeToString(),
                       headers={"content-type": "application/x-protobuf"}, timeout=30)
        assert r.status_code == 200, r.text
    doc = _wait_rollups(server, 2, input_tokens=1000 + 500)  # both model calls, not only both runs
    mini = default_catalog().lookup("openai", "gpt-4o-mini", 2 * 10**18)[0]
    before = (1000 * mini.input + 200 * mini.output) / 1e6
    assert doc["total"]["cost_usd"] == pytest.approx(before)
    assert doc["unpriced"] == [{"provider": "openai", "model": "in-house-llm-7b", "calls": 1, "tokens": 550}]
    assert httpx.get(server.url + "/api/cost/unpriced").json()["unpriced"][0]["model"] == "in-house-llm-7b"

    # Bad overrides are refused with the field named.
    r = httpx.put(server.url + "/api/cost/prices", json={"model": "gpt-4o-mini", "input": -1, "output": 1})
    assert r.status_code == 400 and "must not be negative" in r.json()["error"]
    r = httpx.put(server.url + "/api/cost/prices", json={"model": "gpt-4o-mini", "input": "x", "output": 1})
    assert r.status_code == 400 and "numbers" in r.json()["error"]

    # A tenant price for both models, effective from long ago, then reprice.
    for model, inp, out in (("gpt-4o-mini", 1.0, 4.0), ("in-house-llm-7b", 2.0, 8.0)):
        r = httpx.put(server.url + "/api/cost/prices",
                      json={"model": model, "input": inp, "output": out, "effective": "2020-01-01T00:00:00Z"})
        assert r.status_code == 200, r.text
        assert r.json()["version"].startswith(f"override:{model}@2020-01-01")
    prices = httpx.get(server.url + "/api/cost/prices").json()
    assert {o["model"] for o in prices["overrides"]} == {"gpt-4o-mini", "in-house-llm-7b"}
    assert prices["version"] == default_catalog().versions[-1].id

    # Until repriced, stored costs keep the prices they were computed with.
    assert _breakdown(server)["total"]["cost_usd"] == pytest.approx(before)
    r = httpx.post(server.url + "/api/cost/reprice", json={"since": "2020-01-01T00:00:00Z"}, timeout=60)
    assert r.status_code == 200, r.text
    result = r.json()
    after = (1000 * 1.0 + 200 * 4.0 + 500 * 2.0 + 50 * 8.0) / 1e6
    assert result["cost_before_usd"] == pytest.approx(before)
    assert result["cost_after_usd"] == pytest.approx(after)
    assert result["runs"] == 2 and result["unpriced_models"] == []
    doc = _breakdown(server, by="model")
    assert doc["total"]["cost_usd"] == pytest.approx(after)
    assert {g["model"]: g["cost_usd"] for g in doc["groups"]} == pytest.approx(
        {"gpt-4o-mini": 1.8e-3, "in-house-llm-7b": 1.4e-3})
    assert doc["unpriced"] == []
    runs = httpx.get(server.url + "/api/journeys/runs", params={"journey": "ask"}).json()["items"]
    assert sum(run["cost_usd"] for run in runs) == pytest.approx(after)

    # Dropping the override and repricing puts the unknown model back among the unpriced.
    assert httpx.delete(server.url + "/api/cost/prices/in-house-llm-7b").status_code == 200
    assert httpx.delete(server.url + "/api/cost/prices/in-house-llm-7b").status_code == 404
    result = httpx.post(server.url + "/api/cost/reprice", json={"since": "2020-01-01T00:00:00Z"}, timeout=60).json()
    assert result["unpriced_models"] == ["in-house-llm-7b"] and result["unpriced_calls"] == 1
    assert _breakdown(server)["total"]["cost_usd"] == pytest.approx(1.8e-3)
    assert httpx.post(server.url + "/api/cost/reprice", json={}).status_code == 400


def test_budgets_and_headroom(server) -> None:
    req = journey_request(journey="ask", model="gpt-4o-mini", input_tokens=100_000, output_tokens=20_000)
    assert httpx.post(server.url + "/v1/traces", content=req.SerializeToString(),
                      headers={"content-type": "application/x-protobuf"}).status_code == 200
    _wait_rollups(server, 1)
    spent = (100_000 * 0.15 + 20_000 * 0.6) / 1e6
    r = httpx.put(server.url + "/api/cost/budgets", json={"name": "ask-monthly", "journey": "ask", "period": "month",
                                                          "amount_usd": spent * 2, "thresholds": [0.5, 1.0]})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["spent_usd"] == pytest.approx(spent)
    assert doc["forecast_usd"] >= doc["spent_usd"] and doc["forecast_model"]
    assert doc["alert"] is not None and doc["alert"] >= 0.5  # half the budget is gone already
    assert doc["spent_series"] and doc["spent_series"][-1]["cumulative_usd"] == pytest.approx(spent)
    assert doc["spent_series"][0]["hour_start"] == doc["period_start"]  # RFC 3339, as every API time
    listed = httpx.get(server.url + "/api/cost/budgets").json()["budgets"]
    assert [b["name"] for b in listed] == ["ask-monthly"]
    for bad, message in (({"name": "x", "amount_usd": -5}, "positive"), ({"name": "x", "amount_usd": 5, "period": "year"}, "period"),
                         ({"amount_usd": 5}, "name"), ({"name": "x", "amount_usd": 5, "thresholds": "80%"}, "thresholds")):
        r = httpx.put(server.url + "/api/cost/budgets", json=bad)
        assert r.status_code == 400 and message in r.json()["error"], r.text
    assert httpx.delete(server.url + "/api/cost/budgets/ask-monthly").status_code == 200
    assert httpx.get(server.url + "/api/cost/budgets/ask-monthly").status_code == 404

    r = httpx.put(server.url + "/api/cost/rate-limits", json={"model": "gpt-4o-mini", "tokens_per_min": 150_000, "warn_at": 0.7})
    assert r.status_code == 200, r.text
    assert httpx.put(server.url + "/api/cost/rate-limits", json={"model": "gpt-4o-mini"}).status_code == 400
    models = {m["model"]: m for m in httpx.get(server.url + "/api/cost/headroom", params={"since": "7d"}).json()["models"]}
    mini = models["gpt-4o-mini"]
    assert mini["peak_tokens_per_min"] == 120_000
    assert mini["tokens_headroom"] == pytest.approx(0.2)
    assert "80%" in mini["warning"]


def test_cost_cli(server) -> None:
    import json
    import subprocess

    from tests.conftest import AISRE

    req = journey_request(journey="ask", model="gpt-4o-mini", input_tokens=1000, output_tokens=100)
    assert httpx.post(server.url + "/v1/traces", content=req.SerializeToString(),
                      headers={"content-type": "application/x-protobuf"}).status_code == 200
    _wait_rollups(server, 1)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*AISRE, "cost", *args, "--url", server.url], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "COLUMNS": "200"})

    out = cli("breakdown", "--by", "journey,model", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [(g["journey"], g["model"]) for g in data["groups"]] == [("ask", "gpt-4o-mini")]
    table = cli("breakdown", "--by", "model")
    assert table.returncode == 0 and "gpt-4o-mini" in table.stdout and "per 1K runs" in table.stdout
    assert cli("price-set", "gpt-4o-mini", "--input", "1", "--output", "2", "--effective", "2020-01-01T00:00:00Z").returncode == 0
    repriced = cli("reprice", "--since", "2020-01-01T00:00:00Z", "--format", "json")
    assert repriced.returncode == 0, repriced.stderr
    assert json.loads(repriced.stdout)["cost_after_usd"] == pytest.approx((1000 * 1 + 100 * 2) / 1e6)
    bad = cli("explain", "--journey", "ask", "--baseline", "yesterday", "--current", "1h..now")
    assert bad.returncode == 1 and "baseline must be FROM..TO" in bad.stderr
    none = cli("explain", "--journey", "nope", "--baseline", "2020-01-01T00:00:00Z..2020-01-02T00:00:00Z",
               "--current", "2020-01-02T00:00:00Z..2020-01-03T00:00:00Z")
    assert none.returncode == 1 and "no runs" in none.stderr
    # One run now and none in the baseline: the counts and no cause, not "traffic growth 100 %".
    young = cli("explain", "--journey", "ask", "--baseline", "2020-01-01T00:00:00Z..2020-01-02T00:00:00Z", "--current", "1h..0s")
    assert young.returncode == 0, young.stderr
    assert "not enough data to explain a change" in young.stdout and "traffic" not in young.stdout
    assert "baseline window: 0 runs, fewer than the 20 needed" in young.stdout
    doc = json.loads(cli("explain", "--journey", "ask", "--baseline", "2020-01-01T00:00:00Z..2020-01-02T00:00:00Z",
                         "--current", "1h..0s", "--format", "json").stdout)
    assert (doc["status"], doc["causes"], doc["baseline"]["runs"], doc["current"]["runs"]) == ("insufficient_data", [], 0, 1)
    budget = cli("budget-set", "all", "--amount", "10", "--period", "week")
    assert budget.returncode == 0, budget.stderr
    assert "all" in cli("budget").stdout
