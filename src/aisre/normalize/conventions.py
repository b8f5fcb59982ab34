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
# Older OpenLLMetry.
LLM_REQUEST_TYPE = "llm.request.type"
LLM_REQUEST_TYPES = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
}
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

PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
REQUEST_MODEL = ("gen_ai.request.model", "llm.request.model", "embedding.model_name")
RESPONSE_MODEL = ("gen_ai.response.model", "llm.response.model", "llm.model_name", "embedding.model_name")
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
TOOL_NAME = ("gen_ai.tool.name", "tool.name")
USER_ID = ("user.id", "enduser.id", "gen_ai.user.id")
SESSION_ID = ("session.id", "gen_ai.conversation.id")

# "Error code: 429 - ..." (openai, anthropic clients), "status code 503", "HTTP 500".
HTTP_STATUS_IN_MESSAGE = re.compile(
    r"(?:error code|status(?: code)?|http)[:= ]+([1-5]\d\d)\b", re.IGNORECASE
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
