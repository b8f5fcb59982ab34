"""The simulator end to end: real SDK and OTLP/HTTP exporter → a real receiver → aisre's
normalizer, checked against the fake provider's own count of what it answered."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

from aisre.demo.runner import Demo, DemoStats, run
from aisre.normalize.spans import flatten

from .receiver import OtlpReceiver

FAST: dict[str, Any] = {"rate_per_s": 40.0, "time_scale": 0.03, "workers": 8, "export_delay_ms": 100}


def _rows(receiver: OtlpReceiver) -> list[dict[str, Any]]:
    batch = flatten(receiver.merged(), tenant="t")
    assert batch.rejected == 0, batch.reasons
    return batch.table.to_pylist()


def _by_trace(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        traces[row["trace_id"]].append(row)
    return traces


def _assert_tokens_match_provider(rows: list[dict[str, Any]], stats: DemoStats) -> None:
    ok_calls: Counter[str] = Counter()
    input_tokens: Counter[str] = Counter()
    output_tokens: Counter[str] = Counter()
    for row in rows:
        if row["operation"] in ("chat", "embeddings") and row["status"] != "error":
            ok_calls[row["request_model"]] += 1
            input_tokens[row["request_model"]] += row["input_tokens"]
            output_tokens[row["request_model"]] += row["output_tokens"] or 0
    for model, usage in stats.provider_usage.items():
        assert ok_calls[model] == usage.calls_ok, model
        assert input_tokens[model] == usage.input_tokens, model
        assert output_tokens[model] == usage.output_tokens, model


def test_healthy_run_exports_both_journeys_with_exact_tokens(receiver: OtlpReceiver) -> None:
    stats = run(
        receiver.endpoint, duration_s=2.0, seed=11, failure_rate=0.0, rate_limit_rate=0.0,
        prompt_version="v7", tool_call_rate=0.5, **FAST,
    )
    assert stats.crashed == 0 and not stats.failures
    assert stats.journeys["ask"] > 20 and stats.journeys["triage-agent"] > 3
    assert receiver.content_types == {"application/x-protobuf"}
    rows = _rows(receiver)
    traces = _by_trace(rows)

    roots = [r for r in rows if r["is_root"]]
    assert Counter(r["journey"] for r in roots) == stats.journeys  # every run, exported once
    assert len(traces) == len(roots)
    assert not any(r["marks_failure"] for r in rows)
    for row in rows:
        assert row["service"] == "support-bot" and row["service_version"] == "1.4.2"
        assert row["deployment_environment"] == "demo"

    for spans in traces.values():
        root = next(s for s in spans if s["is_root"])
        # The journey travels as baggage, so every span of the trace carries it.
        assert {s["journey"] for s in spans} == {root["journey"]}
        ops = Counter(s["operation"] for s in spans)
        chats = [s for s in spans if s["operation"] == "chat"]
        for chat in chats:
            assert chat["input_tokens"] > 0 and chat["output_tokens"] > 0
            assert chat["parent_span_id"] == root["span_id"]
            assert json.loads(json.loads(chat["attributes"])["gen_ai.input.messages"])
        if root["journey"] == "ask":
            assert root["name"] == "POST /ask" and root["kind"] == "server"
            assert (root["prompt_name"], root["prompt_version"]) == ("ask-answer", "v7")
            assert root["http_status"] == 200 and root["user_id"] and root["session_id"]
            assert ops["embeddings"] == 1 and ops["retrieval"] == 1
            assert ops["chat"] == 1 + ops["execute_tool"]  # a tool call means a second answer
            search = next(s for s in spans if s["operation"] == "retrieval")
            docs = json.loads(json.loads(search["attributes"])["aisre.retrieval.documents"])
            assert len(docs) == 3 and {"id", "score", "content"} <= set(docs[0])
            assert {c["request_model"] for c in chats} == {"gpt-4o-mini"}
        else:
            assert root["name"] == "agent.run triage" and root["operation"] == "agent"
            assert 2 <= ops["execute_tool"] <= 4 and ops["chat"] == ops["execute_tool"] + 1
            tools = [s["tool_name"] for s in sorted(spans, key=lambda s: s["start_ns"])
                     if s["operation"] == "execute_tool"]
            assert tools[:2] == ["lookup_order", "search_kb"]
            assert {c["request_model"] for c in chats} == {"gpt-4.1"}
    tool_attrs = [json.loads(r["attributes"]) for r in rows if r["operation"] == "execute_tool"]
    assert all(a["gen_ai.tool.call.result"] and a["gen_ai.tool.call.arguments"] for a in tool_attrs)
    assert len(tool_attrs) == stats.tool_calls > 0

    _assert_tokens_match_provider(rows, stats)
    assert stats.provider_usage["gpt-4o-mini"].streamed > 0  # streamed answers counted too
    assert stats.llm_calls == sum(1 for r in rows if r["operation"] in ("chat", "embeddings"))


def test_rate_limits_and_errors_show_as_retries_and_failed_roots(receiver: OtlpReceiver) -> None:
    stats = run(
        receiver.endpoint, duration_s=2.0, seed=12, rate_limit_rate=0.3, failure_rate=0.08, **FAST
    )
    rows = _rows(receiver)
    usage = stats.provider_usage
    assert stats.crashed == 0 and stats.rate_limited > 10 and sum(stats.failures.values()) > 0

    errors = [r for r in rows if r["operation"] == "chat" and r["status"] == "error"]
    by_status = Counter((r["request_model"], r["http_status"]) for r in errors)
    for model in ("gpt-4o-mini", "gpt-4.1"):
        assert by_status[(model, 429)] == usage[model].rate_limited
        assert by_status[(model, 500)] == usage[model].server_errors
    assert stats.rate_limited == sum(u.rate_limited for u in usage.values())

    # Every 429 that was not the last allowed attempt is followed by a retry sibling.
    retries = [r for r in rows if r["operation"] == "chat" and r["retry_attempt"] > 0]
    assert len(retries) >= stats.retries > 0
    for limited in (e for e in errors if e["http_status"] == 429):
        siblings = [
            r for r in rows
            if r["trace_id"] == limited["trace_id"] and r["parent_span_id"] == limited["parent_span_id"]
            and r["operation"] == "chat" and r["start_ns"] >= limited["end_ns"]
        ]
        root = next(r for r in rows if r["trace_id"] == limited["trace_id"] and r["is_root"])
        assert siblings or root["marks_failure"]
        # Attempts up to the first answer are retries; a call after that answer (the reply
        # after a tool call) is a new call.
        attempts = []
        for s in sorted(siblings, key=lambda s: s["start_ns"]):
            attempts.append(s)
            if s["status"] != "error":
                break
        assert all(s["retry_attempt"] > 0 for s in attempts)
        assert all(s["retry_attempt"] == 0 for s in siblings if s not in attempts and s["status"] != "error"
                   and not any(f["end_ns"] <= s["start_ns"] and f["start_ns"] > attempts[-1]["end_ns"]
                               for f in errors if f["trace_id"] == s["trace_id"]))

    failed_roots = [r for r in rows if r["is_root"] and r["marks_failure"]]
    assert Counter(r["journey"] for r in failed_roots) == stats.failures
    for root in failed_roots:
        assert root["status"] == "error" and root["error_type"] in (
            "RateLimitError", "InternalServerError",
        )
        if root["journey"] == "ask":
            assert root["http_status"] == 500
    _assert_tokens_match_provider(rows, stats)


def test_canary_and_fallback_keep_each_trace_on_one_version(receiver: OtlpReceiver) -> None:
    stats = run(
        receiver.endpoint, duration_s=1.5, seed=13, scenario="canary", canary_share=0.5,
        canary_failure_rate=0.0, failure_rate=0.6, fault_models=("gpt-4o-mini",),
        fallback_model="gpt-4.1", rate_limit_rate=0.0, agent_share=0.0, **FAST,
    )
    rows = _rows(receiver)
    assert set(stats.by_version) == {"1.4.2", "1.5.0"}
    for spans in _by_trace(rows).values():
        versions = {s["service_version"] for s in spans}
        assert len(versions) == 1  # instrumented spans follow the replica of their trace
        root = next(s for s in spans if s["is_root"])
        assert root["prompt_version"] == ("v4" if versions == {"1.5.0"} else "v3")
    roots_by_version = Counter(r["service_version"] for r in rows if r["is_root"])
    assert roots_by_version == stats.by_version
    # A 500 on gpt-4o-mini falls back to a healthy gpt-4.1 under the same parent: no failures.
    assert stats.fallbacks > 0 and not stats.failures
    failed = [r for r in rows if r["request_model"] == "gpt-4o-mini" and r["status"] == "error"]
    assert len(failed) == stats.fallbacks == stats.provider_usage["gpt-4o-mini"].server_errors
    for span in failed:
        assert any(
            r["request_model"] == "gpt-4.1" and r["status"] != "error"
            and r["parent_span_id"] == span["parent_span_id"] and r["start_ns"] >= span["end_ns"]
            for r in rows
        )
    _assert_tokens_match_provider(rows, stats)


def test_run_stops_on_event_and_leaves_nothing_behind(receiver: OtlpReceiver) -> None:
    before = set(threading.enumerate())
    env_before = {k: os.environ.get(k) for k in (
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "OTEL_SEMCONV_STABILITY_OPT_IN")}
    stop = threading.Event()
    threading.Timer(0.8, stop.set).start()
    started = time.monotonic()
    stats = run(receiver.endpoint, stop=stop, seed=14, **FAST)
    assert time.monotonic() - started < 5
    assert stats.total > 0
    time.sleep(0.05)  # the Timer thread itself finishes just after setting the event
    assert set(threading.enumerate()) <= before
    assert not OpenAIInstrumentor().is_instrumented_by_opentelemetry
    assert env_before == {k: os.environ.get(k) for k in env_before}
    assert receiver.requests  # the final flush reached the receiver


def test_demo_switches_scenario_while_running_and_releases_its_port(receiver: OtlpReceiver) -> None:
    before = set(threading.enumerate())
    demo = Demo(receiver.endpoint, scenario="default", seed=15, **FAST).start()
    port = int(demo.provider.url.rsplit(":", 1)[1].split("/")[0])
    demo.set_scenario("default", failure_rate=0.0, rate_limit_rate=0.0, prompt_version="v3")
    demo.wait(0.6)
    demo.set_scenario("prompt-regression")
    assert demo.scenario.prompt_version == "v4"
    demo.wait(0.8)
    stats = demo.stop()
    assert demo.stop().total == stats.total  # idempotent
    assert set(threading.enumerate()) <= before
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))

    rows = _rows(receiver)
    # The longer v4 template shows in input tokens of the first answer per ask trace.
    first_chat: dict[str, dict[str, Any]] = {}
    version: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: r["start_ns"]):
        if row["is_root"] and row["journey"] == "ask":
            version[row["trace_id"]] = row["prompt_version"]
        if row["operation"] == "chat" and row["status"] != "error":
            first_chat.setdefault(row["trace_id"], row)
    tokens: dict[str, list[int]] = defaultdict(list)
    for trace_id, prompt_version in version.items():
        if trace_id in first_chat:
            tokens[prompt_version].append(first_chat[trace_id]["input_tokens"])
    assert set(tokens) == {"v3", "v4"}
    assert min(tokens["v4"]) > 1.6 * max(tokens["v3"])
    _assert_tokens_match_provider(rows, stats)


def test_bad_settings_fail_fast() -> None:
    with pytest.raises(ValueError):
        run("http://127.0.0.1:1/v1/traces", duration_s=0.1, scenario="no-such-scenario")
    with pytest.raises(TypeError):
        run("http://127.0.0.1:1/v1/traces", duration_s=0.1, no_such_knob=1)
    with pytest.raises(ValueError):
        run("http://127.0.0.1:1/v1/traces", duration_s=0.1, failure_rate=2.0)
    with pytest.raises(ValueError):
        Demo("not a url")
