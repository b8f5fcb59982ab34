"""The SLO pages against a real server loaded with the demo's SLO file: what they show matches
the `/api/slos` documents, failing runs turn the page badge on, the burn-down chart is drawn
server-side, unknown SLOs get a 404 page and everything from a spec file is escaped."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from aisre.present.ui import format as fmt
from tests.conftest import REPO, ServerProcess
from tests.otlp_factory import journey_request
from tests.present.ui_helpers import post_request

DEMO_SLOS = REPO / "src" / "aisre" / "demo" / "slos.yaml"


def _get(server: ServerProcess, path: str, status: int = 200) -> str:
    response = httpx.get(server.url + path, timeout=10)
    assert response.status_code == status, (path, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _row(page: str, attr: str, value: str) -> tuple[str, str]:
    """(opening tag, inner html) of the table row with data-<attr>="value"."""
    match = re.search(rf'(<tr data-{attr}="{re.escape(value)}"[^>]*>)(.*?)</tr>', page, re.S)
    assert match, f"no row with data-{attr}={value!r}"
    return match.group(1), match.group(2)


def _cell(row: str, cls: str) -> str:
    match = re.search(rf'<td class="(?:[^"]* )?{cls}(?: [^"]*)?">(.*?)</td>', row, re.S)
    assert match, f"no {cls} cell in {row[:200]}"
    return _text(match.group(1))


def runs_request(n: int, failures: int = 0, journey: str = "ask", start_ns: int | None = None) -> ExportTraceServiceRequest:
    """``n`` runs of ``journey``, the first ``failures`` of them with an errored root span."""
    request, _ = journey_request(n, journey=journey, start_ns=start_ns)
    roots = [s for s in request.resource_spans[0].scope_spans[0].spans if not s.parent_span_id]
    for span in roots[:failures]:
        span.status.code = Status.STATUS_CODE_ERROR
    return request


def wait_for_slo(server: ServerProcess, name: str, total: int, timeout: float = 15.0) -> dict[str, Any]:
    """Poll the API until the SLO has counted ``total`` events (rollups lag about a second)."""
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = httpx.get(f"{server.url}/api/slos/{name}", timeout=10).json()
        if doc.get("total") == total:
            return doc
        time.sleep(0.2)
    raise AssertionError(f"{name} never counted {total} events; last saw {doc.get('total')}")


HISTORY = 20  # healthy runs per journey four days back, so every alert window is observed whole


def post_history(server: ServerProcess) -> None:
    """Healthy runs of both journeys four days ago: the SLOs then judge the runs posted now
    over fully observed windows (a young SLO's windows are diluted, docs/alerting.md)."""
    start = time.time_ns() - 4 * 86400 * 10**9
    for journey in ("ask", "triage-agent"):
        post_request(server, runs_request(HISTORY, journey=journey, start_ns=start))


def _slos(server: ServerProcess) -> dict[str, dict[str, Any]]:
    items = httpx.get(server.url + "/api/slos", timeout=10).json()["items"]
    return {item["name"]: item for item in items}


def test_slo_pages_match_the_api(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(tmp_path / "slo.duckdb", "--slos", str(DEMO_SLOS))
    page = _get(server, "/slos")
    assert re.findall(r'<tr data-slo="([^"]+)" data-status="([^"]+)"', page) == [
        ("ask-success", "no_data"), ("ask-cost", "no_data"), ("triage-success", "no_data"), ("triage-policy", "no_data"),
        ("gpu-pool-gpu-utilisation", "no_data"), ("inference-latency", "no_data"), ("feature-store-features-fresh", "no_data"),
        ("batch-nightly-succeeds", "no_data"), ("batch-nightly-on-time", "no_data"),
    ]
    assert '<a href="/slos" class="active" aria-current="page">SLOs</a>' in page

    post_history(server)
    post_request(server, runs_request(40))
    post_request(server, runs_request(4, journey="triage-agent"))
    wait_for_slo(server, "ask-success", HISTORY + 40)
    wait_for_slo(server, "triage-success", HISTORY + 4)
    api = _slos(server)
    page = _get(server, "/slos")
    for name, doc in api.items():
        tag, row = _row(page, "slo", name)
        assert f'data-status="{doc["status"]}"' in tag, (name, tag)
        if name == "triage-policy" or doc["journey"] is None:
            # No agent policy on this server (no run is judged), and no platform metrics sent.
            assert doc["status"] == "no_data"
            continue
        assert doc["status"] == "ok", name
        assert _cell(row, "objective") == fmt.objective(doc["objective"])
        assert _cell(row, "sli-now").startswith(fmt.sli_ratio(doc["sli"])), row
        assert f"({doc['good']}/{doc['total']})" in _cell(row, "sli-now")
        assert fmt.budget(doc["error_budget"]["remaining_ratio"]) in _cell(row, "budget-cell")
        assert _cell(row, "burn-1h") == fmt.burn(doc["burn_rates"]["1h"]) == "0×"
    _, ask_success = _row(page, "slo", "ask-success")
    assert _cell(ask_success, "sli-kind") == "outcome success ≤ 4.00 s"
    assert '<a href="/journeys/ask">ask</a>' in ask_success
    assert '<a href="https://runbooks.example/ask" rel="noopener noreferrer">runbook</a>' in ask_success
    assert "search-team" in ask_success
    _, ask_cost = _row(page, "slo", "ask-cost")
    assert "diagnostic" in _text(ask_cost) and "cost ≤ $0.002" in _text(ask_cost)
    assert "diagnostic" not in _text(ask_success)

    # 10 failures in 50 runs burn a 99.5% objective's budget at 40×: page.
    post_request(server, runs_request(10, failures=10))
    doc = wait_for_slo(server, "ask-success", HISTORY + 50)
    assert doc["status"] == "page"
    page = _get(server, "/slos")
    tag, row = _row(page, "slo", "ask-success")
    assert 'data-status="page"' in tag
    assert '<span class="badge slo-status status-page">page</span>' in row
    assert _cell(row, "burn-1h") == fmt.burn(doc["burn_rates"]["1h"]) == "40×"
    assert _cell(row, "budget-cell") == fmt.budget(doc["error_budget"]["remaining_ratio"])

    # The journeys page: each journey's SLOs as dots, worst first, linking to the SLO page.
    journeys = _get(server, "/")
    _, ask_row = _row(journeys, "journey", "ask")
    assert re.findall(r'href="/slos/([^"]+)" data-slo="[^"]+" data-status="([^"]+)"', ask_row) == [
        ("ask-success", "page"), ("ask-cost", "ok"),
    ]
    # Each dot is labelled with its SLO (and its state unless ok); the tooltip gives the numbers.
    assert '<span class="slo-dot-name">ask-success</span> <span class="slo-dot-status">page</span>' in ask_row
    assert '<span class="slo-dot-name">ask-cost</span></a>' in ask_row
    left = fmt.budget(doc["error_budget"]["remaining_ratio"])
    assert (f'title="SLO ask-success: page · objective 99.5% · error budget {left} left · burn 40× over 1h"'
            in ask_row), ask_row
    _, triage_row = _row(journeys, "journey", "triage-agent")
    assert 'data-slo="triage-success" data-status="ok"' in triage_row
    journey = _get(server, "/journeys/ask")
    assert re.findall(r'<tr data-slo="([^"]+)" data-status="([^"]+)"', journey) == [
        ("ask-success", "page"), ("ask-cost", "ok"),
    ]

    # The SLO page: numbers, chart, burn rates and alert pairs from the same document.
    page = _get(server, "/slos/ask-success")
    doc = httpx.get(f"{server.url}/api/slos/ask-success", timeout=10).json()  # 120 points
    text = _text(page)
    assert "99.5% over 28d" in text and "Users who ask get an answer, fast enough." in text
    assert "search-team" in text and 'href="https://runbooks.example/ask"' in page
    assert f"{fmt.sli_ratio(doc['sli'])} {doc['good']} good of {doc['total']}" in text
    assert f"Bad events spent {doc['error_budget']['spent_events']} of" in text
    assert "Time to exhaustion exhausted" in text
    paths = re.findall(r'<path class="burn-line" d="([^"]+)"', page)
    assert len(paths) == 1
    points = re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", paths[0])
    assert len(points) == len(doc["burn_down"]) >= 100
    assert f'data-points="{len(doc["burn_down"])}"' in page
    xs = [float(x) for x, _ in points]
    assert xs == sorted(xs) and xs[0] < xs[-1]
    ys = [float(y) for _, y in points]
    assert ys[0] < ys[-1]  # a full budget at the start, overspent now (SVG y grows down)
    assert 'class="zero-line"' in page and ">0%</text>" in page
    assert re.search(r'<text class="x-label"[^>]*>[A-Z][a-z]{2} \d\d</text>', page)
    for window, rate in doc["burn_rates"].items():
        _, row = _row(page, "window", window)
        assert _cell(row, "rate") == fmt.burn(rate)
    for alert in doc["alerts"]:
        tag, row = _row(page, "alert", alert["name"])
        assert f'data-firing="{"true" if alert["firing"] else "false"}"' in tag
        assert _cell(row, "factor") == fmt.burn(alert["factor"])
        assert _cell(row, "short-burn") == fmt.burn(alert["short_burn"])
        assert _cell(row, "long-burn") == fmt.burn(alert["long_burn"])
        assert _cell(row, "state") == ("firing" if alert["firing"] else "not firing")
    page_quick, _ = _row(page, "alert", "page_quick")
    assert 'data-severity="page" data-firing="true"' in page_quick

    # The diagnostic SLO's alerts are tickets only; an SLO with no data yet says so.
    assert 'data-severity="page"' not in _get(server, "/slos/ask-cost")

    page = html.unescape(_get(server, "/slos/nope", 404))
    assert "no SLO named 'nope'" in page and 'href="/slos"' in page


def test_slo_specs_are_escaped_and_unsupported_explained(
    server_factory: Any, tmp_path: Path
) -> None:
    specs = tmp_path / "slos.yaml"
    specs.write_text(
        "slos:\n"
        "  - name: evil\n"
        "    journey: \"<img src=x onerror=alert(1)>\"\n"
        "    objective: 99\n"
        "    window: 28d\n"
        "    sli: {kind: outcome}\n"
        "    owner: \"<b>owner</b>\"\n"
        "    runbook: \"javascript:alert(1)\"\n"
        "    description: \"<script>alert('pwned')</script> & more\"\n"
        "  - name: short\n"
        "    journey: ask\n"
        "    objective: 99\n"
        "    window: 1d\n"
        "    sli: {kind: outcome}\n"
        "  - name: raw\n"
        "    service: api\n"
        "    objective: 99\n"
        "    runbook: https://runbooks.example/raw\n"
        "    sli: {kind: prometheus, error_ratio_query: 'sum(rate(errors[5m])) / sum(rate(requests[5m]))'}\n"
    )
    server = server_factory(tmp_path / "evil.duckdb", "--slos", str(specs))
    pages = [_get(server, "/slos"), _get(server, "/slos/evil")]
    for page in pages:
        for raw in ("<script>alert", "<img src=x", "<b>owner", 'href="javascript:'):
            assert raw not in page, raw
        assert "&lt;b&gt;owner&lt;/b&gt;" in page
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; &amp; more" in pages[1]
    assert 'href="/journeys/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"' in pages[0]
    # A journey an SLO names has a page (its SLOs) before its first run.
    journey = _get(server, "/journeys/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E")
    assert '<tr data-slo="evil" data-status="no_data"' in journey and "<img src=x" not in journey

    reason = _slos(server)["short"]["reason"]
    tag, row = _row(pages[0], "slo", "short")
    assert 'data-status="unsupported"' in tag
    assert f'status-unsupported" title="{html.escape(reason)}">unsupported</span>' in row
    page = _get(server, "/slos/short")
    assert f"Not evaluated: {reason}" in _text(page) and "burn-line" not in page

    # The document's warnings and an unsupported status with its reason are a notice near the
    # top, before the SLO's facts: "short" has no runbook and too short a window.
    docs = _slos(server)
    assert docs["short"]["warnings"] == ["no runbook: alerts and incidents of this SLO will reach on-call without one"]
    notices = re.search(r'<div class="slo-notices" id="slo-notices" data-live>(.*?)</div>\s*<section class="slo-head">', page, re.S)
    assert notices, page[:2000]
    assert _text(notices.group(1)) == (
        f"Not evaluated: {reason} (status unsupported) "
        "Warning: no runbook: alerts and incidents of this SLO will reach on-call without one")
    assert '<li class="slo-warning">' in notices.group(1)
    # A raw-ratio Prometheus SLI is loaded but not evaluated: unsupported with its reason, and
    # no warnings notice (it has a runbook).
    raw = docs["api-raw"]
    assert raw["status"] == "unsupported" and "warnings" not in raw
    assert raw["reason"].startswith("error_ratio_query (a raw ratio SLI) gives a ratio per minute")
    page = _get(server, "/slos/api-raw")
    unsupported = re.search(r'<p class="notice notice-unsupported[^"]*" id="slo-unsupported"[^>]*>(.*?)</p>', page, re.S)
    assert unsupported and _text(unsupported.group(1)) == f"Not evaluated: {raw['reason']} (status unsupported)"
    assert 'id="slo-warnings"' not in page and page.index('id="slo-unsupported"') < page.index('class="slo-head"')
    # An evaluated SLO with a runbook has neither notice (the notices' live container stays).
    assert "warnings" not in docs["evil"]
    assert 'id="slo-notices"' in pages[1] and 'id="slo-warnings"' not in pages[1] and 'id="slo-unsupported"' not in pages[1]

    # The list marks each SLO with notices: a badge with their count, linking to the SLO's
    # notices, whose title holds their text (escaped), one per line.
    def badge(name: str) -> re.Match[str] | None:
        _, row = _row(pages[0], "slo", name)
        return re.search(r'<a class="badge slo-notice-badge([^"]*)" href="([^"]*)" title="([^"]*)" aria-label="([^"]*)">(.*?)</a>',
                         row, re.S)

    short, api_raw = badge("short"), badge("api-raw")
    assert short and api_raw and badge("evil") is None
    assert short.group(1) == " unsupported" and short.group(2) == "/slos/short#slo-notices"
    assert _text(short.group(5)) == "⚠ 2" and short.group(4).startswith("2 notices: Not evaluated: ")
    assert html.unescape(short.group(3)).split("\n") == [
        f"Not evaluated: {reason}", "Warning: no runbook: alerts and incidents of this SLO will reach on-call without one"]
    assert _text(api_raw.group(5)) == "⚠ 1" and html.unescape(api_raw.group(3)) == f"Not evaluated: {raw['reason']}"
    assert all("<" not in m.group(3) and "'" not in m.group(3) for m in (short, api_raw))  # escaped in the attribute
