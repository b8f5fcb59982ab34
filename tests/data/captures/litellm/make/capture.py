"""LiteLLM's OTel callback (`litellm.callbacks = ["otel"]`) over OpenAI and Anthropic models,
against the fake provider (../../ai-sdk/make/fake_provider.py). Usage:
OTEL_EXPORTER=otlp_http OTEL_ENDPOINT=http://127.0.0.1:PORT/v1/traces
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY python capture.py PORT DRIVER_JSON"""

from __future__ import annotations

import json
import sys

import litellm
import openai
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
provider = TracerProvider(resource=Resource.create(
    {"service.name": "support-gateway", "service.version": "5.0.1", "deployment.environment.name": "prod"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"), max_export_batch_size=40))
trace.set_tracer_provider(provider)
litellm.callbacks = ["otel"]
tracer = trace.get_tracer("support-gateway")
driver: dict = {"journeys": {}, "failed_journeys": {}, "model_calls": 0, "streamed_calls": 0, "embed_calls": 0,
                "tool_requests": 0}
TOOLS = [{"type": "function", "function": {
    "name": "lookup_order", "description": "Look up an order by id.",
    "parameters": {"type": "object", "properties": {"orderId": {"type": "string"}}, "required": ["orderId"]}}}]
SYSTEM = ("You are a support bot for an online shop. Answer briefly and politely. Refunds take five days, "
          "we ship to forty countries, and every product has a two year warranty.")


def journey(name: str, fn) -> None:
    driver["journeys"][name] = driver["journeys"].get(name, 0) + 1
    with tracer.start_as_current_span(f"POST /{name}", kind=SpanKind.SERVER, attributes={"aisre.journey": name}) as root:
        try:
            fn()
            root.set_attribute("http.response.status_code", 200)
        except openai.APIError as exc:  # litellm maps provider errors onto openai's classes
            driver["failed_journeys"][name] = driver["failed_journeys"].get(name, 0) + 1
            root.set_attribute("http.response.status_code", 500)
            root.set_status(Status(StatusCode.ERROR, str(exc)))


def ask(q: str) -> None:
    messages = [{"role": "system", "content": "You are a support bot."}, {"role": "user", "content": q}]
    driver["model_calls"] += 1
    response = litellm.completion(model="openai/gpt-4o-mini", api_base=f"{base}/v1", api_key="test-key",
                                  messages=messages, tools=TOOLS, max_retries=0)
    message = response.choices[0].message
    if message.tool_calls:  # the application runs the tool and asks again
        driver["tool_requests"] += 1
        call = message.tool_calls[0]
        result = {"orderId": json.loads(call.function.arguments)["orderId"], "status": "shipped"}
        messages += [message.model_dump(), {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}]
        driver["model_calls"] += 1
        litellm.completion(model="openai/gpt-4o-mini", api_base=f"{base}/v1", api_key="test-key",
                           messages=messages, tools=TOOLS, max_retries=0)


def ask_claude(q: str) -> None:
    driver["model_calls"] += 1
    litellm.completion(model="anthropic/claude-haiku-4-5", api_base=base, api_key="test-key", max_tokens=200,
                       messages=[{"role": "system", "content": [{"type": "text", "text": SYSTEM,
                                                                 "cache_control": {"type": "ephemeral"}}]},
                                 {"role": "user", "content": q}])


def summarise(q: str) -> None:
    driver["model_calls"] += 1
    driver["streamed_calls"] += 1
    for _ in litellm.completion(model="openai/gpt-4.1", api_base=f"{base}/v1", api_key="test-key", stream=True,
                                messages=[{"role": "user", "content": q}]):
        pass


def index(texts: list[str]) -> None:
    driver["embed_calls"] += 1
    litellm.embedding(model="openai/text-embedding-3-small", api_base=f"{base}/v1", api_key="test-key", input=texts)


for q in ["where is my order A-1042", "CACHE how do refunds work", "FAIL this one breaks"]:
    journey("ask", lambda q=q: ask(q))
for q in ["PRIME do you ship abroad", "CACHE what is the warranty"]:
    journey("ask-claude", lambda q=q: ask_claude(q))
journey("summarise", lambda: summarise("summarise my last ticket"))
journey("index", lambda: index(["refunds take five days", "we ship to forty countries"]))
provider.force_flush()
provider.shutdown()
with open(sys.argv[2], "w") as out:
    json.dump(driver, out, indent=1)
