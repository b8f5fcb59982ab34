"""Inline policy decisions: p99 latency of a 50-rule policy against the 5 ms target.

Run:  .venv/bin/python bench/policy.py [--calls 3000] [--history 20]

Two figures: the engine alone (evaluate/policy/engine.decide, in process), and the whole
``POST /api/policy/decide`` round trip to a real ``aisre up`` on a fresh file: JSON parsing,
the 50 rules, the input redacted and the decision record written through the store's writer,
over a kept-alive loopback connection, one request at a time as an agent runtime asks.
Each request carries ``--history`` earlier actions of the run (the budgets, loops and
sequences read them).
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


def policy_text() -> str:
    """One policy of 50 rules of every kind."""
    rules = []
    for i in range(10):
        rules.append(f"      - {{name: deny-{i}, kind: tool_deny, tools: [danger_{i}, shell_{i}]}}")
    for i in range(5):
        tools = ", ".join([f"tool_{j}" for j in range(20)] + ["read_file", "send_email", "search", "pay"])
        rules.append(f"      - {{name: allow-{i}, kind: tool_allow, tools: [{tools}]}}")
    for i in range(15):
        rules.append(f"      - {{name: arg-{i}, kind: argument, tools: [send_email, pay, read_file], "
                     f"require: '!has(args.amount) || args.amount <= {100 + i}'}}")
    for i in range(5):
        rules.append(f"      - {{name: budget-{i}, kind: budget, model_calls: {50 + i}, tool_calls: 200, tokens: 500000, "
                     "cost_usd: 5, depth: 5, wall_clock: 10m}")
    for i in range(5):
        rules.append(f"      - {{name: loop-{i}, kind: loop, max_repeats: {25 + i}, max_cycles: {8 + i}}}")
    for i in range(8):
        rules.append(f"      - {{name: seq-{i}, kind: sequence, after: [read_inbox_{i}], tools: [send_email], "
                     "deny_when: '!args.to.endsWith(\"@example.com\")'}")
    for i in range(2):
        rules.append(f"      - {{name: guard-{i}, kind: guardrail_coverage, effect: warn}}")
    return "policies:\n  - name: bench\n    rules:\n" + "\n".join(rules) + "\n"


def request_body(history: int, i: int) -> dict[str, Any]:
    """A decide request: ``history`` earlier actions and a send_email to decide."""
    now = time.time_ns()
    past = []
    for j in range(history):
        if j % 3 == 0:
            past.append({"type": "model", "name": "gpt-4o-mini", "tokens": 800, "cost_usd": 0.001, "start_ns": now - 10**9})
        else:
            past.append({"type": "tool", "name": "read_file", "args": {"path": f"/srv/doc-{j}.md"}, "start_ns": now - 10**9})
    return {"journey": "triage", "agent": "triage-agent", "trace_id": f"{i:032x}", "run_start_ns": now - 5 * 10**9,
            "history": past, "action": {"type": "tool", "name": "send_email",
                                        "args": {"to": f"user{i}@example.com", "body": "the summary", "amount": 12}}}


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    a = np.array(samples) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def _load() -> str:
    import os

    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def bench_engine(calls: int, history: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """decide() in process: wall time, and the thread's CPU time (what the rules cost, without
    the waits a loaded machine's scheduler adds)."""
    from aisre.evaluate.policy.inline import decide_request, parse_request
    from aisre.evaluate.policy.spec import policies_from_text

    policies = policies_from_text(policy_text())
    assert sum(len(p.rules) for p in policies) == 50
    bodies = [request_body(history, i) for i in range(calls)]
    samples, cpu = [], []
    for body in bodies:
        t, c = time.perf_counter(), time.thread_time()
        decision = decide_request(policies, parse_request(body, "bench"))
        cpu.append(time.thread_time() - c)
        samples.append(time.perf_counter() - t)
        assert decision.result == "allow", decision
    return _percentiles(samples[calls // 10:]), _percentiles(cpu[calls // 10:])  # after warm-up


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_http(calls: int, history: int) -> tuple[float, float, float]:
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
            assert client.put(url + "/api/policies", content=policy_text()).status_code == 200
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
    args = parser.parse_args()
    print(f"50-rule policy, {args.history} earlier actions per request, {args.calls} decisions "
          f"(first 10 % warm-up); {_load()}")
    wall, cpu = bench_engine(args.calls, args.history)
    http = bench_http(args.calls, args.history)
    for what, (p50, p99, worst) in (("engine, wall", wall), ("engine, CPU", cpu), ("POST /api/policy/decide", http)):
        verdict = "meets" if p99 < TARGET_MS else "MISSES"
        print(f"{what:<24} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {worst:7.2f} ms  "
              f"({verdict} the {TARGET_MS:g} ms p99 target)")
    print(f"after: {_load()}")


if __name__ == "__main__":
    main()
