"""LangGraph (a prebuilt ReAct agent graph over langchain-openai's ChatOpenAI) traced to OTel by
OpenInference's openinference-instrumentation-langchain, with a tool, a streamed run, cached
tokens and a failed call, against the fake provider (../../ai-sdk/make/fake_provider.py).
Usage: python capture.py PORT DRIVER_JSON"""

from __future__ import annotations

import asyncio
import json
import sys

import openai
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent
from openinference.instrumentation.langchain import LangChainInstrumentor
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
provider = TracerProvider(resource=Resource.create(
    {"service.name": "support-graph", "service.version": "0.5.0", "deployment.environment.name": "prod"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"), max_export_batch_size=40))
trace.set_tracer_provider(provider)
LangChainInstrumentor().instrument(tracer_provider=provider)
# stream_usage: ask for the usage chunk on streamed calls (stream_options.include_usage).
llm = ChatOpenAI(model="gpt-4o-mini", base_url=f"{base}/v1", api_key="test-key", max_retries=0, stream_usage=True)
driver: dict = {"journeys": {}, "failed_journeys": {}, "model_calls": 0, "streamed_calls": 0, "tool_executions": 0}


@tool
def lookup_order(orderId: str) -> dict:  # orderId: the argument the fake provider's tool call sends
    """Look up an order by id."""
    driver["tool_executions"] += 1
    return {"orderId": orderId, "status": "shipped"}


graph = create_react_agent(llm, tools=[lookup_order], prompt="You are a support bot.")
tracer = trace.get_tracer("support-graph")


async def journey(name: str, q: str, stream: bool = False) -> None:
    driver["journeys"][name] = driver["journeys"].get(name, 0) + 1
    with tracer.start_as_current_span(f"POST /{name}", kind=SpanKind.SERVER, attributes={"aisre.journey": name}) as root:
        # An order question: the model asks for the tool (1 call), the graph runs it and
        # asks again (1).
        calls = 2 if "order" in q else 1
        driver["model_calls"] += calls
        try:
            inputs = {"messages": [("user", q)]}
            if stream:
                # stream_mode="messages": the graph streams the model's tokens.
                driver["streamed_calls"] += calls
                async for _ in graph.astream(inputs, stream_mode="messages"):
                    pass
            else:
                await graph.ainvoke(inputs)
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
