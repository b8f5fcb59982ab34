"""The price catalog and the cost every model call gets at ingest."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aisre.core.errors import PermanentError
from aisre.normalize.prices import default_catalog, parse_catalog
from aisre.normalize.spans import flatten
from aisre.receive.otlp_decode import parse_request
from tests.conftest import CAPTURES, capture_files, capture_truth

NOW = int(dt.datetime(2026, 11, 23, tzinfo=dt.UTC).timestamp()) * 10**9


def test_model_matching() -> None:
    catalog = default_catalog()
    price, version = catalog.lookup("openai", "gpt-4o-mini-2024-07-18", NOW)
    assert (price.model, version) == ("gpt-4o-mini", "2026-11-01")
    assert catalog.lookup("openai", "gpt-4o-2024-08-06", NOW)[0].model == "gpt-4o"  # not gpt-4o-mini
    assert catalog.lookup("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", NOW)[0].model == "claude-3-5-sonnet"
    assert catalog.lookup("gcp.gemini", "models/gemini-2.5-flash", NOW)[0].model == "gemini-2.5-flash"
    assert catalog.lookup("anthropic", "claude-sonnet-4-5-20250929", NOW)[0].model == "claude-sonnet-4-5"
    assert catalog.lookup("acme", "my-finetune-7b", NOW)[0] is None
    assert catalog.lookup("openai", "gpt-4omni", NOW)[0] is None  # a prefix needs a separator


def test_cost_arithmetic() -> None:
    price = default_catalog().lookup("openai", "gpt-4o", NOW)[0]
    # 1,000 input of which 400 cached, 200 output: 600*2.50 + 400*1.25 + 200*10 per 1M.
    assert price.cost(1000, 200, 400) == pytest.approx((600 * 2.50 + 400 * 1.25 + 200 * 10.0) / 1e6)
    assert price.cost(None, None, None) == 0.0
    assert price.cost(10, 0, 50) == pytest.approx(10 * 1.25 / 1e6)  # cached never exceeds input


def test_versions_apply_by_effective_date() -> None:
    doc = yaml.safe_load("""
versions:
  - {id: v1, effective: 2026-01-01, models: {openai: {gpt-4o: {input: 5, output: 15}}}}
  - {id: v2, effective: 2026-06-01, models: {openai: {gpt-4o: {input: 2.5, output: 10}}}}
""")
    catalog = parse_catalog(doc, "test")
    march = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()) * 10**9
    price, version = catalog.lookup("openai", "gpt-4o", march)
    assert (version, price.input, price.cached_input) == ("v1", 5.0, 5.0)
    assert catalog.lookup("openai", "gpt-4o", NOW)[1] == "v2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {}", "top-level 'versions:' list"),
        ("versions: [{id: v, effective: 2026-01-01, models: {openai: {m: {input: 1}}}}]", "needs 'input' and 'output'"),
        ("versions: [{id: v, effective: 2026-01-01, models: {openai: {m: {input: x, output: 1}}}}]", "must be numbers"),
        ("versions: [{id: v, effective: 2026-01-01, models: {openai: {m: {input: -1, output: 1}}}}]", "must not be negative"),
        ("versions: [{id: v, effective: soon, models: {}}]", "Invalid isoformat"),
    ],
)
def test_bad_catalogs_are_refused(text: str, message: str) -> None:
    with pytest.raises((PermanentError, ValueError), match=message):
        parse_catalog(yaml.safe_load(text), "test")


@pytest.mark.parametrize("capture", CAPTURES)
def test_capture_costs_match_truth_tokens_at_catalog_prices(capture: str) -> None:
    request = ExportTraceServiceRequest()
    for path in capture_files(capture):
        request.MergeFrom(parse_request(path.read_bytes(), "protobuf"))
    con = duckdb.connect()
    con.register("spans_t", flatten(request, "t").table)
    rows = con.execute(
        "SELECT response_model, sum(cost_usd), count(*) FILTER (WHERE price_version IS NULL) "
        "FROM spans_t WHERE operation IN ('chat', 'embeddings') AND status != 'error' GROUP BY 1"
    ).fetchall()
    truth = capture_truth(capture)["provider_truth_by_model"]
    catalog = default_catalog()
    assert {r[0] for r in rows} == set(truth)
    for model, cost, unpriced in rows:
        price = catalog.lookup("openai", model, NOW)[0]
        expected = (truth[model]["input_tokens"] * price.input + truth[model]["output_tokens"] * price.output) / 1e6
        assert cost == pytest.approx(expected, rel=1e-9), model
        assert unpriced == 0


def test_unknown_models_are_unpriced_not_guessed() -> None:
    from tests.normalize.test_spans import _request, _span

    span = _span(**{"gen_ai.operation.name": "chat", "gen_ai.request.model": "in-house-llm",
                    "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10})
    row = flatten(_request(span), "t").table.to_pylist()[0]
    assert (row["cost_usd"], row["price_version"]) == (0.0, None)
