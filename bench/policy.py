"""Inline policy decisions: p99 latency of a 50-rule policy against the 5 ms target.

Run:  .venv/bin/python bench/policy.py [--calls 3000] [--history 20] [--shared]

Two figures: the engine alone (evaluate/policy/engine.decide, in process), and the whole
``POST /api/policy/decide`` round trip to a real ``aisre up`` on a fresh file: JSON parsing,
the 50 rules, the input redacted and the decision record written through the store's writer,
over a kept-alive loopback connection, one request at a time as an agent runtime asks.
Each request carries ``--history`` earlier actions of the run (the budgets, loops and
sequences read them). With ``--shared`` two of the five budgets count per user session and
per tenant hour instead of per run, and the store first holds ``--runs`` runs (20 tool calls
each, over 10 sessions, in the last hour): every decision then reads those runs' calls.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

TARGET_MS = 5.0


def policy_text(shared: bool = False) -> str:
    """One policy of 50 rules of every kind (``shared``: a session and a tenant budget among them)."""
    rules = []
    for i in range(10):
        rules.append(f"      - {{name: deny-{i}, kind: tool_deny, tools: [danger_{i}, shell_{i}]}}")
    for i in range(5):
        tools = ", ".join([f"tool_{j}" for j in range(20)] + ["read_file", "send_email", "search", "pay"])
        rules.append(f"      - {{name: allow-{i}, kind: tool_allow, tools: [{tools}]}}")
    for i in range(15):
        rules.append(f"      - {{name: arg-{i}, kind: argument, tools: [send_email, pay, read_file], "
                     f"require: '!has(args.amount) || args.amount <= {100 + i}'}}")
    for i in range(3 if shared else 5):
        rules.append(f"      - {{name: budget-{i}, kind: budget, model_calls: {50 + i}, tool_calls: 200, tokens: 500000, "
                     "cost_usd: 5, depth: 5, wall_clock: 10m}")
    if shared:
        rules.append("      - {name: budget-session, kind: budget, per: session, tool_calls: 1000000, tokens: 100000000}")
        rules.append("      - {name: budget-tenant, kind: budget, per: tenant, period: 1h, tool_calls: 1000000}")
    for i in range(5):
        rules.append(f"      - {{name: loop-{i}, kind: loop, max_repeats: {25 + i}, max_cycles: {8 + i}}}")
    for i in range(8):
        rules.append(f"      - {{name: seq-{i}, kind: sequence, after: [read_inbox_{i}], tools: [send_email], "
                     "deny_when: '!args.to.endsWith(\"@example.com\")'}")
    for i in range(2):
        rules.append(f"      - {{name: guard-{i}, kind: guardrail_coverage, effect: warn}}")
    return "policies:\n  - name: bench\n    rules:\n" + "\n".join(rules) + "\n"


def request_body(history: int, i: int) -> dict[str, Any]:
    """A decide request: ``history`` earlier actions and a send_email to decide (session s<i % 10>)."""
    now = time.time_ns()
    past = []
    for j in range(history):
        if j % 3 == 0:
            past.append({"type": "model", "name": "gpt-4o-mini", "tokens": 800, "cost_usd": 0.001, "start_ns": now - 10**9})
        else:
            past.append({"type": "tool", "name": "read_file", "args": {"path": f"/srv/doc-{j}.md"}, "start_ns": now - 10**9})
    return {"journey": "triage", "agent": "triage-agent", "trace_id": f"{i:032x}", "run_start_ns": now - 5 * 10**9,
            "session_id": f"s{i % 10}",
            "history": past, "action": {"type": "tool", "name": "send_email",
                                        "args": {"to": f"user{i}@example.com", "body": "the summary", "amount": 12}}}


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    a = np.array(samples) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def _load() -> str:
    import os

    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def bench_engine(calls: int, history: int, shared: bool = False,
                 runs: int = 0) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """decide() in process: wall time, and the thread's CPU time (what the rules cost, without
    the waits a loaded machine's scheduler adds). With ``shared``, ledgers of ``runs`` other
    runs' calls (as the server reads them from the store) are given."""
    from aisre.evaluate.policy.engine import Ledger
    from aisre.evaluate.policy.inline import decide_request, parse_request
    from aisre.evaluate.policy.spec import policies_from_text

    policies = policies_from_text(policy_text(shared))
    now = time.time_ns()
    calls_of = [(now - 3000 * 10**9 + k * 10**8, "tool", 0, 0.0) for k in range(runs * 20)]
    ledgers = {"tenant": Ledger(calls_of), "session": Ledger(calls_of[::10])} if shared else None
    assert sum(len(p.rules) for p in policies) == 50
    bodies = [request_body(history, i) for i in range(calls)]
    samples, cpu = [], []
    for body in bodies:
        t, c = time.perf_counter(), time.thread_time()
        decision = decide_request(policies, parse_request(body, "bench"), ledgers)
        cpu.append(time.thread_time() - c)
        samples.append(time.perf_counter() - t)
        assert decision.result == "allow", decision
    return _percentiles(samples[calls // 10:]), _percentiles(cpu[calls // 10:])  # after warm-up


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _preload(client: httpx.Client, url: str, runs: int) -> None:
    """``runs`` runs of 20 tool calls over 10 sessions in the last hour, sent over OTLP."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    def kv(key: str, value: str) -> KeyValue:
        out = KeyValue(key=key)
        out.value.string_value = value
        return out

    now = time.time_ns()
    for batch in range(0, runs, 50):
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.append(kv("service.name", "bench-agent"))
        spans = rs.scope_spans.add().spans
        for r in range(batch, min(runs, batch + 50)):
            trace, root = (10**6 + r).to_bytes(16, "big"), (10**6 + r).to_bytes(8, "big")
            start = now - 3000 * 10**9 + r * 10**9
            spans.append(Span(trace_id=trace, span_id=root, name="POST /triage", start_time_unix_nano=start,
                              end_time_unix_nano=start + 25 * 10**7,
                              attributes=[kv("aisre.journey", "triage"), kv("session.id", f"s{r % 10}")]))
            for k in range(20):
                spans.append(Span(trace_id=trace, span_id=(r * 100 + k + 1).to_bytes(8, "big"), parent_span_id=root,
                                  name="execute_tool read_file", start_time_unix_nano=start + k * 10**7,
                                  end_time_unix_nano=start + k * 10**7 + 5 * 10**6,
                                  attributes=[kv("gen_ai.operation.name", "execute_tool"),
                                              kv("gen_ai.tool.name", "read_file")]))
        r_ = client.post(url + "/v1/traces", content=request.SerializeToString(),
                         headers={"Content-Type": "application/x-protobuf"})
        assert r_.status_code == 200, r_.text
    # Committed runs (the last batch included) before the first decision.
    deadline = time.monotonic() + 120
    want = min(runs, 1000)
    while _stored_runs(client, url) < want:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {_stored_runs(client, url)} of {want} runs stored")
        time.sleep(0.5)


def _stored_runs(client: httpx.Client, url: str) -> int:
    found = client.get(url + "/api/journeys/runs", params={"journey": "triage", "since": "2h", "limit": 1000})
    return len(found.json()["items"])


def bench_http(calls: int, history: int, shared: bool = False, runs: int = 0) -> tuple[float, float, float]:
    """POST /api/policy/decide on a real server, decisions recorded."""
    folder = Path(tempfile.mkdtemp(prefix="aisre-policy-"))
    port = _port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", "from aisre.app import main; main()", "up", "--port", str(port), "--grpc-port", "0",
         "--db", str(folder / "policy.duckdb")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.1)
        with httpx.Client(timeout=10) as client:
            if shared:
                _preload(client, url, runs)
            assert client.put(url + "/api/policies", content=policy_text(shared)).status_code == 200
            bodies = [request_body(history, i) for i in range(calls)]
            samples = []
            for body in bodies:
                t = time.perf_counter()
                r = client.post(url + "/api/policy/decide", json=body)
                samples.append(time.perf_counter() - t)
                assert r.status_code == 200 and r.json()["result"] == "allow", r.text
            recorded = client.get(url + "/api/policy/decisions", params={"limit": 1}).json()["items"]
            assert recorded, "no decision recorded"
        return _percentiles(samples[calls // 10:])
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--shared", action="store_true", help="a session and a tenant budget among the 50 rules")
    parser.add_argument("--runs", type=int, default=1000, help="runs stored first, with --shared")
    args = parser.parse_args()
    runs = args.runs if args.shared else 0
    shared = f"; session and tenant budgets over {runs} stored runs" if args.shared else ""
    print(f"50-rule policy, {args.history} earlier actions per request, {args.calls} decisions "
          f"(first 10 % warm-up){shared}; {_load()}")
    wall, cpu = bench_engine(args.calls, args.history, args.shared, runs)
    http = bench_http(args.calls, args.history, args.shared, runs)
    for what, (p50, p99, worst) in (("engine, wall", wall), ("engine, CPU", cpu), ("POST /api/policy/decide", http)):
        verdict = "meets" if p99 < TARGET_MS else "MISSES"
        print(f"{what:<24} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {worst:7.2f} ms  "
              f"({verdict} the {TARGET_MS:g} ms p99 target)")
    print(f"after: {_load()}")


if __name__ == "__main__":
    main()
