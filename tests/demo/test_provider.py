"""The fake OpenAI-compatible provider, driven through the real ``openai`` client."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import openai
import pytest

from aisre.demo.provider import FakeProvider, Faults, estimate_tokens, prompt_tokens
from aisre.demo.tools import ASK_TOOLS, TRIAGE_TOOLS


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider(seed=7, time_scale=0.01) as fake:
        yield fake


@pytest.fixture
def client(provider: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=provider.url, api_key="demo", max_retries=0) as c:
        yield c


MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Where is my order #12345 please?"},
]


def test_chat_usage_is_computed_from_the_text_and_counted(
    provider: FakeProvider, client: openai.OpenAI
) -> None:
    response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    usage = response.usage
    assert usage is not None
    assert usage.prompt_tokens == prompt_tokens(MESSAGES) == 3 + (4 + 3) + (4 + 8)
    content = response.choices[0].message.content
    assert content and usage.completion_tokens == estimate_tokens(content) > 0
    assert response.model == "gpt-4o-mini" and response.choices[0].finish_reason == "stop"
    counted = provider.usage()["gpt-4o-mini"]
    assert (counted.calls_ok, counted.input_tokens, counted.output_tokens) == (
        1, usage.prompt_tokens, usage.completion_tokens,
    )


def test_streaming_sends_usage_last_when_asked(provider: FakeProvider, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4.1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == estimate_tokens(text) > 0
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    counted = provider.usage()["gpt-4.1"]
    assert counted.streamed == 1 and counted.output_tokens == chunks[-1].usage.completion_tokens


def test_tool_calls_follow_tool_choice(provider: FakeProvider, client: openai.OpenAI) -> None:
    required = client.chat.completions.create(
        model="gpt-4.1", messages=MESSAGES, tools=list(TRIAGE_TOOLS), tool_choice="required"
    )
    call = required.choices[0].message.tool_calls[0]
    assert required.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"order_id": "12345"}

    provider.set_tool_call_rate(0.0)
    auto = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=list(ASK_TOOLS))
    assert auto.choices[0].message.tool_calls is None
    provider.set_tool_call_rate(1.0)
    auto = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=list(ASK_TOOLS))
    assert auto.choices[0].message.tool_calls[0].function.name == "lookup_order"
    # Tool definitions are part of the prompt.
    assert auto.usage.prompt_tokens == prompt_tokens(MESSAGES, ASK_TOOLS) > prompt_tokens(MESSAGES)


def test_streamed_tool_call_arrives_in_pieces(provider: FakeProvider, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=list(ASK_TOOLS), tool_choice="required",
        stream=True, stream_options={"include_usage": True},
    )
    pieces = [tc for c in stream if c.choices for tc in (c.choices[0].delta.tool_calls or ())]
    assert len(pieces) > 2
    assert pieces[0].function.name == "lookup_order"
    assert json.loads("".join(p.function.arguments or "" for p in pieces)) == {"order_id": "12345"}


def test_fault_knobs_produce_429_with_retry_after_and_500(
    provider: FakeProvider, client: openai.OpenAI
) -> None:
    provider.set_faults(Faults(rate_limit_rate=1.0), ["gpt-4o-mini"])
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    headers = limited.value.response.headers
    assert int(headers["retry-after"]) >= 1 and int(headers["retry-after-ms"]) >= 200
    assert limited.value.code == "rate_limit_exceeded"
    # Other models stay healthy.
    client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)

    provider.set_model_faults("gpt-4.1", Faults(error_rate=1.0))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    usage = provider.usage()
    assert (usage["gpt-4o-mini"].rate_limited, usage["gpt-4o-mini"].calls_ok) == (1, 0)
    assert (usage["gpt-4.1"].server_errors, usage["gpt-4.1"].calls_ok) == (1, 1)
    assert usage["gpt-4.1"].input_tokens == prompt_tokens(MESSAGES)  # failed calls add nothing


def test_embeddings_base64_and_float(provider: FakeProvider, client: openai.OpenAI) -> None:
    # The openai client asks for base64 by default and decodes it.
    first = client.embeddings.create(model="text-embedding-3-small", input="refund policy", dimensions=64)
    again = client.embeddings.create(
        model="text-embedding-3-small", input=["refund policy", "shipping"], encoding_format="float"
    )
    assert len(first.data[0].embedding) == 64 and len(again.data[1].embedding) == 1536
    assert first.usage.prompt_tokens == estimate_tokens("refund policy") == 3
    assert again.usage.prompt_tokens == 3 + 2
    norm = sum(v * v for v in again.data[0].embedding)
    assert norm == pytest.approx(1.0, abs=1e-3)
    assert provider.usage()["text-embedding-3-small"].input_tokens == 3 + 5


def test_bad_requests_are_refused_like_openai(provider: FakeProvider, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="gpt-4o-mini", input="x")
    reply = httpx.post(f"{provider.url}/chat/completions", content=b"{not json")
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(ValueError):
        provider.set_faults(Faults(), ["no-such-model"])
    with pytest.raises(ValueError):
        Faults(error_rate=1.5)


def test_stop_releases_the_port() -> None:
    fake = FakeProvider(time_scale=0.01)
    url = fake.start()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    fake.stop()
    fake.stop()  # idempotent
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    with pytest.raises(RuntimeError):
        _ = fake.url
