"""google-genai (Gemini API) under opentelemetry-instrumentation-google-genai, with content
capture on, against the fake provider (../../ai-sdk/make/fake_provider.py), which answers the
Gemini API. Usage: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY
OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental python capture.py PORT DRIVER_JSON"""

from __future__ import annotations

import json
import sys

from google import genai
from google.genai import errors, types
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.google_genai import GoogleGenAiSdkInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
provider = TracerProvider(resource=Resource.create(
    {"service.name": "support-bot-gemini", "service.version": "2.1.0", "deployment.environment.name": "prod"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"), max_export_batch_size=40))
trace.set_tracer_provider(provider)
GoogleGenAiSdkInstrumentor().instrument()
client = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=base, api_version="v1beta"))
tracer = trace.get_tracer("support-bot")
driver: dict = {"journeys": {}, "failed_journeys": {}, "model_calls": 0, "streamed_calls": 0, "embed_calls": 0,
                "tool_executions": 0}


def lookup_order(orderId: str) -> dict:  # orderId: the argument the fake provider's function call sends
    """Look up an order by id."""
    driver["tool_executions"] += 1
    return {"orderId": orderId, "status": "shipped"}


def journey(name: str, fn) -> None:
    driver["journeys"][name] = driver["journeys"].get(name, 0) + 1
    with tracer.start_as_current_span(f"POST /{name}", kind=SpanKind.SERVER, attributes={"aisre.journey": name}) as root:
        try:
            fn()
            root.set_attribute("http.response.status_code", 200)
        except errors.APIError as exc:
            driver["failed_journeys"][name] = driver["failed_journeys"].get(name, 0) + 1
            root.set_attribute("http.response.status_code", 500)
            root.set_status(Status(StatusCode.ERROR, str(exc)))


def ask(q: str) -> None:
    # Automatic function calling: the SDK runs lookup_order and asks the model again.
    driver["model_calls"] += 2 if "order" in q else 1
    client.models.generate_content(
        model="gemini-2.5-flash", contents=q,
        config=types.GenerateContentConfig(system_instruction="You are a support bot.", tools=[lookup_order]))


def summarise(q: str) -> None:
    driver["model_calls"] += 1
    driver["streamed_calls"] += 1
    for _ in client.models.generate_content_stream(model="gemini-2.5-flash-lite", contents=q):
        pass


def index(texts: list[str]) -> None:
    driver["embed_calls"] += 1
    client.models.embed_content(model="text-embedding-004", contents=texts)


for q in ["where is my order A-1042", "CACHE how do refunds work", "do you ship abroad", "FAIL this one breaks"]:
    journey("ask", lambda q=q: ask(q))
for q in ["summarise my last ticket", "write a haiku about shipping"]:
    journey("summarise", lambda q=q: summarise(q))
journey("index", lambda: index(["refunds take five days", "we ship to forty countries"]))
provider.force_flush()
provider.shutdown()
with open(sys.argv[2], "w") as out:
    json.dump(driver, out, indent=1)
