"""Agent policies end to end on a real server: PUT /api/policies, inline decisions recorded and
redacted, runs sent over OTLP judged off the ingest path (root last, a late span), the CLI
against the server; and the offline CLI (validate, test, check --otlp) with its exit codes."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.present.cli.main import build_cli
from aisre.present.policy_client import PolicyClient
from tests.conftest import ServerProcess, wait_for
from tests.policy_traces import agent_run, model, tool

runner = CliRunner()
cli = build_cli(run_server)

POLICY = """
policies:
  - name: triage
    scope: {journeys: [triage]}
    rules:
      - {name: no-shell, kind: tool_deny, tools: [shell]}
      - {name: no-loops, kind: loop, max_repeats: 5}
      - name: mail-domain
        kind: argument
        tools: [send_email]
        require: 'args.to.endsWith("@example.com")'
      - name: write-under-srv
        kind: argument
        tools: [write_file]
        require: 'args.path.startsWith("/srv/")'
"""
CASES = """
cases:
  - name: shell is denied
    input: {journey: triage, action: {type: tool, name: shell, args: {cmd: ls}}}
    expect: {result: deny, rules: [no-shell]}
  - name: mail inside the domain
    input: {journey: triage, action: {type: tool, name: send_email, args: {to: a@example.com}}}
    expect: allow
  - name: the fifth identical read
    input:
      journey: triage
      action: {type: tool, name: read_file, args: {path: /x}}
      history:
        - {type: tool, name: read_file, args: {path: /x}}
        - {type: tool, name: read_file, args: {path: /x}}
        - {type: tool, name: read_file, args: {path: /x}}
        - {type: tool, name: read_file, args: {path: /x}}
    expect: deny
"""


def _post(server: ServerProcess, request) -> None:
    r = httpx.post(server.url + "/v1/traces", content=request.SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert r.status_code == 200, r.text


def test_policies_decisions_and_violations_on_a_server(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path / "policy.duckdb", "--setting", "policy_interval_s=1")
    bad = httpx.put(server.url + "/api/policies", content=POLICY.replace("tool_deny", "tool_denied"), timeout=30)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "policies[0].rules[0].kind"
    put = httpx.put(server.url + "/api/policies", content=POLICY, timeout=30)
    assert put.status_code == 200, put.text
    bundle = put.json()["bundle"]
    listed = httpx.get(server.url + "/api/policies", timeout=30).json()
    assert listed["bundle"] == bundle
    assert [r["name"] for r in listed["policies"][0]["rules"]] == ["no-shell", "no-loops", "mail-domain", "write-under-srv"]

    # Inline: the runtime asks before each call.
    ask = {"journey": "triage", "trace_id": "cd" * 16,
           "action": {"type": "tool", "name": "send_email", "args": {"to": "eve@evil.test", "body": "call 555-0100"}}}
    answer = httpx.post(server.url + "/api/policy/decide", json=ask, timeout=30).json()
    assert answer["result"] == "deny" and answer["reasons"][0]["rule"] == "mail-domain"
    assert answer["bundle"] == bundle
    # Records are written in batches a fraction of a second later, never on the answer's path.
    records = wait_for(lambda: httpx.get(server.url + "/api/policy/decisions", params={"result": "deny"},
                                         timeout=30).json()["items"] or None, 30, "the decision recorded")
    assert len(records) == 1 and records[0]["id"] == answer["id"] and records[0]["trace_id"] == "cd" * 16
    assert "eve@evil.test" not in str(records[0]["input"])
    assert records[0]["input"]["action"]["args"]["to"] == "[REDACTED:EMAIL]"

    # Over traces: a loop sent root last, then a late denied call.
    run = agent_run([tool("read_file", path="/etc/x") for _ in range(20)] + [model(), tool("search", q="a")],
                    start_ns=time.time_ns() - 120 * 10**9, step_ns=10**9 // 10)
    root, agent, *steps = run.spans
    late = steps.pop()
    late.attributes[1].value.string_value = "shell"
    _post(server, run.request(steps))
    _post(server, run.request([root, agent]))

    def violations() -> list[dict]:
        r = httpx.get(server.url + "/api/policy/violations", params={"trace_id": run.trace_id}, timeout=30)
        return r.json()["items"]

    found = wait_for(lambda: violations() or None, 60, "the loop judged")
    assert [(v["rule"], v["count"]) for v in found] == [("no-loops", 20)]
    _post(server, run.request([late]))
    found = wait_for(lambda: (lambda v: v if len(v) == 2 else None)(violations()), 60, "the late span judged")
    assert sorted((v["rule"], v["count"]) for v in found) == [("no-loops", 20), ("no-shell", 1)]
    shell = next(v for v in found if v["rule"] == "no-shell")
    assert shell["span_id"] == run.step_span_ids[-1]

    # The trace page lists them and marks the spans.
    page = httpx.get(server.url + f"/traces/{run.trace_id}", timeout=30)
    assert page.status_code == 200
    assert 'aria-label="Policy violations"' in page.text and "triage/no-loops" in page.text and "×20" in page.text
    assert page.text.count("⛔ no-loops") == 16 and page.text.count("⛔ no-shell") == 1

    # The Policies page: rules with their violating runs, history, decision log (auth off: admin).
    page = httpx.get(server.url + "/policies", timeout=30)
    assert page.status_code == 200
    assert 'data-rule="no-loops" data-total="1"' in page.text and 'data-rule="no-shell" data-total="1"' in page.text
    assert 'data-rule="mail-domain" data-total="0"' in page.text
    assert bundle in page.text and 'class="decision result-deny"' in page.text

    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    assert 'aisre_policy_decisions_total{result="deny"} 1.0' in metrics
    assert 'aisre_policy_runs_judged_total{verdict="violating"}' in metrics

    # The CLI against the server.
    out = runner.invoke(cli, ["policy", "violations", "--url", server.url, "--rule", "no-loops"])
    assert out.exit_code == 0 and "no-loops" in out.output and "20" in out.output
    out = runner.invoke(cli, ["policy", "decisions", "--url", server.url, "--result", "deny"])
    assert out.exit_code == 0 and "mail-domain" in out.output
    out = runner.invoke(cli, ["policy", "list", "--url", server.url])
    assert out.exit_code == 0 and bundle in out.output
    audit = httpx.get(server.url + "/api/audit", params={"action": "policy"}, timeout=30).json()["items"]
    assert audit[0]["after"]["bundle"] == bundle and audit[0]["before"] is None


def test_the_inline_answer_equals_the_trace_verdict_for_the_same_run(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path / "same.duckdb", "--setting", "policy_interval_s=1")
    assert httpx.put(server.url + "/api/policies", content=POLICY, timeout=30).status_code == 200
    steps = ([tool("read_file", path="/srv/a") for _ in range(7)]
             + [model(), tool("shell", cmd="id"), tool("write_file", path="/etc/passwd"), tool("write_file", path="/srv/b")])
    run = agent_run(steps)
    # The runtime asks before each step (monitor mode: it goes on, so the trace holds every step).
    guard = PolicyClient(server.url, journey="triage", agent="triage-agent", trace_id=run.trace_id, mode="monitor")
    inline = []
    for step in steps:
        if step.kind == "tool":
            answer = guard.check_tool(step.name, step.args)
        else:
            answer = guard.check_model(step.name, tokens=step.tokens)
        inline.append(sorted(r["rule"] for r in answer["reasons"]))
    guard.close()
    assert inline == [[]] * 4 + [["no-loops"]] * 3 + [[], ["no-shell"], ["write-under-srv"], []]
    _post(server, run.request())

    def judged() -> list[dict] | None:
        r = httpx.get(server.url + "/api/policy/violations", params={"trace_id": run.trace_id}, timeout=30)
        return r.json()["items"] or None

    found = wait_for(judged, 60, "the run judged")
    by_span = {sid: [] for sid in run.step_span_ids}
    for v in found:
        for sid in v["span_ids"]:
            by_span[sid].append(v["rule"])
    assert [sorted(by_span[sid]) for sid in run.step_span_ids] == inline
    decisions = wait_for(lambda: (lambda d: d if len(d) == 5 else None)(httpx.get(
        server.url + "/api/policy/decisions", params={"result": "deny"}, timeout=30).json()["items"]), 30, "5 records")
    assert len(decisions) == 5 and {d["trace_id"] for d in decisions} == {run.trace_id}


def test_policy_cli_offline(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    out = runner.invoke(cli, ["policy", "validate", str(policy)])
    assert out.exit_code == 0 and "triage" in out.output
    broken = tmp_path / "broken.yaml"
    broken.write_text(POLICY.replace("args.to.endsWith", "args.to.endsWith(("))
    out = runner.invoke(cli, ["policy", "validate", str(broken)])
    assert out.exit_code == 1 and f"{broken}:11: policies[0].rules[2].require: not a valid CEL" in out.output.replace("\n", "")

    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES)
    out = runner.invoke(cli, ["policy", "test", str(cases), "--policy", str(policy)])
    assert out.exit_code == 0, out.output
    assert "3 passed, 0 failed" in out.output
    cases.write_text(CASES.replace("expect: allow", "expect: deny"))
    out = runner.invoke(cli, ["policy", "test", str(cases), "--policy", str(policy)])
    assert out.exit_code == 1 and "FAIL mail inside the domain" in out.output

    captures = tmp_path / "captures"
    captures.mkdir()
    clean = agent_run([tool("read_file", path=f"/f{i}") for i in range(6)] + [model()])
    (captures / "clean.pb").write_bytes(clean.request().SerializeToString())
    out = runner.invoke(cli, ["policy", "check", "--otlp", str(captures), "--policy", str(policy)])
    assert out.exit_code == 0, out.output
    loop = agent_run([tool("read_file", path="/etc/x") for _ in range(20)])
    # Split over two files, root in the second, gzipped: as a collector's file exporter may leave it.
    (captures / "loop-1.pb.gz").write_bytes(gzip.compress(loop.request(loop.spans[2:]).SerializeToString()))
    (captures / "loop-2.pb").write_bytes(loop.request(loop.spans[:2]).SerializeToString())
    out = runner.invoke(cli, ["policy", "check", "--otlp", str(captures), "--policy", str(policy)])
    assert out.exit_code == 1, out.output
    assert "2 runs in 3 files; FAIL: 1 violation" in out.output
    assert "triage/no-loops ×20" in out.output and loop.trace_id in out.output
    out = runner.invoke(cli, ["policy", "check", "--otlp", str(tmp_path / "nothing"), "--policy", str(policy)])
    assert out.exit_code == 2


def test_a_bad_policies_setting_stops_the_start(tmp_path: Path) -> None:
    from tests.conftest import aisre_up_refused

    bad = tmp_path / "policy.yaml"
    bad.write_text(POLICY.replace("max_repeats: 5", "max_repeats: 0"))
    out = aisre_up_refused(tmp_path, "--setting", f"policies={bad}")
    assert f"{bad}:7: policies[0].rules[1].max_repeats: must be at least 1" in out.replace("\n", "")


def test_the_policies_setting_applies_at_start_and_is_audited_once(server_factory, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    db = tmp_path / "start.duckdb"
    server = server_factory(db, "--setting", f"policies={policy}")
    first = httpx.get(server.url + "/api/policies", timeout=30).json()
    assert [p["name"] for p in first["policies"]] == ["triage"]
    server.stop()
    server = server_factory(db, "--setting", f"policies={policy}")  # same file: no new version
    audit = httpx.get(server.url + "/api/audit", params={"action": "policy"}, timeout=30).json()["items"]
    assert [(a["actor"], a["after"]["bundle"]) for a in audit] == [("startup", first["bundle"])]


def test_policies_keys_and_tenants(tmp_path: Path) -> None:
    """Applying needs an admin key, deciding an ingest key, decision records an admin key; each
    tenant sees only its own policies, decisions and violations."""
    import json

    db = tmp_path / "keys.duckdb"
    keys = {}
    for tenant in ("a", "b"):
        for role in ("read", "ingest", "admin"):
            out = runner.invoke(cli, ["keys", "create", "--db", str(db), "--tenant", tenant, "--role", role,
                                      "--format", "json"])
            assert out.exit_code == 0, out.output
            keys[f"{tenant}-{role}"] = {"Authorization": f"Bearer {json.loads(out.output)['key']}"}
    from tests.conftest import free_port

    server = ServerProcess(db, free_port(), free_port(), ("--setting", "policy_interval_s=1")).start()
    try:
        assert httpx.put(server.url + "/api/policies", content=POLICY, headers=keys["a-ingest"]).status_code == 403
        assert httpx.put(server.url + "/api/policies", content=POLICY, headers=keys["a-admin"]).status_code == 200
        ask = {"journey": "triage", "action": {"type": "tool", "name": "shell", "args": {}}}
        assert httpx.post(server.url + "/api/policy/decide", json=ask, headers=keys["a-read"]).status_code == 403
        answer = httpx.post(server.url + "/api/policy/decide", json=ask, headers=keys["a-ingest"]).json()
        assert answer["result"] == "deny"
        # Tenant b has no policy: the same call is allowed there, and b sees nothing of a's.
        assert httpx.post(server.url + "/api/policy/decide", json=ask, headers=keys["b-ingest"]).json()["result"] == "allow"
        assert httpx.get(server.url + "/api/policies", headers=keys["b-read"]).json()["bundle"] is None
        assert httpx.get(server.url + "/api/policy/decisions", headers=keys["a-read"]).status_code == 403
        mine = wait_for(lambda: httpx.get(server.url + "/api/policy/decisions", params={"result": "deny"},
                                          headers=keys["a-admin"]).json()["items"] or None, 30, "a's record")
        assert [d["id"] for d in mine] == [answer["id"]]
        theirs = wait_for(lambda: httpx.get(server.url + "/api/policy/decisions", headers=keys["b-admin"]).json()["items"]
                          or None, 30, "b's record")
        assert [d["result"] for d in theirs] == ["allow"]
    finally:
        server.stop()
