"""Seeded PII sent by the OTel SDK exporter never reaches the DuckDB file (nor its WAL)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client.parser import text_string_to_metric_families

# Distinct values so each one's absence from the file bytes is unambiguous.
PII = {
    "email": "zelda.quarterfield@example-pii.org",
    "phone": "+1 415 555 2671",
    "card": "4539 1488 0343 6467",
    "iban": "GB82WEST12345698765432",
    "openai_key": "sk-proj-Q9x8W7v6U5t4S3r2Q1p0OnMlKjIh",
    "github_token": "ghp_Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8",
    "ipv4": "203.0.113.77",
}
# Short, distinctive fragments: a match on any of these would mean PII was stored.
NEEDLES = [
    b"zelda.quarterfield", b"example-pii.org", b"555 2671", b"4539 1488", b"45391488",
    b"WEST1234569876", b"Q9x8W7v6U5t4", b"Zy9Xw8Vu7Ts6", b"203.0.113.77",
]


def _send(server_url: str) -> str:
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server_url + "/v1/traces")))
    tracer = provider.get_tracer("pii-test")
    prompt = (
        f"My e-mail is {PII['email']}, call me on {PII['phone']}. Charge card {PII['card']} "
        f"or wire to {PII['iban']}. My key is {PII['openai_key']} and {PII['github_token']}; "
        f"I connect from {PII['ipv4']}."
    )
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": prompt}]}])
    with tracer.start_as_current_span("POST /ask", kind=SpanKind.SERVER, attributes={"aisre.journey": "ask"}) as root:
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 40, "gen_ai.usage.output_tokens": 12,
            "gen_ai.input.messages": messages,
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                {"type": "text", "content": f"I will write to {PII['email']}."}]}]),
        }) as chat:
            chat.add_event("gen_ai.user.message", {"content": prompt})
        with tracer.start_as_current_span("execute_tool lookup", attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup",
            "gen_ai.tool.call.arguments": json.dumps({"email": PII["email"], "card": PII["card"]}),
            "gen_ai.tool.call.result": json.dumps({"phone": PII["phone"]}),
        }):
            pass
        with tracer.start_as_current_span("vector_search docs", attributes={
            "db.system.name": "pgvector",
            "retrieval.documents.0.document.content": f"Customer {PII['email']} paid with {PII['card']}",
        }):
            pass
    provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


def _content_metrics(server_url: str) -> dict[str, float]:
    """aisre_ingest_content_values_total for the default tenant, by action."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{server_url}/metrics").text):
        for sample in family.samples:
            if sample.name == "aisre_ingest_content_values_total" and sample.labels["tenant"] == "default":
                found[sample.labels["action"]] = sample.value
    return found


def _db_bytes(db: Path) -> bytes:
    data = db.read_bytes()
    wal = db.with_name(db.name + ".wal")
    if wal.exists():
        data += wal.read_bytes()
    return data


def _found(data: bytes) -> list[bytes]:
    return [needle for needle in NEEDLES if needle in data]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["redact", "drop", "keep"])
def test_pii_reaches_the_file_only_when_kept(server_factory, tmp_path, mode: str) -> None:
    db = tmp_path / f"{mode}.duckdb"
    # content_capture_file gives this tenant its mode; the global default stays redact.
    policy = tmp_path / "content.yaml"
    policy.write_text(f"tenants:\n  default: {mode}\n")
    server = server_factory(db, "--setting", f"content_capture_file={policy}", "--setting", "checkpoint_mb=1024")
    trace_id = _send(server.url)

    doc = httpx.get(f"{server.url}/api/traces/{trace_id}").json()
    spans = {s["name"]: s for s in doc["spans"]}
    chat, tool, search = spans["chat gpt-4o-mini"], spans["execute_tool lookup"], spans["vector_search docs"]
    if mode == "redact":
        content = chat["genai"]["input_messages"][0]["parts"][0]["content"]
        for kind in ("EMAIL", "PHONE", "CARD", "IBAN", "SECRET", "IP"):
            assert f"[REDACTED:{kind}]" in content, content
        # 7 in the prompt attribute, 1 in the output, 7 in the message event.
        assert chat["attributes"]["aisre.redactions"] == 15
        assert tool["attributes"]["aisre.redactions"] == 3
        assert search["attributes"]["aisre.redactions"] == 2
        assert json.loads(tool["attributes"]["gen_ai.tool.call.arguments"]) == {
            "email": "[REDACTED:EMAIL]", "card": "[REDACTED:CARD]"}
    elif mode == "drop":
        assert "gen_ai.input.messages" not in chat["attributes"]
        assert PII["email"] not in json.dumps(doc)
        assert chat["attributes"]["aisre.content_dropped"] == 3
        assert "gen_ai.tool.call.arguments" not in tool["attributes"]
        assert "retrieval.documents.0.document.content" not in search["attributes"]
    else:
        assert PII["email"] in chat["genai"]["input_messages"][0]["parts"][0]["content"]
        assert "aisre.redactions" not in chat["attributes"]
    # The model columns survive every mode.
    assert (chat["request_model"], chat["input_tokens"]) == ("gpt-4o-mini", 40)
    # /metrics counts what ingest changed, per tenant: the sum of the spans' own counts.
    content = _content_metrics(server.url)
    if mode == "redact":
        assert content == {"redacted": 15 + 3 + 2}
    elif mode == "drop":
        dropped = sum(s["attributes"].get("aisre.content_dropped", 0) for s in doc["spans"])
        assert dropped >= 5 and content == {"dropped": dropped}
    else:
        assert content == {}

    # Before close the data is in the WAL (checkpoint_mb is large), after close in the file.
    before_close = _found(_db_bytes(db))
    assert server.stop() == 0
    after_close = _found(_db_bytes(db))
    if mode == "keep":
        # The control: the same grep does find content that was kept.
        assert before_close, "kept content should be visible in the WAL"
    else:
        assert before_close == [] and after_close == []


# Every secret kind the redactor claims, with digit-free and letter-only forms: none of
# these may reach the DuckDB file or its WAL, in content or in the attribute-rule places.
SECRETS = {
    "aws_no_digit": "AKIAFJPKMNPNFPZCJIAB",
    "aws_secret": "aws_secret_access_key=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",
    "gcp": "AIzaSyQx7Vb2Nm4Lk9Jh3Gf6Dd8Ss1Aa0PpOoIiUu",
    "azure": "AccountKey=Qm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6QUJDREVGR0g=",
    "github": "ghp_ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210",
    "slack": "xoxb-1234567890-0987654321-QwErTyUiOpAsDfGh",
    "stripe": "sk_live_QwErTyUiOpAsDfGhJkLz",
    "openai": "sk-proj-QwErTyUiOpAsDfGhJkLzXcVbNm",
    "anthropic": "sk-ant-api03-QwErTyUiOpAsDfGhJkLzXcVbNm_0123",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJxd2VydHkifQ.QwErTyUiOpAsDfGhJkLzXcVbNm",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAzQwErTyUiOpAsDfGh\n-----END RSA PRIVATE KEY-----",
    "password": "password=hunterhunter",
    "api_key": "api_key=lettersonlykeyvalue",
    "token": "token: lettersonlytokenvalue",
    "bearer": "Bearer lettersonlybearervalue",
    "entropy": "Zq8Lw3Rt6Yp1Mx4Nc7Vb2Hs5Jd9Kf0Gg",
    "card_thin": "4539\u20091488\u20090343\u20096467",
}
SECRET_NEEDLES = [
    b"AKIAFJPKMNPNFPZCJIAB", b"Jq7vR2mXz9LpW4tYk8Nc", b"AIzaSyQx7Vb2Nm4Lk9", b"Qm9vYmFyYmF6cXV4MTIz",
    b"ghp_ZyXwVuTsRq", b"xoxb-1234567890", b"sk_live_QwErTy", b"sk-proj-QwErTy", b"sk-ant-api03",
    b"eyJhbGciOiJIUzI1NiJ9", b"MIIEowIBAAKCAQEAzQ", b"hunterhunter", b"lettersonlykeyvalue",
    b"lettersonlytokenvalue", b"lettersonlybearervalue", b"Zq8Lw3Rt6Yp1Mx4Nc7Vb", b"4539\xe2\x80\x891488",
    b"zelda.quarterfield",
]


def _send_secrets(server_url: str, users: list[str]) -> None:
    text = " ; ".join(SECRETS.values())
    provider = TracerProvider(resource=Resource.create({
        "service.name": "support-bot", "deployment.note": f"deployed with {SECRETS['aws_no_digit']} and {SECRETS['password']}",
    }))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server_url + "/v1/traces")))
    tracer = provider.get_tracer("secrets-test")
    for i, user in enumerate(users):
        with tracer.start_as_current_span("POST /ask", kind=SpanKind.SERVER, attributes={
            "aisre.journey": "ask", "user.id": user, "user.email": f"{user}@example-pii.org",
            "http.request.header.authorization": f"Bearer {SECRETS['bearer']}",
            "url.query": f"q=1&{SECRETS['api_key']}",
        }):
            if i == 0:
                # Every place at once, on the first trace: content, exception message and
                # stack trace, status message, span name.
                name = f"lookup {SECRETS['aws_no_digit']} {SECRETS['github']}"
                with tracer.start_as_current_span(name, attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": text}]}]),
                    "gen_ai.prompt": f"note {SECRETS['aws_no_digit']} and {SECRETS['password']} end",
                }) as span:
                    span.add_event("exception", {"exception.type": "AuthError", "exception.message": text,
                                                 "exception.stacktrace": f"Traceback: {text}"})
                    span.set_status(Status(StatusCode.ERROR, f"upstream refused {SECRETS['openai']} {SECRETS['password']}"))
    provider.shutdown()


@pytest.mark.slow
def test_secrets_of_every_kind_never_reach_the_file_and_users_still_count(server_factory, tmp_path) -> None:
    db = tmp_path / "secrets.duckdb"
    server = server_factory(db, "--setting", "checkpoint_mb=1024", "--setting", "redact_hash_salt=e2e-test-key")
    users = [f"zelda.quarterfield-{i % 37}" for i in range(500)]
    _send_secrets(server.url, users)

    runs = httpx.get(f"{server.url}/api/journeys/runs", params={"journey": "ask", "limit": 1000}).json()["items"]
    assert len(runs) == 500
    hashed = {r["user_id"] for r in runs}
    assert len(hashed) == 37 and all(h.startswith("hmac:") for h in hashed)
    assert not hashed & set(users)
    content = _content_metrics(server.url)
    # Per root span: user.id and user.email hashed and the api_key in url.query redacted
    # (all "redacted"), the authorization header dropped.
    assert content["dropped"] == 500 and content["redacted"] >= 1000 + 500

    before_close = [n for n in SECRET_NEEDLES if n in _db_bytes(db)]
    assert server.stop() == 0
    after_close = [n for n in SECRET_NEEDLES if n in _db_bytes(db)]
    assert before_close == [] and after_close == []
