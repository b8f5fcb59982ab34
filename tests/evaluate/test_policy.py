"""The policy engine on hand-built agent runs with known violations: every rule kind over the
trace, and the inline answer for each action equal to the trace verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aisre.core.slo import SpecValidationError
from aisre.evaluate.policy.actions import run_actions
from aisre.evaluate.policy.engine import Action, evaluate_run, evaluate_runs
from aisre.evaluate.policy.inline import decide_request, parse_request
from aisre.evaluate.policy.spec import check_policy_files, policies_from_text
from aisre.normalize.spans import flatten
from tests.policy_traces import T0, Run, agent_run, guardrail, model, tool

POLICY = """
policies:
  - name: triage-guardrails
    scope: {journeys: [triage]}
    rules:
      - {name: no-shell, kind: tool_deny, tools: [shell]}
      - {name: known-tools, kind: tool_allow, tools: [read_file, search, send_email, read_inbox, pay, shell]}
      - name: mail-domain
        kind: argument
        tools: [send_email]
        require: 'args.to.endsWith("@example.com")'
      - name: small-payments
        kind: argument
        tools: [pay]
        require: 'args.amount <= 100'
      - {name: limits, kind: budget, model_calls: 3, tool_calls: 30, tokens: 1000, depth: 2, wall_clock: 60s}
      - {name: no-loops, kind: loop, max_repeats: 5, max_cycles: 2}
      - name: no-exfiltration
        kind: sequence
        after: [read_inbox]
        tools: [send_email]
        deny_when: '!args.to.endsWith("@example.com") || args.body.contains("confidential")'
  - name: guarded-calls
    scope: {journeys: [guarded]}
    rules:
      - {name: guardrails, kind: guardrail_coverage}
"""


def _policies() -> list[Any]:
    return policies_from_text(POLICY, "policy.yaml")


def _verdict(run: Run, policies: list[Any] | None = None) -> Any:
    rows = flatten(run.request(), "t").table.to_pylist()
    acts = run_actions({}, rows, "t")
    return acts, evaluate_run(policies if policies is not None else _policies(), acts.context, acts.actions)


def _rules(verdict: Any) -> dict[str, Any]:
    return {v.rule: v for v in verdict.violations}


def _action_body(a: Action) -> dict[str, Any]:
    return {"type": a.type, "name": a.name, "args": a.args, "tokens": a.tokens, "cost_usd": a.cost_usd,
            "depth": a.depth, "start_ns": a.start_ns, "span_id": a.span_id, "guarded": a.guarded}


def _inline_equals_trace(run: Run, policies: list[Any] | None = None) -> None:
    """Ask inline before each action, with the run so far as history: same answer and reasons."""
    policies = policies if policies is not None else _policies()
    acts, verdict = _verdict(run, policies)
    for i, action in enumerate(acts.actions):
        body = {"journey": acts.context.journey, "agent": acts.context.agent, "trace_id": run.trace_id,
                "run_start_ns": acts.context.start_ns, "action": _action_body(action),
                "history": [_action_body(a) for a in acts.actions[:i]]}
        inline = decide_request(policies, parse_request(body, "t"))
        assert inline.result == verdict.decisions[i].result, (i, inline, verdict.decisions[i])
        assert [r.rule for r in inline.reasons] == [r.rule for r in verdict.decisions[i].reasons]


def test_a_run_within_its_budgets_has_no_violation() -> None:
    run = agent_run([tool("read_inbox"), model(tokens=200), tool("search", q="x"),
                     tool("send_email", to="a@example.com", body="hi"), model(tokens=300)])
    acts, verdict = _verdict(run)
    assert acts.context.journey == "triage" and acts.context.agent == "triage-agent"
    assert [a.name for a in acts.actions] == ["read_inbox", "gpt-4o-mini", "search", "send_email", "gpt-4o-mini"]
    assert verdict.violations == []
    assert all(d.result == "allow" for d in verdict.decisions)
    _inline_equals_trace(run)


def test_twenty_identical_tool_calls_are_one_violation_with_the_count() -> None:
    run = agent_run([tool("read_file", path="/etc/app.conf") for _ in range(20)])
    _acts, verdict = _verdict(run)
    loops = [v for v in verdict.violations if v.rule == "no-loops"]
    assert len(loops) == 1
    assert loops[0].count == 20
    assert "20 times" in loops[0].message
    assert loops[0].span_id == run.step_span_ids[4]  # the 5th call reached the limit
    # Allowed up to the 4th call, denied from the 5th.
    assert [d.result for d in verdict.decisions] == ["allow"] * 4 + ["deny"] * 16
    # Different arguments are not a loop; argument order does not count.
    varied = agent_run([tool("read_file", path=f"/f{i}") for i in range(20)])
    assert "no-loops" not in _rules(_verdict(varied)[1])
    _inline_equals_trace(run)


def test_a_to_b_to_a_cycles() -> None:
    run = agent_run([tool("search", q="a"), tool("read_file", path="/1"), tool("search", q="b"),
                     tool("read_file", path="/2"), tool("search", q="c")])
    _acts, verdict = _verdict(run)
    cycle = _rules(verdict)["no-loops"]
    assert cycle.count == 2
    assert "search→read_file→search" in cycle.message or "read_file→search→read_file" in cycle.message
    assert [d.result for d in verdict.decisions] == ["allow", "allow", "allow", "allow", "deny"]
    _inline_equals_trace(run)


def test_tool_allow_and_deny_lists() -> None:
    run = agent_run([tool("search", q="x"), tool("shell", cmd="rm -rf /"), tool("delete_repo", repo="x")])
    _acts, verdict = _verdict(run)
    found = _rules(verdict)
    assert found["no-shell"].span_id == run.step_span_ids[1]
    assert found["known-tools"].span_id == run.step_span_ids[2]
    assert [d.result for d in verdict.decisions] == ["allow", "deny", "deny"]
    _inline_equals_trace(run)


def test_argument_constraints_in_cel() -> None:
    run = agent_run([tool("pay", amount=40), tool("pay", amount=250), tool("send_email", to="x@evil.test", body="b"),
                     tool("pay", currency="EUR")])
    _acts, verdict = _verdict(run)
    payments = [v for v in verdict.violations if v.rule == "small-payments"]
    assert [v.span_id for v in payments] == [run.step_span_ids[1], run.step_span_ids[3]]
    assert "is false" in payments[0].message
    assert "could not be evaluated" in payments[1].message  # a missing argument fails closed
    assert _rules(verdict)["mail-domain"].span_id == run.step_span_ids[2]
    _inline_equals_trace(run)


def test_sequence_after_reading_the_inbox() -> None:
    run = agent_run([tool("send_email", to="x@example.com", body="confidential plan"),
                     tool("read_inbox"),
                     tool("send_email", to="y@example.com", body="hello"),
                     tool("send_email", to="y@example.com", body="the confidential plan")])
    _acts, verdict = _verdict(run)
    seq = [v for v in verdict.violations if v.rule == "no-exfiltration"]
    # Before reading the inbox the same mail is fine; after it only the confidential one is denied.
    assert [v.span_id for v in seq] == [run.step_span_ids[3]]
    assert "after read_inbox" in seq[0].message
    _inline_equals_trace(run)


def test_budgets_per_run() -> None:
    run = agent_run([model(tokens=400), model(tokens=400), model(tokens=400), model(tokens=100)])
    _acts, verdict = _verdict(run)
    assert [d.result for d in verdict.decisions] == ["allow", "allow", "deny", "deny"]
    assert "tokens exceeded: 1200 > 1000" in verdict.decisions[2].reasons[0].message
    assert "model_calls exceeded: 4 > 3 (also tokens)" in verdict.decisions[3].reasons[0].message
    # One violation per budget crossed, with how far it went.
    assert sorted((v.message.split()[1], v.count) for v in verdict.violations) == [("model_calls", 4), ("tokens", 1200)]
    slow = agent_run([tool("search", q=str(i)) for i in range(3)], step_ns=40 * 10**9)
    over = _rules(_verdict(slow)[1])["limits"]
    assert over.message == "budget wall_clock exceeded: 120s > 60"
    assert over.span_id == slow.step_span_ids[1]  # 80 s in: the first step past the minute
    _inline_equals_trace(run)
    _inline_equals_trace(slow)


SHARED = """
policies:
  - name: spend
    rules:
      - {name: per-session, kind: budget, per: session, tool_calls: 9, tokens: 1000}
      - {name: per-tenant, kind: budget, per: tenant, period: 1h, tool_calls: 14}
"""
MINUTE = 60 * 10**9


def _calls(n: int, tag: str) -> list[Any]:
    return [tool("search", q=f"{tag}-{i}") for i in range(n)]


def _session_runs() -> list[tuple[str, Run]]:
    """Session s1 split over four runs, s2 one run; T0 is 800 s into its UTC hour, so the run
    at +50 min is in the next hour."""
    return [
        ("s1-a", agent_run(_calls(4, "a"), session="s1", start_ns=T0)),
        ("s1-b", agent_run(_calls(4, "b"), session="s1", start_ns=T0 + 10 * MINUTE)),
        ("s2", agent_run(_calls(4, "c"), session="s2", start_ns=T0 + 20 * MINUTE)),
        ("s1-c", agent_run(_calls(4, "d"), session="s1", start_ns=T0 + 30 * MINUTE)),
        ("s1-d", agent_run(_calls(4, "e"), session="s1", start_ns=T0 + 50 * MINUTE)),
    ]


def test_session_and_tenant_budgets_over_several_runs() -> None:
    """Budgets shared by a user session split over runs and by the tenant per UTC hour."""
    policies = policies_from_text(SHARED, "shared.yaml")
    runs = _session_runs()
    acts = [run_actions({}, flatten(run.request(), "t").table.to_pylist(), "t") for _, run in runs]
    assert [a.context.session for a in acts] == ["s1", "s1", "s2", "s1", "s1"]
    verdicts = dict(zip([n for n, _ in runs], evaluate_runs(policies, [(a.context, a.actions) for a in acts]), strict=True))
    results = {name: [d.result for d in v.decisions] for name, v in verdicts.items()}
    assert results["s1-a"] == results["s1-b"] == results["s2"] == ["allow"] * 4
    # s1's 10th tool call (the 2nd of run c) passes the session's 9; the tenant's 15th call
    # this hour (the 3rd of run c) passes the tenant's 14.
    assert results["s1-c"] == ["allow", "deny", "deny", "deny"]
    c = verdicts["s1-c"]
    assert [r.rule for r in c.decisions[1].reasons] == ["per-session"]
    assert c.decisions[1].reasons[0].message == (
        "session budget tool_calls exceeded: 10 > 9 (this run 2, other runs 8)")
    assert [r.rule for r in c.decisions[2].reasons] == ["per-session", "per-tenant"]
    assert c.decisions[2].reasons[1].message == (
        "tenant per 1h budget tool_calls exceeded: 15 > 14 (this run 3, other runs 12)")
    assert {(v.rule, v.count) for v in c.violations} == {("per-session", 12), ("per-tenant", 16)}
    # The next hour starts the tenant's count again; the session's count goes on.
    d = verdicts["s1-d"]
    assert [d_.result for d_ in d.decisions] == ["deny"] * 4
    assert {(v.rule, v.count) for v in d.violations} == {("per-session", 16)}
    # Run by run, with no other runs known, nothing is over.
    alone = evaluate_run(policies, acts[3].context, acts[3].actions)
    assert alone.violations == []


def test_shared_budget_files_are_checked() -> None:
    bad = """
policies:
  - name: p
    rules:
      - {name: a, kind: budget, per: tenant, tool_calls: 3}
      - {name: b, kind: budget, per: session, period: 1h, tokens: 3}
      - {name: c, kind: budget, per: session, depth: 3}
      - {name: d, kind: budget, per: user, tokens: 3}
"""
    with pytest.raises(SpecValidationError) as caught:
        policies_from_text(bad, "bad.yaml")
    found = {(e.line, e.field, e.message) for e in caught.value.errors}
    assert found == {
        (5, "policies[0].rules[0].period", "a tenant budget needs a period (e.g. 1h or 1d)"),
        (6, "policies[0].rules[1].period", "only a tenant budget has a period (a session budget covers the session)"),
        (7, "policies[0].rules[2].depth", "a session budget counts model_calls, tool_calls, tokens, cost_usd; depth is per run"),
        (8, "policies[0].rules[3].per", "must be one of run, session, tenant (got 'user')"),
    }


def test_guardrail_coverage_and_trips() -> None:
    run = agent_run([guardrail(), model(), model(), guardrail(tripped=True), model()], journey="guarded")
    acts, verdict = _verdict(run)
    assert acts.guardrail_checks == 2 and acts.guardrail_trips == 1
    uncovered = [v for v in verdict.violations if v.rule == "guardrails"]
    assert [v.span_id for v in uncovered] == [run.step_span_ids[2]]
    _inline_equals_trace(run)


def test_scope_limits_where_a_policy_applies() -> None:
    run = agent_run([tool("shell", cmd="ls")], journey="other")
    assert _verdict(run)[1].violations == []


def test_warn_rules_give_reasons_but_allow() -> None:
    policies = policies_from_text("""
policies:
  - name: soft
    rules:
      - {name: shell-warn, kind: tool_deny, tools: [shell], effect: warn}
""")
    run = agent_run([tool("shell", cmd="ls")])
    _acts, verdict = _verdict(run, policies)
    assert verdict.decisions[0].result == "allow"
    assert verdict.violations[0].effect == "warn"


# -- policy files -----------------------------------------------------------------------


def test_bad_files_are_rejected_with_file_line_and_field(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(POLICY)
    bad_cel = tmp_path / "bad_cel.yaml"
    bad_cel.write_text("policies:\n  - name: p\n    rules:\n      - name: r\n        kind: argument\n"
                       "        tools: [pay]\n        require: 'args.amount <= '\n")
    bad_var = tmp_path / "bad_var.yaml"
    bad_var.write_text("policies:\n  - name: p\n    rules:\n      - {name: r, kind: argument, tools: [pay], "
                       "require: 'argz.amount < 3'}\n")
    bad_yaml = tmp_path / "bad_yaml.yaml"
    bad_yaml.write_text("policies:\n  - name: p\n    rules: [\n")
    bad_kind = tmp_path / "bad_kind.yaml"
    bad_kind.write_text("policies:\n  - name: p\n    rules:\n      - {name: r, kind: loops, max_repeats: 3}\n"
                        "      - {name: b, kind: budget, tokens: -1}\n")
    result = check_policy_files([tmp_path])
    by_file = {}
    for e in result.errors:
        by_file.setdefault(Path(e.file).name, []).append(e)
    assert "good.yaml" not in by_file
    cel = by_file["bad_cel.yaml"][0]
    assert (cel.line, cel.field) == (7, "policies[0].rules[0].require") and "not a valid CEL expression" in cel.message
    var = by_file["bad_var.yaml"][0]
    assert (var.line, var.field) == (4, "policies[0].rules[0].require") and "argz" in var.message
    assert by_file["bad_yaml.yaml"][0].message.startswith("not valid YAML")
    assert by_file["bad_yaml.yaml"][0].line >= 3
    kinds = {(e.line, e.field) for e in by_file["bad_kind.yaml"]}
    assert kinds == {(4, "policies[0].rules[0].kind"), (5, "policies[0].rules[1].tokens")}
    with pytest.raises(SpecValidationError):
        policies_from_text(bad_cel.read_text())


def test_versions_are_content_hashes() -> None:
    one = policies_from_text("policies:\n  - name: p\n    rules:\n      - {name: r, kind: tool_deny, tools: [shell]}\n")
    same = policies_from_text("policies:\n- rules:\n  - kind: tool_deny\n    tools: [shell]\n    name: r\n  name: p\n")
    other = policies_from_text("policies:\n  - name: p\n    rules:\n      - {name: r, kind: tool_deny, tools: [sh]}\n")
    assert one[0].version == same[0].version
    assert one[0].version != other[0].version
