"""A fake OpenAI-compatible provider on loopback, with fault knobs.

Answers ``POST /v1/chat/completions`` (plain and SSE streaming) and ``POST /v1/embeddings``
with OpenAI-shaped bodies, realistic usage and latency. Faults (HTTP 500, HTTP 429 with
``retry-after``, extra latency) are set per model and can change while it runs. It keeps
its own count of the usage it returned, per model, as ground truth for tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import random
import socket
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aisre.demo import corpus, tools
from aisre.demo.models import CHAT_MODELS, MODELS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Faults:
    """Fault knobs for one model; rates are probabilities per request."""

    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    extra_latency_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "rate_limit_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.extra_latency_s < 0:
            raise ValueError(f"extra_latency_s must be >= 0, got {self.extra_latency_s}")


@dataclass
class ModelUsage:
    """What the provider answered for one model: the ground truth spans are checked against."""

    calls_ok: int = 0
    input_tokens: int = 0  # summed over successful calls whose usage was returned
    output_tokens: int = 0
    server_errors: int = 0  # HTTP 500 answers
    rate_limited: int = 0  # HTTP 429 answers
    streamed: int = 0


def estimate_tokens(text: str) -> int:
    """Rough token count: 1.3 tokens per whitespace-separated word."""
    words = len(text.split())
    return math.ceil(words * 1.3) if words else 0


def prompt_tokens(messages: Iterable[Any], tool_specs: Any = None) -> int:
    """Input tokens of a chat request, counting message overhead and tool definitions."""
    total = 3  # every reply is primed with an assistant header
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += 4 + estimate_tokens(_content_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            total += 3 + estimate_tokens(
                f"{function.get('name', '')} {_spaced(function.get('arguments', ''))}"
            )
    for tool in tool_specs or ():
        total += 8 + estimate_tokens(_spaced(json.dumps(tool.get("function", {}))))
    return total


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _spaced(text: str) -> str:
    # JSON has few spaces; split on punctuation so it is not counted as one "word".
    return "".join(c if c.isalnum() else " " for c in text)


@dataclass(frozen=True)
class _Plan:
    status: int
    latency_s: float
    retry_after_ms: int = 0


class FakeProvider:
    """An OpenAI-compatible HTTP server on 127.0.0.1 with run-time fault knobs."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        time_scale: float = 1.0,
        tool_call_rate: float = 0.35,
    ) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._time_scale = time_scale
        self._tool_call_rate = tool_call_rate
        self._faults: dict[str, Faults] = dict.fromkeys(MODELS, Faults())
        self._usage: dict[str, ModelUsage] = {m: ModelUsage() for m in MODELS}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._url: str | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL for ``openai.OpenAI(base_url=...)``, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self._url is None:
            raise RuntimeError("provider is not started")
        return self._url

    def start(self) -> str:
        """Serve on a free loopback port in a background thread; return the base URL."""
        if self._url is not None:
            return self._url
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            loop="asyncio",
            http="h11",
            log_config=None,  # leave the process's logging setup alone
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="aisre-demo-provider", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(5)
                sock.close()
                raise RuntimeError("fake provider failed to start")
            time.sleep(0.005)
        self._server, self._thread, self._socket = server, thread, sock
        self._url = f"http://127.0.0.1:{port}/v1"
        log.info("fake provider listening on %s", self._url)
        return self._url

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        self._url = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(15)
            if thread.is_alive():
                log.warning("fake provider thread did not stop in time")
        if sock is not None:
            sock.close()

    def __enter__(self) -> FakeProvider:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- knobs -------------------------------------------------------------------------

    def set_faults(self, faults: Faults, models: Iterable[str] | None = None) -> None:
        """Apply ``faults`` to ``models`` (default: every chat model); others become healthy."""
        chosen = set(CHAT_MODELS if models is None else models)
        unknown = chosen - set(MODELS)
        if unknown:
            raise ValueError(f"unknown model(s) {sorted(unknown)}; known: {sorted(MODELS)}")
        with self._lock:
            self._faults = {m: (faults if m in chosen else Faults()) for m in MODELS}

    def set_model_faults(self, model: str, faults: Faults) -> None:
        """Change one model's faults, leaving the others as they are."""
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; known: {sorted(MODELS)}")
        with self._lock:
            self._faults = {**self._faults, model: faults}

    def faults(self, model: str) -> Faults:
        """Current faults of ``model``."""
        with self._lock:
            return self._faults[model]

    def set_tool_call_rate(self, rate: float) -> None:
        """Probability that a chat request offering tools (``tool_choice=auto``) calls one."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"tool_call_rate must be within [0, 1], got {rate}")
        with self._lock:
            self._tool_call_rate = rate

    def usage(self) -> dict[str, ModelUsage]:
        """A snapshot of the usage answered so far, per model."""
        with self._lock:
            return {m: replace(u) for m, u in self._usage.items()}

    # -- request handling --------------------------------------------------------------

    def _plan(self, model: str) -> _Plan:
        profile = MODELS[model]
        with self._lock:
            faults = self._faults[model]
            draw = self._rng.random()
            latency = profile.median_latency_s * math.exp(self._rng.gauss(0.0, profile.latency_sigma))
            jitter = self._rng.random()
        latency = (latency + faults.extra_latency_s) * self._time_scale
        if draw < faults.rate_limit_rate:
            # Rate limits are refused fast, before any model work.
            return _Plan(429, (0.01 + 0.02 * jitter) * self._time_scale, 200 + int(800 * jitter))
        if draw < faults.rate_limit_rate + faults.error_rate:
            return _Plan(500, latency * (0.3 + 0.5 * jitter))
        return _Plan(200, latency)

    def _record(self, model: str, status: int, usage: dict[str, int] | None, stream: bool) -> None:
        with self._lock:
            entry = self._usage[model]
            if status == 429:
                entry.rate_limited += 1
            elif status >= 500:
                entry.server_errors += 1
            else:
                entry.calls_ok += 1
                entry.streamed += int(stream)
                if usage is not None:
                    entry.input_tokens += usage["prompt_tokens"]
                    entry.output_tokens += usage.get("completion_tokens", 0)

    async def _models(self, request: Request) -> Response:
        data = [{"id": m, "object": "model", "owned_by": "aisre-demo"} for m in MODELS]
        return JSONResponse({"object": "list", "data": data})

    async def _body(self, request: Request, kind: str) -> tuple[dict[str, Any], str] | Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", "invalid_request_error")
        model = body.get("model")
        profile = MODELS.get(model) if isinstance(model, str) else None
        if profile is None or profile.kind != kind:
            return _error(
                404, f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error", code="model_not_found",
            )
        return body, str(model)

    async def _fault(self, model: str, plan: _Plan, stream: bool) -> Response | None:
        if plan.status == 200:
            return None
        await asyncio.sleep(plan.latency_s)
        self._record(model, plan.status, None, stream)
        if plan.status == 429:
            wait_ms = plan.retry_after_ms
            return _error(
                429,
                f"Rate limit reached for {model} in organization org-demo on requests per min "
                f"(RPM): Limit 500, Used 500, Requested 1. Please try again in {wait_ms}ms.",
                "requests", code="rate_limit_exceeded",
                headers={
                    "retry-after": str(max(1, math.ceil(wait_ms / 1000))),
                    "retry-after-ms": str(wait_ms),
                    "x-ratelimit-limit-requests": "500",
                    "x-ratelimit-remaining-requests": "0",
                },
            )
        return _error(500, "The server had an error while processing your request. Sorry about that!",
                      "server_error")

    async def _chat(self, request: Request) -> Response:
        parsed = await self._body(request, "chat")
        if isinstance(parsed, Response):
            return parsed
        body, model = parsed
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array.", "invalid_request_error")
        stream = bool(body.get("stream"))
        plan = self._plan(model)
        failed = await self._fault(model, plan, stream)
        if failed is not None:
            return failed

        message, finish_reason = self._reply(model, body)
        usage = _usage(prompt_tokens(messages, body.get("tools")), _completion_tokens(message))
        created = int(time.time())
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._record(model, 200, usage if include_usage else None, True)
            chunks = _stream_chunks(completion_id, created, model, message, finish_reason,
                                    usage if include_usage else None)
            return StreamingResponse(self._paced(chunks, plan.latency_s),
                                     media_type="text/event-stream",
                                     headers=_ok_headers(plan.latency_s))
        await asyncio.sleep(plan.latency_s)
        self._record(model, 200, usage, False)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_demo",
                "service_tier": "default",
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
                ],
                "usage": usage,
            },
            headers=_ok_headers(plan.latency_s),
        )

    def _reply(self, model: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The assistant message: a tool call when offered tools and the dice say so, else text."""
        messages = body["messages"]
        offered = tools.tool_names(body.get("tools"))
        used = [m for m in messages if isinstance(m, dict) and m.get("role") == "tool"]
        choice = body.get("tool_choice", "auto")
        with self._lock:
            rate = self._tool_call_rate
            draw = self._rng.random()
            words = max(8, round(MODELS[model].answer_words * math.exp(self._rng.gauss(0, 0.4))))
            answer_seed = self._rng.getrandbits(32)
            call_id = f"call_{self._rng.getrandbits(64):016x}"

        name: str | None = None
        if offered and choice != "none":
            if isinstance(choice, dict):
                name = (choice.get("function") or {}).get("name")
            elif choice == "required":
                # An agent works through its tools in order: look up, search, then act.
                name = offered[min(len(used), len(offered) - 1)]
            elif not used and draw < rate:
                name = offered[0]
        if name:
            context = " ".join(_content_text(m.get("content")) for m in messages if isinstance(m, dict))
            arguments = json.dumps(tools.arguments_for(name, context))
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            return {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}, "tool_calls"
        text = corpus.answer_text(random.Random(answer_seed), words)
        return {"role": "assistant", "content": text, "refusal": None}, "stop"

    async def _paced(self, chunks: list[str], latency_s: float) -> AsyncIterator[str]:
        # First token after ~35 % of the time, the rest spread over the remaining chunks.
        await asyncio.sleep(latency_s * 0.35)
        gap = latency_s * 0.65 / max(len(chunks) - 1, 1)
        for i, chunk in enumerate(chunks):
            if i:
                await asyncio.sleep(gap)
            yield chunk

    async def _embeddings(self, request: Request) -> Response:
        parsed = await self._body(request, "embeddings")
        if isinstance(parsed, Response):
            return parsed
        body, model = parsed
        raw = body.get("input")
        inputs: list[Any] = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        if any(not isinstance(i, str | list) for i in inputs):
            return _error(400, "'input' must be a string or an array of strings or tokens.",
                          "invalid_request_error")
        dims = body.get("dimensions") or MODELS[model].dimensions
        if not isinstance(dims, int) or not 1 <= dims <= MODELS[model].dimensions:
            return _error(400, f"dimensions must be between 1 and {MODELS[model].dimensions}.",
                          "invalid_request_error")
        plan = self._plan(model)
        failed = await self._fault(model, plan, False)
        if failed is not None:
            return failed
        as_base64 = body.get("encoding_format") == "base64"
        tokens = 0
        data = []
        for index, item in enumerate(inputs):
            tokens += len(item) if isinstance(item, list) else estimate_tokens(item)
            vector = _embedding(str(item), dims)
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode("ascii")
                if as_base64 else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        await asyncio.sleep(plan.latency_s)
        self._record(model, 200, usage, False)
        return JSONResponse(
            {"object": "list", "data": data, "model": model, "usage": usage},
            headers=_ok_headers(plan.latency_s),
        )


def _completion_tokens(message: dict[str, Any]) -> int:
    if message.get("tool_calls"):
        return sum(
            6 + estimate_tokens(f"{c['function']['name']} {_spaced(c['function']['arguments'])}")
            for c in message["tool_calls"]
        )
    return estimate_tokens(message.get("content") or "")


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _embedding(text: str, dims: int) -> list[float]:
    # Same text, same vector: seeded from the text, then normalized like the real thing.
    rng = random.Random(text)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


def _stream_chunks(
    completion_id: str,
    created: int,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    usage: dict[str, Any] | None,
) -> list[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_demo",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if usage is not None:
            out["usage"] = None
        return out

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if message.get("tool_calls"):
        for index, call in enumerate(message["tool_calls"]):
            function = call["function"]
            events.append(chunk({"tool_calls": [{
                "index": index, "id": call["id"], "type": "function",
                "function": {"name": function["name"], "arguments": ""},
            }]}))
            arguments = function["arguments"]
            step = max(1, len(arguments) // 3)
            for start in range(0, len(arguments), step):
                events.append(chunk({"tool_calls": [{
                    "index": index, "function": {"arguments": arguments[start:start + step]},
                }]}))
    else:
        words = (message.get("content") or "").split(" ")
        # At most ~12 content chunks: realistic pacing without thousands of tiny events.
        step = max(1, math.ceil(len(words) / 12))
        for start in range(0, len(words), step):
            piece = " ".join(words[start:start + step])
            events.append(chunk({"content": piece if start == 0 else " " + piece}))
    events.append(chunk({}, finish_reason))
    if usage is not None:
        events.append({**chunk({}), "choices": [], "usage": usage})
    return [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]


def _ok_headers(latency_s: float) -> dict[str, str]:
    return {
        "x-request-id": f"req_{uuid.uuid4().hex}",
        "openai-processing-ms": str(int(latency_s * 1000)),
    }


def _error(
    status: int,
    message: str,
    error_type: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers={"x-request-id": f"req_{uuid.uuid4().hex}",
                                                            **(headers or {})})
