// Drives a Mastra agent (AI tracing through @mastra/observability and @mastra/otel-exporter,
// OTLP/HTTP protobuf) against the fake provider (../../ai-sdk/make/fake_provider.py). The
// application's own request span is exported by its tracer provider; Mastra's trace joins it
// through tracingOptions (traceId, parentSpanId). Usage: node capture.mjs PORT DRIVER_JSON
import { trace, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { Mastra } from "@mastra/core/mastra";
import { Agent } from "@mastra/core/agent";
import { createTool } from "@mastra/core/tools";
import { Observability } from "@mastra/observability";
import { OtelExporter } from "@mastra/otel-exporter";
import { createOpenAI } from "@ai-sdk/openai";
import { z } from "zod";
import { writeFileSync } from "node:fs";

const port = process.argv[2];
const base = `http://127.0.0.1:${port}`;
const resource = { "service.name": "support-mastra", "service.version": "1.3.0", "deployment.environment.name": "prod" };
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes(resource),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${base}/v1/traces` }), { maxExportBatchSize: 40, scheduledDelayMillis: 200 })],
});
provider.register();
const tracer = trace.getTracer("support-mastra");
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: "test-key" });
const driver = { journeys: {}, failed_journeys: {}, model_calls: 0, streamed_calls: 0, tool_executions: 0 };

const lookupOrder = createTool({
  id: "lookup_order",
  description: "Look up an order by id",
  inputSchema: z.object({ orderId: z.string() }),
  execute: async ({ orderId }) => { driver.tool_executions += 1; return { orderId, status: "shipped" }; },
});
const agent = new Agent({
  id: "support", name: "support", instructions: "You are a support bot.",
  model: openai.chat("gpt-4o-mini"), tools: { lookup_order: lookupOrder }, maxRetries: 0,
});
const exporter = new OtelExporter({
  provider: { custom: { endpoint: `${base}/v1/traces`, protocol: "http/protobuf" } },
  resourceAttributes: resource, signals: { logs: false },
});
const mastra = new Mastra({
  agents: { support: agent },
  observability: new Observability({ configs: { otel: { serviceName: "support-mastra", exporters: [exporter] } } }),
});
const support = mastra.getAgent("support");

async function journey(name, q, stream = false) {
  driver.journeys[name] = (driver.journeys[name] || 0) + 1;
  // An order question: the model asks for lookup_order, the agent runs it and asks again.
  const calls = q.includes("order") ? 2 : 1;
  driver.model_calls += calls;
  if (stream) driver.streamed_calls += calls;
  await tracer.startActiveSpan(`POST /${name}`, { kind: SpanKind.SERVER, attributes: { "aisre.journey": name } }, async (root) => {
    const { traceId, spanId } = root.spanContext();
    const options = { maxSteps: 4, modelSettings: { maxRetries: 0 }, tracingOptions: { traceId, parentSpanId: spanId } };
    try {
      if (stream) {
        const result = await support.stream(q, options);
        for await (const _ of result.textStream) { /* read it all */ }
        await result.usage;
        if (result.error) throw result.error;
      } else {
        await support.generate(q, options);
      }
      root.setAttribute("http.response.status_code", 200);
    } catch (err) {
      driver.failed_journeys[name] = (driver.failed_journeys[name] || 0) + 1;
      root.setAttribute("http.response.status_code", 500);
      root.setStatus({ code: SpanStatusCode.ERROR, message: String(err.message || err) });
    } finally {
      root.end();
    }
  });
}

for (const q of ["where is my order A-1042", "CACHE how do refunds work", "FAIL this one breaks"]) await journey("ask", q);
await journey("summarise", "summarise my last ticket", true);
await mastra.shutdown?.();
await exporter.shutdown?.();
await provider.forceFlush();
await provider.shutdown();
writeFileSync(process.argv[3], JSON.stringify(driver, null, 1));
