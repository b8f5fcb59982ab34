"""Which attribute names mean what (DESIGN §3): first found wins.

Kept as data so a new instrumentation is a line here, not a code change.
"""

from __future__ import annotations

import re

JOURNEY = ("aisre.journey",)
OUTCOME = ("aisre.outcome",)

OPERATION_NAME = "gen_ai.operation.name"
# gen_ai.operation.name values → our operation vocabulary.
GENAI_OPERATIONS = {
    "chat": "chat",
    "generate_content": "chat",
    "text_completion": "text_completion",
    "completion": "text_completion",
    "embeddings": "embeddings",
    "embedding": "embeddings",
    "execute_tool": "execute_tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    # open-telemetry/semantic-conventions-genai registry additions.
    "invoke_workflow": "agent",
    "plan": "agent",
    "retrieval": "retrieval",
    "retrieve": "retrieval",
}
OPENINFERENCE_KIND = "openinference.span.kind"
OPENINFERENCE_OPERATIONS = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "RETRIEVER": "retrieval",
    "RERANKER": "retrieval",
    "TOOL": "execute_tool",
    "AGENT": "agent",
}
# OpenInference's OpenAI Agents processor sends a handoff between agents as a TOOL span
# named "handoff to <agent>" with no tool.name: it moves the run to another agent and runs
# no tool, so it is an agent step, not a tool call.
OPENINFERENCE_HANDOFF_PREFIX = "handoff to "
# A model call whose only finish reason is "error" failed, whatever its span status says
# (Mastra leaves a failed call's span OK and marks only its agent span as failed).
FINISH_REASONS = "gen_ai.response.finish_reasons"
# Frameworks that put their own name in gen_ai.system / gen_ai.provider.name, not the model
# provider's: Strands on every span; OpenLLMetry's LangChain instrumentation on graph, chain,
# task and tool spans ("langgraph" inside a LangGraph run, else "langchain").
NOT_PROVIDERS = frozenset({"strands-agents", "langgraph", "langchain"})
# Older OpenLLMetry.
LLM_REQUEST_TYPE = "llm.request.type"
LLM_REQUEST_TYPES = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
}
# Vercel AI SDK (`ai`, experimental_telemetry): no gen_ai.operation.name; the span's
# ai.operationId says what it is. Only the do* spans are model calls: the outer
# ai.generateText / ai.streamText / ai.embed … spans repeat the usage summed over steps.
AI_OPERATION_ID = "ai.operationId"
AI_SDK_TOOL_CALL = "ai.toolCall"
AI_SDK_CALL_SUFFIXES = {".doGenerate": "chat", ".doStream": "chat", ".doEmbed": "embeddings"}
# Read on the do* spans only (the outer spans carry the same names, summed).
AI_SDK_INPUT_TOKENS = ("ai.usage.inputTokens", "ai.usage.promptTokens", "ai.usage.tokens")
AI_SDK_OUTPUT_TOKENS = ("ai.usage.outputTokens", "ai.usage.completionTokens")
AI_SDK_CACHED_INPUT_TOKENS = ("ai.usage.cachedInputTokens", "ai.usage.inputTokenDetails.cacheReadTokens")


def ai_sdk_operation(operation_id: str) -> str:
    """Our operation for an AI SDK ai.operationId: chat/embeddings on do* spans, execute_tool
    on ai.toolCall, other for the outer spans (and anything newer we do not know)."""
    if operation_id == AI_SDK_TOOL_CALL:
        return "execute_tool"
    for suffix, operation in AI_SDK_CALL_SUFFIXES.items():
        if operation_id.endswith(suffix):
            return operation
    return "other"


# Logfire writes a zero-duration span with logfire.span_type=log for a log record (e.g.
# "streaming response from … took 1.2s"); it may repeat gen_ai.* of the call it reports on,
# but it is never a call itself.
LOGFIRE_SPAN_TYPE = "logfire.span_type"
# Logfire puts the provider's own usage object here as JSON: the only place it reports
# cached input tokens. Only OpenAI's shapes are read (chat prompt_tokens_details, responses
# input_tokens_details), where cached tokens are part of the input count as aisre prices
# them; Anthropic's input_tokens leaves cache reads out, so its raw object is not read.
RAW_USAGE = "gen_ai.usage.raw"
RAW_USAGE_CACHED = (
    ("prompt_tokens_details", "cached_tokens"),
    ("input_tokens_details", "cached_tokens"),
)
# LiteLLM's OTel callback sends no cached-token attribute: its usage object (Python repr or
# JSON text) in metadata.usage_object holds them, as OpenAI's prompt_tokens_details shape
# (cached_tokens = reads, cache_write_tokens = writes), for every provider, inside prompt_tokens.
LITELLM_USAGE = "metadata.usage_object"
LITELLM_USAGE_DETAILS = re.compile(r"""['"]prompt_tokens_details['"]\s*:\s*\{([^{}]*)\}""")
LITELLM_CACHED = re.compile(r"""['"]cached_tokens['"]\s*:\s*(\d+)""")
LITELLM_CACHE_WRITES = re.compile(r"""['"]cache_write_tokens['"]\s*:\s*(\d+)""")
# LiteLLM leaves gen_ai.system empty on embeddings; its "provider/model" id names the provider.
LITELLM_PROVIDER_MODEL = "litellm.provider.model"
# The same model call reported by two instrumentations carries the same response id.
RESPONSE_ID = ("gen_ai.response.id", "ai.response.id")
# Two spans without a shared response id are one call when their instrumentations differ,
# their model and usage are equal and they start within this many nanoseconds.
DUPLICATE_START_WINDOW_NS = 5_000_000

TRACELOOP_KIND = "traceloop.span.kind"
TRACELOOP_OPERATIONS = {"tool": "execute_tool", "agent": "agent"}

DB_SYSTEM = ("db.system.name", "db.system")
# Vector stores: a query to one of them is a retrieval step.
VECTOR_STORES = frozenset(
    {
        "pgvector",
        "qdrant",
        "pinecone",
        "chroma",
        "chromadb",
        "weaviate",
        "milvus",
        "lancedb",
        "faiss",
        "opensearch_vector",
        "vespa",
        "turbopuffer",
        "marqo",
    }
)

PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system", "ai.model.provider")
REQUEST_MODEL = ("gen_ai.request.model", "llm.request.model", "embedding.model_name", "ai.model.id")
RESPONSE_MODEL = (
    "gen_ai.response.model", "llm.response.model", "llm.model_name", "embedding.model_name", "ai.response.model",
)

# Provider names as instrumentations send them → the OTel gen_ai.provider.name registry value.
# AI SDK provider ids carry an API suffix ("openai.chat", "anthropic.messages"); older OTel
# gen_ai.system values and OpenInference/OpenLLMetry spellings differ from the registry.
CANONICAL_PROVIDERS = frozenset(
    {
        "openai", "anthropic", "aws.bedrock", "azure.ai.inference", "azure.ai.openai", "cohere",
        "deepseek", "gcp.gemini", "gcp.gen_ai", "gcp.vertex_ai", "groq", "ibm.watsonx.ai",
        "mistral_ai", "perplexity", "x_ai",
    }
)
PROVIDER_ALIASES = {
    "az.ai.inference": "azure.ai.inference",
    "az.ai.openai": "azure.ai.openai",
    "azure": "azure.ai.openai",
    "azure-openai": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azureopenai": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "amazon-bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "aws": "aws.bedrock",
    "google": "gcp.gen_ai",
    "google.generative-ai": "gcp.gemini",
    "google-generative-ai": "gcp.gemini",
    "google_genai": "gcp.gen_ai",
    "google-genai": "gcp.gen_ai",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "google.vertex": "gcp.vertex_ai",
    "google-vertex": "gcp.vertex_ai",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "xai": "x_ai",
    "grok": "x_ai",
    "watsonx": "ibm.watsonx.ai",
    "cohere-v2": "cohere",
}
# API suffixes the AI SDK (and others) append to a provider id.
PROVIDER_SUFFIXES = (
    ".chat", ".responses", ".completion", ".completions", ".embedding", ".embeddings", ".messages",
    ".image", ".transcription", ".speech", ".textembedding", ".rerank",
)
INVOCATION_PARAMETERS = "llm.invocation_parameters"

INPUT_TOKENS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
    "llm.token_count.prompt",
)
OUTPUT_TOKENS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
)
CACHED_INPUT_TOKENS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
# Input tokens written to the provider's cache (Anthropic's cache_creation_input_tokens): no
# column of their own (kept in attributes), read to price them and to check the input count.
CACHE_WRITE_INPUT_TOKENS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",  # the anthropic SDK's own spans
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
# OTel: gen_ai.usage.input_tokens includes cache reads and writes. Anthropic's API
# input_tokens leaves both out; an instrumentation passing it on unchanged shows as an input
# count below the cache counts, and aisre adds them (the count as sent is kept here).
INPUT_TOKENS_AS_SENT = "aisre.input_tokens_as_sent"

PROMPT_NAME = ("aisre.prompt.name", "gen_ai.prompt.name", "langfuse.prompt.name", "traceloop.prompt.key")
PROMPT_VERSION = (
    "aisre.prompt.version",
    "gen_ai.prompt.version",
    "langfuse.prompt.version",
    "traceloop.prompt.version",
    "llm.prompt_template.version",
)

SERVICE_NAME = "service.name"
SERVICE_VERSION = ("service.version",)
ENVIRONMENT = ("deployment.environment.name", "deployment.environment")

HTTP_STATUS = ("http.response.status_code", "http.status_code")
RESEND_COUNT = ("http.request.resend_count", "aisre.retry.attempt")
ERROR_TYPE = ("error.type",)
TOOL_NAME = ("gen_ai.tool.name", "tool.name", "ai.toolCall.name")
USER_ID = ("user.id", "enduser.id", "gen_ai.user.id")
SESSION_ID = ("session.id", "gen_ai.conversation.id")

# "Error code: 429 - ..." (openai, anthropic clients), "status code 503", "HTTP 500",
# "status_code: 500, model_name: …" (Pydantic AI's ModelHTTPError).
HTTP_STATUS_IN_MESSAGE = re.compile(
    r"(?:error code|status(?:[ _]code)?|http)[:= ]+([1-5]\d\d)\b", re.IGNORECASE
)
RETRYABLE_ERROR_TYPES = frozenset(
    {
        "RateLimitError",
        "APITimeoutError",
        "APIConnectionError",
        "InternalServerError",
        "ServiceUnavailableError",
        "timeout",
        "Timeout",
        "TimeoutError",
        "429",
        "500",
        "502",
        "503",
        "504",
    }
)

SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_CODES = ("unset", "ok", "error")


_provider_cache: dict[str, str] = {}


def canonical_provider(raw: str) -> str:
    """The OTel registry name for a provider as sent ("openai.chat" → "openai",
    "amazon-bedrock" → "aws.bedrock"); an unknown name is kept, less any API suffix."""
    known = _provider_cache.get(raw)
    if known is not None:
        return known
    name = raw.strip().lower()
    while name not in CANONICAL_PROVIDERS and name not in PROVIDER_ALIASES:
        for suffix in PROVIDER_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
        else:
            break
    name = PROVIDER_ALIASES.get(name, name)
    # An unknown name is kept as sent (less its suffix), not lower-cased beyond recognition.
    out = name if name in CANONICAL_PROVIDERS else raw.strip()[: len(name)] or raw
    if len(_provider_cache) < 10_000:
        _provider_cache[raw] = out
    return out
