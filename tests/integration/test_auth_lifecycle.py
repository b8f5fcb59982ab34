"""Auth over a key's whole life, on real server processes: auth never switches itself off
(revoking every key, restarts), the last admin key, rotation without a gap, expiry, /metrics
scoped to the caller's tenant, a read key that cannot write gate history, and the session
cookie's flags."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.core.auth import digest
from aisre.present.cli.main import build_cli
from aisre.store.duckdb import DuckDBStore
from tests.conftest import ServerProcess, free_port
from tests.evaluate.gate_factory import runs_request
from tests.otlp_factory import journey_request

runner = CliRunner()
cli = build_cli(run_server)
PB = {"Content-Type": "application/x-protobuf"}
S = 10**9
GATE_FILE = b"judge: {}\n"  # the defaults, sent as a gate file


def _key(db: Path, tenant: str, role: str, *extra: str) -> dict:
    """A key made offline with the CLI (the server must be stopped)."""
    result = runner.invoke(cli, ["keys", "create", "--db", str(db), "--tenant", tenant, "--role", role,
                                 "--name", f"{tenant} {role}", "--format", "json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _h(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _start(db: Path, *args: str) -> ServerProcess:
    return ServerProcess(db, free_port(), free_port(), ("--grpc-port", "0", *args)).start()


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def test_revoking_every_key_never_opens_the_server(tmp_path: Path, servers: list[ServerProcess]) -> None:
    db = tmp_path / "a.duckdb"
    a_admin, b_admin, a_read = _key(db, "a", "admin"), _key(db, "b", "admin"), _key(db, "a", "read")
    server = _start(db)
    servers.append(server)
    # Each tenant revokes what it may: the read key goes, the last admin key of each is refused,
    # and tenant b's admin key does not count as an admin of tenant a.
    gone = httpx.delete(f"{server.url}/api/keys/{a_read['key_id']}", headers=_h(a_admin["key"]))
    assert gone.status_code == 200 and gone.json()["status"] == "revoked"
    for admin in (a_admin, b_admin):
        refused = httpx.delete(f"{server.url}/api/keys/{admin['key_id']}", headers=_h(admin["key"]))
        assert refused.status_code == 409, refused.text
        assert f"{admin['key_id']} is the last admin key of tenant {admin['tenant']!r}" in refused.json()["error"]
        assert "aisre keys revoke --db FILE" in refused.json()["error"]
    assert httpx.get(server.url + "/api/keys", headers=_h(a_read["key"])).status_code == 401
    assert httpx.get(server.url + "/api/keys", headers=_h(a_admin["key"])).status_code == 200
    server.stop()

    # Offline, with the server stopped, every key can go; the server stays closed after it.
    for admin in (a_admin, b_admin):
        result = runner.invoke(cli, ["keys", "revoke", admin["key_id"], "--db", str(db), "--tenant", admin["tenant"]])
        assert result.exit_code == 0, result.output
    server = _start(db)
    servers.append(server)
    assert httpx.get(server.url + "/healthz").status_code == 200
    anonymous = httpx.get(server.url + "/api/keys")
    assert anonymous.status_code == 401 and "API key is required" in anonymous.json()["error"]
    made = httpx.post(server.url + "/api/keys", json={"role": "admin", "name": "anyone"})
    assert made.status_code == 401, made.text
    assert httpx.get(server.url + "/api/journeys").status_code == 401
    assert httpx.get(server.url + "/api/keys", headers=_h(a_admin["key"])).status_code == 401
    request, _ = journey_request(1)
    assert httpx.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB).status_code == 401
    server.stop()

    # Recovery is offline: a new admin key on the stopped store, documented in the README.
    recovered = _key(db, "a", "admin")
    server = _start(db)
    servers.append(server)
    listed = httpx.get(server.url + "/api/keys", headers=_h(recovered["key"]))
    assert listed.status_code == 200
    assert {k["key_id"]: k["status"] for k in listed.json()["items"]} == {
        a_admin["key_id"]: "revoked", a_read["key_id"]: "revoked", recovered["key_id"]: "active"}


def test_the_first_key_made_over_the_api_closes_the_server_for_good(tmp_path: Path, servers: list[ServerProcess]) -> None:
    db = tmp_path / "first.duckdb"
    server = _start(db)
    servers.append(server)
    assert httpx.get(server.url + "/api/keys").json() == {"items": []}  # loopback, no key ever: auth off
    refused = httpx.post(server.url + "/api/keys", json={"role": "read"})
    assert refused.status_code == 409 and "must be an admin key" in refused.json()["error"]
    admin = httpx.post(server.url + "/api/keys", json={"role": "admin", "name": "ops"}).json()
    assert httpx.get(server.url + "/api/keys").status_code == 401
    assert httpx.post(server.url + "/api/keys", json={"role": "admin"}).status_code == 401
    assert httpx.delete(f"{server.url}/api/keys/{admin['key_id']}", headers=_h(admin["key"])).status_code == 409
    server.stop()
    server = _start(db)
    servers.append(server)
    assert httpx.get(server.url + "/api/keys").status_code == 401
    assert httpx.get(server.url + "/api/keys", headers=_h(admin["key"])).status_code == 200


def test_auth_required_setting_closes_a_store_without_keys(tmp_path: Path, servers: list[ServerProcess]) -> None:
    server = _start(tmp_path / "req.duckdb", "--setting", "auth=required")
    servers.append(server)
    assert httpx.get(server.url + "/api/journeys").status_code == 401
    assert httpx.post(server.url + "/api/keys", json={"role": "admin"}).status_code == 401


def test_key_rotation_has_no_gap(tmp_path: Path, servers: list[ServerProcess]) -> None:
    db = tmp_path / "rotate.duckdb"
    admin = _key(db, "shop", "admin")
    old_ingest = _key(db, "shop", "ingest")
    server = _start(db)
    servers.append(server)

    def send(key: str) -> int:
        request, _ = journey_request(2, journey="checkout")
        return httpx.post(server.url + "/v1/traces", content=request.SerializeToString(),
                          headers={**PB, **_h(key)}).status_code

    # 1. Create the new key: both work, so senders can switch one by one.
    new_ingest = httpx.post(server.url + "/api/keys", json={"role": "ingest", "name": "collector v2"},
                            headers=_h(admin["key"])).json()
    assert send(old_ingest["key"]) == 200 and send(new_ingest["key"]) == 200
    # 2. Switch, 3. revoke the old one: the new one keeps working, the old one is refused.
    assert httpx.delete(f"{server.url}/api/keys/{old_ingest['key_id']}", headers=_h(admin["key"])).status_code == 200
    assert send(new_ingest["key"]) == 200
    assert send(old_ingest["key"]) == 401
    # The admin key itself rotates the same way: new admin first, then the old one may go.
    new_admin = httpx.post(server.url + "/api/keys", json={"role": "admin", "name": "ops 2"},
                           headers=_h(admin["key"])).json()
    assert httpx.get(server.url + "/api/keys", headers=_h(new_admin["key"])).status_code == 200
    assert httpx.get(server.url + "/api/keys", headers=_h(admin["key"])).status_code == 200
    assert httpx.delete(f"{server.url}/api/keys/{admin['key_id']}", headers=_h(new_admin["key"])).status_code == 200
    assert httpx.get(server.url + "/api/keys", headers=_h(admin["key"])).status_code == 401
    listed = httpx.get(server.url + "/api/keys", headers=_h(new_admin["key"])).json()["items"]
    assert {k["key_id"] for k in listed if k["status"] == "active"} == {new_ingest["key_id"], new_admin["key_id"]}
    # Four runs were accepted (two sends with each good key), none with the revoked one.
    deadline = time.monotonic() + 20
    while httpx.get(server.url + "/api/stats", headers=_h(new_admin["key"])).json()["traces"] < 6:
        assert time.monotonic() < deadline, "the accepted runs were not committed"
        time.sleep(0.2)
    assert httpx.get(server.url + "/api/stats", headers=_h(new_admin["key"])).json()["traces"] == 6


def test_expired_key_gets_401_saying_so(tmp_path: Path, servers: list[ServerProcess]) -> None:
    db = tmp_path / "expiry.duckdb"
    admin = _key(db, "shop", "admin")
    lasting = _key(db, "shop", "read", "--expires", "90d")
    assert lasting["expires"] is not None
    # A key whose expiry has passed (written straight into the stopped store).
    store = DuckDBStore(str(db), rollup_interval_ms=0)
    try:
        store.add_key({"key_id": "k_oldci", "tenant": "shop", "role": "read", "name": "old ci",
                       "digest": digest("aisre_expired-secret"), "expires_ns": time.time_ns() - 86400 * S}, "cli")
    finally:
        store.close()
    server = _start(db)
    servers.append(server)
    expired = httpx.get(server.url + "/api/journeys", headers=_h("aisre_expired-secret"))
    assert expired.status_code == 401
    assert expired.json()["error"].startswith("API key k_oldci expired at ")
    assert httpx.get(server.url + "/api/journeys", headers=_h(lasting["key"])).status_code == 200
    # Over the API: expires_at in the past is refused; a future one is kept and listed.
    past = httpx.post(server.url + "/api/keys", json={"role": "read", "expires_at": "2001-01-01T00:00:00Z"},
                      headers=_h(admin["key"]))
    assert past.status_code == 400 and "in the future" in past.json()["error"]
    made = httpx.post(server.url + "/api/keys", json={"role": "read", "expires_at": "2099-01-01T00:00:00Z"},
                      headers=_h(admin["key"]))
    assert made.status_code == 201 and made.json()["expires"] == "2099-01-01T00:00:00.000000Z"
    listed = {k["key_id"]: k for k in httpx.get(server.url + "/api/keys", headers=_h(admin["key"])).json()["items"]}
    assert listed["k_oldci"]["status"] == "expired"
    assert listed[made.json()["key_id"]]["expires"] == "2099-01-01T00:00:00.000000Z"
    assert listed[admin["key_id"]]["expires"] is None
    # `aisre keys list` shows the expiry and the status.
    result = runner.invoke(cli, ["keys", "list", "--url", server.url], env={"AISRE_KEY": admin["key"], "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "k_oldci" in x)
    assert "expired" in line
    assert "never" in next(x for x in result.output.splitlines() if admin["key_id"] in x)


def _content_request(journey: str):
    """Runs whose chat spans carry a prompt with an e-mail address, so redaction counts them."""
    request, _ = journey_request(3, journey=journey)
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if span.name == "chat":
                    kv = KeyValue(key="gen_ai.prompt")
                    kv.value.string_value = f"write to someone.{journey}@example.org please"
                    span.attributes.append(kv)
    return request


def _samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def test_metrics_show_only_the_callers_tenant(tmp_path: Path, servers: list[ServerProcess]) -> None:
    db = tmp_path / "metrics.duckdb"
    keys = {f"{t}-{r}": _key(db, t, r)["key"] for t in ("acme", "globex") for r in ("ingest", "read", "admin")}
    server = _start(db, "--setting", "operator_tenant=acme")
    servers.append(server)
    for tenant in ("acme", "globex"):
        body = _content_request(f"{tenant}-journey").SerializeToString()
        response = httpx.post(server.url + "/v1/traces", content=body, headers={**PB, **_h(keys[f"{tenant}-ingest"])})
        assert response.status_code == 200, response.text
    slos = "slos:\n  - {name: NAME-success, journey: NAME, objective: 99, sli: {kind: outcome}}\n"
    for tenant in ("acme", "globex"):
        put = httpx.put(server.url + "/api/slos", content=slos.replace("NAME", f"{tenant}-journey"),
                        headers={**_h(keys[f"{tenant}-admin"]), "Content-Type": "application/yaml"})
        assert put.status_code == 200, put.text

    def content_counts(text: str) -> dict[str, float]:
        return {s.labels["tenant"]: s.value for s in _samples(text)
                if s.name == "aisre_ingest_content_values_total" and s.labels["action"] == "redacted"}

    # Both tenants' counters exist in the process (the operator's view shows them) ...
    deadline = time.monotonic() + 20
    while set(content_counts(httpx.get(server.url + "/metrics/all", headers=_h(keys["acme-admin"])).text)) != {"acme", "globex"}:
        assert time.monotonic() < deadline, "content counters did not appear"
        time.sleep(0.2)
    everyone = httpx.get(server.url + "/metrics/all", headers=_h(keys["acme-admin"])).text
    assert content_counts(everyone) == {"acme": 3.0, "globex": 3.0}
    # ... and each tenant's read key sees its own only: no label value of the other tenant.
    for me, other in (("acme", "globex"), ("globex", "acme")):
        mine = httpx.get(server.url + "/metrics", headers=_h(keys[f"{me}-read"]))
        assert mine.status_code == 200
        assert content_counts(mine.text) == {me: 3.0}
        values = {v for s in _samples(mine.text) for v in s.labels.values()}
        assert not any(other in v for v in values), sorted(v for v in values if other in v)
        assert other not in mine.text
        assert f"{me}-journey-success" in values and f"{me}-journey" in values
        # Process-wide series carry no tenant label.
        accepted = [s for s in _samples(mine.text) if s.name == "aisre_ingest_spans_total"]
        assert accepted and all("tenant" not in s.labels for s in accepted)
    # The process-wide per-tenant view is for the operator tenant's admins only.
    for key in ("globex-admin", "acme-read", "acme-ingest"):
        assert httpx.get(server.url + "/metrics/all", headers=_h(keys[key])).status_code == 403, key
    assert httpx.get(server.url + "/metrics").status_code == 401


def test_a_read_key_never_writes_gate_history(tmp_path: Path, servers: list[ServerProcess]) -> None:
    db = tmp_path / "gate.duckdb"
    keys = {r: _key(db, "shop", r)["key"] for r in ("ingest", "read", "admin")}
    server = _start(db)
    servers.append(server)
    rng = np.random.default_rng(4)
    start = time.time_ns() - 600 * S
    for version in ("1.4", "1.5"):
        body = runs_request(30, version=version, start_ns=start, rng=rng).SerializeToString()
        assert httpx.post(server.url + "/v1/traces", content=body, headers={**PB, **_h(keys["ingest"])}).status_code == 200
    params = {"journey": "ask", "baseline": "service.version=1.4", "candidate": "service.version=1.5"}
    deadline = time.monotonic() + 20
    while httpx.get(server.url + "/api/gate", params=params, headers=_h(keys["read"])).json()["candidate"]["runs"] < 30:
        assert time.monotonic() < deadline, "runs did not arrive"
        time.sleep(0.2)

    def history() -> list[dict]:
        return httpx.get(server.url + "/api/gate/verdicts", headers=_h(keys["read"])).json()["items"]

    def audited() -> list[dict]:
        return httpx.get(server.url + "/api/audit", params={"action": "gate"}, headers=_h(keys["admin"])).json()["items"]

    # A read key judges (GET, or POST with record=false) and writes nothing.
    judged = httpx.get(server.url + "/api/gate", params=params, headers=_h(keys["read"]))
    assert judged.status_code == 200 and judged.json()["verdict"] == "pass" and "id" not in judged.json()
    posted = httpx.post(server.url + "/api/gate", params={**params, "record": "false"}, content=GATE_FILE,
                        headers=_h(keys["read"]))
    assert posted.status_code == 200 and posted.json()["verdict"] == "pass"
    # A UI page with the judge's parameters only fills the form in.
    page = httpx.get(server.url + "/gate", params=params, headers=_h(keys["read"]))
    assert page.status_code == 200 and "may read the history only" in page.text
    assert history() == [] and audited() == []
    # Asking to record with a read key is refused, saying what would work.
    for refused in (httpx.get(server.url + "/api/gate", params={**params, "record": "true"}, headers=_h(keys["read"])),
                    httpx.post(server.url + "/api/gate", params=params, content=GATE_FILE, headers=_h(keys["read"])),
                    httpx.post(server.url + "/gate", data=params, headers=_h(keys["read"]))):
        assert refused.status_code == 403
        assert "recording a release verdict needs an ingest or admin key" in refused.json()["error"]
    # A link cannot record with a signed-in browser's cookie, whatever its role.
    linked = httpx.get(server.url + "/api/gate", params={**params, "record": "true"},
                       headers={"Cookie": f"aisre_key={keys['ingest']}"})
    assert linked.status_code == 403 and "not the browser's cookie" in linked.json()["error"]
    result = runner.invoke(cli, ["gate", "--journey", "ask", "--baseline", "service.version=1.4", "--candidate",
                                 "service.version=1.5", "--url", server.url], env={"AISRE_KEY": keys["read"]})
    assert result.exit_code == 1 and "aisre gate --no-record" in result.output, result.output
    result = runner.invoke(cli, ["gate", "--journey", "ask", "--baseline", "service.version=1.4", "--candidate",
                                 "service.version=1.5", "--no-record", "--url", server.url], env={"AISRE_KEY": keys["read"]})
    assert result.exit_code == 0 and "PASS" in result.output, result.output
    assert history() == [] and audited() == []

    # Recording: the CLI with a pipeline's ingest key, the API with record=true and POST, the UI form.
    result = runner.invoke(cli, ["gate", "--journey", "ask", "--baseline", "service.version=1.4", "--candidate",
                                 "service.version=1.5", "--url", server.url], env={"AISRE_KEY": keys["ingest"]})
    assert result.exit_code == 0, result.output
    assert httpx.get(server.url + "/api/gate", params={**params, "record": "true"},
                     headers=_h(keys["ingest"])).json()["id"] > 0
    assert httpx.post(server.url + "/api/gate", params=params, content=GATE_FILE, headers=_h(keys["admin"])).json()["id"] > 0
    form = httpx.post(server.url + "/gate", data=params, headers={**_h(keys["ingest"]), "Origin": server.url})
    assert form.status_code == 303 and form.headers["location"].startswith("/gate/verdicts/")
    assert len(history()) == 4
    rows = audited()
    assert [r["action"] for r in rows] == ["gate.verdict"] * 4
    ids = {k["role"]: k["key_id"] for k in httpx.get(server.url + "/api/keys", headers=_h(keys["admin"])).json()["items"]}
    # Newest first: the UI's verdict, the admin's POST, then the GET and the CLI with the ingest key.
    assert [r["actor"] for r in rows] == [ids["ingest"], ids["admin"], ids["ingest"], ids["ingest"]]
    assert rows[0]["after"]["id"] == int(form.headers["location"].rsplit("/", 1)[1])


def test_session_cookie_flags(tmp_path: Path, servers: list[ServerProcess]) -> None:
    db = tmp_path / "cookie.duckdb"
    read = _key(db, "shop", "read")["key"]
    server = _start(db)
    servers.append(server)

    def login(headers: dict[str, str]) -> list[str]:
        response = httpx.post(server.url + "/login", content=f"key={read}",
                              headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
        assert response.status_code == 303, response.text
        return [part.strip().lower() for part in response.headers["set-cookie"].split(";")]

    plain = login({})
    assert "httponly" in plain and "samesite=lax" in plain and "path=/" in plain
    assert "secure" not in plain
    for proto in ("https", "https,http"):
        behind_tls = login({"X-Forwarded-Proto": proto})
        assert "secure" in behind_tls and "httponly" in behind_tls and "samesite=lax" in behind_tls
