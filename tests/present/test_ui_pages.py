"""The web UI pages against a real server: what they show matches the data, bad input gets a
clear HTML error page, and everything a sender controls is escaped."""

from __future__ import annotations

import html
import json
import os
import re
import time
from urllib.parse import quote

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.conftest import ServerProcess
from tests.otlp_factory import journey_request
from tests.present.ui_helpers import post_capture, post_request, wait_for_runs


def _get(server: ServerProcess, path: str, status: int = 200) -> str:
    response = httpx.get(server.url + path, timeout=10)
    assert response.status_code == status, (path, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def _text(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _journey_row(page: str, journey: str) -> str:
    match = re.search(rf'<tr data-journey="{re.escape(journey)}">(.*?)</tr>', page, re.S)
    assert match, f"no row for journey {journey!r}"
    return _text(match.group(1))


def _trace_ids(page: str) -> list[str]:
    return re.findall(r'data-trace-id="([0-9a-f]{32})"', page)


def _kv(key: str, value: object) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = str(value)
    return kv


def test_empty_state_and_error_pages(server: ServerProcess) -> None:
    page = _get(server, "/")
    assert "No data yet" in page
    assert f"{server.url}/v1/traces" in page  # where to send data, as this server was reached
    assert "make demo" in page
    assert "No runs match" in _get(server, "/runs")

    page = _get(server, "/?since=yesterday-ish", 400)
    assert "400" in page and "since must be an RFC 3339 time" in html.unescape(page)
    page = _get(server, "/runs?outcome=maybe", 400)
    assert "outcome must be one of success, failure, incomplete" in html.unescape(page)
    assert "is not one this API handed out" in html.unescape(_get(server, "/runs?cursor=zz", 400))
    assert "trace id must be 32 hex digits" in _get(server, "/traces/not-a-trace", 400)
    page = html.unescape(_get(server, "/traces/" + "ab" * 16, 404))
    assert "404" in page and f"no trace with id '{'ab' * 16}'" in page
    assert "no journey named 'nope'" in html.unescape(_get(server, "/journeys/nope", 404))

    response = httpx.get(server.url + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    css = httpx.get(server.url + "/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert httpx.get(server.url + "/static/app.js").status_code == 200


def test_pages_show_the_openllmetry_capture(server: ServerProcess) -> None:
    post_capture(server, "openllmetry")
    wait_for_runs(server, {"ask": 20, "triage-agent": 5})
    api = {j["journey"]: j for j in httpx.get(server.url + "/api/journeys").json()["items"]}

    page = _get(server, "/")
    ask = _journey_row(page, "ask")
    assert ask.startswith("ask 20 5.0% (1)"), ask
    assert f"{api['ask']['tokens_per_run']:g}" in ask and "3.25" in ask
    triage = _journey_row(page, "triage-agent")
    assert triage.startswith("triage-agent 5 0%"), triage
    # The captures are hours old, so the 1h range is empty and says how to see older data.
    page = _get(server, "/?since=1h")
    assert "No journey runs in the last 1h" in page and "show all time" in page

    runs = _get(server, "/runs")
    assert len(_trace_ids(runs)) == 25
    assert len(_trace_ids(_get(server, "/runs?journey=ask"))) == 20
    assert len(_trace_ids(_get(server, "/runs?model=gpt-4.1&journey=ask"))) == 19
    failures = _get(server, "/runs?outcome=failure")
    [failed] = _trace_ids(failures)
    assert "InternalServerError" in failures and 'data-outcome="failure"' in failures

    journey = _get(server, "/journeys/ask")
    assert len(_trace_ids(journey)) == 20
    assert "Failure rate" in journey and "1 failed" in journey

    trace = _get(server, f"/traces/{failed}")
    doc = httpx.get(f"{server.url}/api/traces/{failed}").json()
    names = re.findall(r'<details class="span[^"]*" id="span-\w+" data-span-name="([^"]*)"', trace)
    assert names == [span["name"] for span in doc["spans"]] == [
        "POST /ask", "openai.embeddings", "vector_search docs", "openai.chat",
    ]
    text = _text(trace)
    assert "Failure reason: InternalServerError" in text
    assert "Error code: 500 - upstream failure" in text
    assert "Where is my order number 0?" in text  # the prompt, rendered from gen_ai.input.messages
    assert "Traceback (most recent call last)" in text  # exception stack trace
    assert trace.count('class="span error"') == 2

    # A run that retried a rate-limited call and then used a tool.
    page_of_runs = httpx.get(server.url + "/api/journeys/runs?journey=ask&limit=50").json()
    retried = next(r for r in page_of_runs["items"] if r["retries"])
    text = _text(_get(server, f"/traces/{retried['trace_id']}"))
    for expected in (
        "execute_tool lookup_order", "↻ retry 1", "Error code: 429 - Rate limit reached",
        "Tool arguments", '"query": "order status 42"', "tool call lookup_order",
        "Based on the retrieved documents", "gen_ai.usage.input_tokens",
        "deployment.environment.name prod",
    ):
        assert expected in text, expected


def test_runs_pagination_follows_next_cursor(server: ServerProcess) -> None:
    request, ids = journey_request(60, journey="paged")
    post_request(server, request)
    wait_for_runs(server, {"paged": 60})
    first = _get(server, "/runs?journey=paged&since=1h")
    assert len(_trace_ids(first)) == 50
    older = re.search(r'<a class="older" href="([^"]+)">Older →</a>', first)
    assert older, "no Older link on a full page"
    href = html.unescape(older.group(1))
    assert "journey=paged" in href and "since=1h" in href  # filters survive paging
    second = _get(server, href)
    assert len(_trace_ids(second)) == 10
    assert "Older →" not in second and "← Newest" in second
    assert sorted(_trace_ids(first) + _trace_ids(second)) == sorted(ids)


def test_sender_controlled_text_is_escaped(server: ServerProcess) -> None:
    evil = '<script>alert("pwned")</script>'
    journey = "<img src=x onerror=alert(1)>"
    trace_id, root_id, chat_id = os.urandom(16), os.urandom(8), os.urandom(8)
    now = time.time_ns()
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", evil), _kv("service.version", "<b>1</b>")])
    spans = rs.scope_spans.add().spans
    spans.append(Span(
        trace_id=trace_id, span_id=root_id, name=evil, kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now, end_time_unix_nano=now + 5_000_000,
        attributes=[_kv("aisre.journey", journey), _kv("x.note", "</td></tr><h1>owned</h1>")],
        status=Status(code=Status.STATUS_CODE_ERROR, message="<marquee>failed</marquee>"),
    ))
    messages = [{"role": "user", "parts": [{"type": "text", "content": evil}]}]
    spans.append(Span(
        trace_id=trace_id, span_id=chat_id, parent_span_id=root_id, name="chat <em>",
        start_time_unix_nano=now + 1_000, end_time_unix_nano=now + 4_000_000,
        attributes=[
            _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.request.model", "<u>m</u>"),
            _kv("gen_ai.input.messages", json.dumps(messages)),
        ],
    ))
    post_request(server, request)
    wait_for_runs(server, {journey: 1})

    pages = [
        _get(server, "/"),
        _get(server, "/runs"),
        _get(server, "/journeys/" + quote(journey, safe="")),
        _get(server, f"/traces/{trace_id.hex()}"),
    ]
    for page in pages:
        for raw in ("<script>alert", "<img src=x", "<marquee>", "<h1>owned", "<em>", "<u>m"):
            assert raw not in page, raw
        assert "<b>1" not in page
    assert html.escape(journey, quote=False) in pages[0]
    trace = pages[3]
    assert "&lt;script&gt;alert(" in trace  # span name and prompt text, escaped but shown
    assert trace.count("&lt;script&gt;alert(") >= 3  # name, prompt, resource attribute
    assert "&lt;marquee&gt;failed&lt;/marquee&gt;" in trace


def test_forms_posted_from_another_site_are_refused(server: ServerProcess) -> None:
    """The gate and incident forms change state: a cross-site post (the browser's Origin names
    another host) is refused with 403 before it is read; the same post from the server's own
    pages gets past that check to the form's own."""
    for path, body in (("/gate", "journey=ask&baseline=v%3D1&candidate=v%3D2"),
                       ("/incidents/1/act", "action=acknowledge&by=mallory")):
        refused = httpx.post(server.url + path, content=body, timeout=10, follow_redirects=False,
                             headers={"origin": "http://attacker.example", "content-type": "application/x-www-form-urlencoded"})
        assert refused.status_code == 403 and "only be posted from this server" in refused.text, (path, refused.status_code)
        own = httpx.post(server.url + path, content=body, timeout=10, follow_redirects=False,
                         headers={"origin": server.url, "content-type": "application/x-www-form-urlencoded"})
        assert own.status_code != 403, (path, own.status_code, own.text[:300])
