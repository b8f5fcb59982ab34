"""Agent policy violations in the postmortem: the runs of the incident's journey that started
in its impact window, per rule, on hand-built runs judged by the policy service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aisre.act.incidents import IncidentManager
from aisre.act.postmortem import Postmortems
from aisre.derive.journeys import get_trace
from aisre.evaluate.policy.service import PolicyService
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from tests.policy_traces import T0, S, agent_run, tool

MINUTE = 60 * S
POLICY = """
policies:
  - name: agents
    rules:
      - {name: no-shell, kind: tool_deny, tools: [shell]}
      - {name: no-loops, kind: loop, max_repeats: 5}
"""


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path / "p.duckdb"))
    yield s
    s.close()


def test_the_postmortem_lists_violations_of_runs_in_the_impact_window(store: DuckDBStore) -> None:
    runs = {
        "before": agent_run([tool("shell", cmd="ls")], start_ns=T0 - 30 * MINUTE),
        "loop": agent_run([tool("read_file", path="/a")] * 20, start_ns=T0 + 2 * MINUTE),
        "shell": agent_run([tool("search", q="x"), tool("shell", cmd="rm -rf /")], start_ns=T0 + 5 * MINUTE),
        "clean": agent_run([tool("search", q="y")], start_ns=T0 + 6 * MINUTE),
        "other-journey": agent_run([tool("shell", cmd="id")], journey="billing", start_ns=T0 + 7 * MINUTE),
        "after": agent_run([tool("shell", cmd="pwd")], start_ns=T0 + 40 * MINUTE),
    }
    for run in runs.values():
        flat = flatten(run.request(), "t", received_ns=T0 + 3600 * S)
        store.submit_spans(flat.table, flat.resources).result(30)
    service = PolicyService(store)
    service.apply("t", POLICY, "tester")
    assert service.judge_pending("t") == 6
    clock = Clock(T0)
    manager = IncidentManager(store.incidents, None, "t", None, public_url="http://aisre.example", clock=clock)
    doc = manager.declare("triage agent misbehaves", "alice", journey="triage")
    clock.now = T0 + 20 * MINUTE
    manager.transition(doc["id"], "resolve", "alice")
    postmortems = Postmortems(manager, None, lambda tenant, t: get_trace(store, tenant, t), clock=clock,
                              violations=lambda tenant, journey, since, limit: store.list_violations(
                                  tenant, journey=journey, since_ns=since, limit=limit))
    row = store.incidents.get_incident("t", doc["id"])
    found = postmortems.policy_violations("t", row)
    assert found is not None
    assert (found["violations"], sorted(found["runs"]), found["denied_runs"]) == (
        2, sorted([runs["loop"].trace_id, runs["shell"].trace_id]), 2)
    assert [(r["rule"], r["runs"], r["violations"]) for r in found["rules"]] == [("no-loops", 1, 1), ("no-shell", 1, 1)]
    text = postmortems.markdown(doc["id"], "t")
    section = text.split("## Agent policy violations")[1].split("## Timeline")[0]
    assert "2 violations in 2 runs of triage that started in the impact period; 2 runs broke a deny rule." in section
    assert "| agents | no-loops | loop | deny | 1 | 1 | 'read_file' called 20 times with the same arguments (limit 5) |" in section
    assert f"- [`{runs['loop'].trace_id}`](/traces/{runs['loop'].trace_id})" in section
    assert section.index(runs["loop"].trace_id) < section.index(runs["shell"].trace_id)  # in run order
    for outside in ("before", "other-journey", "after"):
        assert runs[outside].trace_id not in section
    # An incident with no violating run in its window says so.
    clock.now = T0 + 50 * MINUTE
    quiet = manager.declare("later", "alice", journey="triage")
    clock.now = T0 + 55 * MINUTE
    manager.transition(quiet["id"], "resolve", "alice")
    assert ("None: no run of triage that started in the impact period broke an agent policy."
            in postmortems.markdown(quiet["id"], "t"))
