"""Drives `logfire.instrument_openai()` against the fake provider (../../ai-sdk/make/
fake_provider.py) and exports the spans over OTLP/HTTP protobuf to the same server.
Usage: python capture.py PORT DRIVER_JSON"""

from __future__ import annotations

import json
import sys

import logfire
import openai
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
logfire.configure(
    send_to_logfire=False, console=False, service_name="support-bot-logfire", service_version="3.1.0",
    environment="prod",
    additional_span_processors=[BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"), max_export_batch_size=40)],
)
client = openai.OpenAI(base_url=f"{base}/v1", api_key="test-key", max_retries=0)
logfire.instrument_openai(client)
tracer = trace.get_tracer("support-bot")
driver: dict = {"journeys": {}, "failed_journeys": {}, "streamed_calls": 0, "model_calls": 0, "embed_calls": 0}


def journey(name: str, fn) -> None:
    driver["journeys"][name] = driver["journeys"].get(name, 0) + 1
    with tracer.start_as_current_span(f"POST /{name}", kind=SpanKind.SERVER, attributes={"aisre.journey": name}) as root:
        try:
            fn()
            root.set_attribute("http.response.status_code", 200)
        except openai.APIError as exc:
            driver["failed_journeys"][name] = driver["failed_journeys"].get(name, 0) + 1
            root.set_attribute("http.response.status_code", 500)
            root.set_status(Status(StatusCode.ERROR, str(exc)))


def ask(q: str) -> None:
    driver["model_calls"] += 1
    client.chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "system", "content": "You are a support bot."}, {"role": "user", "content": q}])


def summarise(q: str) -> None:
    driver["model_calls"] += 1
    driver["streamed_calls"] += 1
    stream = client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": q}],
                                            stream=True, stream_options={"include_usage": True})
    for _ in stream:
        pass


def index() -> None:
    driver["embed_calls"] += 1
    client.embeddings.create(model="text-embedding-3-small", input=["first doc here", "second doc"])


for q in ["how do refunds work", "CACHE what are your opening hours", "do you ship abroad",
          "FAIL this one breaks", "what is the warranty"]:
    journey("ask", lambda q=q: ask(q))
for q in ["summarise my last ticket", "CACHE summarise the policy", "write a haiku about shipping"]:
    journey("summarise", lambda q=q: summarise(q))
journey("index", index)
logfire.force_flush()
logfire.shutdown()
with open(sys.argv[2], "w") as out:
    json.dump(driver, out, indent=1)
