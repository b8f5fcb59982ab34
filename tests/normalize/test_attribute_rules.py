"""Attribute rules outside content: deny, allow, hash (salted HMAC) and pattern scanning,
per tenant, applied by flatten to spans, events, links, names, status messages and resources."""

from __future__ import annotations

import hashlib
import hmac
import os

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from aisre.core.errors import PermanentError
from aisre.normalize.attribute_rules import OFF, AttributeRules, hash_value
from aisre.normalize.redaction import ContentPolicy, load_policy, load_salt
from aisre.normalize.spans import flatten

SALT = b"test-salt"


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _request(users: list[str], name: str = "POST /ask", status: str = "", resource: dict | None = None,
             exception: str = "") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv(k, v) for k, v in (resource or {"service.name": "bot"}).items()])
    spans = rs.scope_spans.add().spans
    for user in users:
        span = Span(
            trace_id=os.urandom(16), span_id=os.urandom(8), name=name, start_time_unix_nano=1, end_time_unix_nano=2,
            attributes=[
                _kv("user.id", user), _kv("enduser.id", user), _kv("user.email", f"{user}@example.com"),
                _kv("client.address", "198.51.100.7"), _kv("http.request.header.authorization", "Bearer abc.def.ghi"),
                _kv("http.request.header.cookie", "sid=s3cr3t"), _kv("url.query", "q=shoes&api_key=letmeinplease"),
                _kv("http.route", "/ask"), _kv("gen_ai.request.model", "gpt-4o"),
            ],
        )
        if status:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=status))
        if exception:
            span.events.add(name="exception", time_unix_nano=1).attributes.extend(
                [_kv("exception.type", "ValueError"), _kv("exception.message", exception)])
        spans.append(span)
    return request


def _flatten(policy: ContentPolicy, request: ExportTraceServiceRequest, tenant: str = "t"):
    batch = flatten(request, tenant, content=policy.filter_for(tenant))
    return batch, batch.table.to_pylist(), batch.resources.to_pylist()


def test_defaults_hash_users_drop_credentials_and_scan_urls() -> None:
    batch, rows, _ = _flatten(ContentPolicy(salt=SALT), _request(["u-1"]))
    attrs = orjson.loads(rows[0]["attributes"])
    expected = "hmac:" + hmac.new(SALT, b"u-1", hashlib.sha256).hexdigest()[:32]
    assert attrs["user.id"] == attrs["enduser.id"] == expected
    assert rows[0]["user_id"] == expected  # the typed column holds the hash too
    assert attrs["user.email"] == hash_value(SALT, "u-1@example.com")
    assert attrs["client.address"] == hash_value(SALT, "198.51.100.7")
    assert "http.request.header.authorization" not in attrs and "http.request.header.cookie" not in attrs
    assert attrs["url.query"] == "q=shoes&api_key=[REDACTED:SECRET]"
    assert (attrs["http.route"], attrs["gen_ai.request.model"]) == ("/ask", "gpt-4o")
    assert (attrs["aisre.hashed"], attrs["aisre.attributes_dropped"], attrs["aisre.redactions"]) == (4, 2, 1)
    assert (batch.content.hashed, batch.content.redacted, batch.content.dropped) == (4, 5, 2)


def test_hashed_users_still_count_distinct() -> None:
    users = [f"user-{i % 37}" for i in range(500)]
    _, rows, _ = _flatten(ContentPolicy(salt=SALT), _request(users))
    hashed = {r["user_id"] for r in rows}
    assert len(hashed) == 37
    assert not hashed & set(users)
    # Another key gives other hashes: the key is what keeps a guess from being checked.
    _, other, _ = _flatten(ContentPolicy(salt=b"other"), _request(users[:5]))
    assert not {r["user_id"] for r in other} & hashed


def test_names_status_messages_exceptions_and_resources_are_scanned() -> None:
    secret = "AKIAFJPKMNPNFPZCJIAB"
    request = _request(
        ["u"], name=f"lookup {secret}", status="auth failed for password=hunterhunter",
        resource={"service.name": "bot", "deploy.note": f"key {secret}", "host.ip": "10.1.2.3"},
        exception=f"boom: token={secret.lower()} from jane@example.com",
    )
    _, rows, resources = _flatten(ContentPolicy(salt=SALT), request)
    row = rows[0]
    assert row["name"] == "lookup [REDACTED:SECRET]"
    assert row["status_message"] == "auth failed for password=[REDACTED:SECRET]"
    event = orjson.loads(row["events"])[0]["attributes"]
    assert event["exception.message"] == "boom: token=[REDACTED:SECRET] from [REDACTED:EMAIL]"
    resource = orjson.loads(resources[0]["resource"])
    assert resource["deploy.note"] == "key [REDACTED:SECRET]"
    assert resource["host.ip"] == "10.1.2.3"  # servers' addresses stay outside content
    assert secret not in orjson.dumps(rows).decode() + orjson.dumps(resources).decode()


def test_keep_mode_still_applies_rules_and_off_keeps_all() -> None:
    _, rows, _ = _flatten(ContentPolicy("keep", salt=SALT), _request(["u-1"]))
    assert orjson.loads(rows[0]["attributes"])["user.id"].startswith("hmac:")
    _, rows, _ = _flatten(ContentPolicy("keep", rules=OFF), _request(["u-1"]))
    attrs = orjson.loads(rows[0]["attributes"])
    assert attrs["user.id"] == "u-1" and "http.request.header.cookie" in attrs


def test_allow_list_keeps_only_listed_keys() -> None:
    rules = AttributeRules(allow=("gen_ai.*", "user.id"))
    _, rows, _ = _flatten(ContentPolicy(rules=rules, salt=SALT), _request(["u-1"]))
    attrs = orjson.loads(rows[0]["attributes"])
    assert set(attrs) == {"gen_ai.request.model", "user.id", "aisre.hashed", "aisre.attributes_dropped"}
    assert attrs["aisre.attributes_dropped"] == 7


def test_policy_file_sets_rules_per_tenant(tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "attributes: {add_hash: [customer.id]}\n"
        "tenants:\n"
        "  acme: drop\n"
        "  lab: {content: keep, attributes: off}\n"
        "  clinic: {attributes: {add_deny: [url.query], hash: [patient.id]}}\n"
    )
    policy = load_policy("redact", str(path), salt=SALT)
    assert policy.mode_for("acme") == "drop" and policy.rules_for("acme").action("customer.id") == "hash"
    assert policy.mode_for("lab") == "keep" and policy.filter_for("lab") is None
    clinic = policy.rules_for("clinic")
    assert clinic.action("url.query") == "drop"
    assert clinic.action("patient.id") == "hash" and clinic.action("user.id") is None
    assert policy.rules_for("other").action("user.id") == "hash"
    path.write_text("tenants:\n  x: {attributes: {hash: user.id}}\n")
    with pytest.raises(PermanentError, match="hash must be a list"):
        load_policy("redact", str(path))
    path.write_text("tenants:\n  x: {attribute: off}\n")
    with pytest.raises(PermanentError, match="unknown key"):
        load_policy("redact", str(path))


def test_salt_setting_forms(tmp_path, monkeypatch) -> None:
    db = str(tmp_path / "a.duckdb")
    first = load_salt("", db)
    assert len(first) == 64 and load_salt("", db) == first  # created once, then reused
    assert oct((tmp_path / "a.duckdb.salt").stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("AISRE_TEST_SALT", "from-env")
    assert load_salt("env:AISRE_TEST_SALT", db) == b"from-env"
    (tmp_path / "salt.txt").write_text("from-file\n")
    assert load_salt(f"file:{tmp_path / 'salt.txt'}", db) == b"from-file"
    assert load_salt("literal", db) == b"literal"
    with pytest.raises(PermanentError, match="not set"):
        load_salt("env:AISRE_NO_SUCH_VARIABLE", db)
