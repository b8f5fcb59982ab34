"""The OpenAPI document, built from the route table: what every operation must carry, and the
/docs page rendered from it (the live answers are checked by tests/integration/test_schemathesis.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from aisre.present.api.asgi import api_routes
from aisre.present.api.auth import required_roles
from aisre.present.api.docs import render_docs
from aisre.present.api.openapi import build_spec
from aisre.receive.otlp_http import traces_endpoint

METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    otlp = traces_endpoint(None, max_body_bytes=1, tenant_for=lambda request: "t")  # type: ignore[arg-type]
    return build_spec(api_routes(otlp))


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items() if method in METHODS]


def test_every_operation_has_an_id_a_tag_and_a_response_schema(spec: dict[str, Any]) -> None:
    ops = _operations(spec)
    assert len(ops) >= 50
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    tags = {t["name"] for t in spec["tags"]}
    assert {"ingest", "journeys", "slos", "cost", "incidents", "gate", "admin"} <= tags
    for path, method, op in ops:
        assert op.get("tags") and op["tags"][0] in tags, (method, path)
        ok = [code for code in op["responses"] if code.startswith("2")]
        assert ok, (method, path)
        content = op["responses"][ok[0]].get("content")
        assert content and all(media.get("schema") is not None for media in content.values()), (method, path)


def test_json_answers_are_closed_objects_from_the_models(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for path, method, op in _operations(spec):
        ok = next(code for code in op["responses"] if code.startswith("2"))
        body = op["responses"][ok]["content"].get("application/json")
        if body is None or path == "/openapi.json":
            continue
        ref = body["schema"].get("$ref", "")
        name = ref.rsplit("/", 1)[-1]
        assert name in schemas, (method, path, body["schema"])
        assert schemas[name]["additionalProperties"] is False and schemas[name]["properties"], name
    # Budget series are objects with RFC 3339 times, not [epoch_ns, value] pairs.
    assert schemas["SpentPoint"]["properties"]["hour_start"] == {"type": "string"}
    assert set(schemas["ForecastPoint"]["required"]) == {"time", "cumulative_usd", "step_low_usd", "step_high_usd"}


def test_security_where_auth_applies_and_one_error_schema(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["header"]["name"] == "x-aisre-key" and schemes["cookie"]["name"] == "aisre_key"
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, method, op in _operations(spec):
        public = required_roles(method.upper(), path) is None
        assert op["security"] == ([] if public else [{"bearer": []}, {"header": []}, {"cookie": []}]), (method, path)
        if not public:
            assert {"401", "403"} <= set(op["responses"]), (method, path)
        for code, answer in op["responses"].items():
            if code[0] == "4" and path != "/v1/traces":
                assert answer["content"]["application/json"]["schema"] == error_ref, (method, path, code)
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert "409" in spec["paths"]["/api/keys"]["post"]["responses"]
    assert "413" in spec["paths"]["/api/alertmanager"]["post"]["responses"]


def test_docs_page_lists_operations_by_tag_without_external_assets(spec: dict[str, Any]) -> None:
    page = render_docs(spec)
    for _, _, op in _operations(spec):
        assert f'id="{op["operationId"]}"' in page
    assert page.index('id="tag-journeys"') < page.index('id="run_list"') < page.index('id="tag-slos"')
    run_list = page[page.index('id="run_list"'):page.index('id="trace_detail"')]
    assert "<code>cursor</code>" in run_list and "<code>next_cursor</code>" in run_list  # parameters and fields
    assert 'id="model-Run"' in page and "<code>failure_reason</code>" in page
    # Air-gapped servers: nothing is fetched from elsewhere.
    assert not re.search(r'(src|href)="(https?:)?//', page)
