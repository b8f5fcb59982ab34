"""Bad bodies over real HTTP: deep nesting, bytes that are not UTF-8, OTLP/JSON attribute
values that are not AnyValue objects. Each gets a clear answer, never a 500 or silent loss."""

from __future__ import annotations

import httpx
import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.conftest import ServerProcess

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
JSON_ROUTES = [
    ("POST", "/api/scores"),
    ("POST", "/api/changes"),
    ("POST", "/api/incidents"),
    ("PATCH", "/api/incidents/1"),
    ("POST", "/api/incidents/1/notes"),
    ("POST", "/api/alertmanager"),
    ("PUT", "/api/cost/prices"),
    ("PUT", "/api/cost/budgets"),
    ("POST", "/api/cost/reprice"),
    ("PUT", "/api/cost/rate-limits"),
]


@pytest.mark.slow
def test_every_json_route_answers_deep_nesting_with_400(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30, headers={"Content-Type": "application/json"}) as client:
        for method, path in JSON_ROUTES:
            response = client.request(method, path, content=DEEP_JSON)
            assert response.status_code == 400, (method, path, response.status_code, response.text[:200])
            assert "nested more than 1024 levels deep" in response.json()["error"], (path, response.text[:200])
        # An Alertmanager webhook over alertmanager_max_alerts (1000 by default) is 413.
        storm = {"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": f"a{i}"},
                                             "startsAt": "2026-01-01T00:00:00Z"} for i in range(1001)]}
        response = client.post("/api/alertmanager", content=orjson.dumps(storm))
        assert response.status_code == 413
        assert "carries 1001 alerts; the limit is 1000 (alertmanager_max_alerts)" in response.json()["error"]
        # The key routes (present/api/admin.py) parse with orjson, whose own depth limit answers 400.
        response = client.post("/api/keys", content=DEEP_JSON)
        assert response.status_code == 400 and "depth limit exceeded" in response.json()["error"]
        # NaN in a score is still that item's problem alone, not the batch's.
        response = client.post("/api/scores", content=b'{"scores": [{"trace_id": "' + b"ab" * 16 +
                               b'", "name": "g", "value": NaN}]}')
        assert response.status_code == 200 and response.json()["accepted"] == 0
        assert len(response.json()["rejected"]) == 1
        assert client.get("/healthz").status_code == 200


@pytest.mark.slow
def test_yaml_bodies_not_utf8_or_nested_too_deeply(server: ServerProcess) -> None:
    slo = b"slos:\n  - name: ask\n    journey: ask\n    obj\xffective: 99\n"
    with httpx.Client(base_url=server.url, timeout=30, headers={"Content-Type": "application/yaml"}) as client:
        offset = slo.index(b"\xff")
        response = client.put("/api/slos", content=slo)
        assert response.status_code == 400
        errors = response.json()["errors"]
        assert errors == [{"file": "request body", "line": 4, "field": "",
                           "message": f"file is not valid UTF-8 (byte 0xff at offset {offset})"}]
        response = client.post("/api/gate?journey=ask&baseline=service.version=1&candidate=service.version=2",
                               content=b"judge:\n  pass_score: 9\xe9\n")
        assert response.status_code == 400
        assert "request body:2: file is not valid UTF-8 (byte 0xe9 at offset 22)" in response.text
        for method, path in (("PUT", "/api/slos"), ("POST", "/api/gate?journey=ask&baseline=service.version=1"
                                                            "&candidate=service.version=2")):
            response = client.request(method, path, content=b"[" * 100_000)
            assert response.status_code == 400, (path, response.text[:200])
            assert "nested too deeply" in response.text


def _json_span(span_id: str, name: str, attributes: list[dict]) -> dict:
    return {"traceId": "ab" * 16, "spanId": span_id, "name": name, "startTimeUnixNano": "1000",
            "endTimeUnixNano": "2000", "attributes": attributes}


@pytest.mark.slow
def test_otlp_json_attribute_that_is_no_anyvalue_rejects_its_span_by_name(server: ServerProcess) -> None:
    good = _json_span("11" * 8, "good", [{"key": "x", "value": {"stringValue": "fine"}}, {"key": "empty", "value": None}])
    bare = _json_span("22" * 8, "bare", [{"key": "x", "value": "bare"}])
    number = _json_span("33" * 8, "number", [{"key": "gen_ai.usage.input_tokens", "value": 12}])
    nested = _json_span("44" * 8, "nested", [{"key": "tags", "value": {"arrayValue": {"values": ["a"]}}}])
    body = {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
         "scopeSpans": [{"spans": [good, bare, number, nested]}]},
        {"resource": {"attributes": [{"key": "service.name", "value": "svc2"}]},
         "scopeSpans": [{"spans": [_json_span("55" * 8, "under-bad-resource", [])]}]},
    ]}
    response = httpx.post(server.url + "/v1/traces", content=orjson.dumps(body),
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 200, response.text
    answer = json_format.ParseDict(response.json(), ExportTraceServiceResponse())
    assert answer.partial_success.rejected_spans == 4
    message = answer.partial_success.error_message
    assert ("span 2222222222222222 (bare): span attribute 'x': value must be an AnyValue object such as "
            '{"stringValue": "..."}; got a string') in message
    assert "span 3333333333333333 (number): span attribute 'gen_ai.usage.input_tokens'" in message
    assert "span 4444444444444444 (nested): span attribute 'tags': value arrayValue.values[0]:" in message
    assert "span 5555555555555555 (under-bad-resource): resource attribute 'service.name'" in message
    trace = httpx.get(server.url + "/api/traces/" + "ab" * 16).json()
    spans = {s["span_id"]: s for s in trace["spans"]}
    assert set(spans) == {"11" * 8}
    assert spans["11" * 8]["attributes"]["x"] == "fine"
