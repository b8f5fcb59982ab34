"""OpenAI Agents SDK on its default model API (the Responses API, POST /v1/responses) traced to
OTel by OpenInference's openinference-instrumentation-openai-agents, with a handoff and a tool,
against the fake provider (../../ai-sdk/make/fake_provider.py).
Usage: python capture.py PORT DRIVER_JSON"""

from __future__ import annotations

import asyncio
import json
import sys

import openai
from agents import Agent, Runner, function_tool, set_default_openai_client
from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
provider = TracerProvider(resource=Resource.create(
    {"service.name": "support-agents", "service.version": "0.4.0", "deployment.environment.name": "prod"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"), max_export_batch_size=40))
trace.set_tracer_provider(provider)
# Exclusive (the default): OpenInference replaces the SDK's exporter to OpenAI's trace backend.
OpenAIAgentsInstrumentor().instrument(tracer_provider=provider)
client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="test-key", max_retries=0)
# The SDK's defaults: a model named by a string runs on the Responses API with this client.
set_default_openai_client(client, use_for_tracing=False)
model = "gpt-4o-mini"
driver: dict = {"journeys": {}, "failed_journeys": {}, "model_calls": 0, "streamed_calls": 0,
                "tool_executions": 0, "handoffs": 0}


@function_tool
def lookup_order(orderId: str) -> dict:  # orderId: the argument the fake provider's tool call sends
    """Look up an order by id."""
    driver["tool_executions"] += 1
    return {"orderId": orderId, "status": "shipped"}


orders = Agent(name="Orders agent", instructions="You answer questions about orders.", model=model,
               tools=[lookup_order])
triage = Agent(name="Triage agent", instructions="You are a support bot. Hand order questions to the orders agent.",
               model=model, handoffs=[orders])
tracer = trace.get_tracer("support-agents")


async def journey(name: str, q: str, stream: bool = False) -> None:
    driver["journeys"][name] = driver["journeys"].get(name, 0) + 1
    with tracer.start_as_current_span(f"POST /{name}", kind=SpanKind.SERVER, attributes={"aisre.journey": name}) as root:
        # An order question: triage hands off (1 call), the orders agent calls the tool (1)
        # and answers (1).
        if "order" in q:
            driver["model_calls"] += 3
            driver["handoffs"] += 1
        else:
            driver["model_calls"] += 1
        try:
            if stream:
                driver["streamed_calls"] += 1
                result = Runner.run_streamed(triage, q)
                async for _ in result.stream_events():
                    pass
            else:
                await Runner.run(triage, q)
            root.set_attribute("http.response.status_code", 200)
        except openai.APIError as exc:
            driver["failed_journeys"][name] = driver["failed_journeys"].get(name, 0) + 1
            root.set_attribute("http.response.status_code", 500)
            root.set_status(Status(StatusCode.ERROR, str(exc)))


async def main() -> None:
    for q in ["where is my order A-1042", "CACHE how do refunds work", "FAIL this one breaks"]:
        await journey("ask", q)
    await journey("summarise", "summarise my last ticket", stream=True)


asyncio.run(main())
provider.force_flush()
provider.shutdown()
with open(sys.argv[2], "w") as out:
    json.dump(driver, out, indent=1)
