"""PII redaction: what the redactor finds, what it leaves, and how flatten applies it."""

from __future__ import annotations

import json
import os

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aisre.core.errors import PermanentError
from aisre.normalize.attribute_rules import hash_value
from aisre.normalize.redaction import ContentPolicy, Redactor, is_content_key, load_policy
from aisre.normalize.spans import flatten

R = Redactor("US")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to jane.doe+orders@example.co.uk today", "EMAIL"),
        ("call (415) 555-2671 after six", "PHONE"),
        ("my mobile is +44 20 7946 0958", "PHONE"),
        ("Festnetz +49 30 901820", "PHONE"),
        ("Arabic-Indic digits \u0664\u0661\u0665\u0665\u0665\u0660\u0661\u0663\u0662 +1 ٤١٥ ٥٥٥ ٢٦٧١", "PHONE"),
        ("card 4111 1111 1111 1111 exp 12/29", "CARD"),
        ("card 5500-0000-0000-0004", "CARD"),
        ("pay to DE89 3704 0044 0532 0130 00 please", "IBAN"),
        ("IBAN GB82WEST12345698765432", "IBAN"),
        ("use sk-proj-abcDEF1234567890abcdef1234 for it", "SECRET"),
        ("anthropic sk-ant-api03-abcdefghijklmnop_1234567890", "SECRET"),
        ("Authorization: Bearer abc.def-123456", "SECRET"),
        ("AKIAIOSFODNN7EXAMPLE", "SECRET"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "SECRET"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "SECRET"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstu", "SECRET"),
        ("slack xoxb-123456789012-abcdefghij", "SECRET"),
        ("google AIzaSyA-abcdefghijklmnopqrstuvwxyz01234", "SECRET"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "SECRET"),
        ('{"password": "hunter22"}', "SECRET"),
        ("api_key=abcdef123456", "SECRET"),
        ("client at 192.168.1.20 connected", "IP"),
        ("v6 2001:db8::8a2e:370:7334 seen", "IP"),
        ("link-local fe80::1ff:fe23:4567:890a", "IP"),
    ],
)
def test_finds_each_kind(text: str, kind: str) -> None:
    redacted, count = R.redact(text)
    assert f"[REDACTED:{kind}]" in redacted, redacted
    assert count >= 1


@pytest.mark.parametrize(
    "text",
    [
        "Where is my order number 12345? I ordered it on 2024-05-01 12:30:45.",
        "Refunds take 5-7 days; version 1.2.3 shipped at 10:30.",
        "card 4111 1111 1111 1112 fails Luhn",
        "iban DE89 3704 0044 0532 0130 02 fails its checksum",
        "risk-assessment-for-the-quarterly-report and task-force-of-twenty-people",
        "C++ std::vector and python a[::2]",
        "not an address: 1.2.3.456 or 999.1.1.1",
        "plain words with no candidates at all",
        "price 1,234,567.89 EUR",
    ],
)
def test_leaves_lookalikes_alone(text: str) -> None:
    assert R.redact(text) == (text, 0)


def test_counts_every_finding_and_keeps_the_rest_of_the_text() -> None:
    text = "a@b.io, c@d.io and (415) 555-2671 / 4111111111111111"
    redacted, count = R.redact(text)
    assert count == 4
    assert redacted == "[REDACTED:EMAIL], [REDACTED:EMAIL] and [REDACTED:PHONE] / [REDACTED:CARD]"


def test_json_content_stays_valid_json() -> None:
    messages = json.dumps(
        [{"role": "user", "content": "hi\njane@example.com\nsk-abcdefghijklmnopqrstu12345\t+1 415 555 2671"}]
    )
    redacted, count = R.redact(messages)
    assert count == 3
    content = json.loads(redacted)[0]["content"]
    assert content == "hi\n[REDACTED:EMAIL]\n[REDACTED:SECRET]\t[REDACTED:PHONE]"


def test_long_texts_without_candidates_are_cheap_and_unchanged() -> None:
    text = "word " * 200_000
    assert R.redact(text) == (text, 0)
    blob = "a" * 500_000 + "@"  # no quadratic rescans of a long run
    assert R.redact(blob)[1] == 0


@pytest.mark.parametrize(
    "text",
    [
        "5" * 57 + "card 4111111111111111",  # found by bench/fuzz.py: hung the phone pattern
        "1-" * 20_000 + "x",
        "1:" * 20_000 + "x",
        "a1:" * 20_000,
        "+(" + "1 " * 20_000 + "x",
        "x@" * 20_000 + "y",
        "sk-" + "a" * 100_000 + "@",
        "DE89" + " 1234" * 10_000 + "X",
        "1." * 20_000,
    ],
)
def test_adversarial_texts_finish_quickly(text: str) -> None:
    # Linear-time patterns: each of these took minutes or forever with backtracking ones.
    redacts_within(text, 5)


def redacts_within(text: str, seconds: int) -> None:
    """Redact ``text``, failing if it takes longer than ``seconds`` (a hang, not a slow box)."""
    import signal

    def hang(signum: int, frame: object) -> None:
        raise TimeoutError(f"redaction took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        R.redact(text)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_past_the_check_budget_candidates_are_redacted_unchecked() -> None:
    text = " ".join(["order 1234 5678 90"] * 300)  # 300 phone-shaped candidates, none valid
    redacted, count = R.redact(text)
    assert count == 100  # the first 200 were checked (and kept); the rest fail closed
    assert redacted.count("[REDACTED:PHONE]") == 100


def test_content_keys() -> None:
    for key in ("gen_ai.input.messages", "gen_ai.prompt.0.content", "llm.output_messages.0.message.content",
                "retrieval.documents.3.document.content", "gen_ai.tool.call.arguments", "input.value"):
        assert is_content_key(key), key
    for key in ("gen_ai.prompt.name", "gen_ai.prompt.version", "gen_ai.request.model", "user.id", "aisre.journey"):
        assert not is_content_key(key), key


def test_policy_file(tmp_path) -> None:
    path = tmp_path / "content.yaml"
    path.write_text("tenants:\n  acme: drop\n  lab: KEEP\n")
    policy = load_policy("redact", str(path), "gb")
    assert policy.mode_for("acme") == "drop"
    assert policy.mode_for("lab") == "keep"
    assert policy.mode_for("other") == "redact"
    assert policy.phone_region == "GB"
    # Content kept as sent, but the attribute rules still apply unless switched off.
    assert policy.filter_for("lab") is not None
    assert load_policy("redact", str(path), attributes=False).filter_for("lab") is None
    path.write_text("tenants:\n  acme: scrub\n")
    with pytest.raises(PermanentError, match="tenant 'acme': content mode must be keep, redact or drop"):
        load_policy("redact", str(path))
    with pytest.raises(PermanentError, match="content_capture"):
        load_policy("hide")
    with pytest.raises(PermanentError, match="redact_phone_region"):
        load_policy("redact", "", "XX")
    with pytest.raises(PermanentError, match="cannot read content policy file"):
        load_policy("redact", str(tmp_path / "missing.yaml"))


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, list):
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value])))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


PII_PROMPT = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "I am jane@example.com, card 4111 1111 1111 1111"}]}])


def _request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    span = Span(
        trace_id=os.urandom(16), span_id=os.urandom(8), name="chat", start_time_unix_nano=1, end_time_unix_nano=2,
        attributes=[
            _kv("gen_ai.operation.name", "chat"),
            _kv("gen_ai.request.model", "gpt-4o-mini"),
            _kv("gen_ai.prompt.name", "support-42"),
            _kv("user.id", "u-1"),
            _kv("gen_ai.input.messages", PII_PROMPT),
            _kv("retrieval.documents.0.document.content", ["call +1 415 555 2671", "no pii here"]),
        ],
    )
    event = span.events.add(name="gen_ai.user.message", time_unix_nano=1)
    event.attributes.extend([_kv("content", "my iban is GB82WEST12345698765432"), _kv("gen_ai.system", "openai")])
    spans.append(span)
    return request


def _stored(mode: str) -> tuple[dict, list]:
    policy = ContentPolicy(mode)  # type: ignore[arg-type]
    batch = flatten(_request(), "t", content=policy.filter_for("t"))
    assert batch.accepted == 1
    row = batch.table.to_pylist()[0]
    return orjson.loads(row["attributes"]), orjson.loads(row["events"])


def test_flatten_redacts_attributes_and_message_events() -> None:
    attrs, events = _stored("redact")
    assert attrs["aisre.redactions"] == 4
    assert "jane@example.com" not in attrs["gen_ai.input.messages"]
    assert "[REDACTED:CARD]" in json.loads(attrs["gen_ai.input.messages"])[0]["parts"][0]["content"]
    assert attrs["retrieval.documents.0.document.content"] == ["call [REDACTED:PHONE]", "no pii here"]
    assert events[0]["attributes"] == {"content": "my iban is [REDACTED:IBAN]", "gen_ai.system": "openai"}
    # Metadata that feeds typed columns is untouched, but for the user id, which the default
    # attribute rules hash (with an empty salt here: ContentPolicy's default).
    assert attrs["gen_ai.prompt.name"] == "support-42"
    assert attrs["user.id"] == hash_value(b"", "u-1")
    assert attrs["aisre.hashed"] == 1


def test_flatten_drop_mode_stores_no_content() -> None:
    attrs, events = _stored("drop")
    assert "gen_ai.input.messages" not in attrs
    assert "retrieval.documents.0.document.content" not in attrs
    assert attrs["aisre.content_dropped"] == 3
    assert events[0]["attributes"] == {"gen_ai.system": "openai"}
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"


def test_flatten_keep_mode_stores_content_as_sent() -> None:
    attrs, events = _stored("keep")
    assert attrs["gen_ai.input.messages"] == PII_PROMPT
    assert "aisre.redactions" not in attrs
    assert events[0]["attributes"]["content"] == "my iban is GB82WEST12345698765432"
