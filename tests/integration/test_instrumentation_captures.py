"""The Vercel AI SDK capture (tests/data/captures/ai-sdk) through a live server: runs, calls,
tools, tokens, cost and failures equal the provider's and the driver's truth."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from aisre.normalize.prices import default_catalog
from tests.conftest import ServerProcess

CAPTURE = Path(__file__).parents[1] / "data" / "captures" / "ai-sdk"


def test_ai_sdk_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    truth = json.loads((CAPTURE / "truth.json").read_text())
    # Reverse order: children before their roots, as real exporters often do.
    for path in reversed(sorted((CAPTURE / "raw").glob("*.pb"))):
        response = httpx.post(server.url + "/v1/traces", content=path.read_bytes(),
                              headers={"Content-Type": "application/x-protobuf"}, timeout=30)
        assert response.status_code == 200
        assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    driver = truth["driver"]
    journeys = {j["journey"]: j for j in httpx.get(server.url + "/api/journeys", timeout=60).json()["items"]}
    assert {name: j["runs"] for name, j in journeys.items()} == driver["journeys"]
    assert {name: j["failures"] for name, j in journeys.items() if j["failures"]} == driver["failed_journeys"]
    runs = httpx.get(server.url + "/api/journeys/runs", params={"limit": 100}, timeout=60).json()["items"]
    assert len(runs) == sum(driver["journeys"].values())
    provider = truth["provider_truth_by_model"]
    assert sum(r["llm_calls"] for r in runs) == driver["model_calls"] + driver["embed_calls"]
    assert sum(r["tool_calls"] for r in runs) == driver["tool_executions"]
    assert sum(r["input_tokens"] for r in runs) == sum(m["input_tokens"] for m in provider.values())
    assert sum(r["output_tokens"] for r in runs) == sum(m["output_tokens"] for m in provider.values())
    assert sum(r["cached_input_tokens"] for r in runs) == sum(m["cached_input_tokens"] for m in provider.values())
    catalog = default_catalog()
    expected = 0.0
    when = int(dt.datetime.fromisoformat(runs[0]["start_time"].replace("Z", "+00:00")).timestamp()) * 10**9
    for model, t in provider.items():
        price = catalog.lookup("openai", model, when)[0]
        assert price is not None
        expected += price.cost(t["input_tokens"], t["output_tokens"], t["cached_input_tokens"])
    assert sum(r["cost_usd"] for r in runs) == pytest.approx(expected)
    failed = [r for r in runs if r["outcome"] == "failure"]
    assert len(failed) == 1 and failed[0]["failure_reason"] == "injected failure"

    # The trace view shows the prompt, the tool call and the answer of a two-step run.
    tool_run = next(r for r in runs if r["tool_calls"])
    doc = httpx.get(f"{server.url}/api/traces/{tool_run['trace_id']}", timeout=60).json()
    spans = doc["spans"]
    steps = [s for s in spans if s["name"] == "ai.generateText.doGenerate"]
    assert [s["operation"] for s in steps] == ["chat", "chat"]
    assert {s["provider"] for s in steps} == {"openai"}
    assert steps[0]["genai"]["input_messages"][0] == {"role": "system", "content": "You are a support bot."}
    outputs = [s["genai"]["output_messages"][0] for s in steps]
    assert any(o.get("toolName") == "lookup_order" for o in outputs)
    assert any(o.get("content") == "Your order A-1042 ships tomorrow." for o in outputs)
    tool = next(s for s in spans if s["name"] == "ai.toolCall")
    assert (tool["operation"], tool["tool_name"]) == ("execute_tool", "lookup_order")
    assert tool["genai"]["tool_result"] == {"orderId": "A-1042", "status": "shipped"}


def test_logfire_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    capture = CAPTURE.parent / "logfire"
    truth = json.loads((capture / "truth.json").read_text())
    for path in sorted((capture / "raw").glob("*.pb")):
        response = httpx.post(server.url + "/v1/traces", content=path.read_bytes(),
                              headers={"Content-Type": "application/x-protobuf"}, timeout=30)
        assert response.status_code == 200
    driver = truth["driver"]
    journeys = {j["journey"]: j for j in httpx.get(server.url + "/api/journeys", timeout=60).json()["items"]}
    assert {name: j["runs"] for name, j in journeys.items()} == driver["journeys"]
    assert {name: j["failures"] for name, j in journeys.items() if j["failures"]} == driver["failed_journeys"]
    runs = httpx.get(server.url + "/api/journeys/runs", params={"limit": 100}, timeout=60).json()["items"]
    provider = truth["provider_truth_by_model"]
    assert sum(r["llm_calls"] for r in runs) == driver["model_calls"] + driver["embed_calls"]
    assert sum(r["llm_errors"] for r in runs) == 1
    for key in ("input_tokens", "output_tokens", "cached_input_tokens"):
        assert sum(r[key] for r in runs) == sum(m[key] for m in provider.values())
    # A streamed call: one chat span with the usage and the completion shown, one log record.
    run = next(r for r in runs if r["journey"] == "summarise")
    spans = httpx.get(f"{server.url}/api/traces/{run['trace_id']}", timeout=60).json()["spans"]
    calls = [s for s in spans if s["operation"] == "chat"]
    assert len(calls) == 1 and calls[0]["input_tokens"] == run["input_tokens"] > 0
    assert calls[0]["genai"]["input_messages"][0]["role"] == "user"
    log = next(s for s in spans if s["name"].startswith("streaming response"))
    assert log["operation"] == "other"
    assert log["genai"]["output_messages"][0]["parts"][0]["content"].startswith("Here is a short answer")


def test_calls_traced_twice_count_once_through_the_server(server: ServerProcess) -> None:
    capture = CAPTURE.parent / "anthropic-twice"
    truth = json.loads((capture / "truth.json").read_text())
    for path in sorted((capture / "raw").glob("*.pb")):
        response = httpx.post(server.url + "/v1/traces", content=path.read_bytes(),
                              headers={"Content-Type": "application/x-protobuf"}, timeout=30)
        assert response.status_code == 200
    runs = httpx.get(server.url + "/api/journeys/runs", params={"limit": 100}, timeout=60).json()["items"]
    provider = truth["provider_truth_by_model"]
    assert len(runs) == sum(truth["driver"]["journeys"].values())
    assert sum(r["llm_calls"] for r in runs) == truth["driver"]["model_calls"]
    assert sum(r["llm_errors"] for r in runs) == 1
    assert sum(r["input_tokens"] for r in runs) == sum(m["input_tokens"] for m in provider.values())
    assert sum(r["output_tokens"] for r in runs) == sum(m["output_tokens"] for m in provider.values())
    expected = 0.0
    when = int(dt.datetime.fromisoformat(runs[0]["start_time"].replace("Z", "+00:00")).timestamp()) * 10**9
    for model, t in provider.items():
        price = default_catalog().lookup("anthropic", model, when)[0]
        assert price is not None
        expected += price.cost(t["input_tokens"], t["output_tokens"], 0)
    assert sum(r["cost_usd"] for r in runs) == pytest.approx(expected)


def _post_capture(server: ServerProcess, name: str) -> dict:
    capture = CAPTURE.parent / name
    for path in sorted((capture / "raw").glob("*.pb")):
        response = httpx.post(server.url + "/v1/traces", content=path.read_bytes(),
                              headers={"Content-Type": "application/x-protobuf"}, timeout=30)
        assert response.status_code == 200
        assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    return dict(json.loads((capture / "truth.json").read_text()))


def _journeys_and_runs(server: ServerProcess, driver: dict, extra_runs: dict | None = None) -> list[dict]:
    """Runs and failures per journey equal the driver's; returns every run."""
    journeys = {j["journey"]: j for j in httpx.get(server.url + "/api/journeys", timeout=60).json()["items"]}
    assert {name: j["runs"] for name, j in journeys.items()} == {**driver["journeys"], **(extra_runs or {})}
    assert {name: j["failures"] for name, j in journeys.items() if j["failures"]} == driver["failed_journeys"]
    return list(httpx.get(server.url + "/api/journeys/runs", params={"limit": 100}, timeout=60).json()["items"])


def _tokens_and_bill_equal_the_provider(runs: list[dict], truth: dict, provider: str, model: str) -> None:
    """The runs' tokens equal what the provider answered, and their cost its bill at catalog prices."""
    ok = [c for c in truth["provider_calls"] if c["status"] == 200]
    for key in ("input_tokens", "output_tokens", "cached_input_tokens"):
        assert sum(r[key] for r in runs) == sum(c[key] for c in ok)
    price = default_catalog().lookup(provider, model, 0)[0]
    assert price is not None
    bill = sum(price.cost(c["input_tokens"], c["output_tokens"], c["cached_input_tokens"],
                          c.get("cache_creation_input_tokens", 0)) for c in ok)
    assert sum(r["cost_usd"] for r in runs) == pytest.approx(bill)


def _calls_equal_the_driver(runs: list[dict], driver: dict) -> None:
    """Model calls and tool calls equal what the driver made, with its one failed call."""
    assert sum(r["llm_calls"] for r in runs) == driver["model_calls"]
    assert sum(r["llm_errors"] for r in runs) == 1
    assert sum(r["tool_calls"] for r in runs) == driver["tool_executions"]


def _spans_of_first_run_with(server: ServerProcess, runs: list[dict], key: str) -> list[dict]:
    run = next(r for r in runs if r[key])
    return list(httpx.get(f"{server.url}/api/traces/{run['trace_id']}", timeout=60).json()["spans"])


def test_google_genai_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    truth = _post_capture(server, "google-genai")
    driver = truth["driver"]
    runs = _journeys_and_runs(server, driver)
    # Automatic function calling: one span for the loop, with the last response's usage.
    hidden = truth["hidden_by_instrumentation"]
    assert sum(r["llm_calls"] for r in runs) == driver["model_calls"] + driver["embed_calls"] - len(hidden)
    assert sum(r["llm_errors"] for r in runs) == 1
    assert sum(r["tool_calls"] for r in runs) == driver["tool_executions"]
    provider = truth["provider_truth_by_model"]
    for key in ("input_tokens", "output_tokens", "cached_input_tokens"):
        assert sum(r[key] for r in runs) == sum(m[key] for m in provider.values()) - sum(c[key] for c in hidden)
    assert sum(r["cached_input_tokens"] for r in runs) == 8
    # The trace view: system instruction, prompt and answer of the tool run, and the tool.
    spans = _spans_of_first_run_with(server, runs, "tool_calls")
    call = next(s for s in spans if s["operation"] == "chat")
    assert (call["provider"], call["input_tokens"]) == ("gcp.gemini", 35)
    assert call["genai"]["input_messages"][0]["parts"][0]["content"] == "where is my order A-1042"
    assert call["genai"]["output_messages"][0]["parts"][0]["content"] == "Your order A-1042 ships tomorrow."
    tool = next(s for s in spans if s["operation"] == "execute_tool")
    assert tool["tool_name"] == "lookup_order"
    assert tool["genai"]["tool_result"] == {"orderId": "A-1042", "status": "shipped"}


def test_anthropic_cache_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    """Cached input inside input_tokens, cache reads at the cached price and writes at 1.25x:
    the runs' tokens and cost equal Anthropic's usage and bill."""
    truth = _post_capture(server, "anthropic-cache")
    runs = httpx.get(server.url + "/api/journeys/runs", params={"limit": 100}, timeout=60).json()["items"]
    assert len(runs) == sum(truth["driver"]["journeys"].values())
    assert sum(r["llm_calls"] for r in runs) == truth["driver"]["model_calls"]
    ok = [c for c in truth["provider_calls"] if c["status"] == 200]
    for key in ("input_tokens", "output_tokens", "cached_input_tokens"):
        assert sum(r[key] for r in runs) == sum(c[key] for c in ok)
    price = default_catalog().lookup("anthropic", "claude-sonnet-4-5", 0)[0]
    assert price is not None and price.cache_write_input is not None
    bill = sum(
        price.cost(c["input_tokens"], c["output_tokens"], c["cached_input_tokens"], c.get("cache_creation_input_tokens", 0))
        for c in ok
    )
    assert sum(r["cost_usd"] for r in runs) == pytest.approx(bill)
    written = sum(c.get("cache_creation_input_tokens", 0) for c in ok)
    assert written == 30
    assert bill > price.cost(sum(c["input_tokens"] for c in ok), sum(c["output_tokens"] for c in ok),
                             sum(c["cached_input_tokens"] for c in ok))  # the writes' premium counts
    # Repricing with the same catalog keeps the cache-write premium: the bill is unchanged.
    r = httpx.post(server.url + "/api/cost/reprice", json={"since": "2020-01-01T00:00:00Z"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["cost_after_usd"] == pytest.approx(r.json()["cost_before_usd"])
    runs = httpx.get(server.url + "/api/journeys/runs", params={"limit": 100}, timeout=60).json()["items"]
    assert sum(r["cost_usd"] for r in runs) == pytest.approx(bill)


def test_openai_agents_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    """Handoff, tool call, stream and a failed call through the server: calls, tools and
    tokens equal the truth (less the cached tokens the SDK's spans never carry)."""
    truth = _post_capture(server, "openai-agents")
    driver = truth["driver"]
    runs = _journeys_and_runs(server, driver)
    _calls_equal_the_driver(runs, driver)
    provider = truth["provider_truth_by_model"]
    for key in ("input_tokens", "output_tokens"):
        assert sum(r[key] for r in runs) == sum(m[key] for m in provider.values())
    lost = truth["lost_by_instrumentation"]["cached_input_tokens"]
    assert sum(r["cached_input_tokens"] for r in runs) == sum(m["cached_input_tokens"] for m in provider.values()) - lost
    spans = _spans_of_first_run_with(server, runs, "tool_calls")
    assert [s["operation"] for s in spans if s["name"] == "handoff to Orders agent"] == ["agent"]
    tool = next(s for s in spans if s["operation"] == "execute_tool")
    assert (tool["tool_name"], tool["genai"]["tool_arguments"]) == ("lookup_order", {"orderId": "A-1042"})
    answer = [s for s in spans if s["operation"] == "chat"][-1]
    assert answer["genai"]["output_messages"][0]["content"] == "Your order A-1042 ships tomorrow."


def test_litellm_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    """OpenAI and Anthropic calls through LiteLLM: calls, tokens (cached too) and cost equal the
    provider's; the streamed call LiteLLM logs outside the application's span is a run of its
    own (truth.json's outside_the_journey)."""
    truth = _post_capture(server, "litellm")
    driver, outside = truth["driver"], truth["outside_the_journey"]
    runs = _journeys_and_runs(server, driver, outside["runs"])
    assert sum(r["llm_calls"] for r in runs) == driver["model_calls"] + driver["embed_calls"]
    assert sum(r["llm_calls"] for r in runs if r["journey"] == "summarise") == driver["streamed_calls"] - outside["model_calls"]
    assert sum(r["llm_errors"] for r in runs) == 1
    ok = [c for c in truth["provider_calls"] if c["status"] == 200]
    for key in ("input_tokens", "output_tokens", "cached_input_tokens"):
        assert sum(r[key] for r in runs) == sum(c[key] for c in ok)
    catalog = default_catalog()
    bill = 0.0
    for c in ok:
        provider = "anthropic" if c["endpoint"] == "messages" else "openai"
        price = catalog.lookup(provider, c["model"], 0)[0]
        assert price is not None
        bill += price.cost(c["input_tokens"], c["output_tokens"], c["cached_input_tokens"], c.get("cache_creation_input_tokens"))
    assert sum(r["cost_usd"] for r in runs) == pytest.approx(bill)
    # The trace view: the tool round trip's prompt and answer on the litellm_request spans.
    tool_run = next(r for r in runs if r["llm_calls"] == 2)
    spans = httpx.get(f"{server.url}/api/traces/{tool_run['trace_id']}", timeout=60).json()["spans"]
    calls = [s for s in spans if s["operation"] == "chat"]
    assert [s["name"] for s in calls] == ["litellm_request", "litellm_request"]
    assert calls[0]["genai"]["input_messages"][1]["parts"][0]["content"] == "where is my order A-1042"
    assert calls[1]["genai"]["output_messages"][0]["parts"][0]["content"] == "Your order A-1042 ships tomorrow."


def test_strands_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    """Strands' agent spans repeat their calls' usage: runs count it once, priced once, and the
    chat spans show the conversation from the GenAI events."""
    truth = _post_capture(server, "strands")
    driver = truth["driver"]
    runs = _journeys_and_runs(server, driver)
    assert sum(r["llm_calls"] for r in runs) == driver["model_calls"]
    assert sum(r["tool_calls"] for r in runs) == driver["tool_executions"]
    _tokens_and_bill_equal_the_provider(runs, truth, "openai", "gpt-4o-mini")
    spans = _spans_of_first_run_with(server, runs, "tool_calls")
    answer = [s for s in spans if s["operation"] == "chat"][-1]
    assert answer["genai"]["input_messages"][0] == {"role": "system", "content": [{"text": "You are a support bot."}]}
    assert answer["genai"]["output_messages"] == [[{"text": "Your order A-1042 ships tomorrow. "}]]

def test_mastra_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    """Mastra's spans join the application's request spans (tracingOptions): runs, calls,
    the failed call, tokens and cost equal the truth."""
    truth = _post_capture(server, "mastra")
    driver = truth["driver"]
    runs = _journeys_and_runs(server, driver)
    _calls_equal_the_driver(runs, driver)
    _tokens_and_bill_equal_the_provider(runs, truth, "openai", "gpt-4o-mini")
    spans = _spans_of_first_run_with(server, runs, "tool_calls")
    calls = [s for s in spans if s["operation"] == "chat"]
    assert calls[-1]["genai"]["output_messages"][0]["parts"][0]["content"] == "Your order A-1042 ships tomorrow."


def test_langgraph_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    """A LangGraph agent graph under OpenInference: the graph, node and chain spans around each
    call add no tokens; runs, calls, the failed call, tool run, tokens (cached too) and cost
    equal the truth; the trace view shows the conversation and the tool's call."""
    truth = _post_capture(server, "langgraph")
    driver = truth["driver"]
    runs = _journeys_and_runs(server, driver)
    _calls_equal_the_driver(runs, driver)
    _tokens_and_bill_equal_the_provider(runs, truth, "openai", "gpt-4o-mini")
    assert sum(r["cached_input_tokens"] for r in runs) == 8
    spans = _spans_of_first_run_with(server, runs, "tool_calls")
    calls = [s for s in spans if s["operation"] == "chat"]
    assert [s["name"] for s in calls] == ["ChatOpenAI", "ChatOpenAI"]
    assert calls[0]["genai"]["input_messages"][1] == {"role": "user", "content": "where is my order A-1042"}
    assert calls[-1]["genai"]["output_messages"][0]["content"] == "Your order A-1042 ships tomorrow."
    tool = next(s for s in spans if s["operation"] == "execute_tool")
    assert (tool["tool_name"], tool["genai"]["tool_result"]) == ("lookup_order", {"orderId": "A-1042", "status": "shipped"})
    # The tool span sent only the argument's value; the view shows the arguments of the
    # model's tool call with the same call id, and what the span sent.
    asked = calls[0]["genai"]["output_messages"][0]["tool_calls"][0]
    assert tool["genai"]["tool_call_id"] == asked["id"]
    assert tool["genai"]["tool_arguments"] == asked["arguments"] == {"orderId": "A-1042"}
    assert tool["genai"]["tool_arguments_as_sent"] == truth["lost_by_instrumentation"]["tool_arguments_as_sent"]


def test_openai_agents_responses_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    """The Agents SDK on its default Responses API: calls, the failed call, tool run, tokens
    with the cached ones (which the chat-completions capture loses) and cost equal the
    provider's; the trace view shows the instructions, the conversation and the tool."""
    truth = _post_capture(server, "openai-agents-responses")
    driver = truth["driver"]
    runs = _journeys_and_runs(server, driver)
    _calls_equal_the_driver(runs, driver)
    _tokens_and_bill_equal_the_provider(runs, truth, "openai", truth["answered_model"]["gpt-4o-mini"])
    assert sum(r["cached_input_tokens"] for r in runs) == 8
    spans = _spans_of_first_run_with(server, runs, "tool_calls")
    calls = [s for s in spans if s["operation"] == "chat"]
    assert {s["response_model"] for s in calls} == {"gpt-4o-mini-2024-07-18"}
    assert calls[0]["genai"]["input_messages"][1] == {"role": "user", "content": "where is my order A-1042"}
    assert calls[-1]["genai"]["output_messages"][0]["content"] == "Your order A-1042 ships tomorrow."
    tool = next(s for s in spans if s["operation"] == "execute_tool")
    assert (tool["tool_name"], tool["genai"]["tool_arguments"]) == ("lookup_order", {"orderId": "A-1042"})


def test_langgraph_openllmetry_capture_ingests_with_its_truth(server: ServerProcess) -> None:
    """The same graph under OpenLLMetry, in two export requests (the streamed run's root in the
    second): runs, calls, tokens and cost equal the truth; no provider named after the
    framework; the tool shows its arguments and result, not LangChain's callback payloads."""
    truth = _post_capture(server, "langgraph-openllmetry")
    driver = truth["driver"]
    runs = _journeys_and_runs(server, driver)
    _calls_equal_the_driver(runs, driver)
    _tokens_and_bill_equal_the_provider(runs, truth, "openai", "gpt-4o-mini")
    spans = _spans_of_first_run_with(server, runs, "tool_calls")
    assert {s["provider"] for s in spans} == {None, "openai"}
    tool = next(s for s in spans if s["operation"] == "execute_tool")
    assert tool["genai"]["tool_arguments"] == {"orderId": "A-1042"}
    assert tool["genai"]["tool_result"] == {"orderId": "A-1042", "status": "shipped"}
    answer = [s for s in spans if s["operation"] == "chat"][-1]
    assert answer["genai"]["output_messages"][0]["parts"][0]["content"] == "Your order A-1042 ships tomorrow."
