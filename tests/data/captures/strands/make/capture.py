"""Strands Agents (native OTel tracing) on its OpenAI model provider, with a tool, against the
fake provider (../../ai-sdk/make/fake_provider.py). Usage: python capture.py PORT DRIVER_JSON"""

from __future__ import annotations

import json
import sys

import openai
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from strands import Agent, tool
from strands.models.openai import OpenAIModel

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
provider = TracerProvider(resource=Resource.create(
    {"service.name": "support-strands", "service.version": "0.7.0", "deployment.environment.name": "prod"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"), max_export_batch_size=40))
trace.set_tracer_provider(provider)  # Strands traces through the registered provider
model = OpenAIModel(client_args={"base_url": f"{base}/v1", "api_key": "test-key", "max_retries": 0}, model_id="gpt-4o-mini")
driver: dict = {"journeys": {}, "failed_journeys": {}, "model_calls": 0, "streamed_calls": 0, "tool_executions": 0}


@tool
def lookup_order(orderId: str) -> dict:  # orderId: the argument the fake provider's tool call sends
    """Look up an order by id.

    Args:
        orderId: the order's id
    """
    driver["tool_executions"] += 1
    return {"status": "success", "content": [{"json": {"orderId": orderId, "status": "shipped"}}]}


tracer = trace.get_tracer("support-strands")


def journey(name: str, q: str) -> None:
    driver["journeys"][name] = driver["journeys"].get(name, 0) + 1
    # Strands streams every model call; an order question takes two calls and one tool run.
    calls = 2 if "order" in q else 1
    driver["model_calls"] += calls
    driver["streamed_calls"] += calls
    with tracer.start_as_current_span(f"POST /{name}", kind=SpanKind.SERVER, attributes={"aisre.journey": name}) as root:
        agent = Agent(model=model, tools=[lookup_order], system_prompt="You are a support bot.",
                      callback_handler=None)
        try:
            agent(q)
            root.set_attribute("http.response.status_code", 200)
        except openai.APIError as exc:
            driver["failed_journeys"][name] = driver["failed_journeys"].get(name, 0) + 1
            root.set_attribute("http.response.status_code", 500)
            root.set_status(Status(StatusCode.ERROR, str(exc)))


for q in ["where is my order A-1042", "CACHE how do refunds work", "FAIL this one breaks"]:
    journey("ask", q)
journey("summarise", "summarise my last ticket")
provider.force_flush()
provider.shutdown()
with open(sys.argv[2], "w") as out:
    json.dump(driver, out, indent=1)
