"""The key ring and the role table on a real DuckDB store: auth is decided by configuration and
the store's latch, never by how many keys are active; keys expire on a simulated clock; the
last admin key of a tenant cannot be revoked over the API; a read key never records a verdict."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from aisre.app import check_bind
from aisre.core.auth import Principal, Unauthenticated, auth_required, digest, parse_expiry
from aisre.core.errors import Conflict, PermanentError
from aisre.present.api.auth import KeyRing, gate_records, required_roles
from aisre.present.api.metrics import TenantScoped
from aisre.store.duckdb import DuckDBStore, has_active_keys

S = 10**9
T0 = 1_800_000_000 * S  # a fixed "now" for the simulated clock


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path / "keys.duckdb"), rollup_interval_ms=0)
    try:
        yield s
    finally:
        s.close()


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.mark.parametrize(
    ("mode", "latched", "public", "required"),
    [("auto", False, False, False), ("auto", True, False, True), ("auto", False, True, True),
     ("required", False, False, True), ("off", True, False, False), ("off", False, False, False)],
)
def test_auth_required_follows_configuration_and_latch(mode: str, latched: bool, public: bool, required: bool) -> None:
    assert auth_required(mode, latched, public) is required


def test_unknown_auth_mode_is_refused() -> None:
    with pytest.raises(PermanentError, match="auto, required, off"):
        auth_required("maybe", False, False)


def test_revoking_every_key_leaves_auth_on(store: DuckDBStore) -> None:
    ring = KeyRing(store, "default")
    assert not ring.enabled and ring.principal(None).key_id == "local"
    secret, record = ring.create("a", "admin", "ops", "local")
    assert ring.enabled and store.auth_latched()
    with pytest.raises(Unauthenticated, match="API key is required"):
        ring.principal(None)
    assert ring.principal(secret) == Principal(record["key_id"], "a", "admin", "ops")
    ring.revoke("a", record["key_id"], "cli")  # offline: no last-admin guard
    assert store.active_keys() == []
    # No key is left, and still nobody gets in without one; a fresh ring (a restart) agrees.
    for r in (ring, KeyRing(store, "default")):
        assert r.enabled
        with pytest.raises(Unauthenticated):
            r.principal(None)
        with pytest.raises(Unauthenticated, match="unknown or revoked"):
            r.principal(secret)


def test_required_mode_without_keys_and_off_mode_with_keys(store: DuckDBStore) -> None:
    required = KeyRing(store, "default", "required")
    with pytest.raises(Unauthenticated):
        required.principal(None)
    required.create("a", "admin", "", "cli")
    off = KeyRing(store, "default", "off")
    assert not off.enabled and off.principal(None).tenant == "default"
    # A public interface needs keys in auto mode whatever the store holds.
    fresh = DuckDBStore(":memory:", rollup_interval_ms=0)
    try:
        assert KeyRing(fresh, "default", "auto", public=True).enabled
    finally:
        fresh.close()


def test_first_key_over_the_api_must_be_admin(store: DuckDBStore) -> None:
    ring = KeyRing(store, "default")
    with pytest.raises(Conflict, match="must be an admin key"):
        ring.create_over_api("default", "read", "", "local")
    assert not ring.enabled and store.active_keys() == []
    ring.create_over_api("default", "admin", "", "local")
    ring.create_over_api("default", "read", "", "k_x")  # later keys may have any role


def test_last_admin_of_a_tenant_cannot_be_revoked_over_the_api(store: DuckDBStore) -> None:
    clock = Clock(T0)
    ring = KeyRing(store, "default", clock=clock)
    _, a1 = ring.create("a", "admin", "a1", "cli")
    ring.create("b", "admin", "b1", "cli")  # another tenant's admin does not count for a
    _, reader = ring.create("a", "read", "r", "cli")
    ring.revoke("a", reader["key_id"], "k", keep_admin=True)  # not an admin key: fine
    with pytest.raises(Conflict, match=f"{a1['key_id']} is the last admin key of tenant 'a'"):
        ring.revoke("a", a1["key_id"], a1["key_id"], keep_admin=True)
    # An expired admin key is no admin: it does not let the last usable one go either.
    expired = {"key_id": "k_expired", "tenant": "a", "role": "admin", "name": "old", "digest": digest("x"),
               "expires_ns": 1_000_000_000 * S}  # 2001: expired by any clock
    store.add_key(expired, "cli")
    with pytest.raises(Conflict):
        ring.revoke("a", a1["key_id"], a1["key_id"], keep_admin=True)
    # Rotation: a second admin key first, then the old one may go.
    new_secret, a2 = ring.create("a", "admin", "a2", a1["key_id"])
    assert ring.revoke("a", a1["key_id"], a2["key_id"], keep_admin=True)["revoked_ns"] is not None
    assert ring.principal(new_secret).key_id == a2["key_id"]
    # Offline the guard does not apply: the operator holds the file and can create keys again.
    ring.revoke("a", a2["key_id"], "cli")
    assert [k["tenant"] for k in store.active_keys() if k["role"] == "admin" and k["key_id"] != "k_expired"] == ["b"]


def test_expired_key_is_refused_with_the_reason(store: DuckDBStore) -> None:
    clock = Clock(T0)
    ring = KeyRing(store, "default", clock=clock)
    secret, record = ring.create("a", "read", "ci", "cli", expires_ns=T0 + 90 * 86400 * S)
    assert ring.principal(secret).key_id == record["key_id"]
    clock.now = T0 + 90 * 86400 * S - 1
    assert ring.principal(secret).key_id == record["key_id"]
    clock.now = T0 + 90 * 86400 * S
    with pytest.raises(Unauthenticated, match=rf"API key {record['key_id']} expired at 2027-\S+Z"):
        ring.principal(secret)
    with pytest.raises(PermanentError, match="must be in the future"):
        ring.create("a", "read", "", "cli", expires_ns=clock.now - 1)
    listed = {k["key_id"]: k for k in store.list_keys("a")}
    assert listed[record["key_id"]]["expires_ns"] == T0 + 90 * 86400 * S


def test_parse_expiry() -> None:
    assert parse_expiry("90d", T0) == T0 + 90 * 86400 * S
    assert parse_expiry("12h", T0) == T0 + 12 * 3600 * S
    jan31 = int(datetime(2027, 1, 31, tzinfo=UTC).timestamp()) * S
    assert parse_expiry("2027-01-31T00:00:00Z", T0) == jan31
    for bad, message in (("soon", "must be a duration"), ("2020-01-01T00:00:00Z", "in the future"),
                         ("2027-01-31T00:00:00", "time zone"), ("4318-01-18T13:46:08+20:18", "before 2262"),
                         ("99999999999d", "before 2262")):
        with pytest.raises(PermanentError, match=message):
            parse_expiry(bad, T0)


def test_an_old_store_with_only_revoked_keys_is_latched_by_the_migration(tmp_path: Path) -> None:
    path = str(tmp_path / "old.duckdb")
    s = DuckDBStore(path, rollup_interval_ms=0)
    ring = KeyRing(s, "default")
    _, record = ring.create("a", "admin", "", "cli")
    ring.revoke("a", record["key_id"], "cli")
    s.close()
    # Back to the schema before migration 11: no latch table, no expiry column.
    conn = duckdb.connect(path)
    conn.execute("DROP TABLE control_flags")
    conn.execute("ALTER TABLE api_keys DROP COLUMN expires_ns")
    conn.execute("DELETE FROM schema_migrations WHERE version = 11")
    conn.close()
    assert not has_active_keys(path)  # reads the old schema without failing
    s = DuckDBStore(path, rollup_interval_ms=0)
    try:
        assert s.auth_latched() and KeyRing(s, "default").enabled
    finally:
        s.close()


def test_public_bind_and_auth_off() -> None:
    with pytest.raises(PermanentError, match="auth=off is for loopback only"):
        check_bind("0.0.0.0", has_keys=True, auth="off")
    check_bind("127.0.0.1", has_keys=True, auth="off")
    check_bind("127.0.0.1", has_keys=False, auth="required")
    with pytest.raises(PermanentError, match="no API key exists"):
        check_bind("0.0.0.0", has_keys=False, auth="required")
    with pytest.raises(PermanentError, match="setting 'auth'"):
        check_bind("127.0.0.1", has_keys=False, auth="on")


@pytest.mark.parametrize(
    ("method", "path", "query", "roles"),
    [
        ("GET", "/api/gate", "journey=ask", ("read", "ingest")),
        ("GET", "/api/gate", "journey=ask&record=false", ("read", "ingest")),
        ("GET", "/api/gate", "journey=ask&record=true", ("ingest",)),
        ("GET", "/api/gate", "record=false&record=1", ("ingest",)),
        ("GET", "/api/gate", "record=maybe", ("ingest",)),
        ("POST", "/api/gate", "journey=ask", ("ingest",)),
        ("POST", "/api/gate", "journey=ask&record=false", ("read", "ingest")),
        ("POST", "/gate", "", ("ingest",)),
        ("GET", "/gate", "journey=ask&baseline=a%3D1&candidate=a%3D2", ("read",)),
        ("GET", "/metrics", "", ("read",)),
        ("GET", "/metrics/all", "", ("admin",)),
        ("GET", "/api/keys", "", ("admin",)),
        ("POST", "/api/keys", "", ("admin",)),
        ("POST", "/v1/traces", "", ("ingest",)),
        ("POST", "/api/events", "", ("ingest",)),
        ("GET", "/healthz", "", None),
    ],
)
def test_required_roles(method: str, path: str, query: str, roles: tuple[str, ...] | None) -> None:
    assert required_roles(method, path, query) == roles


def test_gate_records_defaults() -> None:
    assert gate_records("POST", "") and not gate_records("GET", "")
    assert gate_records("GET", "record=on") and not gate_records("POST", "record=")


def test_tenant_scoped_exposition_hides_other_tenants() -> None:
    registry = CollectorRegistry()
    content = Counter("aisre_ingest_content_values", "per tenant", ["tenant", "action"], registry=registry)
    content.labels("acme", "redacted").inc(3)
    content.labels("globex", "redacted").inc(5)
    Gauge("aisre_process_thing", "process-wide", registry=registry).set(7)
    acme = generate_latest(TenantScoped(registry, "acme")).decode()
    assert 'aisre_ingest_content_values_total{action="redacted",tenant="acme"} 3.0' in acme
    assert "globex" not in acme and "aisre_process_thing 7.0" in acme
    nobody = generate_latest(TenantScoped(registry, "initech")).decode()
    assert "acme" not in nobody and "globex" not in nobody
    assert "# TYPE aisre_ingest_content_values_total counter" in nobody
    everyone = generate_latest(registry).decode()
    assert 'tenant="acme"' in everyone and 'tenant="globex"' in everyone
