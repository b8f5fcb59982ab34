"""One call traced twice: the anthropic SDK's own spans (on by default with a tracer provider
registered) under OpenLLMetry's opentelemetry-instrumentation-anthropic, against the fake
provider (../../ai-sdk/make/fake_provider.py). Usage: python capture.py PORT DRIVER_JSON"""

from __future__ import annotations

import json
import sys

import anthropic
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
provider = TracerProvider(resource=Resource.create(
    {"service.name": "support-bot-claude", "service.version": "1.0.0", "deployment.environment.name": "prod"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"), max_export_batch_size=40))
trace.set_tracer_provider(provider)
AnthropicInstrumentor().instrument()
client = anthropic.Anthropic(base_url=base, api_key="test-key", max_retries=0)
tracer = trace.get_tracer("support-bot")
driver: dict = {"journeys": {}, "failed_journeys": {}, "model_calls": 0, "streamed_calls": 0}


def journey(name: str, fn) -> None:
    driver["journeys"][name] = driver["journeys"].get(name, 0) + 1
    with tracer.start_as_current_span(f"POST /{name}", kind=SpanKind.SERVER, attributes={"aisre.journey": name}) as root:
        try:
            fn()
            root.set_attribute("http.response.status_code", 200)
        except anthropic.APIError as exc:
            driver["failed_journeys"][name] = driver["failed_journeys"].get(name, 0) + 1
            root.set_attribute("http.response.status_code", 500)
            root.set_status(Status(StatusCode.ERROR, str(exc)))


def ask(q: str) -> None:
    driver["model_calls"] += 1
    client.messages.create(model="claude-sonnet-4-5", max_tokens=200, system="You are a support bot.",
                           messages=[{"role": "user", "content": q}])


def summarise(q: str) -> None:
    driver["model_calls"] += 1
    driver["streamed_calls"] += 1
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=200, messages=[{"role": "user", "content": q}]) as stream:
        for _ in stream.text_stream:
            pass


for q in ["how do refunds work", "do you ship abroad", "FAIL this one breaks", "what is the warranty"]:
    journey("ask", lambda q=q: ask(q))
for q in ["summarise my last ticket", "write a haiku about shipping"]:
    journey("summarise", lambda q=q: summarise(q))
provider.force_flush()
provider.shutdown()
with open(sys.argv[2], "w") as out:
    json.dump(driver, out, indent=1)
