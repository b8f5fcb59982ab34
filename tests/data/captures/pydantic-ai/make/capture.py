"""Pydantic AI agents (Agent.instrument_all(): OTel GenAI spans) with a tool, against the fake
provider (../../ai-sdk/make/fake_provider.py). Usage: python capture.py PORT DRIVER_JSON"""

from __future__ import annotations

import json
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
provider = TracerProvider(resource=Resource.create(
    {"service.name": "support-agent", "service.version": "0.9.0", "deployment.environment.name": "prod"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"), max_export_batch_size=40))
trace.set_tracer_provider(provider)
model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=f"{base}/v1", api_key="test-key"))
Agent.instrument_all()  # OTel GenAI spans through the registered tracer provider
agent = Agent(model, system_prompt="You are a support bot.")
driver: dict = {"journeys": {}, "failed_journeys": {}, "model_calls": 0, "tool_executions": 0}


@agent.tool_plain
def lookup_order(orderId: str) -> dict:  # orderId: the argument the fake provider's tool call sends
    """Look up an order by id."""
    driver["tool_executions"] += 1
    return {"orderId": orderId, "status": "shipped"}


tracer = trace.get_tracer("support-agent")
for q in ["where is my order A-1042", "how do refunds work", "track my order please", "FAIL this one breaks"]:
    driver["journeys"]["ask"] = driver["journeys"].get("ask", 0) + 1
    with tracer.start_as_current_span("POST /ask", kind=SpanKind.SERVER, attributes={"aisre.journey": "ask"}) as root:
        driver["model_calls"] += 2 if "order" in q else 1
        try:
            agent.run_sync(q)
            root.set_attribute("http.response.status_code", 200)
        except Exception as exc:  # the provider's 500 surfaces as the model's HTTP error
            driver["failed_journeys"]["ask"] = driver["failed_journeys"].get("ask", 0) + 1
            root.set_attribute("http.response.status_code", 500)
            root.set_status(Status(StatusCode.ERROR, str(exc)))
provider.force_flush()
provider.shutdown()
with open(sys.argv[2], "w") as out:
    json.dump(driver, out, indent=1)
