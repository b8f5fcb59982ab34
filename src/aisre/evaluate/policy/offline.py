"""Policies in CI: unit tests of a policy (cases of input → expected decision, like ``opa
test``) and captured OTLP traces judged offline with the same engine the server uses.

A test file::

    cases:
      - name: shell is denied
        input: {journey: triage, action: {type: tool, name: shell, args: {cmd: ls}}}
        expect: deny                      # or {result: deny, rules: [no-shell]}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisre.core.errors import PermanentError
from aisre.core.slo import SpecError, SpecValidationError
from aisre.derive.check import otlp_files, otlp_spans
from aisre.evaluate._yaml import LineDict, View, parse_documents, plain
from aisre.evaluate.policy.actions import group_traces, run_actions
from aisre.evaluate.policy.engine import evaluate_runs
from aisre.evaluate.policy.inline import decide_request, parse_request
from aisre.evaluate.policy.spec import Policy


@dataclass
class CaseResult:
    """One test case: what was expected and what the engine said."""

    name: str
    line: int
    passed: bool
    expected: str
    got: str
    rules: list[str]
    messages: list[str]


def load_cases(path: Path) -> list[tuple[str, int, dict[str, Any], str, list[str] | None]]:
    """Cases of a test file as (name, line, input, expected result, expected rules or None)."""
    errors: list[SpecError] = []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PermanentError(f"cannot read {path}: {exc.strerror}") from None
    out: list[tuple[str, int, dict[str, Any], str, list[str] | None]] = []
    for doc, line in parse_documents(data, str(path), errors):
        if not isinstance(doc, LineDict):
            errors.append(SpecError(str(path), line, "", "expected a mapping with `cases:`"))
            continue
        view = View(doc, "", str(path), errors)
        view.check_keys(("cases",))
        for item, where, item_line in view.items("cases", required=True):
            case = view.as_view(item, where, item_line)
            if case is None:
                continue
            case.check_keys(("name", "input", "expect"))
            name = case.text("name") or f"case {len(out) + 1}"
            body = case.mapping("input", required=True)
            expect = case.data.get("expect")
            rules: list[str] | None = None
            if isinstance(expect, dict):
                expect_view = case.mapping("expect")
                assert expect_view is not None
                expect_view.check_keys(("result", "rules"))
                result = expect_view.text("result", required=True)
                rules = sorted(str(r) for r in (expect_view.data.get("rules") or []))
            else:
                result = case.text("expect", required=True)
            if result is not None and result not in ("allow", "deny"):
                case.error("expect", f"must be allow or deny (got {result!r})")
            if body is not None and result in ("allow", "deny"):
                out.append((name, item_line, plain(body.data), result, rules))
    if errors:
        raise SpecValidationError(errors)
    return out


def run_cases(policies: Sequence[Policy], paths: Iterable[Path], tenant: str = "test") -> list[CaseResult]:
    """Run every case of the test files against ``policies``."""
    results = []
    for path in paths:
        for name, line, body, expected, rules in load_cases(path):
            try:
                decision = decide_request(policies, parse_request(body, tenant, now_ns=0))
            except PermanentError as exc:
                results.append(CaseResult(name, line, False, expected, "error", [], [exc.message]))
                continue
            got_rules = sorted({r.rule for r in decision.reasons})
            passed = decision.result == expected and (rules is None or rules == got_rules)
            results.append(CaseResult(name, line, passed, expected + (f" {rules}" if rules is not None else ""),
                                      decision.result + (f" {got_rules}" if rules is not None else ""),
                                      got_rules, [r.message for r in decision.reasons]))
    return results


def check_otlp(policies: Sequence[Policy], path: Path) -> dict[str, Any]:
    """Judge every run in captured OTLP files: runs, violations (with trace and span), and
    whether any deny-effect rule was violated."""
    files = otlp_files(path)
    if not files:
        raise PermanentError(f"{path}: no OTLP files (.pb, .json or .jsonl, gzipped or not)")
    traces = group_traces(otlp_spans(files))
    violations, trips, undetermined = [], 0, set()
    # Not a run (as the server counts runs): a trace without its root.
    judged = [run_actions({"trace_id": trace_id}, spans, "check") for trace_id, spans in sorted(traces.items())
              if any(s.get("is_root") for s in spans)]
    runs = len(judged)
    # Judged together, so session and tenant budgets see the captured runs' other runs.
    verdicts = evaluate_runs(policies, [(acts.context, acts.actions) for acts in judged])
    for acts, verdict in zip(judged, verdicts, strict=True):
        trace_id = acts.context.trace_id
        trips += acts.guardrail_trips
        undetermined.update(verdict.undetermined)
        violations += [{"trace_id": trace_id, "journey": acts.context.journey, **v.document()} for v in verdict.violations]
    return {"files": len(files), "runs": runs, "violations": violations, "guardrail_trips": trips,
            "undetermined": sorted(undetermined),
            "denied_runs": len({v["trace_id"] for v in violations if v["effect"] == "deny"})}
