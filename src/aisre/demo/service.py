"""The simulated support-bot: two user journeys driven through the real ``openai`` client.

``ask`` is RAG: embed the question, search the vector store, answer with the documents in
the system prompt, maybe look an order up with a tool and answer again. ``triage-agent``
is a tool-using agent: a few rounds of model call → tool call, then a handover note.
The service retries 429s itself (each retry a new sibling span) and can fall back to
another model, so retries and fallbacks are visible in traces.
"""

from __future__ import annotations

import contextvars
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from opentelemetry import baggage, context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from aisre.demo import corpus, tools
from aisre.demo.telemetry import retry_attempt

T = TypeVar("T")

ASK = "ask"
TRIAGE = "triage-agent"
JOURNEYS: tuple[str, ...] = (ASK, TRIAGE)
ASK_PROMPT = "ask-answer"
TRIAGE_PROMPT = "triage-system"
TRIAGE_PROMPT_VERSION = "v2"


@dataclass(frozen=True)
class ServiceConfig:
    """How one replica of the service behaves; scenarios build these."""

    service_version: str = "1.4.2"
    prompt_version: str = "v3"
    prompt_tokens_factor: float = 1.0  # >1 models a longer prompt template
    chat_model: str = "gpt-4o-mini"
    agent_model: str = "gpt-4.1"
    embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int = 256
    fallback_model: str | None = None  # tried once the chat model has failed for good
    max_retries: int = 2  # application-level retries of a 429
    retry_backoff_s: float = 0.25
    stream_share: float = 0.3  # share of ask answers streamed
    app_failure_rate: float = 0.0  # answers rejected by the service's own validation
    retrieval_k: int = 3
    groundedness_drop: float = 0.0  # how much less grounded answers are (online evaluation score)
    reask_rate: float = 0.0  # chat answers the service rejects and asks again (billed retries)
    max_reasks: int = 2  # re-asks per call, apart from the 429 retries
    # Triage-agent misbehaviour the demo policy catches: a run that looks the same order up
    # again and again, and a run that issues a refund it may not.
    agent_loop_rate: float = 0.0
    agent_loop_calls: int = 8
    agent_denied_tool_rate: float = 0.0
    # The client's deadline for one chat call, in the provider's (unscaled) seconds; None: none.
    request_timeout_s: float | None = None
    # Vector searches that find nothing (an emptied or stale index): the service then has no
    # context to ground an answer on and refuses to answer.
    retrieval_empty_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.prompt_tokens_factor <= 0:
            raise ValueError(f"prompt_tokens_factor must be > 0, got {self.prompt_tokens_factor}")
        if self.max_reasks < 0:
            raise ValueError(f"max_reasks must be >= 0, got {self.max_reasks}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("stream_share", "app_failure_rate", "groundedness_drop", "reask_rate", "agent_loop_rate",
                     "agent_denied_tool_rate", "retrieval_empty_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        if self.request_timeout_s is not None and self.request_timeout_s <= 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")


@dataclass
class JourneyResult:
    """What one journey run did, as the service saw it."""

    journey: str
    trace_id: str
    ok: bool = True
    error_type: str | None = None
    llm_calls: int = 0  # every model call attempt, failed ones included
    rate_limited: int = 0  # 429s received
    server_errors: int = 0  # 5xx received
    retries: int = 0  # application-level retries made
    fallbacks: int = 0  # switches to the fallback model
    tool_calls: int = 0
    streamed: int = 0


class AnswerRejected(Exception):
    """The service's own output validation refused the model's answer."""


class NoContext(Exception):
    """Retrieval found no document: the service will not answer without context."""


_REASK_ALLOWED: contextvars.ContextVar[bool] = contextvars.ContextVar("aisre_demo_reask", default=False)


class _Reask(Exception):
    """An answer the service throws away and asks for again (the call was billed)."""


@dataclass(frozen=True)
class _ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class _Reply:
    content: str | None
    tool_calls: tuple[_ToolCall, ...]


class SupportBot:
    """The simulated application; safe to use from several threads at once."""

    def __init__(
        self,
        client: openai.OpenAI,
        tracer_provider: trace.TracerProvider,
        *,
        time_scale: float = 1.0,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self._client = client
        self._tracer = tracer_provider.get_tracer("support-bot")
        self._time_scale = time_scale
        self._sleep = sleep

    def run(self, journey: str, config: ServiceConfig, rng: random.Random) -> JourneyResult:
        """Run one journey by name."""
        if journey == ASK:
            return self.ask(config, rng)
        if journey == TRIAGE:
            return self.triage(config, rng)
        raise ValueError(f"unknown journey {journey!r}; known: {JOURNEYS}")

    # -- journeys ----------------------------------------------------------------------

    def ask(self, config: ServiceConfig, rng: random.Random) -> JourneyResult:
        """The RAG journey behind ``POST /ask``."""
        question = rng.choice(corpus.QUESTIONS).format(order=corpus.order_number(rng))
        attributes = {
            "aisre.journey": ASK,
            "http.request.method": "POST",
            "http.route": "/ask",
            "url.path": "/ask",
            "user.id": corpus.user_id(rng),
            "session.id": corpus.session_id(rng),
            "aisre.prompt.name": ASK_PROMPT,
            "aisre.prompt.version": config.prompt_version,
        }
        token = context.attach(baggage.set_baggage("aisre.journey", ASK))
        try:
            with self._tracer.start_as_current_span(
                "POST /ask", kind=SpanKind.SERVER, attributes=attributes
            ) as root:
                result = JourneyResult(ASK, format(root.get_span_context().trace_id, "032x"))
                try:
                    self._ask_steps(question, config, rng, result)
                except (openai.APIError, AnswerRejected, NoContext) as exc:
                    _failed(root, exc, result)
                    root.set_attribute("http.response.status_code", 500)
                    if isinstance(exc, AnswerRejected):
                        # The answer cited nothing it retrieved: the service's own check scores it.
                        root.set_attribute("aisre.score.hallucination", 1.0)
                else:
                    root.set_attribute("http.response.status_code", 200)
        finally:
            context.detach(token)
        return result

    def triage(self, config: ServiceConfig, rng: random.Random) -> JourneyResult:
        """The tool-using triage agent: 2 to 4 rounds of model call → tool, then a handover note."""
        issue = rng.choice(corpus.TRIAGE_ISSUES).format(order=corpus.order_number(rng))
        attributes = {
            "aisre.journey": TRIAGE,
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "triage",
            "gen_ai.agent.id": "triage-v2",
            "gen_ai.provider.name": "openai",
            "user.id": corpus.user_id(rng),
            "session.id": corpus.session_id(rng),
            "aisre.prompt.name": TRIAGE_PROMPT,
            "aisre.prompt.version": TRIAGE_PROMPT_VERSION,
        }
        token = context.attach(baggage.set_baggage("aisre.journey", TRIAGE))
        try:
            with self._tracer.start_as_current_span(
                "agent.run triage", kind=SpanKind.INTERNAL, attributes=attributes
            ) as root:
                result = JourneyResult(TRIAGE, format(root.get_span_context().trace_id, "032x"))
                try:
                    self._triage_steps(issue, config, rng, result)
                except (openai.APIError, AnswerRejected) as exc:
                    _failed(root, exc, result)
        finally:
            context.detach(token)
        return result

    # -- steps -------------------------------------------------------------------------

    def _ask_steps(
        self, question: str, config: ServiceConfig, rng: random.Random, result: JourneyResult
    ) -> None:
        self._retrying(
            config, rng, result, [config.embedding_model],
            lambda model: self._client.embeddings.create(
                model=model, input=question, dimensions=config.embedding_dimensions
            ),
        )
        # Drawn only when a scenario sets it, so other scenarios' runs stay as they were.
        empty = config.retrieval_empty_rate > 0 and rng.random() < config.retrieval_empty_rate
        docs = self._vector_search(question, 0 if empty else config.retrieval_k, rng)
        if not docs:
            raise NoContext("retrieval returned no documents: nothing to ground an answer on")
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": _ask_system_prompt(docs, config.prompt_tokens_factor)},
            {"role": "user", "content": question},
        ]
        stream = rng.random() < config.stream_share
        reply = self._chat(config, rng, result, config.chat_model, messages,
                           tool_specs=tools.ASK_TOOLS, stream=stream)
        if reply.tool_calls:
            self._use_tools(reply, messages, rng, result)
            reply = self._chat(config, rng, result, config.chat_model, messages,
                               tool_specs=tools.ASK_TOOLS, stream=stream)
        _evaluate_groundedness(docs, config, rng)
        if rng.random() < config.app_failure_rate:
            raise AnswerRejected("answer failed output validation: cites no retrieved document")

    def _triage_steps(
        self, issue: str, config: ServiceConfig, rng: random.Random, result: JourneyResult
    ) -> None:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": corpus.TRIAGE_INSTRUCTIONS},
            {"role": "user", "content": issue},
        ]
        # Drawn only when a scenario sets them, so other scenarios' runs stay as they were.
        looping = config.agent_loop_rate > 0 and rng.random() < config.agent_loop_rate
        refunding = config.agent_denied_tool_rate > 0 and rng.random() < config.agent_denied_tool_rate
        if looping:
            for _ in range(config.agent_loop_calls):
                reply = self._chat(config, rng, result, config.agent_model, messages, tool_specs=tools.TRIAGE_TOOLS,
                                   tool_choice={"type": "function", "function": {"name": "lookup_order"}})
                self._use_tools(reply, messages, rng, result)
        else:
            for _ in range(rng.randint(2, 4)):
                reply = self._chat(config, rng, result, config.agent_model, messages,
                                   tool_specs=tools.TRIAGE_TOOLS, tool_choice="required")
                if not reply.tool_calls:
                    break
                self._use_tools(reply, messages, rng, result)
        if refunding:
            reply = self._chat(config, rng, result, config.agent_model, messages,
                               tool_specs=(*tools.TRIAGE_TOOLS, tools.ISSUE_REFUND),
                               tool_choice={"type": "function", "function": {"name": "issue_refund"}})
            self._use_tools(reply, messages, rng, result)
        self._chat(config, rng, result, config.agent_model, messages,
                   tool_specs=tools.TRIAGE_TOOLS, tool_choice="none")
        if rng.random() < config.app_failure_rate:
            raise AnswerRejected("handover note failed validation: no ticket id")

    def _vector_search(self, question: str, k: int, rng: random.Random) -> list[dict[str, Any]]:
        attributes: dict[str, AttributeValue] = {
            "db.system.name": "pgvector",
            "db.operation.name": "search",
            "db.collection.name": "support_docs",
            "db.query.summary": "search support_docs",
            "server.address": "vectors.internal",
            "server.port": 5432,
        }
        with self._tracer.start_as_current_span(
            "vector_search docs", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            words = set(question.lower().split())
            scored = []
            for doc in corpus.DOCS:
                overlap = len(words & set(doc.content.lower().split()))
                scored.append((0.55 + 0.06 * overlap + 0.08 * rng.random(), doc))
            scored.sort(key=lambda pair: pair[0], reverse=True)
            docs = [
                {"id": doc.id, "score": round(min(score, 0.99), 4), "content": doc.content}
                for score, doc in scored[:k]
            ]
            self._pause(0.012, rng)
            span.set_attribute("db.response.returned_rows", len(docs))
            span.set_attribute("aisre.retrieval.documents", json.dumps(docs))
        return docs

    def _use_tools(
        self,
        reply: _Reply,
        messages: list[dict[str, Any]],
        rng: random.Random,
        result: JourneyResult,
    ) -> None:
        messages.append(
            {
                "role": "assistant",
                "content": reply.content,
                "tool_calls": [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": c.arguments}}
                    for c in reply.tool_calls
                ],
            }
        )
        for call in reply.tool_calls:
            attributes = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": call.name,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": call.id,
                "gen_ai.tool.call.arguments": call.arguments,
            }
            with self._tracer.start_as_current_span(
                f"execute_tool {call.name}", kind=SpanKind.INTERNAL, attributes=attributes
            ) as span:
                output = tools.run_tool(call.name, call.arguments, rng)
                self._pause(0.05, rng)
                span.set_attribute("gen_ai.tool.call.result", output)
            result.tool_calls += 1
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output})

    def _chat(
        self,
        config: ServiceConfig,
        rng: random.Random,
        result: JourneyResult,
        model: str,
        messages: list[dict[str, Any]],
        *,
        tool_specs: Sequence[dict[str, Any]] = (),
        tool_choice: str | dict[str, Any] = "auto",
        stream: bool = False,
    ) -> _Reply:
        models = [model]
        if config.fallback_model and config.fallback_model != model:
            models.append(config.fallback_model)

        def call(chosen: str) -> _Reply:
            kwargs: dict[str, Any] = {"model": chosen, "messages": messages, "temperature": 0.2}
            if config.request_timeout_s is not None:
                kwargs["timeout"] = config.request_timeout_s * self._time_scale
            if tool_specs:
                kwargs["tools"] = list(tool_specs)
                kwargs["tool_choice"] = tool_choice
            if stream:
                result.streamed += 1
                chunks = self._client.chat.completions.create(
                    **kwargs, stream=True, stream_options={"include_usage": True}
                )
                return _collect_stream(chunks)
            response = self._client.chat.completions.create(**kwargs)
            message = response.choices[0].message
            calls = tuple(
                _ToolCall(c.id, c.function.name, c.function.arguments)
                for c in (message.tool_calls or ())
                if getattr(c, "function", None) is not None
            )
            if config.reask_rate and _REASK_ALLOWED.get() and rng.random() < config.reask_rate:
                raise _Reask(chosen)
            return _Reply(message.content, calls)

        return self._retrying(config, rng, result, models, call)

    def _retrying(
        self,
        config: ServiceConfig,
        rng: random.Random,
        result: JourneyResult,
        models: Sequence[str],
        call: Callable[[str], T],
    ) -> T:
        """Call with each model in turn; a 429 is retried with backoff, a 5xx moves on."""
        error: openai.APIError | None = None
        for index, model in enumerate(models):
            if index:
                result.fallbacks += 1
            limited = 0  # 429s retried so far
            reasks = 0  # answers thrown away and asked again
            sent = 0
            while True:
                result.llm_calls += 1
                token = _REASK_ALLOWED.set(reasks < config.max_reasks)
                try:
                    with retry_attempt(sent):
                        return call(model)
                except _Reask:
                    reasks += 1
                    sent += 1
                    result.retries += 1
                except openai.RateLimitError as exc:
                    result.rate_limited += 1
                    error = exc
                    if limited == config.max_retries:
                        break
                    result.retries += 1
                    self._backoff(config, limited, exc, rng)
                    limited += 1
                    sent += 1
                except openai.InternalServerError as exc:
                    result.server_errors += 1
                    error = exc
                    break
                finally:
                    _REASK_ALLOWED.reset(token)
        assert error is not None  # the loops run at least once
        raise error

    def _backoff(
        self, config: ServiceConfig, attempt: int, exc: openai.APIStatusError, rng: random.Random
    ) -> None:
        # Exponential backoff with jitter, but never sooner than the provider asked.
        delay = config.retry_backoff_s * (2**attempt) * (0.5 + rng.random())
        hint = exc.response.headers.get("retry-after-ms")
        if hint and hint.isdigit():
            delay = max(delay, int(hint) / 1000)
        self._sleep(delay * self._time_scale)

    def _pause(self, median_s: float, rng: random.Random) -> None:
        self._sleep(median_s * math.exp(rng.gauss(0.0, 0.4)) * self._time_scale)


def _ask_system_prompt(docs: Sequence[dict[str, Any]], factor: float) -> str:
    base = corpus.ASK_INSTRUCTIONS + "\n\nDocuments:\n" + "\n".join(
        f"[{d['id']}] {d['content']}" for d in docs
    )
    if factor <= 1.0:
        return base
    # A longer template: worked examples appended until the prompt is ~factor times as long.
    target = len(base.split()) * factor
    parts = [base, "\n\nExamples:"]
    words = len(base.split())
    while words < target:
        parts.append(corpus.PROMPT_PADDING)
        words += len(corpus.PROMPT_PADDING.split())
    return "\n".join(parts)


def _collect_stream(chunks: Any) -> _Reply:
    content: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                content.append(delta.content)
            for piece in delta.tool_calls or ():
                entry = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                if piece.id:
                    entry["id"] = piece.id
                if piece.function is not None:
                    entry["name"] += piece.function.name or ""
                    entry["arguments"] += piece.function.arguments or ""
    return _Reply(
        "".join(content) or None,
        tuple(_ToolCall(**calls[i]) for i in sorted(calls)),
    )


def _evaluate_groundedness(docs: Sequence[dict[str, Any]], config: ServiceConfig, rng: random.Random) -> None:
    """An online judge's groundedness score for the answer, as a GenAI evaluation event on the root.

    Answers built on better-matching documents are more grounded; ``groundedness_drop`` models a
    release whose answers stray from them.
    """
    top = max((float(d["score"]) for d in docs), default=0.6)
    value = min(max(0.55 + 0.35 * top + rng.gauss(0.0, 0.04) - config.groundedness_drop, 0.0), 1.0)
    trace.get_current_span().add_event(
        "gen_ai.evaluation.result",
        {
            "gen_ai.evaluation.name": "groundedness",
            "gen_ai.evaluation.score.value": round(value, 4),
            "gen_ai.evaluation.score.label": "grounded" if value >= 0.7 else "ungrounded",
            "gen_ai.evaluation.explanation": "share of answer claims supported by the retrieved documents",
        },
    )


def _failed(root: trace.Span, exc: Exception, result: JourneyResult) -> None:
    result.ok = False
    result.error_type = type(exc).__name__
    root.record_exception(exc)
    root.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))
    root.set_attribute("error.type", type(exc).__name__)
