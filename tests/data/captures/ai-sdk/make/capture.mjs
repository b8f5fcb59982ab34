// Drives the Vercel AI SDK (`ai` 6, experimental_telemetry) against the fake provider and
// exports its spans over OTLP/HTTP protobuf to the same server. Usage: node capture.mjs PORT
import { trace, SpanKind, SpanStatusCode, context } from "@opentelemetry/api";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { generateText, streamText, embed, embedMany, tool, stepCountIs } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { z } from "zod";
import { writeFileSync } from "node:fs";

const port = process.argv[2];
const base = `http://127.0.0.1:${port}`;
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({
    "service.name": "support-bot-node", "service.version": "2.0.0", "deployment.environment.name": "prod",
  }),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${base}/v1/traces` }), { maxExportBatchSize: 40, scheduledDelayMillis: 200 })],
});
provider.register();
const tracer = trace.getTracer("support-bot");
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: "test-key" });
const telemetry = (functionId) => ({ isEnabled: true, recordInputs: true, recordOutputs: true, functionId });
const driver = { journeys: {}, failed_journeys: {}, tool_executions: 0, streamed_calls: 0, model_calls: 0, embed_calls: 0 };

const lookupOrder = tool({
  description: "Look up an order by id",
  inputSchema: z.object({ orderId: z.string() }),
  execute: async ({ orderId }) => { driver.tool_executions += 1; return { orderId, status: "shipped" }; },
});

async function journey(name, fn) {
  driver.journeys[name] = (driver.journeys[name] || 0) + 1;
  await tracer.startActiveSpan(`POST /${name}`, { kind: SpanKind.SERVER, attributes: { "aisre.journey": name, "http.route": `/${name}` } }, async (root) => {
    try {
      await fn();
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

const questions = [
  "where is my order A-1042", "how do refunds work", "CACHE what are your opening hours",
  "can I track my order please", "do you ship abroad", "FAIL this one breaks",
  "what is the warranty", "cancel my order now",
];
for (const q of questions) {
  await journey("ask", async () => {
    await embed({ model: openai.embedding("text-embedding-3-small"), value: q, experimental_telemetry: telemetry("ask-embed") });
    driver.embed_calls += 1;
    const wantsTool = q.includes("order");
    const res = await generateText({
      model: openai.chat("gpt-4o-mini"), system: "You are a support bot.", prompt: q,
      tools: { lookup_order: lookupOrder }, stopWhen: stepCountIs(3), maxRetries: 0,
      experimental_telemetry: telemetry("ask"),
    }).finally(() => { driver.model_calls += wantsTool ? 2 : 1; });
    return res.text;
  });
}
for (const q of ["summarise my last ticket", "CACHE summarise the policy", "write a haiku about shipping"]) {
  await journey("summarise", async () => {
    const result = streamText({ model: openai.chat("gpt-4.1"), prompt: q, maxRetries: 0, experimental_telemetry: telemetry("summarise") });
    let text = "";
    for await (const part of result.textStream) text += part;
    await result.usage;
    driver.streamed_calls += 1;
    driver.model_calls += 1;
  });
}
for (let i = 0; i < 2; i++) {
  await journey("index", async () => {
    await embedMany({ model: openai.embedding("text-embedding-3-small"), values: ["first doc here", "second doc", "third document text goes"], experimental_telemetry: telemetry("index") });
    driver.embed_calls += 1;
  });
}
await provider.forceFlush();
await provider.shutdown();
writeFileSync(process.argv[3], JSON.stringify(driver, null, 1));
