"""Two `aisre up` nodes sharing one PostgreSQL control plane (each with its own DuckDB span
store): what one records the other reads, exactly one evaluates (its /metrics says so), and
when it is killed the other takes over."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import AISRE, ServerProcess, aisre_up_refused, free_port, wait_for

TTL_S = 2


def _held(server: ServerProcess, secret: str) -> bool | None:
    """What the node's /metrics says of the evaluator lease (None if it cannot be read)."""
    try:
        text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {secret}"}).text
    except httpx.HTTPError:
        return None
    found = re.search(r'^aisre_evaluator_lease_held\{holder="[^"]*"\} (\S+)$', text, re.M)
    return None if found is None else float(found.group(1)) == 1.0


def test_two_nodes_share_the_control_plane_and_one_evaluates(
    server_factory: Any, postgres_url: str, tmp_path: Path
) -> None:
    nodes = [server_factory(tmp_path / f"{name}.duckdb", "--control", postgres_url, "--setting", f"lease_ttl_s={TTL_S}",
                            "--setting", "evaluation_interval_s=1")
             for name in ("a", "b")]
    a, b = nodes
    # The control plane is shared: a change recorded on one node is listed by the other.
    made = httpx.post(a.url + "/api/changes", json={"kind": "deploy", "summary": "2.0 out", "version": "2.0"})
    assert made.status_code == 201, made.text
    listed = httpx.get(b.url + "/api/changes").json()["items"]
    assert [(c["id"], c["version"]) for c in listed] == [(made.json()["id"], "2.0")]

    # A key made straight in the control store (the nodes running) reaches both nodes: the
    # auth latch turns auth on everywhere, and the key works everywhere.
    made_key = subprocess.run([*AISRE, "keys", "create", "--db", postgres_url, "--role", "admin", "--tenant", "default",
                               "--format", "json"], capture_output=True, text=True, timeout=120)
    assert made_key.returncode == 0, made_key.stdout + made_key.stderr
    secret = json.loads(made_key.stdout)["key"]
    for node in nodes:
        wait_for(lambda node=node: httpx.get(node.url + "/api/changes").status_code == 401, 60, "auth on every node")
        got = httpx.get(node.url + "/api/changes", headers={"Authorization": f"Bearer {secret}"})
        assert got.status_code == 200 and len(got.json()["items"]) == 1

    # A price override set through one node prices the other node's ingest too.
    auth = {"Authorization": f"Bearer {secret}"}
    put = httpx.put(a.url + "/api/cost/prices", headers=auth,
                    json={"model": "gpt-4o-mini", "provider": "openai", "input": 0.11, "output": 0.44, "cached_input": 0.05})
    assert put.status_code == 200, put.text

    def override_on_b() -> bool:
        doc = httpx.get(b.url + "/api/cost/prices", headers=auth).json()
        return any(o["model"] == "gpt-4o-mini" and o["input"] == 0.11 for o in doc["overrides"])

    wait_for(override_on_b, 60, "the override on the other node")

    # Exactly one node holds the evaluator lease.
    def one_holder() -> list[bool | None] | None:
        states = [_held(n, secret) for n in nodes]
        return states if states.count(True) == 1 and states.count(False) == 1 else None

    states = wait_for(one_holder, 60, "one lease holder")
    holder, other = (a, b) if states[0] else (b, a)
    for _ in range(5):  # never both, while both renew
        assert not (_held(holder, secret) and _held(other, secret))

    holder.kill()  # SIGKILL: the lease is not released, it expires
    wait_for(lambda: _held(other, secret), 60, "the surviving node to take the lease over")
    metrics = httpx.get(other.url + "/metrics", headers={"Authorization": f"Bearer {secret}"}).text
    term = re.search(r"^aisre_evaluator_lease_term (\S+)$", metrics, re.M)
    assert term is not None and float(term.group(1)) >= 2  # a new term: the survivor reloads what it cached


def test_a_control_store_that_is_not_postgresql_or_unreachable_is_refused_at_start(tmp_path: Path) -> None:
    said = aisre_up_refused(tmp_path, "--control", "mysql://root@127.0.0.1/aisre")
    assert "control_store" in said and "postgresql://" in said
    port = free_port()  # nothing listens there
    said = aisre_up_refused(tmp_path, "--control", f"postgresql://aisre:secret@127.0.0.1:{port}/aisre")
    assert "cannot open control store" in said and "secret" not in said  # the password is not shown
