"""Tenants and API keys end to end: keys made with the CLI, telemetry sent by the real OTel
exporters with a bearer header, and every GET route of the OpenAPI document (plus the UI
pages) walked with both tenants' keys: tenant B sees none of tenant A's data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from typer.testing import CliRunner

from aisre.app import check_bind, run_server
from aisre.core.errors import PermanentError
from aisre.present.cli.main import build_cli
from tests.conftest import ServerProcess, free_port
from tests.otlp_factory import journey_request

runner = CliRunner()
cli = build_cli(run_server)
ROLES = ("admin", "read", "ingest")


def _send(exporter: SpanExporter, journey: str) -> str:
    """One run (root + model call) through the OTel SDK; returns its trace id."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"{journey}-svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("POST /ask", attributes={"aisre.journey": journey}) as root, \
            tracer.start_as_current_span("chat", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}):
        pass
    provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


def _slos(journey: str) -> str:
    return f"slos:\n  - {{name: {journey}-success, journey: {journey}, objective: 99, sli: {{kind: outcome}}}}\n"


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str], dict[str, str]]]:
    """A server with keys for tenants a and b (made offline with the CLI), data and SLOs in each."""
    tmp = tmp_path_factory.mktemp("tenancy")
    db = tmp / "aisre.duckdb"
    keys: dict[str, str] = {}
    for tenant in ("a", "b"):
        for role in ROLES:
            result = runner.invoke(cli, ["keys", "create", "--db", str(db), "--tenant", tenant, "--role", role,
                                         "--name", f"{tenant} {role}", "--format", "json"])
            assert result.exit_code == 0, result.output
            keys[f"{tenant}-{role}"] = json.loads(result.output)["key"]
    server = ServerProcess(db, free_port(), free_port()).start()
    try:
        traces = {
            "a": _send(HttpExporter(endpoint=server.url + "/v1/traces",
                                    headers={"Authorization": f"Bearer {keys['a-ingest']}"}), "alpha-journey"),
            "b": _send(GrpcExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True,
                                    headers=(("x-aisre-key", keys["b-ingest"]),)), "beta-journey"),
        }
        for tenant, journey in (("a", "alpha-journey"), ("b", "beta-journey")):
            response = httpx.put(server.url + "/api/slos", content=_slos(journey),
                                 headers={"Authorization": f"Bearer {keys[f'{tenant}-admin']}",
                                          "Content-Type": "application/yaml"})
            assert response.status_code == 200, response.text
            # A deploy marker from a pipeline (ingest key) and an incident declared by on-call.
            change = httpx.post(server.url + "/api/changes", headers={"x-aisre-key": keys[f"{tenant}-ingest"]},
                                json={"kind": "deploy", "version": f"{journey}-v2", "journeys": [journey]})
            assert change.status_code == 201, change.text
            incident = httpx.post(server.url + "/api/incidents", headers={"x-aisre-key": keys[f"{tenant}-admin"]},
                                  json={"title": f"{journey} is slow", "by": "oncall", "journey": journey})
            assert incident.status_code == 201, incident.text
            traces[f"{tenant}-incident"] = str(incident.json()["id"])
        yield server, keys, traces
    finally:
        server.stop()


def _get(server: ServerProcess, path: str, key: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(server.url + path, headers=headers, params=params, timeout=30)


def _get_paths(server: ServerProcess, key: str, trace_id: str, journey: str, incident: str) -> list[str]:
    """Every GET route of the OpenAPI document with its path parameters filled in, plus
    the UI pages (which are not in the API document)."""
    spec = _get(server, "/openapi.json", key).json()
    fill = {"trace_id": trace_id, "name": f"{journey}-success", "journey": journey, "key_id": "k_none", "id": incident}
    paths = []
    for path, ops in spec["paths"].items():
        if "get" not in ops:
            continue
        for param, value in fill.items():
            path = path.replace("{" + param + "}", value)
        assert "{" not in path, f"no test value for a parameter of {path}"
        paths.append(path)
    ui = ["/", "/runs", f"/journeys/{journey}", f"/traces/{trace_id}", "/slos", f"/slos/{journey}-success",
          "/gate", "/gate/verdicts/1", "/incidents", f"/incidents/{incident}", f"/incidents/{incident}/postmortem",
          "/cost", f"/cost/explain?journey={journey}&baseline=2d..1d&current=1d..0s", f"/cost/budgets/{journey}", "/check"]
    return sorted(set(paths)) + ui


def test_every_get_route_is_scoped_to_the_callers_tenant(tenants) -> None:
    server, keys, traces = tenants
    secrets_of_a = [traces["a"], "alpha-journey", "alpha-journey-success"]
    paths = _get_paths(server, keys["a-read"], traces["a"], "alpha-journey", traces["a-incident"])
    assert "/api/traces/" + traces["a"] in paths and "/api/slos/alpha-journey-success" in paths
    seen_by_a = 0
    for path in paths:
        as_b = _get(server, path, keys["b-read"], since="30d")
        assert as_b.status_code < 500, f"{path}: {as_b.status_code} {as_b.text[:300]}"
        # A 404 may echo the name asked for, and so may a readiness checklist (a journey may be
        # checked before it has runs: the answer is "not ready", about the name given);
        # anything else must not mention tenant a's data.
        echoes = path.split("?")[0].rsplit("/", 1)[-1] if "/readiness/" in path else None
        leaked = [s for s in secrets_of_a if s in as_b.text and s != echoes] if as_b.status_code != 404 else []
        assert not leaked, f"tenant b read {leaked} of tenant a through {path}"
        as_a = _get(server, path, keys["a-read"], since="30d")
        assert as_a.status_code < 500, f"{path}: {as_a.status_code} {as_a.text[:300]}"
        seen_by_a += any(s in as_a.text for s in secrets_of_a)
    # The walk is not vacuous: tenant a sees its own data through the same routes.
    assert seen_by_a >= 10
    assert _get(server, f"/api/traces/{traces['a']}", keys["b-read"]).status_code == 404
    assert _get(server, f"/api/traces/{traces['b']}", keys["b-read"]).json()["journey"] == "beta-journey"
    assert _get(server, "/api/stats", keys["b-read"]).json()["traces"] == 1
    # The telemetry check reads the caller's spans only (each tenant sent one run of 2 spans).
    checks = {t: _get(server, "/api/check", keys[f"{t}-read"], since="30d").json() for t in ("a", "b")}
    assert {t: (c["spans_seen"], sorted({f["service"] for f in c["findings"]})) for t, c in checks.items()} == {
        "a": (2, ["alpha-journey-svc"]), "b": (2, ["beta-journey-svc"])}


def test_keys_roles_and_revocation(tenants) -> None:
    server, keys, _ = tenants
    assert _get(server, "/api/slos", None).status_code == 401
    assert _get(server, "/api/slos", "aisre_not-a-key").status_code == 401
    assert _get(server, "/healthz", None).status_code == 200
    # An ingest key cannot read; a read key cannot ingest or change SLOs.
    assert _get(server, "/api/slos", keys["a-ingest"]).status_code == 403
    request, _ = journey_request(1)
    body = request.SerializeToString()
    for key in (keys["a-read"], None):
        response = httpx.post(server.url + "/v1/traces", content=body, headers={
            "Content-Type": "application/x-protobuf", **({"x-aisre-key": key} if key else {})})
        assert response.status_code == (403 if key else 401)
    response = httpx.put(server.url + "/api/slos", content=_slos("x"), headers={
        "Authorization": f"Bearer {keys['a-read']}", "Content-Type": "application/yaml"})
    assert response.status_code == 403
    assert _get(server, "/api/keys", keys["a-read"]).status_code == 403
    # gRPC without a key: UNAUTHENTICATED, and nothing stored.
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # An admin creates a key over the API; it works at once and stops working once revoked.
    admin = {"Authorization": f"Bearer {keys['a-admin']}"}
    made = httpx.post(server.url + "/api/keys", json={"role": "read", "name": "temp"}, headers=admin).json()
    assert made["tenant"] == "a" and made["key"].startswith("aisre_")
    assert _get(server, "/api/slos", made["key"]).status_code == 200
    listed = _get(server, "/api/keys", keys["a-admin"]).json()["items"]
    assert made["key_id"] in {k["key_id"] for k in listed} and all(k["tenant"] == "a" for k in listed)
    assert not any(made["key"] in json.dumps(k) for k in listed)
    # Tenant b's admin cannot revoke tenant a's key.
    other = httpx.delete(server.url + f"/api/keys/{made['key_id']}", headers={"Authorization": f"Bearer {keys['b-admin']}"})
    assert other.status_code == 404
    assert httpx.delete(server.url + f"/api/keys/{made['key_id']}", headers=admin).status_code == 200
    assert _get(server, "/api/slos", made["key"]).status_code == 401


def test_audit_records_who_changed_what(tenants) -> None:
    server, keys, _ = tenants
    items = _get(server, "/api/audit", keys["a-admin"], action="slo").json()["items"]
    applied = next(i for i in items if i["action"] == "slo.apply")
    assert applied["actor"].startswith("k_") and applied["before"] == []
    assert applied["after"][0]["name"] == "alpha-journey-success"
    created = _get(server, "/api/audit", keys["a-admin"], action="key").json()["items"]
    assert {i["actor"] for i in created if i["action"] == "key.create"} >= {"cli"}
    # Tenant b's audit log holds only tenant b's records.
    declared = _get(server, "/api/audit", keys["a-admin"], action="incident").json()["items"]
    assert [i["action"] for i in declared] == ["incident.declare"]
    assert declared[0]["after"]["title"] == "alpha-journey is slow"
    changes = _get(server, "/api/audit", keys["a-admin"], action="change").json()["items"]
    assert changes[0]["after"]["version"] == "alpha-journey-v2"
    b_items = _get(server, "/api/audit", keys["b-admin"]).json()["items"]
    assert b_items and all(i["tenant"] == "b" for i in b_items)
    assert not any("alpha" in json.dumps(i) for i in b_items)


def test_the_raw_file_keeps_digests_not_secrets(tenants) -> None:
    server, keys, _ = tenants
    raw = Path(server.db).read_bytes() + (Path(str(server.db) + ".wal").read_bytes()
                                          if Path(str(server.db) + ".wal").exists() else b"")
    assert not any(secret.encode() in raw for secret in keys.values())


def test_public_bind_needs_keys() -> None:
    with pytest.raises(PermanentError, match="no API key exists"):
        check_bind("0.0.0.0", has_keys=False)
    check_bind("0.0.0.0", has_keys=True)
    check_bind("127.0.0.1", has_keys=False)


def test_events_take_the_tenant_of_the_key(tenants) -> None:
    server, keys, _ = tenants
    event = {"kind": "pipeline_run", "pipeline": "etl", "result": "success", "id": "run-1",
             "start": "2026-12-05T02:00:00Z", "end": "2026-12-05T02:10:00Z"}
    # A read key cannot post events; an ingest key can, for its own tenant only.
    denied = httpx.post(server.url + "/api/events", json={"events": [event]},
                        headers={"Authorization": f"Bearer {keys['a-read']}"})
    assert denied.status_code == 403
    spans = {}
    for tenant in ("a", "b"):
        answer = httpx.post(server.url + "/api/events", json={"events": [event]},
                            headers={"Authorization": f"Bearer {keys[f'{tenant}-ingest']}"}).json()
        assert answer["accepted"] == 1 and answer["rejected"] == [], answer
        spans[tenant] = answer["spans"][0]["trace_id"]
    # The same event of two tenants is two spans (the ids hash the tenant in), each private.
    assert spans["a"] != spans["b"]
    assert _get(server, f"/api/traces/{spans['a']}", keys["a-read"]).status_code == 200
    assert _get(server, f"/api/traces/{spans['a']}", keys["b-read"]).status_code == 404
