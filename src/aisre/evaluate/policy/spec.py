"""Agent policy files: YAML → validated ``Policy`` values, with file:line:field errors.

A file holds ``policies:``, each scoped to journeys, services and agents (empty = all) with
rules of these kinds (none needs code; predicates are CEL over the call)::

    policies:
      - name: triage-guardrails
        scope: {journeys: [triage], agents: [triage-agent]}
        rules:
          - {name: no-shell, kind: tool_deny, tools: [shell, exec]}
          - {name: known-tools, kind: tool_allow, tools: [read_file, search, send_email]}
          - name: mail-domain
            kind: argument
            tools: [send_email]
            require: 'args.to.endsWith("@example.com")'
          - {name: limits, kind: budget, model_calls: 20, tool_calls: 50, tokens: 100000,
             cost_usd: 1.0, depth: 3, wall_clock: 5m}
          - {name: session-spend, kind: budget, per: session, cost_usd: 5.0, tool_calls: 200}
          - {name: hourly-tokens, kind: budget, per: tenant, period: 1h, tokens: 2000000}
          - {name: no-loops, kind: loop, max_repeats: 5, max_cycles: 3}
          - name: no-exfiltration
            kind: sequence
            after: [read_inbox]
            tools: [send_email]
            deny_when: '!args.to.endsWith("@example.com")'
          - {name: guarded, kind: guardrail_coverage}

A set of files with any error loads nothing. Each policy's version is the SHA-256 of its
canonical JSON form, so a reformatted file keeps its version and any change of meaning
gets a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from aisre.core.slo import SpecError, SpecValidationError
from aisre.evaluate._yaml import LineDict, View, parse_documents, plain
from aisre.evaluate.specs import expand_paths
from aisre.evaluate.specs.validation import NAME_RE

RuleKind = Literal["tool_allow", "tool_deny", "argument", "budget", "loop", "sequence", "guardrail_coverage"]
KINDS: tuple[str, ...] = ("tool_allow", "tool_deny", "argument", "budget", "loop", "sequence", "guardrail_coverage")
BUDGETS: tuple[str, ...] = ("model_calls", "tool_calls", "tokens", "cost_usd", "depth", "wall_clock")
SHARED_BUDGETS: tuple[str, ...] = ("model_calls", "tool_calls", "tokens", "cost_usd")
PER: tuple[str, ...] = ("run", "session", "tenant")
# What a CEL predicate may read (engine.cel_context builds exactly these).
CEL_VARIABLES = frozenset({"args", "tool", "journey", "service", "agent"})
_RULE_KEYS: dict[str, tuple[str, ...]] = {
    "tool_allow": ("tools",),
    "tool_deny": ("tools",),
    "argument": ("tools", "require"),
    "budget": (*BUDGETS, "per", "period"),
    "loop": ("max_repeats", "max_cycles"),
    "sequence": ("after", "tools", "deny_when"),
    "guardrail_coverage": (),
}
_COMMON_KEYS = ("name", "kind", "effect", "description")


class Cel:
    """A compiled CEL predicate with its source (programs are built once, at load)."""

    __slots__ = ("program", "source")

    def __init__(self, source: str) -> None:
        import cel  # here, not at import: `aisre --help` need not load the CEL runtime

        self.source = source
        self.program = cel.compile(source)

    def __repr__(self) -> str:
        return f"Cel({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cel) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


@dataclass(frozen=True)
class Rule:
    """One rule of a policy; only the fields of its kind are set."""

    name: str
    kind: str
    effect: Literal["deny", "warn"] = "deny"
    tools: frozenset[str] = frozenset()
    after: frozenset[str] = frozenset()
    predicate: Cel | None = None
    limits: tuple[tuple[str, float], ...] = ()
    max_repeats: int | None = None
    max_cycles: int | None = None
    line: int = 0
    # Budgets: "run" (default), "session" (every run of a user session) or "tenant" (every run
    # of the tenant in each fixed period of period_s seconds, aligned to the Unix epoch).
    per: str = "run"
    period_s: float = 0.0


@dataclass(frozen=True)
class Scope:
    """Where a policy applies: empty lists match everything."""

    journeys: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    agents: frozenset[str] = frozenset()

    def matches(self, journey: str | None, service: str | None, agent: str | None) -> bool:
        """Whether a run of this journey/service/agent is under the policy."""
        return all(not allowed or value in allowed for allowed, value in (
            (self.journeys, journey), (self.services, service), (self.agents, agent)))


@dataclass(frozen=True)
class Policy:
    """A named, versioned set of rules with its scope."""

    name: str
    version: str
    scope: Scope
    rules: tuple[Rule, ...]
    document: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)
    file: str = ""
    line: int = 0


@dataclass
class PolicyLoad:
    """What a set of policy files holds: policies and every error found."""

    files: list[Path] = field(default_factory=list)
    policies: list[Policy] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)


def version_of(document: dict[str, Any]) -> str:
    """Content hash of a policy document (key order and formatting do not count)."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def bundle_version(policies: Iterable[Policy]) -> str:
    """Content hash of a whole policy set (what a decision record names with each policy's own)."""
    joined = ",".join(sorted(f"{p.name}={p.version}" for p in policies))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def check_policy_files(paths: Iterable[Path]) -> PolicyLoad:
    """Read and validate policy files, returning policies and errors instead of raising."""
    files, errors = expand_paths(paths)
    result = PolicyLoad(files=files, errors=errors)
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            result.errors.append(SpecError(str(path), 0, "", f"cannot read the file: {exc.strerror}"))
            continue
        result.policies.extend(parse_policies(data, str(path), result.errors))
    _check_duplicates(result.policies, result.errors)
    result.errors.sort(key=lambda e: (e.file, e.line))
    return result


def load_policy_files(paths: Iterable[Path]) -> list[Policy]:
    """Policies from files or folders; raises SpecValidationError if anything is wrong."""
    result = check_policy_files(paths)
    if result.errors:
        raise SpecValidationError(result.errors)
    return result.policies


def check_policy_start(path: str) -> list[Path]:
    """The files of the ``policies`` setting, checked (SpecValidationError lists every error); none when unset."""
    if not path:
        return []
    result = check_policy_files([Path(path)])
    if result.errors:
        raise SpecValidationError(result.errors)
    return result.files


def policies_from_text(text: str | bytes, name: str = "request body") -> list[Policy]:
    """Policies from YAML text (e.g. an API body); raises SpecValidationError with every error."""
    errors: list[SpecError] = []
    policies = parse_policies(text, name, errors)
    _check_duplicates(policies, errors)
    if errors:
        raise SpecValidationError(sorted(errors, key=lambda e: e.line))
    return policies


def parse_policies(text: str | bytes, file: str, errors: list[SpecError]) -> list[Policy]:
    """Every policy in one YAML text; problems are appended to ``errors``."""
    out: list[Policy] = []
    for doc, line in parse_documents(text, file, errors):
        if doc is None:
            continue
        if not isinstance(doc, LineDict) or "policies" not in doc:
            errors.append(SpecError(file, line, "", "expected a mapping with `policies:` (a list of policies)"))
            continue
        view = View(doc, "", file, errors)
        view.check_keys(("policies",))
        for item, path, item_line in view.items("policies", required=True):
            policy_view = view.as_view(item, path, item_line)
            if policy_view is not None:
                policy = _policy(policy_view)
                if policy is not None:
                    out.append(policy)
    return out


def _check_duplicates(policies: list[Policy], errors: list[SpecError]) -> None:
    seen: dict[str, Policy] = {}
    for p in policies:
        first = seen.setdefault(p.name, p)
        if first is not p:
            errors.append(SpecError(p.file, p.line, "name", f"duplicate policy {p.name!r} (first declared at {first.file}:{first.line})"))


def _names(view: View, key: str) -> frozenset[str]:
    out: set[str] = set()
    for item, path, line in view.items(key):
        if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
            view.errors.append(SpecError(view.file, line, path, "must be a name (text)"))
            continue
        out.add(str(item))
    return frozenset(out)


def _policy(view: View) -> Policy | None:
    before = len(view.errors)
    view.check_keys(("name", "description", "scope", "rules"))
    name = view.text("name", required=True) or ""
    if name and not NAME_RE.match(name):
        view.error("name", f"must match {NAME_RE.pattern} (got {name!r})")
    scope = Scope()
    scope_view = view.mapping("scope")
    if scope_view is not None:
        scope_view.check_keys(("journeys", "services", "agents"))
        scope = Scope(_names(scope_view, "journeys"), _names(scope_view, "services"), _names(scope_view, "agents"))
    rules: list[Rule] = []
    rule_names: dict[str, int] = {}
    for item, path, line in view.items("rules", required=True):
        rule_view = view.as_view(item, path, line)
        if rule_view is None:
            continue
        rule = _rule(rule_view)
        if rule is None:
            continue
        if rule.name in rule_names:
            rule_view.error("name", f"duplicate rule {rule.name!r} in policy {name!r} (first at line {rule_names[rule.name]})")
        rule_names.setdefault(rule.name, rule.line)
        rules.append(rule)
    if view.data.get("rules") == []:
        view.error("rules", "must list at least one rule")
    if len(view.errors) > before:
        return None
    document = plain(view.data)
    return Policy(name, version_of(document), scope, tuple(rules), document, view.file, view.line)


def _positive_int(view: View, key: str) -> int | None:
    value = view.integer(key)
    if value is not None and value < 1:
        view.error(key, f"must be at least 1 (got {value})")
        return None
    return value


def _cel(view: View, key: str) -> Cel | None:
    source = view.text(key, required=True)
    if source is None:
        return None
    try:
        compiled = Cel(source)
    except Exception as exc:  # the bindings raise ValueError (parse) or RuntimeError
        view.error(key, f"not a valid CEL expression: {' '.join(str(exc).split())}")
        return None
    unknown = sorted(set(compiled.program.variables()) - CEL_VARIABLES) if callable(
        getattr(compiled.program, "variables", None)) else []
    if unknown:
        view.error(key, f"unknown variable(s) {', '.join(unknown)}; known: {', '.join(sorted(CEL_VARIABLES))}")
        return None
    return compiled


def _rule(view: View) -> Rule | None:
    before = len(view.errors)
    name = view.text("name", required=True) or ""
    kind = view.text("kind", required=True) or ""
    if kind and kind not in KINDS:
        view.error("kind", f"unknown rule kind {kind!r}; known: {', '.join(KINDS)}")
        return None
    if not kind:
        return None
    view.check_keys((*_COMMON_KEYS, *_RULE_KEYS[kind]))
    effect = view.text("effect") or "deny"
    if effect not in ("deny", "warn"):
        view.error("effect", f"must be deny or warn (got {effect!r})")
    tools: frozenset[str] = frozenset()
    after: frozenset[str] = frozenset()
    predicate = None
    limits: list[tuple[str, float]] = []
    max_repeats = max_cycles = None
    per = "run"
    period_s = 0.0
    if kind in ("tool_allow", "tool_deny", "argument", "sequence") and view.require("tools"):
        tools = _names(view, "tools")
    if kind == "argument":
        predicate = _cel(view, "require")
    elif kind == "sequence":
        if view.require("after"):
            after = _names(view, "after")
        predicate = _cel(view, "deny_when")
    elif kind == "budget":
        for key in BUDGETS:
            if not view.has(key):
                continue
            if key == "wall_clock":
                duration = view.duration(key)
                if duration is not None:
                    limits.append((key, duration.total_seconds()))
                continue
            value = view.number(key)
            if value is not None and value <= 0:
                view.error(key, f"must be > 0 (got {value:g})")
            elif value is not None:
                limits.append((key, value))
        if not limits and len(view.errors) == before:
            view.error("kind", f"a budget rule needs at least one of {', '.join(BUDGETS)}")
        per = view.text("per") or "run"
        if per not in PER:
            view.error("per", f"must be one of {', '.join(PER)} (got {per!r})")
        elif per != "run":
            for measure, _ in limits:
                if measure not in SHARED_BUDGETS:
                    view.error(measure, f"a {per} budget counts {', '.join(SHARED_BUDGETS)}; {measure} is per run")
        if view.has("period"):
            found = view.duration("period")
            if per != "tenant":
                view.error("period", "only a tenant budget has a period (a session budget covers the session)")
            elif found is not None and found.total_seconds() <= 0:
                view.error("period", "must be > 0")
            elif found is not None:
                period_s = found.total_seconds()
        elif per == "tenant":
            view.error("period", "a tenant budget needs a period (e.g. 1h or 1d)")
    elif kind == "loop":
        max_repeats = _positive_int(view, "max_repeats")
        max_cycles = _positive_int(view, "max_cycles")
        if max_repeats is None and max_cycles is None and len(view.errors) == before:
            view.error("kind", "a loop rule needs max_repeats, max_cycles or both")
    if len(view.errors) > before:
        return None
    return Rule(name, kind, "warn" if effect == "warn" else "deny", tools, after, predicate, tuple(limits),
                max_repeats, max_cycles, view.line, per, period_s)
