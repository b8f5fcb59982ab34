"""The service catalog discovered from the real captures in tests/data: each lists the services,
models, vector stores and tools it holds, with the call counts its truth.json records; merged
with a catalog file (file:line errors) and exported as valid Backstage entities."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aisre.act.catalog import (
    backstage_entities,
    backstage_yaml,
    catalog,
    load_catalog_file,
    parse_catalog_file,
)
from aisre.core.slo import SpecValidationError
from aisre.derive.catalog import discover
from aisre.evaluate.specs import load_specs
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from aisre.store.factory import open_store
from tests.conftest import DATA
from tests.store.conftest import STORE_URLS

FIXTURES = DATA / "fixtures" / "otlp"
CAPTURES = DATA / "captures"


def _store(tmp_path: Path, *folders: Path) -> DuckDBStore:
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    for folder in folders:
        for path in sorted((folder / "raw").glob("*.pb")):
            request = ExportTraceServiceRequest()
            request.ParseFromString(path.read_bytes())
            flat = flatten(request, "t")
            store.submit_spans(flat.table, flat.resources).result(30)
    return store


@pytest.fixture
def fixture_store(tmp_path: Path) -> Iterator[DuckDBStore]:
    store = _store(tmp_path, FIXTURES / "openllmetry")
    yield store
    store.close()


def _deps(service: dict[str, Any], kind: str) -> dict[str, tuple[int, int]]:
    return {d["name"]: (d["calls"], d["errors"]) for d in service["dependencies"] if d["kind"] == kind}


@pytest.mark.parametrize("name", ["openllmetry", "otel-genai", "otel-genai-content"])
def test_fixture_catalog_matches_truth(tmp_path: Path, name: str) -> None:
    truth = json.loads((FIXTURES / name / "truth.json").read_text())
    store = _store(tmp_path, FIXTURES / name)
    try:
        found = discover(store, "t")
    finally:
        store.close()
    [service] = found["services"]
    assert service["name"] == "support-bot"
    assert sorted(service["journeys"]) == sorted(truth["driver"]["journeys"])
    models = _deps(service, "model")
    assert models == {m: (t["spans"], t["error_spans"]) for m, t in truth["spans_by_model"].items()}
    assert {d["provider"] for d in service["dependencies"] if d["kind"] == "model"} == {"openai"}
    assert _deps(service, "vector_store") == {"pgvector": (truth["driver"]["retrievals"], 0)}
    assert _deps(service, "tool") == {"lookup_order": (truth["driver"]["tool_executions"], 0)}
    gpt = next(d for d in service["dependencies"] if d["name"] == "gpt-4o-mini")
    assert gpt["error_rate"] == pytest.approx(7 / 36) and 0 < gpt["p50_ms"] <= gpt["p95_ms"]
    assert [j["name"] for j in found["journeys"]] == sorted(truth["driver"]["journeys"])


# Per capture: its one service, and the model, embedding and tool calls its driver made that the
# instrumentation shows as spans (google-genai's instrumentation hides one call: truth lists it).
CAPTURE_SERVICES = {
    "ai-sdk": "support-bot-node", "google-genai": "support-bot-gemini", "logfire": "support-bot-logfire",
    "mastra": "support-mastra", "strands": "support-strands",
}


@pytest.mark.parametrize("name", sorted(CAPTURE_SERVICES))
def test_capture_catalog_matches_truth(tmp_path: Path, name: str) -> None:
    truth = json.loads((CAPTURES / name / "truth.json").read_text())
    driver = truth["driver"]
    store = _store(tmp_path, CAPTURES / name)
    try:
        [service] = discover(store, "t")["services"]
    finally:
        store.close()
    assert service["name"] == CAPTURE_SERVICES[name]
    assert sorted(service["journeys"]) == sorted(driver["journeys"])
    models = [d for d in service["dependencies"] if d["kind"] == "model"]
    embeds = sum(d["calls"] for d in models if "embedding" in d["name"])
    chats = sum(d["calls"] for d in models) - embeds
    assert chats == driver["model_calls"] - len(truth.get("hidden_by_instrumentation", []))
    assert embeds == driver.get("embed_calls", 0)
    assert sum(c for c, _ in _deps(service, "tool").values()) == driver.get("tool_executions", 0)
    # Failed provider calls show as errors on the model that failed.
    failed = sum(n for k, n in truth["provider_status_counts"].items() if not k.endswith(" 200"))
    assert sum(d["errors"] for d in models) == failed


def test_every_capture_together(tmp_path: Path) -> None:
    store = _store(tmp_path, *sorted(p for p in CAPTURES.iterdir() if (p / "raw").is_dir()))
    try:
        found = discover(store, "t")
    finally:
        store.close()
    names = {s["name"] for s in found["services"]}
    assert names >= set(CAPTURE_SERVICES.values()) | {"support-gateway", "support-bot-claude", "support-agents", "support-agent"}
    models = {(d["provider"], d["name"]) for s in found["services"] for d in s["dependencies"] if d["kind"] == "model"}
    assert {("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"), ("gcp.gemini", "text-embedding-004")} <= models


CATALOG = """services:
  - name: support-bot
    owner: search-team
    tier: 1
    runbook: https://runbooks.example/support-bot
    on_call: https://pagerduty.example/schedules/search
    description: answers customer questions
    tags: [customer-facing]
  - name: billing-api
    owner: payments
    lifecycle: experimental
"""


def test_merged_catalog_and_backstage_export(fixture_store: DuckDBStore, tmp_path: Path) -> None:
    (tmp_path / "slos.yaml").write_text(
        "slos:\n  - name: ask-success\n    journey: ask\n    objective: 99\n    sli: {kind: outcome}\n    owner: qa-team\n    tier: 0\n")
    doc = catalog(fixture_store, "t", parse_catalog_file(CATALOG, "catalog.yaml"), load_specs([tmp_path / "slos.yaml"]))
    by = {s["name"]: s for s in doc["services"]}
    bot, billing = by["support-bot"], by["billing-api"]
    assert (bot["seen"], bot["declared"], bot["owner"], bot["tier"], bot["slos"]) == (True, True, "search-team", 1, ["ask-success"])
    assert (billing["seen"], billing["declared"], billing["spans"], billing["lifecycle"]) == (False, True, 0, "experimental")
    assert next(j for j in doc["journeys"] if j["name"] == "ask")["owner"] == "qa-team"

    text = backstage_yaml(doc)
    entities = list(yaml.safe_load_all(text))
    assert entities == backstage_entities(doc)
    refs = set()
    required = {"Component": ("type", "lifecycle", "owner"), "Resource": ("type", "owner"), "System": ("owner",),
                "Group": ("type", "children")}
    for e in entities:
        assert e["apiVersion"] == "backstage.io/v1alpha1" and e["kind"] in required
        assert re.fullmatch(r"[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?", e["metadata"]["name"]), e
        assert all(e["spec"].get(k) is not None for k in required[e["kind"]]), e
        refs.add(f"{e['kind'].lower()}:default/{e['metadata']['name']}")
    component = next(e for e in entities if e["kind"] == "Component" and e["metadata"]["name"] == "support-bot")
    assert component["spec"]["owner"] == "group:default/search-team"
    assert set(component["spec"]["dependsOn"]) == {
        "resource:default/openai-gpt-4o-mini", "resource:default/openai-gpt-4.1", "resource:default/openai-text-embedding-3-small",
        "resource:default/pgvector", "resource:default/lookup_order"}
    assert {ln["type"] for ln in component["metadata"]["links"]} == {"runbook", "on-call"}
    # Every reference names an entity of the same export.
    for e in entities:
        for ref in [*e["spec"].get("dependsOn", []), e["spec"].get("owner")]:
            if ref:
                assert ref in refs, ref
    pg = next(e for e in entities if e["metadata"]["name"] == "pgvector")
    assert (pg["spec"]["type"], pg["metadata"]["annotations"]["aisre.io/calls"]) == ("vector-store", "20")


def test_catalog_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("services:\n  - name: a\n    tier: one\n    lifecycle: live\n  - name: a\n    colour: red\n")
    with pytest.raises(SpecValidationError) as caught:
        load_catalog_file(path)
    lines = [str(e) for e in caught.value.errors]
    f = str(path)
    assert f"{f}:3: services[0].tier: must be a whole number (got text ('one'))" in lines
    assert any(line.startswith(f"{f}:4: services[0].lifecycle: must be one of") for line in lines)
    assert f"{f}:5: services[1].name: service 'a' is declared twice" in lines
    assert any(line.startswith(f"{f}:6: services[1].colour: unknown field") for line in lines)


@pytest.mark.parametrize("url", STORE_URLS, ids=lambda url: url.split(":", 1)[0])
def test_http_database_and_service_dependencies(tmp_path: Path, url: str) -> None:
    """A front end calls a downstream service over HTTP, which queries a database: each shows
    (on every store backend: the classification is SQL of each)."""
    import os

    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    from tests.otlp_factory import _kv

    request = ExportTraceServiceRequest()
    front = request.resource_spans.add()
    front.resource.attributes.append(_kv("service.name", "frontend"))
    back = request.resource_spans.add()
    back.resource.attributes.append(_kv("service.name", "inventory"))
    t0 = 1_790_000_000 * 10**9
    for i in range(4):
        trace = os.urandom(16)
        root, client, server = os.urandom(8), os.urandom(8), os.urandom(8)
        front.scope_spans.add().spans.extend([
            Span(trace_id=trace, span_id=root, name="GET /order", kind=Span.SPAN_KIND_SERVER,
                 start_time_unix_nano=t0, end_time_unix_nano=t0 + 50_000_000, attributes=[_kv("aisre.journey", "order")]),
            Span(trace_id=trace, span_id=client, parent_span_id=root, name="GET", kind=Span.SPAN_KIND_CLIENT,
                 start_time_unix_nano=t0 + 1, end_time_unix_nano=t0 + 40_000_000,
                 status=Status(code=Status.STATUS_CODE_ERROR if i == 0 else Status.STATUS_CODE_UNSET),
                 attributes=[_kv("http.request.method", "GET"), _kv("url.full", "http://inventory.internal:8080/stock/1")]),
        ])
        back.scope_spans.add().spans.extend([
            Span(trace_id=trace, span_id=server, parent_span_id=client, name="GET /stock", kind=Span.SPAN_KIND_SERVER,
                 start_time_unix_nano=t0 + 2, end_time_unix_nano=t0 + 30_000_000),
            Span(trace_id=trace, span_id=os.urandom(8), parent_span_id=server, name="SELECT stock", kind=Span.SPAN_KIND_CLIENT,
                 start_time_unix_nano=t0 + 3, end_time_unix_nano=t0 + 10_000_000, attributes=[_kv("db.system.name", "postgresql")]),
        ])
        t0 += 10**9
    store = open_store(url.format(dir=tmp_path, name=re.sub(r"\W", "_", tmp_path.name)), retention_days=0)
    try:
        flat = flatten(request, "t")
        store.submit_spans(flat.table, flat.resources).result(30)
        by = {s["name"]: s for s in discover(store, "t")["services"]}
    finally:
        store.close()
    assert _deps(by["frontend"], "http") == {"inventory.internal": (4, 1)}
    assert _deps(by["frontend"], "service") == {"inventory": (4, 0)}
    assert _deps(by["inventory"], "database") == {"postgresql": (4, 0)}
    assert by["inventory"]["journeys"] == ["order"]
