"""Instrumentations aisre used to misread (issue 15): the Vercel AI SDK, provider ids with an
API suffix, Logfire log records, and one model call reported by two instrumentations."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aisre.derive.trace_view import genai_details
from aisre.normalize.conventions import canonical_provider
from aisre.normalize.prices import default_catalog
from aisre.normalize.redaction import ContentFilter
from aisre.normalize.spans import flatten
from aisre.receive.otlp_decode import parse_request

AI_SDK = Path(__file__).parents[1] / "data" / "captures" / "ai-sdk"
LOGFIRE = Path(__file__).parents[1] / "data" / "captures" / "logfire"
TWICE = Path(__file__).parents[1] / "data" / "captures" / "anthropic-twice"
PYDANTIC_AI = Path(__file__).parents[1] / "data" / "captures" / "pydantic-ai"
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
ROOT = bytes.fromhex("b7ad6b7169203331")
T0 = 1_790_000_000_000_000_000


def _ai_sdk(capture: Path = AI_SDK) -> tuple[pa.Table, pa.Table]:
    spans, traces = [], []
    for path in sorted((capture / "raw").glob("*.pb")):
        batch = flatten(parse_request(path.read_bytes(), "protobuf"), "t")
        assert batch.rejected == 0, batch.message()
        spans.append(batch.table)
        assert batch.traces is not None
        traces.append(batch.traces)
    return pa.concat_tables(spans), pa.concat_tables(traces)


def _sql(table: pa.Table, sql: str) -> list[tuple]:
    con = duckdb.connect()
    con.register("t", table)
    return con.sql(sql).fetchall()


def _value(v: object) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    return AnyValue(string_value=str(v))


def _span(span_id: str, parent: bytes = ROOT, start: int = T0, end: int = T0 + 900_000_000, **attrs: object) -> Span:
    return Span(
        trace_id=TRACE, span_id=bytes.fromhex(span_id), parent_span_id=parent, name="chat",
        start_time_unix_nano=start, end_time_unix_nano=end,
        attributes=[KeyValue(key=k, value=_value(v)) for k, v in attrs.items()],
    )


def _flatten(*scoped: tuple[str, list[Span]]) -> tuple[list[dict], dict]:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    root = rs.scope_spans.add()
    root.scope.name = "app"
    root.spans.append(Span(trace_id=TRACE, span_id=ROOT, name="POST /ask", start_time_unix_nano=T0,
                           end_time_unix_nano=T0 + 2_000_000_000,
                           attributes=[KeyValue(key="aisre.journey", value=AnyValue(string_value="ask"))]))
    for scope_name, spans in scoped:
        scope = rs.scope_spans.add()
        scope.scope.name = scope_name
        scope.spans.extend(spans)
    batch = flatten(request, "t")
    assert batch.rejected == 0, batch.message()
    assert batch.traces is not None
    return batch.table.to_pylist(), batch.traces.to_pylist()[0]


# --- Vercel AI SDK, real capture ------------------------------------------------------------


def test_ai_sdk_calls_are_the_do_spans_and_tokens_equal_the_provider() -> None:
    truth = json.loads((AI_SDK / "truth.json").read_text())
    spans, _ = _ai_sdk()
    rows = _sql(spans, """
        SELECT response_model, count(*), sum(input_tokens), coalesce(sum(output_tokens), 0),
               coalesce(sum(cached_input_tokens), 0)
        FROM t WHERE operation IN ('chat', 'embeddings') AND status != 'error' GROUP BY 1""")
    got = {r[0]: {"calls_ok": r[1], "input_tokens": r[2], "output_tokens": r[3], "cached_input_tokens": r[4]} for r in rows}
    assert got == truth["provider_truth_by_model"]
    # Every model call is a do* span, failed ones included; nothing else is a call.
    names = dict(_sql(spans, "SELECT name, count(*) FROM t WHERE operation IN ('chat', 'embeddings') GROUP BY 1"))
    assert names == {"ai.generateText.doGenerate": 11, "ai.streamText.doStream": 3,
                     "ai.embed.doEmbed": 8, "ai.embedMany.doEmbed": 2}
    assert sum(names.values()) == truth["driver"]["model_calls"] + truth["driver"]["embed_calls"]
    assert _sql(spans, "SELECT count(*) FROM t WHERE operation = 'chat' AND status = 'error'") == [(1,)]


def test_ai_sdk_outer_spans_do_not_double_count() -> None:
    truth = json.loads((AI_SDK / "truth.json").read_text())
    spans, traces = _ai_sdk()
    outer = _sql(spans, """
        SELECT operation, count(*), count(input_tokens), count(output_tokens), count(cost_usd) FROM t
        WHERE name IN ('ai.generateText', 'ai.streamText', 'ai.embed', 'ai.embedMany') GROUP BY 1""")
    assert outer == [("other", 21, 0, 0, 0)]
    assert truth["outer_spans_usage"]["input_tokens"] > 0  # they do carry usage: it is ignored
    provider = truth["provider_truth_by_model"]
    assert _sql(traces, "SELECT sum(input_tokens), sum(output_tokens), sum(cached_input_tokens) FROM t") == [(
        sum(m["input_tokens"] for m in provider.values()),
        sum(m["output_tokens"] for m in provider.values()),
        sum(m["cached_input_tokens"] for m in provider.values()),
    )]
    assert _sql(traces, "SELECT sum(llm_calls), sum(tool_calls) FROM t") == [
        (truth["driver"]["model_calls"] + truth["driver"]["embed_calls"], truth["driver"]["tool_executions"])]


def test_ai_sdk_provider_normalised_priced_and_tools_named() -> None:
    truth = json.loads((AI_SDK / "truth.json").read_text())
    spans, _ = _ai_sdk()
    assert _sql(spans, "SELECT DISTINCT provider FROM t WHERE provider IS NOT NULL") == [("openai",)]
    catalog = default_catalog()
    expected = 0.0
    for model, t in truth["provider_truth_by_model"].items():
        price, _ = catalog.lookup("openai", model, T0)
        assert price is not None
        expected += price.cost(t["input_tokens"], t["output_tokens"], t["cached_input_tokens"])
    assert _sql(spans, "SELECT sum(cost_usd) FROM t")[0][0] == pytest.approx(expected)
    assert _sql(spans, "SELECT tool_name, count(*) FROM t WHERE operation = 'execute_tool' GROUP BY 1") == [("lookup_order", 3)]
    # The raw provider id stays in the attributes.
    raw = {orjson.loads(a)["ai.model.provider"] for (a,) in _sql(spans, "SELECT attributes FROM t WHERE operation = 'chat'")}
    assert raw == {"openai.chat"}


def test_ai_sdk_content_shown_in_the_trace_view() -> None:
    spans, _ = _ai_sdk()
    rows = _sql(spans, "SELECT name, attributes FROM t WHERE name IN ('ai.generateText.doGenerate', 'ai.toolCall')")
    details = {name: genai_details(orjson.loads(attrs), []) for name, attrs in rows}
    chat = [genai_details(orjson.loads(a), []) for n, a in rows if n == "ai.generateText.doGenerate"]
    answers = [d for d in chat if d.get("output_messages") and d["output_messages"][0].get("role") == "assistant"]
    assert answers and answers[0]["input_messages"][0] == {"role": "system", "content": "You are a support bot."}
    calls = [d for d in chat if d.get("output_messages") and d["output_messages"][0].get("toolName")]
    assert calls[0]["output_messages"][0]["toolName"] == "lookup_order"
    assert details["ai.toolCall"]["tool_arguments"] == {"orderId": "A-1042"}
    assert details["ai.toolCall"]["tool_result"] == {"orderId": "A-1042", "status": "shipped"}


# --- provider names ---------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "canonical"), [
    ("openai.chat", "openai"), ("openai.responses", "openai"), ("openai.embedding", "openai"),
    ("anthropic.messages", "anthropic"), ("OpenAI", "openai"), ("google.generative-ai", "gcp.gemini"),
    ("google.vertex.chat", "gcp.vertex_ai"), ("vertex_ai", "gcp.vertex_ai"), ("amazon-bedrock", "aws.bedrock"),
    ("az.ai.openai", "azure.ai.openai"), ("mistral.chat", "mistral_ai"), ("mistralai", "mistral_ai"),
    ("cohere.chat", "cohere"), ("xai.chat", "x_ai"), ("gcp.gemini", "gcp.gemini"), ("aws.bedrock", "aws.bedrock"),
    ("ibm.watsonx.ai", "ibm.watsonx.ai"), ("Together.chat", "Together"), ("my-gateway", "my-gateway"),
])
def test_provider_names_are_canonical(raw: str, canonical: str) -> None:
    assert canonical_provider(raw) == canonical


def test_provider_suffix_normalised_and_priced() -> None:
    rows, run = _flatten(("ai", [_span("1111111111111111", **{
        "ai.operationId": "ai.generateText.doGenerate", "ai.model.provider": "anthropic.messages",
        "gen_ai.system": "anthropic.messages", "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200,
    })]))
    call = rows[1]
    assert (call["operation"], call["provider"]) == ("chat", "anthropic")
    assert call["cost_usd"] == pytest.approx((1000 * 3.00 + 200 * 15.00) / 1e6)
    assert orjson.loads(call["attributes"])["gen_ai.system"] == "anthropic.messages"
    assert (run["llm_calls"], run["input_tokens"]) == (1, 1000)


# --- one call reported twice ----------------------------------------------------------------


def test_same_response_id_counts_one_call_with_the_richer_data() -> None:
    sdk = _span("2222222222222222", **{
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.id": "msg_01",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200,
    })
    library = _span("3333333333333333", start=T0 + 300_000, **{
        "gen_ai.operation.name": "chat", "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.response.model": "claude-sonnet-4-5-20250929", "gen_ai.response.id": "msg_01",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200,
        "gen_ai.usage.cache_read.input_tokens": 600, "gen_ai.input.messages": "[]",
    })
    rows, run = _flatten(("anthropic", [sdk]), ("opentelemetry.instrumentation.anthropic", [library]))
    by_id = {r["span_id"]: r for r in rows}
    kept, gone = by_id["3333333333333333"], by_id["2222222222222222"]
    assert (kept["operation"], kept["input_tokens"], kept["output_tokens"], kept["cached_input_tokens"]) == ("chat", 1000, 200, 600)
    assert kept["cost_usd"] == pytest.approx((400 * 3.00 + 600 * 0.30 + 200 * 15.00) / 1e6)
    assert (gone["operation"], gone["input_tokens"], gone["cost_usd"]) == ("other", None, None)
    assert orjson.loads(gone["attributes"])["aisre.duplicate_of"] == "3333333333333333"
    assert (run["llm_calls"], run["input_tokens"], run["output_tokens"]) == (1, 1000, 200)
    assert run["cost_usd"] == pytest.approx(kept["cost_usd"])


def _ok_calls_by_model(spans: object) -> dict[str, dict[str, int]]:
    """Successful chat calls and their tokens per response model, in truth.json's shape."""
    rows = _sql(spans, """
        SELECT response_model, count(*), sum(input_tokens), sum(output_tokens), coalesce(sum(cached_input_tokens), 0)
        FROM t WHERE operation = 'chat' AND status != 'error' GROUP BY 1""")
    return {r[0]: {"calls_ok": r[1], "input_tokens": r[2], "output_tokens": r[3], "cached_input_tokens": r[4]}
            for r in rows}


def test_capture_of_calls_traced_twice_counts_each_once() -> None:
    """The anthropic SDK's own spans beside OpenLLMetry's: same response id (and, for the
    failed call, no id but the same model, status and start)."""
    truth = json.loads((TWICE / "truth.json").read_text())
    spans, traces = _ai_sdk(TWICE)
    assert _ok_calls_by_model(spans) == truth["provider_truth_by_model"]
    provider = truth["provider_truth_by_model"]
    assert _sql(traces, "SELECT sum(llm_calls), sum(llm_errors), sum(input_tokens), sum(output_tokens) FROM t") == [(
        truth["driver"]["model_calls"], 1,
        sum(m["input_tokens"] for m in provider.values()), sum(m["output_tokens"] for m in provider.values()),
    )]
    twins = _sql(spans, "SELECT count(*) FROM t WHERE attributes LIKE '%aisre.duplicate_of%'")
    assert twins == [(truth["driver"]["model_calls"],)]
    # Two spans per call reached aisre: every second one is kept, visible, and not counted.
    assert _sql(spans, "SELECT count(*) FROM t WHERE name IN ('anthropic.chat', 'anthropic.messages.create')") == [
        (2 * truth["driver"]["model_calls"],)]


def test_pydantic_ai_capture_equals_its_truth() -> None:
    truth = json.loads((PYDANTIC_AI / "truth.json").read_text())
    spans, traces = _ai_sdk(PYDANTIC_AI)
    assert _ok_calls_by_model(spans) == truth["provider_truth_by_model"]
    driver = truth["driver"]
    assert _sql(traces, "SELECT sum(llm_calls), sum(llm_errors), sum(tool_calls), sum(agent_steps) FROM t") == [
        (driver["model_calls"], 1, driver["tool_executions"], sum(driver["journeys"].values()))]
    # The failed call's HTTP status is read from "status_code: 500, model_name: …".
    assert _sql(spans, "SELECT http_status FROM t WHERE operation = 'chat' AND status = 'error'") == [(500,)]


def test_same_request_seen_by_two_instrumentations_without_ids_counts_once() -> None:
    outer = _span("4444444444444444", **{
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 9,
    })
    inner = _span("5555555555555555", parent=bytes.fromhex("4444444444444444"), start=T0 + 2_000_000, **{
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 9,
    })
    # Two real calls with equal usage in one scope are two calls, as are calls with distinct ids.
    again = _span("6666666666666666", start=T0 + 1_000_000, **{
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 9,
    })
    _, run = _flatten(("a", [outer, again]), ("b", [inner]))
    assert (run["llm_calls"], run["input_tokens"]) == (2, 100)
    first = _span("7777777777777777", **{
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.id": "c1",
        "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 9,
    })
    second = _span("8888888888888888", **{
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.id": "c2",
        "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 9,
    })
    _, run = _flatten(("a", [first]), ("b", [second]))
    assert (run["llm_calls"], run["input_tokens"]) == (2, 100)


# --- Logfire ------------------------------------------------------------------------------------


def test_logfire_capture_counts_each_call_once_with_the_provider_usage() -> None:
    truth = json.loads((LOGFIRE / "truth.json").read_text())
    spans, traces = _ai_sdk(LOGFIRE)
    rows = _sql(spans, """
        SELECT response_model, count(*), sum(input_tokens), coalesce(sum(output_tokens), 0),
               coalesce(sum(cached_input_tokens), 0)
        FROM t WHERE operation IN ('chat', 'embeddings') AND status != 'error' GROUP BY 1""")
    got = {r[0]: {"calls_ok": r[1], "input_tokens": r[2], "output_tokens": r[3], "cached_input_tokens": r[4]} for r in rows}
    assert got == truth["provider_truth_by_model"]
    driver = truth["driver"]
    logs = _sql(spans, "SELECT operation, count(*), count(input_tokens), count(cost_usd) FROM t WHERE name LIKE 'streaming response%' GROUP BY 1")
    assert logs == [("other", driver["log_records"], 0, 0)]
    provider = truth["provider_truth_by_model"]
    assert _sql(traces, "SELECT sum(llm_calls), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens) FROM t") == [(
        driver["model_calls"] + driver["embed_calls"],
        sum(m["input_tokens"] for m in provider.values()),
        sum(m["output_tokens"] for m in provider.values()),
        sum(m["cached_input_tokens"] for m in provider.values()),
    )]
    # The streamed calls' usage moved onto their request spans, and is priced there.
    streamed = _sql(spans, "SELECT count(*), sum(cost_usd) FROM t WHERE operation = 'chat' AND response_model = 'gpt-4.1'")
    price = default_catalog().lookup("openai", "gpt-4.1", T0)[0]
    assert price is not None
    gpt41 = provider["gpt-4.1"]
    assert streamed[0][0] == 3
    assert streamed[0][1] == pytest.approx(price.cost(gpt41["input_tokens"], gpt41["output_tokens"], gpt41["cached_input_tokens"]))


def test_logfire_log_record_is_not_a_second_call() -> None:
    request = _span("9999999999999999", **{
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "logfire.span_type": "span", "logfire.msg": "Chat Completion with 'gpt-4o-mini'",
    })
    log = _span("aaaaaaaaaaaaaaaa", start=T0 + 900_000_000, end=T0 + 900_000_000, **{
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30,
        "logfire.span_type": "log", "logfire.msg": "streaming response from 'gpt-4o-mini' took 0.90s",
    })
    rows, run = _flatten(("logfire.openai", [request, log]))
    by_id = {r["span_id"]: r for r in rows}
    assert by_id["aaaaaaaaaaaaaaaa"]["operation"] == "other"
    assert by_id["aaaaaaaaaaaaaaaa"]["input_tokens"] is None
    call = by_id["9999999999999999"]
    assert (call["operation"], call["input_tokens"], call["output_tokens"]) == ("chat", 120, 30)
    assert call["cost_usd"] == pytest.approx((120 * 0.15 + 30 * 0.60) / 1e6)
    assert (run["llm_calls"], run["input_tokens"], run["output_tokens"]) == (1, 120, 30)
    # Without usage on it, a log record changes nothing but is still no call.
    bare = _span("bbbbbbbbbbbbbbbb", start=T0 + 900_000_000, end=T0 + 900_000_000, **{
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "logfire.span_type": "log",
    })
    _, run = _flatten(("logfire.openai", [request, bare]))
    assert (run["llm_calls"], run["input_tokens"]) == (1, 0)


@pytest.mark.parametrize("capture", [AI_SDK, LOGFIRE])
def test_content_mode_drop_removes_ai_sdk_and_logfire_content(capture: Path) -> None:
    """Prompts and completions under the AI SDK and Logfire names obey content_capture=drop."""
    kept = 0
    for path in sorted((capture / "raw").glob("*.pb")):
        batch = flatten(parse_request(path.read_bytes(), "protobuf"), "t", content=ContentFilter("drop", None))
        assert batch.rejected == 0
        for attrs in batch.table.column("attributes").to_pylist():
            present = orjson.loads(attrs).keys() & {
                "ai.prompt", "ai.prompt.messages", "ai.response.text", "ai.response.toolCalls", "ai.toolCall.args",
                "ai.toolCall.result", "ai.values", "ai.value", "ai.embeddings", "gen_ai.input.messages",
                "gen_ai.output.messages", "request_data",
            }
            kept += len(present)
        assert batch.content.dropped > 0
    assert kept == 0


# --- google-genai ----------------------------------------------------------------------------

GOOGLE_GENAI = Path(__file__).parents[1] / "data" / "captures" / "google-genai"


def _reported_by_model(truth: dict) -> dict[str, dict[str, int]]:
    """The provider's truth per model less the calls the instrumentation hides (truth.json's
    hidden_by_instrumentation), in truth.json's shape."""
    out = {model: dict(t) for model, t in truth["provider_truth_by_model"].items()}
    for call in truth.get("hidden_by_instrumentation", []):
        t = out[call["model"]]
        t["calls_ok"] -= 1
        for key in ("input_tokens", "output_tokens", "cached_input_tokens"):
            t[key] -= call[key]
    return out


def test_google_genai_capture_equals_its_truth() -> None:
    """generate_content → chat, provider gemini → gcp.gemini, cached tokens, the stream's
    usage, the embedding's tokens; the automatic-function-calling loop is one span with the
    last response's usage (the call it hides is listed in truth.json)."""
    truth = json.loads((GOOGLE_GENAI / "truth.json").read_text())
    spans, traces = _ai_sdk(GOOGLE_GENAI)
    rows = _sql(spans, """
        SELECT request_model, count(*), sum(input_tokens), coalesce(sum(output_tokens), 0),
               coalesce(sum(cached_input_tokens), 0)
        FROM t WHERE operation IN ('chat', 'embeddings') AND status != 'error' GROUP BY 1""")
    got = {r[0]: {"calls_ok": r[1], "input_tokens": r[2], "output_tokens": r[3], "cached_input_tokens": r[4]} for r in rows}
    assert got == _reported_by_model(truth)
    assert len(truth["hidden_by_instrumentation"]) == 1
    driver = truth["driver"]
    hidden = len(truth["hidden_by_instrumentation"])
    assert _sql(traces, "SELECT sum(llm_calls), sum(llm_errors), sum(tool_calls) FROM t") == [
        (driver["model_calls"] + driver["embed_calls"] - hidden, 1, driver["tool_executions"])]
    assert _sql(spans, "SELECT DISTINCT provider FROM t WHERE provider IS NOT NULL") == [("gcp.gemini",)]
    # The failed call's error.type is its HTTP status.
    assert _sql(spans, "SELECT http_status, error_type FROM t WHERE operation = 'chat' AND status = 'error'") == [(500, "500")]
    # Priced on the answering model ("gemini-2.5-flash-001"), cached tokens at the cached rate.
    catalog = default_catalog()
    expected = 0.0
    for model, t in _reported_by_model(truth).items():
        price = catalog.lookup("gcp.gemini", model, T0)[0]
        assert price is not None
        expected += price.cost(t["input_tokens"], t["output_tokens"], t["cached_input_tokens"])
    assert _sql(spans, "SELECT sum(cost_usd) FROM t")[0][0] == pytest.approx(expected)
    rows = _sql(spans, "SELECT name, attributes FROM t WHERE name IN ('execute_tool lookup_order')")
    tool = genai_details(orjson.loads(rows[0][1]), [])
    assert tool["tool_arguments"] == {"orderId": "A-1042"}
    assert tool["tool_result"] == {"orderId": "A-1042", "status": "shipped"}


# --- Anthropic prompt caching ---------------------------------------------------------------

ANTHROPIC_CACHE = Path(__file__).parents[1] / "data" / "captures" / "anthropic-cache"


def _anthropic_cost(model: str, calls: list[dict]) -> float:
    """Anthropic's own bill for ``calls`` (provider_calls rows): uncached input, cache reads
    and cache writes each at their price."""
    price = default_catalog().lookup("anthropic", model, T0)[0]
    assert price is not None and price.cache_write_input == pytest.approx(1.25 * price.input)
    total = 0.0
    for c in calls:
        if c["status"] == 200:
            write = c.get("cache_creation_input_tokens", 0)
            fresh = c["input_tokens"] - c["cached_input_tokens"] - write
            total += (fresh * price.input + c["cached_input_tokens"] * price.cached_input
                      + write * price.cache_write_input + c["output_tokens"] * price.output) / 1e6
    return total


def test_anthropic_cache_capture_counts_cached_input_inside_input() -> None:
    """Logfire's Anthropic spans: input_tokens = Anthropic's input_tokens + cache reads + cache
    writes (as OTel asks), cache reads in cached_input_tokens, writes priced at 1.25x input,
    the streamed call's usage moved from its log record; cost equals Anthropic's bill."""
    truth = json.loads((ANTHROPIC_CACHE / "truth.json").read_text())
    spans, traces = _ai_sdk(ANTHROPIC_CACHE)
    provider = {m: {k: v for k, v in t.items() if k != "cache_creation_input_tokens"}
                for m, t in truth["provider_truth_by_model"].items()}
    assert _ok_calls_by_model(spans) == provider
    assert provider["claude-sonnet-4-5"]["cached_input_tokens"] == 90
    driver = truth["driver"]
    ((calls, errors, cost),) = _sql(traces, "SELECT sum(llm_calls), sum(llm_errors), sum(cost_usd) FROM t")
    assert (calls, errors) == (driver["model_calls"], 1)
    assert cost == pytest.approx(_anthropic_cost("claude-sonnet-4-5", truth["provider_calls"]))
    # Each span sent the total already: nothing was adjusted.
    assert _sql(spans, "SELECT count(*) FROM t WHERE attributes LIKE '%aisre.input_tokens_as_sent%'") == [(0,)]


@pytest.mark.parametrize(("cache_key", "write_key"), [
    ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens"),
    ("gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.cache_creation_input_tokens"),
    ("llm.token_count.prompt_details.cache_read", "llm.token_count.prompt_details.cache_write"),
])
def test_anthropic_input_tokens_without_the_cache_are_completed(cache_key: str, write_key: str) -> None:
    """An instrumentation that passes Anthropic's input_tokens on unchanged (cache reads and
    writes left out) is told by an input count below the cache counts: aisre adds them."""
    raw = _span("cccccccccccccccc", **{
        "gen_ai.operation.name": "chat", "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 100, cache_key: 5000, write_key: 400,
    })
    rows, run = _flatten(("x", [raw]))
    call = rows[1]
    assert (call["input_tokens"], call["cached_input_tokens"]) == (5412, 5000)
    assert orjson.loads(call["attributes"])["aisre.input_tokens_as_sent"] == 12
    assert call["cost_usd"] == pytest.approx((12 * 3.00 + 5000 * 0.30 + 400 * 3.75 + 100 * 15.00) / 1e6)
    assert (run["input_tokens"], run["cached_input_tokens"]) == (5412, 5000)
    # OpenAI-style counts (cached inside input) are left as sent.
    inclusive = _span("dddddddddddddddd", **{
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 10, cache_key: 1024,
    })
    rows, _ = _flatten(("x", [inclusive]))
    assert (rows[1]["input_tokens"], rows[1]["cached_input_tokens"]) == (1200, 1024)
    assert "aisre.input_tokens_as_sent" not in orjson.loads(rows[1]["attributes"])


# --- OpenAI Agents SDK (OpenInference) ------------------------------------------------------

OPENAI_AGENTS = Path(__file__).parents[1] / "data" / "captures" / "openai-agents"


def test_openai_agents_capture_equals_its_truth() -> None:
    """generation spans are the calls; the handoff is an agent step, not a tool call; the
    tool's arguments and result are its input and output; cached tokens never reach the
    spans of chat-completions models (truth.json's lost_by_instrumentation)."""
    truth = json.loads((OPENAI_AGENTS / "truth.json").read_text())
    spans, traces = _ai_sdk(OPENAI_AGENTS)
    expected = {m: {**t, "cached_input_tokens": t["cached_input_tokens"] - truth["lost_by_instrumentation"]["cached_input_tokens"]}
                for m, t in truth["provider_truth_by_model"].items()}
    assert _ok_calls_by_model(spans) == expected
    driver = truth["driver"]
    assert _sql(traces, "SELECT sum(llm_calls), sum(llm_errors), sum(tool_calls) FROM t") == [
        (driver["model_calls"], 1, driver["tool_executions"])]
    assert _sql(spans, "SELECT operation, tool_name FROM t WHERE name LIKE 'handoff to %'") == [("agent", None)] * driver["handoffs"]
    assert _sql(spans, "SELECT DISTINCT provider FROM t WHERE operation = 'chat'") == [("openai",)]
    assert _sql(spans, "SELECT http_status FROM t WHERE operation = 'chat' AND status = 'error'") == [(500,)]
    rows = dict(_sql(spans, "SELECT name, attributes FROM t WHERE name = 'lookup_order'"))
    tool = genai_details(orjson.loads(rows["lookup_order"]), [])
    assert tool["tool_arguments"] == {"orderId": "A-1042"}
    assert tool["tool_result"] == {"orderId": "A-1042", "status": "shipped"}
    assert tool["tool_definitions"][0]["parameters"]["required"] == ["orderId"]
    asks = [genai_details(orjson.loads(a), []) for (a,) in _sql(spans, "SELECT attributes FROM t WHERE name = 'generation'")]
    handoffs = [d for d in asks if d.get("output_messages") and d["output_messages"][0].get("tool_calls")]
    assert {d["output_messages"][0]["tool_calls"][0]["name"] for d in handoffs} == {"transfer_to_orders_agent", "lookup_order"}
    lookup = next(d for d in handoffs if d["output_messages"][0]["tool_calls"][0]["name"] == "lookup_order")
    assert lookup["output_messages"][0]["tool_calls"][0]["arguments"] == {"orderId": "A-1042"}


# --- LiteLLM's OTel callback ----------------------------------------------------------------

LITELLM = Path(__file__).parents[1] / "data" / "captures" / "litellm"


def test_litellm_capture_equals_its_truth_and_its_own_cost() -> None:
    """litellm_request spans are the calls (raw_gen_ai_request children are not); cached and
    cache-write tokens come from metadata.usage_object; every call's cost equals the one
    LiteLLM computed itself (gen_ai.cost.total_cost)."""
    truth = json.loads((LITELLM / "truth.json").read_text())
    spans, traces = _ai_sdk(LITELLM)
    rows = _sql(spans, """
        SELECT response_model, count(*), sum(input_tokens), sum(output_tokens), coalesce(sum(cached_input_tokens), 0)
        FROM t WHERE operation IN ('chat', 'embeddings') AND status != 'error' GROUP BY 1""")
    got = {r[0]: {"calls_ok": r[1], "input_tokens": r[2], "output_tokens": r[3], "cached_input_tokens": r[4]} for r in rows}
    provider = {m: {k: v for k, v in t.items() if k != "cache_creation_input_tokens"}
                for m, t in truth["provider_truth_by_model"].items()}
    assert got == provider
    driver = truth["driver"]
    assert _sql(traces, "SELECT sum(llm_calls), sum(llm_errors) FROM t") == [(driver["model_calls"] + driver["embed_calls"], 1)]
    assert _sql(spans, "SELECT count(*) FROM t WHERE name = 'raw_gen_ai_request' AND operation != 'other'") == [(0,)]
    assert dict(_sql(spans, "SELECT operation, provider FROM t WHERE operation = 'embeddings'")) == {"embeddings": "openai"}
    priced = _sql(spans, "SELECT cost_usd, attributes FROM t WHERE operation IN ('chat', 'embeddings') AND status != 'error'")
    for cost, attrs in priced:
        assert cost == pytest.approx(orjson.loads(attrs)["gen_ai.cost.total_cost"])
    assert _sql(spans, "SELECT http_status, error_type FROM t WHERE operation = 'chat' AND status = 'error'") == [(500, "InternalServerError")]


# --- Strands Agents (native OTel) ------------------------------------------------------------

STRANDS = Path(__file__).parents[1] / "data" / "captures" / "strands"


def test_strands_capture_counts_calls_not_the_agent_sums() -> None:
    """chat spans are the calls; the invoke_agent span repeats their summed usage and is not
    counted; gen_ai.system=strands-agents is the framework, not a provider; the tool span's
    arguments and result come from its events."""
    truth = json.loads((STRANDS / "truth.json").read_text())
    spans, traces = _ai_sdk(STRANDS)
    assert _ok_calls_by_model(spans) == truth["provider_truth_by_model"]
    provider = truth["provider_truth_by_model"]["gpt-4o-mini"]
    driver = truth["driver"]
    assert _sql(traces, "SELECT sum(llm_calls), sum(llm_errors), sum(tool_calls), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens) FROM t") == [
        (driver["model_calls"], 1, driver["tool_executions"], provider["input_tokens"], provider["output_tokens"],
         provider["cached_input_tokens"])]
    agents = _sql(spans, "SELECT count(*), count(input_tokens), sum(CASE WHEN attributes LIKE '%gen_ai.usage.input_tokens%' THEN 1 END) FROM t WHERE operation = 'agent'")
    assert agents == [(sum(driver["journeys"].values()), 0, sum(driver["journeys"].values()) - 1)]  # the failed run's has none
    assert _sql(spans, "SELECT count(*) FROM t WHERE provider IS NOT NULL") == [(0,)]
    assert _sql(spans, "SELECT http_status FROM t WHERE operation = 'chat' AND status = 'error'") == [(500,)]
    (attrs, events), = _sql(spans, "SELECT attributes, events FROM t WHERE operation = 'execute_tool'")
    tool = genai_details(orjson.loads(attrs), orjson.loads(events))
    assert tool["tool_arguments"] == {"orderId": "A-1042"}
    assert tool["tool_result"] == [{"json": {"orderId": "A-1042", "status": "shipped"}}]
    assert "input_messages" not in tool and "output_messages" not in tool


# --- Mastra (AI tracing to OTel) --------------------------------------------------------------

MASTRA = Path(__file__).parents[1] / "data" / "captures" / "mastra"


def test_mastra_capture_equals_its_truth() -> None:
    """`chat {model}` (model_inference) spans are the calls, provider openai.chat → openai;
    model_generation, agent_step and model_chunk spans are not; the failed call, whose span
    Mastra leaves OK, is read as failed from finish_reasons ["error"]."""
    truth = json.loads((MASTRA / "truth.json").read_text())
    spans, traces = _ai_sdk(MASTRA)
    assert _ok_calls_by_model(spans) == truth["provider_truth_by_model"]
    driver = truth["driver"]
    assert _sql(traces, "SELECT sum(llm_calls), sum(llm_errors), sum(tool_calls) FROM t") == [
        (driver["model_calls"], 1, driver["tool_executions"])]
    assert _sql(spans, "SELECT DISTINCT provider FROM t WHERE operation = 'chat'") == [("openai",)]
    assert _sql(spans, """SELECT DISTINCT operation, count(input_tokens) FROM t
        WHERE name LIKE 'model_generation%' OR name LIKE 'agent_step%' OR name LIKE 'model_chunk%' GROUP BY 1""") == [("other", 0)]
    (attrs,), = _sql(spans, "SELECT attributes FROM t WHERE operation = 'execute_tool'")
    tool = genai_details(orjson.loads(attrs), [])
    assert tool["tool_result"] == {"orderId": "A-1042", "status": "shipped"}
    # The prompt of a call is on its agent_step parent (the chat span has only the output).
    steps = [genai_details(orjson.loads(a), []) for (a,) in _sql(spans, "SELECT attributes FROM t WHERE name = 'agent_step support'")]
    assert sum({"role": "user", "content": "where is my order A-1042"} in s["input_messages"] for s in steps) == 2


@pytest.mark.parametrize("capture", [LITELLM, MASTRA])
def test_content_mode_drop_removes_litellm_and_mastra_content(capture: Path) -> None:
    """LiteLLM's raw provider payload (llm.<provider>.messages …) and Mastra's span input and
    output (mastra.<span>.input/output, mastra.metadata.body) are content; llm.system and the
    token counts are not."""
    for path in sorted((capture / "raw").glob("*.pb")):
        batch = flatten(parse_request(path.read_bytes(), "protobuf"), "t", content=ContentFilter("drop", None))
        assert batch.rejected == 0
        for attrs in batch.table.column("attributes").to_pylist():
            keys = orjson.loads(attrs).keys()
            leaves = {k for k in keys if k.count(".") == 2 and k.split(".")[0] in ("llm", "mastra")
                      and k.split(".")[2] in ("messages", "choices", "content", "system", "input", "output")}
            assert leaves == set() and "mastra.metadata.body" not in keys and "gen_ai.input.messages" not in keys
    from aisre.normalize.redaction import is_content_key
    assert not any(is_content_key(k) for k in ("llm.system", "llm.token_count.prompt", "llm.openai.usage", "mastra.span.type"))


def test_stream_usage_moved_from_a_logfire_record_keeps_the_cache_write_price() -> None:
    """A streamed Anthropic call under Logfire: the usage, cache writes included, is on the log
    record; moved to the call it is priced with the writes at cache_write_input."""
    request = _span("eeeeeeeeeeeeeeee", **{
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5",
        "logfire.span_type": "span",
    })
    log = _span("ffffffffffffffff", start=T0 + 900_000_000, end=T0 + 900_000_000, **{
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 1039, "gen_ai.usage.output_tokens": 7,
        "gen_ai.usage.cache_creation.input_tokens": 1030, "logfire.span_type": "log",
    })
    rows, run = _flatten(("logfire.anthropic", [request, log]))
    call = next(r for r in rows if r["span_id"] == "eeeeeeeeeeeeeeee")
    assert (call["input_tokens"], call["cached_input_tokens"]) == (1039, None)
    assert call["cost_usd"] == pytest.approx((9 * 3.00 + 1030 * 3.75 + 7 * 15.00) / 1e6)
    assert run["cost_usd"] == pytest.approx(call["cost_usd"])


# --- LangGraph (OpenInference's LangChain instrumentation) -------------------------------------

LANGGRAPH = Path(__file__).parents[1] / "data" / "captures" / "langgraph"


def test_langgraph_capture_counts_the_model_runs_not_the_chains() -> None:
    """ChatOpenAI (LLM) spans are the calls, cached tokens included; the graph, node, chain and
    edge spans carry no usage and are not counted; the failed call is read as HTTP 500; the
    tool's result is its ToolMessage's content and its arguments what the span sent (the
    value only: truth.json's lost_by_instrumentation)."""
    truth = json.loads((LANGGRAPH / "truth.json").read_text())
    spans, traces = _ai_sdk(LANGGRAPH)
    assert _ok_calls_by_model(spans) == truth["provider_truth_by_model"]
    provider = truth["provider_truth_by_model"]["gpt-4o-mini"]
    driver = truth["driver"]
    assert _sql(traces, "SELECT sum(llm_calls), sum(llm_errors), sum(tool_calls), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens) FROM t") == [
        (driver["model_calls"], 1, driver["tool_executions"], provider["input_tokens"], provider["output_tokens"],
         provider["cached_input_tokens"])]
    assert _sql(spans, "SELECT DISTINCT name FROM t WHERE operation = 'chat'") == [("ChatOpenAI",)]
    assert _sql(spans, "SELECT count(*) FROM t WHERE operation != 'chat' AND (input_tokens IS NOT NULL OR cost_usd IS NOT NULL)") == [(0,)]
    assert _sql(spans, "SELECT DISTINCT provider FROM t WHERE operation = 'chat'") == [("openai",)]
    assert _sql(spans, "SELECT http_status FROM t WHERE operation = 'chat' AND status = 'error'") == [(500,)]
    expected = default_catalog().lookup("openai", "gpt-4o-mini", T0)[0]
    assert expected is not None
    bill = sum(expected.cost(c["input_tokens"], c["output_tokens"], c["cached_input_tokens"])
               for c in truth["provider_calls"] if c["status"] == 200)
    assert _sql(traces, "SELECT sum(cost_usd) FROM t")[0][0] == pytest.approx(bill)
    (attrs,), = _sql(spans, "SELECT attributes FROM t WHERE operation = 'execute_tool'")
    tool = genai_details(orjson.loads(attrs), [])
    assert tool["tool_arguments"] == truth["lost_by_instrumentation"]["tool_arguments_as_sent"]
    assert tool["tool_result"] == {"orderId": "A-1042", "status": "shipped"}
    calls = [genai_details(orjson.loads(a), []) for (a,) in _sql(spans, "SELECT attributes FROM t WHERE name = 'ChatOpenAI' ORDER BY start_ns")]
    asked = next(c for c in calls if c.get("output_messages") and c["output_messages"][0].get("tool_calls"))
    assert asked["output_messages"][0]["tool_calls"][0] == {"id": tool["tool_call_id"], "name": "lookup_order",
                                                           "arguments": {"orderId": "A-1042"}}
    answer = next(c for c in calls if c["input_messages"][-1]["role"] == "tool")
    assert answer["output_messages"][0]["content"] == "Your order A-1042 ships tomorrow."


# --- OpenAI Agents SDK on the Responses API (OpenInference) -----------------------------------

OPENAI_AGENTS_RESPONSES = Path(__file__).parents[1] / "data" / "captures" / "openai-agents-responses"


def test_openai_agents_responses_capture_equals_its_truth() -> None:
    """On the Responses API the SDK's response spans are the calls and carry the cached tokens
    (unlike chat-completions models) and the answering model; the streamed run's usage is the
    response.completed one; the failed call has no model (truth.json's lost_by_instrumentation)."""
    truth = json.loads((OPENAI_AGENTS_RESPONSES / "truth.json").read_text())
    spans, traces = _ai_sdk(OPENAI_AGENTS_RESPONSES)
    answered = truth["answered_model"]
    assert _ok_calls_by_model(spans) == {answered[m]: t for m, t in truth["provider_truth_by_model"].items()}
    assert truth["provider_truth_by_model"]["gpt-4o-mini"]["cached_input_tokens"] == 8
    driver = truth["driver"]
    assert truth["provider_status_counts"] == {"responses 200": driver["model_calls"] - 1, "responses 500": 1}
    assert _sql(traces, "SELECT sum(llm_calls), sum(llm_errors), sum(tool_calls) FROM t") == [
        (driver["model_calls"], 1, driver["tool_executions"])]
    assert _sql(spans, "SELECT DISTINCT name, provider FROM t WHERE operation = 'chat'") == [("response", "openai")]
    assert _sql(spans, "SELECT operation, tool_name FROM t WHERE name LIKE 'handoff to %'") == [("agent", None)] * driver["handoffs"]
    assert _sql(spans, "SELECT http_status, request_model, response_model FROM t WHERE operation = 'chat' AND status = 'error'") == [(500, None, None)]
    assert truth["lost_by_instrumentation"]["failed_call"] == ["model", "input messages"]
    assert _sql(spans, "SELECT count(*) FROM t WHERE operation != 'chat' AND input_tokens IS NOT NULL") == [(0,)]
    price = default_catalog().lookup("openai", "gpt-4o-mini-2024-07-18", T0)[0]
    assert price is not None
    bill = sum(price.cost(c["input_tokens"], c["output_tokens"], c["cached_input_tokens"])
               for c in truth["provider_calls"] if c["status"] == 200)
    assert _sql(traces, "SELECT sum(cost_usd) FROM t")[0][0] == pytest.approx(bill)
    calls = [genai_details(orjson.loads(a), []) for (a,) in _sql(spans, "SELECT attributes FROM t WHERE name = 'response' ORDER BY start_ns")]
    lookup = next(c for c in calls if c.get("output_messages") and c["output_messages"][0].get("tool_calls", [{}])[0].get("name") == "lookup_order")
    assert lookup["output_messages"][0]["tool_calls"][0]["arguments"] == {"orderId": "A-1042"}
    assert lookup["input_messages"][0] == {"role": "system", "content": "You answer questions about orders."}
    answer = next(c for c in calls if c.get("output_messages") and c["output_messages"][0].get("content") == "Your order A-1042 ships tomorrow.")
    assert answer["input_messages"][-1]["role"] == "tool"
    (attrs,), = _sql(spans, "SELECT attributes FROM t WHERE operation = 'execute_tool'")
    tool = genai_details(orjson.loads(attrs), [])
    assert (tool["tool_arguments"], tool["tool_result"]) == ({"orderId": "A-1042"}, {"orderId": "A-1042", "status": "shipped"})


LANGGRAPH_OPENLLMETRY = Path(__file__).parents[1] / "data" / "captures" / "langgraph-openllmetry"


def test_langgraph_under_openllmetry_counts_the_calls_and_names_no_framework_provider() -> None:
    """OpenLLMetry's LangChain spans: ChatOpenAI.chat spans are the calls; the graph, workflow
    and execute_task spans carry no usage and their gen_ai.provider.name "langgraph" is the
    framework, stored as no provider; the tool's callback payloads read as its arguments and
    the ToolMessage's content."""
    truth = json.loads((LANGGRAPH_OPENLLMETRY / "truth.json").read_text())
    spans, traces = _ai_sdk(LANGGRAPH_OPENLLMETRY)
    assert _ok_calls_by_model(spans) == truth["provider_truth_by_model"]
    provider = truth["provider_truth_by_model"]["gpt-4o-mini"]
    driver = truth["driver"]
    assert _sql(traces, "SELECT sum(llm_calls), sum(llm_errors), sum(tool_calls), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens) FROM t") == [
        (driver["model_calls"], 1, driver["tool_executions"], provider["input_tokens"], provider["output_tokens"],
         provider["cached_input_tokens"])]
    assert _sql(spans, "SELECT DISTINCT provider FROM t WHERE provider IS NOT NULL") == [("openai",)]
    assert _sql(spans, "SELECT count(*) FROM t WHERE attributes LIKE '%\"gen_ai.provider.name\":\"langgraph\"%'")[0][0] > 0
    assert _sql(spans, "SELECT count(*) FROM t WHERE operation != 'chat' AND input_tokens IS NOT NULL") == [(0,)]
    assert _sql(spans, "SELECT http_status, error_type FROM t WHERE operation = 'chat' AND status = 'error'") == [(500, "OpenAIAPIError")]
    (attrs,), = _sql(spans, "SELECT attributes FROM t WHERE operation = 'execute_tool'")
    tool = genai_details(orjson.loads(attrs), [])
    assert tool["tool_arguments"] == {"orderId": "A-1042"}
    assert tool["tool_result"] == {"orderId": "A-1042", "status": "shipped"}
    calls = [genai_details(orjson.loads(a), []) for (a,) in _sql(spans, "SELECT attributes FROM t WHERE name = 'ChatOpenAI.chat' ORDER BY start_ns")]
    asked = next(c for c in calls if c["output_messages"] and c["output_messages"][0]["parts"][0]["type"] == "tool_call")
    assert asked["output_messages"][0]["parts"][0]["id"] == tool["tool_call_id"]
