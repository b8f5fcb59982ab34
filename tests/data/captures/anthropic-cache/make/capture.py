"""Anthropic prompt caching, traced by `logfire.instrument_anthropic()` and by the anthropic
SDK's own spans (on with Logfire's tracer provider registered), against the fake provider
(../../ai-sdk/make/fake_provider.py): the system prompt is the cached prefix, "PRIME" in a
question writes it to the cache, "CACHE" reads it. Usage: python capture.py PORT DRIVER_JSON"""

from __future__ import annotations

import json
import sys

import anthropic
import logfire
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
logfire.configure(
    send_to_logfire=False, console=False, service_name="support-bot-claude-cache", service_version="1.2.0",
    environment="prod",
    additional_span_processors=[BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"), max_export_batch_size=40)],
)
client = anthropic.Anthropic(base_url=base, api_key="test-key", max_retries=0)
logfire.instrument_anthropic(client)
tracer = trace.get_tracer("support-bot")
SYSTEM = [{"type": "text", "cache_control": {"type": "ephemeral"}, "text": (
    "You are a support bot for an online shop. Answer briefly and politely. Refunds take five days, "
    "we ship to forty countries, and every product has a two year warranty.")}]
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
    client.messages.create(model="claude-sonnet-4-5", max_tokens=200, system=SYSTEM,
                           messages=[{"role": "user", "content": q}])


def summarise(q: str) -> None:
    driver["model_calls"] += 1
    driver["streamed_calls"] += 1
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=200, system=SYSTEM,
                                messages=[{"role": "user", "content": q}]) as stream:
        for _ in stream.text_stream:
            pass


for q in ["PRIME how do refunds work", "CACHE do you ship abroad", "CACHE what is the warranty", "FAIL this one breaks"]:
    journey("ask", lambda q=q: ask(q))
journey("summarise", lambda: summarise("CACHE summarise my last ticket"))
logfire.force_flush()
trace.get_tracer_provider().shutdown()
with open(sys.argv[2], "w") as out:
    json.dump(driver, out, indent=1)
