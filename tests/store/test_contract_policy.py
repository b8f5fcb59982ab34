"""The store contract, agent policy: applied sets, decision records, the runs to judge and
their judged marks, violations and policy scores, the calls shared budgets count, a
session's later runs, and the expiry of policy records. DuckDB and the split stores
(chdb or DuckDB spans with PostgreSQL as the control plane) give the same answers.

The runs are hand-built agent runs (tests/policy_traces.py) with known calls; the store's
clock is the contract's NOW_NS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aisre.core.model import SliRule
from aisre.core.rows import (
    DecisionRecord,
    PolicyRunMark,
    PolicySetRow,
    PolicyViolation,
    row_problems,
)
from tests.policy_traces import Run, agent_run, model, tool
from tests.store.conftest import OpenedStore
from tests.store.contract.data import NOW_NS, ingest

P, Q, E = "policy-a", "policy-b", "policy-expiry"
S = 10**9
MINUTE = 60 * S
DAY = 86_400 * S
T = NOW_NS - 3 * 3600 * S  # the runs start three hours before the store's clock
SLI = SliRule(slo="agent-policy", journey="triage", kind="score", score="policy_violation", max_value=0)


def _body(run: Run, spans: Any = None) -> bytes:
    return run.request(spans).SerializeToString()


@pytest.fixture(scope="module")
def runs(contract_store: OpenedStore) -> Iterator[dict[str, Run]]:
    """Tenant P: run a (session s1; its last step held back), b (s1, 10 min later), c (s2,
    20 min later), all received at NOW_NS."""
    store = contract_store.store
    built = {
        "a": agent_run([tool("search", q="1"), model(tokens=120), tool("shell", cmd="ls")], session="s1", start_ns=T),
        "b": agent_run([tool("search", q="2"), model(tokens=80)], session="s1", start_ns=T + 10 * MINUTE),
        "c": agent_run([tool("search", q="3")], session="s2", start_ns=T + 20 * MINUTE),
    }
    store.set_sli_rules(P, [SLI])
    ingest(store, P, _body(built["a"], built["a"].spans[:-1]))
    ingest(store, P, _body(built["b"]))
    ingest(store, P, _body(built["c"]))
    store.flush_rollups()
    yield built


def _mark(run: Run | str, tenant: str = P, received: int = NOW_NS, start: int | None = None) -> dict[str, Any]:
    return {"tenant": tenant, "trace_id": run.trace_id if isinstance(run, Run) else run, "journey": "triage",
            "run_start_ns": T if start is None else start, "bundle": "sha256:b1", "last_received_ns": received,
            "actions": 3, "guardrail_checks": 0, "guardrail_trips": 0, "undetermined": []}


def _violation(trace_id: str, span_id: str, tenant: str = P, start: int = T, rule: str = "no-shell") -> dict[str, Any]:
    return {"tenant": tenant, "trace_id": trace_id, "journey": "triage", "run_start_ns": start, "policy": "triage",
            "version": "sha256:v1", "rule": rule, "kind": "tool_deny", "effect": "deny",
            "message": "tool shell is denied", "count": 1, "span_id": span_id, "span_ids": [span_id],
            "start_ns": start + 3 * S}


def _decision(n: int, result: str, tenant: str = P, at: int = NOW_NS, rules: tuple[str, ...] = (),
              journey: str = "triage", reasons: list[Any] | None = None) -> dict[str, Any]:
    return {"id": f"{tenant}-d{n}", "tenant": tenant, "at_ns": at, "source": "inline", "journey": journey,
            "trace_id": "ab" * 16, "span_id": "cd" * 8, "result": result, "bundle": "sha256:b1",
            "policies": [{"name": "triage", "version": "sha256:v1"}], "rules": list(rules),
            "reasons": reasons if reasons is not None else [{"rule": r, "message": f"{r} says no"} for r in rules],
            "input_digest": f"hmac-sha256:{n:032d}", "input": {"action": {"name": "send_email", "to": "[REDACTED:EMAIL]"}},
            "actor": "key-1"}


def test_policy_sets_are_kept_newest_first_and_each_apply_is_audited(contract_store: OpenedStore) -> None:
    store = contract_store.store
    first = store.put_policy_set({"tenant": P, "bundle": "sha256:one", "source": "policies: []\n", "actor": "alice",
                                  "policies": [{"name": "triage", "version": "sha256:v1", "rules": ["no-shell"]}],
                                  "applied_ns": NOW_NS})
    assert first["before"] is None and first["applied_ns"] == NOW_NS
    # The same instant again: still strictly later, so the set in force is never ambiguous.
    second = store.put_policy_set({"tenant": P, "bundle": "sha256:two", "source": "policies: [x]\n", "actor": "bob",
                                   "policies": [{"name": "triage", "version": "sha256:v2", "rules": []}],
                                   "applied_ns": NOW_NS})
    assert second["applied_ns"] == NOW_NS + 1
    assert second["before"] == {"bundle": "sha256:one",
                                "policies": [{"name": "triage", "version": "sha256:v1", "rules": ["no-shell"]}]}
    sets = store.policy_sets(P)
    assert [(s["bundle"], s["applied_ns"], s["actor"]) for s in sets] == [
        ("sha256:two", NOW_NS + 1, "bob"), ("sha256:one", NOW_NS, "alice")]
    assert sets[0]["source"] == "policies: [x]\n"
    for s in sets:
        assert row_problems(dict(s), PolicySetRow) == [], s
    assert [s["bundle"] for s in store.policy_sets(P, limit=1)] == ["sha256:two"]
    assert P in store.policy_tenants()
    audit = store.list_audit(P, action="policy.apply")
    assert [(a["actor"], a["target"]) for a in audit] == [("bob", "policies"), ("alice", "policies")]
    assert audit[0]["before"] == audit[1]["after"]
    assert audit[0]["after"]["bundle"] == "sha256:two"
    assert store.policy_sets(Q) == []


def test_decision_records_filter_newest_first_and_denies_reach_the_audit_trail(contract_store: OpenedStore) -> None:
    store = contract_store.store
    warn = [{"rule": "slow", "message": "warned"}]
    store.add_decisions([
        _decision(1, "allow", at=NOW_NS - 3 * S),
        _decision(2, "deny", at=NOW_NS - 2 * S, rules=("no-shell", "no-loops")),
        _decision(3, "allow", at=NOW_NS - 1 * S, journey="other", reasons=warn),
    ])
    rows = store.list_decisions(P)
    assert [r["id"] for r in rows] == [f"{P}-d3", f"{P}-d2", f"{P}-d1"]
    for r in rows:
        assert row_problems(dict(r), DecisionRecord) == [], r
    deny = rows[1]
    assert deny["result"] == "deny" and sorted(deny["rules"]) == ["no-loops", "no-shell"]
    assert deny["reasons"] == [{"rule": "no-shell", "message": "no-shell says no"},
                               {"rule": "no-loops", "message": "no-loops says no"}]
    assert deny["input"] == {"action": {"name": "send_email", "to": "[REDACTED:EMAIL]"}}
    assert deny["policies"] == [{"name": "triage", "version": "sha256:v1"}]
    assert (deny["at_ns"], deny["trace_id"], deny["span_id"], deny["input_digest"]) == (
        NOW_NS - 2 * S, "ab" * 16, "cd" * 8, f"hmac-sha256:{2:032d}")
    assert [r["id"] for r in store.list_decisions(P, rule="no-loops")] == [f"{P}-d2"]
    assert [r["id"] for r in store.list_decisions(P, result="allow")] == [f"{P}-d3", f"{P}-d1"]
    assert [r["id"] for r in store.list_decisions(P, journey="triage")] == [f"{P}-d2", f"{P}-d1"]
    assert [r["id"] for r in store.list_decisions(P, since_ns=NOW_NS - 2 * S, limit=1)] == [f"{P}-d3"]
    # The deny and the warned allow are exported to the audit trail, with the decision id.
    audit = store.list_audit(P, action="policy.decide")
    assert [(a["action"], a["target"], a["actor"]) for a in audit] == [
        ("policy.decide.allow", f"decision:{P}-d3", "key-1"), ("policy.decide.deny", f"decision:{P}-d2", "key-1")]
    assert audit[1]["after"]["input"] == deny["input"] and audit[1]["after"]["id"] == f"{P}-d2"
    assert store.list_decisions(Q) == []


def test_runs_are_judged_once_until_they_change_with_marks_violations_and_scores(
    contract_store: OpenedStore, runs: dict[str, Run]
) -> None:
    store = contract_store.store
    a, b, c = runs["a"], runs["b"], runs["c"]
    pending = store.runs_to_judge(P)
    assert sorted(r["trace_id"] for r in pending) == sorted([a.trace_id, b.trace_id, c.trace_id])
    first = next(r for r in pending if r["trace_id"] == a.trace_id)
    assert (first["journey"], first["run_start_ns"], first["root_service"], first["last_received_ns"]) == (
        "triage", T, "triage-svc", NOW_NS)
    assert store.slo_minute_arrays(P, 0, 2**62).get("agent-policy") is None
    # a is judged with one violation, b clean.
    shell = a.step_span_ids[2]
    store.save_policy_run(_mark(a), [_violation(a.trace_id, shell)])
    store.save_policy_run({**_mark(b, start=T + 10 * MINUTE), "actions": 2}, [])
    assert [r["trace_id"] for r in store.runs_to_judge(P)] == [c.trace_id]
    mark = store.policy_run(P, a.trace_id)
    assert mark is not None and row_problems(dict(mark), PolicyRunMark) == []
    assert (mark["violations"], mark["actions"], mark["last_received_ns"], mark["bundle"]) == (1, 3, NOW_NS, "sha256:b1")
    found = store.list_violations(P)
    assert [(v["trace_id"], v["rule"], v["count"], v["span_id"], v["span_ids"]) for v in found] == [
        (a.trace_id, "no-shell", 1, shell, [shell])]
    assert row_problems(dict(found[0]), PolicyViolation) == []
    assert store.list_violations(P, rule="no-loops") == [] and store.list_violations(P, trace_id=b.trace_id) == []
    assert store.list_violations(P, since_ns=T + 1) == []
    hour = 3600 * S
    bucket = T - T % hour
    judged = sum(1 for start in (T, T + 10 * MINUTE) if start - start % hour == bucket)
    counts = store.violation_counts(P, T - hour, hour)
    assert [(r["policy"], r["rule"], r["effect"], int(r["bucket_ns"]), r["runs"], r["judged"]) for r in counts] == [
        ("triage", "no-shell", "deny", bucket, 1, judged)]
    totals = store.policy_totals(P, T - hour, NOW_NS)
    assert [(r["journey"], r["judged"], r["denied_runs"], r["warned_runs"], r["violations"]) for r in totals] == [
        ("triage", 2, 1, 0, 1)]
    # The policy score of each judged run reaches the span store and its minute's count.
    store.flush_rollups()
    _, good, total = store.slo_minute_arrays(P, 0, 2**62)["agent-policy"]
    assert (int(good.sum()), int(total.sum())) == (1, 2)
    # a's held-back step arrives: a is judged again, and this time it is clean.
    ingest(store, P, _body(a, a.spans[-1:]), received_ns=NOW_NS + 60 * S)
    again = {r["trace_id"]: r["last_received_ns"] for r in store.runs_to_judge(P)}
    assert again == {a.trace_id: NOW_NS + 60 * S, c.trace_id: NOW_NS}
    store.save_policy_run({**_mark(a, received=NOW_NS + 60 * S), "actions": 4}, [])
    assert store.list_violations(P, trace_id=a.trace_id) == []
    mark = store.policy_run(P, a.trace_id)
    assert mark is not None and (mark["violations"], mark["actions"]) == (0, 4)
    store.flush_rollups()
    _, good, total = store.slo_minute_arrays(P, 0, 2**62)["agent-policy"]
    assert (int(good.sum()), int(total.sum())) == (2, 2)
    assert [r["trace_id"] for r in store.runs_to_judge(P)] == [c.trace_id]
    assert store.runs_to_judge(Q) == [] and store.policy_run(Q, a.trace_id) is None


def test_the_calls_shared_budgets_count_and_a_sessions_later_runs(
    contract_store: OpenedStore, runs: dict[str, Run]
) -> None:
    store = contract_store.store
    a, b, c = runs["a"], runs["b"], runs["c"]
    session = store.get_trace(P, a.trace_id)[0]["session_id"]
    assert session is not None and store.get_trace(P, b.trace_id)[0]["session_id"] == session
    by_trace = {r["trace_id"]: r for r in store.policy_usage_by_trace(P, 0, 2**62)}
    assert set(by_trace) == {a.trace_id, b.trace_id, c.trace_id}
    calls = {t: (r["model_calls"], r["tool_calls"], r["tokens"]) for t, r in by_trace.items()}
    assert calls[b.trace_id] == (1, 1, 80) and calls[c.trace_id] == (0, 1, 0)
    # a: search and chat (and shell, once its late step is in: the test above sends it).
    assert calls[a.trace_id][0::2] == (1, 120) and calls[a.trace_id][1] in (1, 2)
    assert [r["trace_id"] for r in store.policy_usage_by_trace(P, 0, 2**62, sessions=[session])] == sorted(
        [a.trace_id, b.trace_id])
    assert [r["trace_id"] for r in store.policy_usage_by_trace(P, T + 10 * MINUTE, T + 20 * MINUTE)] == [b.trace_id]
    others = store.policy_usage(P, 0, 2**62, exclude_trace_id=a.trace_id)
    assert len(others) == 3
    assert sorted(int(r["tokens"]) for r in others) == [0, 0, 80]
    totals = store.policy_usage_totals(P, 0, 2**62, exclude_trace_id=a.trace_id)
    assert (totals["model_calls"], totals["tool_calls"], totals["tokens"]) == (1, 2, 80)
    assert totals["cost_usd"] == pytest.approx(sum(float(r["cost_usd"]) for r in others))
    # The session's other runs only; a window from b's start on.
    mine = store.policy_usage_totals(P, 0, 2**62, exclude_trace_id=a.trace_id, sessions=[session, "other-form"])
    assert (mine["model_calls"], mine["tool_calls"], mine["tokens"]) == (1, 1, 80)
    window = store.policy_usage_totals(P, T + 10 * MINUTE, T + 20 * MINUTE)
    assert (window["model_calls"], window["tool_calls"], window["tokens"]) == (1, 1, 80)
    assert [r["trace_id"] for r in store.policy_session_runs(P, session, T - 1)] == [a.trace_id, b.trace_id]
    assert [r["trace_id"] for r in store.policy_session_runs(P, session, T)] == [b.trace_id]
    assert [int(r["run_start_ns"]) for r in store.policy_session_runs(P, session, T - 1, limit=1)] == [T]
    assert store.policy_usage_totals(Q, 0, 2**62)["tool_calls"] == 0
    assert store.policy_session_runs(Q, session, 0) == []


def test_policy_records_expire_past_the_rollup_retention_in_bounded_steps(contract_store: OpenedStore) -> None:
    store = contract_store.store
    old, recent = NOW_NS - 500 * DAY, NOW_NS - 10 * DAY
    store.add_decisions([_decision(1, "allow", E, at=old), _decision(2, "allow", E, at=old - S),
                         _decision(3, "allow", E, at=recent)])
    for n, start in ((1, old), (2, old - S), (3, recent)):
        trace_id = f"{n:032x}"
        store.save_policy_marks(_mark(trace_id, E, start=start), [_violation(trace_id, f"{n:016x}", E, start)])
    cutoff = store.rollup_cutoff(NOW_NS)
    assert cutoff == NOW_NS - 400 * DAY  # rollup_retention_days' default
    before = store.stats()
    # One bounded step takes at most max_rows of each.
    assert store.expire_policy_records(cutoff, max_rows=1) == {"decisions": 1, "runs": 1, "violations": 1}
    store.expire(now_ns=NOW_NS)
    assert [r["id"] for r in store.list_decisions(E)] == [f"{E}-d3"]
    assert [v["trace_id"] for v in store.list_violations(E)] == [f"{3:032x}"]
    assert store.policy_run(E, f"{1:032x}") is None and store.policy_run(E, f"{3:032x}") is not None
    after = store.stats()
    assert after["expired_decisions"] - before["expired_decisions"] == 2
    assert after["expired_violations"] - before["expired_violations"] == 2
    # Nothing left to expire: a further step deletes nothing.
    assert store.expire_policy_records(cutoff) == {"decisions": 0, "runs": 0, "violations": 0}


def test_the_judging_pass_judges_a_sessions_later_runs_again_on_every_backend(contract_store: OpenedStore) -> None:
    """The policy service over this store: s1's later runs are judged first, its earlier runs
    arrive after them; the pass judges the later ones again, and the stored violations are
    what judging the four runs together gives (the split store composes runs_to_judge from
    the span store's runs and the control store's marks)."""
    from aisre.evaluate.policy.actions import run_actions
    from aisre.evaluate.policy.engine import evaluate_runs
    from aisre.evaluate.policy.service import PolicyService
    from aisre.normalize.spans import flatten
    from tests.evaluate.test_policy import SHARED, _session_runs

    tenant = "policy-judge"
    store = contract_store.store
    service = PolicyService(store)
    service.apply(tenant, SHARED, "tester")
    runs = dict(_session_runs())
    s1 = [runs["s1-a"], runs["s1-b"], runs["s1-c"], runs["s1-d"]]
    for run in s1[2:]:
        ingest(store, tenant, _body(run), received_ns=NOW_NS)
    assert service.judge_pending(tenant) == 2
    assert store.list_violations(tenant) == []
    for run in s1[:2]:
        ingest(store, tenant, _body(run), received_ns=NOW_NS + 60 * S)
    assert service.judge_pending(tenant) == 2 and service.rejudged[tenant] == 2
    acts = [run_actions({}, flatten(run.request(), tenant).table.to_pylist(), tenant) for run in s1]
    verdicts = evaluate_runs(service.current(tenant).policies, [(a.context, a.actions) for a in acts])  # type: ignore[union-attr]
    for run, verdict in zip(s1, verdicts, strict=True):
        stored = sorted((v["rule"], v["count"], v["span_id"]) for v in store.list_violations(tenant, trace_id=run.trace_id))
        assert stored == sorted((v.rule, v.count, v.span_id) for v in verdict.violations), run.trace_id
    assert {v["trace_id"] for v in store.list_violations(tenant)} == {runs["s1-c"].trace_id, runs["s1-d"].trace_id}
    assert service.judge_pending(tenant) == 0 and service.rejudged[tenant] == 2
