"""The one policy evaluator: an action proposed in a run, judged against the run so far.

Inline decisions (``POST /api/policy/decide``) and trace evaluation both call :func:`decide`;
over a trace each action is judged against the actions before it, so the same rule gives the
same answer both ways. :func:`evaluate_run` groups a run's per-action reasons into
violations: a loop of 20 identical calls is one violation with count 20.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from aisre.evaluate.policy.spec import Policy, Rule

ActionType = Literal["tool", "model"]
REDACTED_MARK = "[REDACTED:"
MAX_CYCLE = 4  # A→B→A… patterns of 2 to 4 distinct tools


@dataclass(frozen=True)
class Action:
    """A tool call or model call of a run (the proposed one, or one before it)."""

    type: ActionType
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0
    cost_usd: float = 0.0
    depth: int = 0
    start_ns: int = 0
    span_id: str = ""
    guarded: bool = False
    # Set over stored traces when the tenant's redaction rewrote an argument: a predicate
    # over it cannot be judged from the trace (the inline decision judged the clear value).
    args_redacted: bool = False

    def signature(self) -> str:
        """Tool name and canonical arguments (key order and spacing do not count)."""
        canonical = orjson.dumps(self.args, option=orjson.OPT_SORT_KEYS, default=str)
        return f"{self.name}:{hashlib.sha256(canonical).hexdigest()[:16]}"


@dataclass(frozen=True)
class RunContext:
    """Who runs: tenant, journey, service and agent; the trace and when the run started."""

    tenant: str
    journey: str | None = None
    service: str | None = None
    agent: str | None = None
    trace_id: str = ""
    start_ns: int = 0
    session: str | None = None


@dataclass(frozen=True)
class Reason:
    """Why a rule fired for one action; ``key`` groups a run's reasons into one violation."""

    policy: str
    version: str
    rule: str
    kind: str
    effect: str
    message: str
    key: str = ""
    count: float = 1

    def document(self) -> dict[str, Any]:
        """JSON form."""
        return {"policy": self.policy, "version": self.version, "rule": self.rule, "kind": self.kind,
                "effect": self.effect, "message": self.message, "count": self.count}


@dataclass(frozen=True)
class Decision:
    """allow or deny, with every reason (warn rules give reasons but allow)."""

    result: Literal["allow", "deny"]
    reasons: tuple[Reason, ...]
    policies: tuple[tuple[str, str], ...]
    undetermined: tuple[str, ...] = ()

    def document(self) -> dict[str, Any]:
        """JSON form."""
        return {"result": self.result, "reasons": [r.document() for r in self.reasons],
                "policies": [{"name": n, "version": v} for n, v in self.policies],
                "undetermined": list(self.undetermined)}


MODEL_MEASURES = ("model_calls", "tool_calls", "tokens", "cost_usd")


class Ledger:
    """What other runs of a session (or of the tenant) used before a moment: model and tool
    calls, tokens and cost, from their actions' start times (prefix sums, so each answer is a
    bisection)."""

    def __init__(self, actions: Iterable[tuple[int, str, int, float]] = ()) -> None:
        """``actions``: (start_ns, "tool"|"model", tokens, cost_usd) of the other runs."""
        ordered = sorted(actions)
        self.times = [a[0] for a in ordered]
        self.sums: list[tuple[int, int, int, float]] = [(0, 0, 0, 0.0)]
        m = t = k = 0
        c = 0.0
        for _, kind, tokens, cost in ordered:
            if kind == "model":
                m += 1
            else:
                t += 1
            k += tokens
            c += cost
            self.sums.append((m, t, k, c))

    @classmethod
    def of(cls, runs: Iterable[Sequence[Action]]) -> Ledger:
        """A ledger of the actions of these runs."""
        return cls((a.start_ns, a.type, a.tokens, a.cost_usd) for run in runs for a in run)

    def usage(self, since_ns: int, until_ns: int) -> dict[str, float]:
        """Totals of the actions started in [since_ns, until_ns)."""
        lo = self.sums[bisect.bisect_left(self.times, since_ns)]
        hi = self.sums[bisect.bisect_left(self.times, until_ns)]
        return {name: hi[i] - lo[i] for i, name in enumerate(MODEL_MEASURES)}


class Totals(Ledger):
    """A ledger already summed for the windows an inline decision asks about: the store's
    totals per window start (the window ends at the proposed action)."""

    def __init__(self, by_since: dict[int, dict[str, float]]) -> None:
        """``by_since``: window start → totals of the other runs up to the proposed action."""
        super().__init__()
        self.by_since = by_since

    def usage(self, since_ns: int, until_ns: int) -> dict[str, float]:
        """The totals of the window starting at ``since_ns``."""
        return self.by_since.get(since_ns, dict.fromkeys(MODEL_MEASURES, 0.0))


def period_start(at_ns: int, period_s: float) -> int:
    """Start of the fixed period (aligned to the Unix epoch, in UTC) holding ``at_ns``."""
    step = int(period_s * 1e9)
    return at_ns - at_ns % step if step > 0 else 0


class _History:
    """What the rules need to know about the actions before the proposed one."""

    __slots__ = ("actions", "cost_usd", "model_calls", "repeats", "tokens", "tool_calls", "tools_seen")

    def __init__(self, actions: Sequence[Action]) -> None:
        self.actions = actions
        self.model_calls = self.tool_calls = self.tokens = 0
        self.cost_usd = 0.0
        self.tools_seen: set[str] = set()
        self.repeats: dict[str, int] = {}
        for a in actions:
            self.tokens += a.tokens
            self.cost_usd += a.cost_usd
            if a.type == "model":
                self.model_calls += 1
            else:
                self.tool_calls += 1
                self.tools_seen.add(a.name)
                sig = a.signature()
                self.repeats[sig] = self.repeats.get(sig, 0) + 1


def cel_context(ctx: RunContext, action: Action) -> dict[str, Any]:
    """The variables a CEL predicate reads (spec.CEL_VARIABLES)."""
    return {"args": action.args, "tool": action.name, "journey": ctx.journey or "",
            "service": ctx.service or "", "agent": ctx.agent or ""}


def applicable(policies: Sequence[Policy], ctx: RunContext) -> list[Policy]:
    """The policies whose scope covers this run."""
    return [p for p in policies if p.scope.matches(ctx.journey, ctx.service, ctx.agent)]


def decide(policies: Sequence[Policy], ctx: RunContext, history: Sequence[Action], action: Action,
           *, ledgers: Mapping[str, Ledger] | None = None, _summary: _History | None = None) -> Decision:
    """Judge ``action`` proposed after ``history`` in the run ``ctx``; ``ledgers`` ("session",
    "tenant") hold what other runs used, for session and tenant budgets."""
    chosen = applicable(policies, ctx)
    summary = _summary if _summary is not None else _History(history)
    reasons: list[Reason] = []
    undetermined: list[str] = []
    for policy in chosen:
        for rule in policy.rules:
            found = _check(rule, ctx, summary, action, undetermined, policy.name, ledgers)
            if found is not None:
                message, key, count = found
                reasons.append(Reason(policy.name, policy.version, rule.name, rule.kind, rule.effect, message, key, count))
    denied = any(r.effect == "deny" for r in reasons)
    return Decision("deny" if denied else "allow", tuple(reasons), tuple((p.name, p.version) for p in chosen),
                    tuple(undetermined))


def _cel_true(rule: Rule, ctx: RunContext, action: Action) -> bool | str:
    """The predicate's value, or the error text when it cannot be evaluated."""
    assert rule.predicate is not None
    try:
        value = rule.predicate.program.execute(cel_context(ctx, action))
    except Exception as exc:  # a missing argument, a type mismatch: said in the reason
        return " ".join(str(exc).split())[:200]
    if not isinstance(value, bool):
        return f"the expression gave {type(value).__name__}, not a boolean"
    return value


def _check(rule: Rule, ctx: RunContext, h: _History, action: Action, undetermined: list[str],
           policy: str, ledgers: Mapping[str, Ledger] | None = None) -> tuple[str, str, float] | None:
    kind = rule.kind
    is_tool = action.type == "tool"
    if kind == "tool_deny":
        if is_tool and action.name in rule.tools:
            return f"tool {action.name!r} is denied", "", 1
    elif kind == "tool_allow":
        if is_tool and action.name not in rule.tools:
            return f"tool {action.name!r} is not in the allowed list", "", 1
    elif kind == "argument":
        if is_tool and action.name in rule.tools:
            if action.args_redacted:
                undetermined.append(f"{policy}/{rule.name}")
                return None
            value = _cel_true(rule, ctx, action)
            if value is True:
                return None
            why = "is false" if value is False else f"could not be evaluated ({value}); denied"
            assert rule.predicate is not None
            return f"{action.name!r} arguments: `{rule.predicate.source}` {why}", "", 1
    elif kind == "sequence":
        if is_tool and action.name in rule.tools:
            earlier = sorted(rule.after & h.tools_seen)
            if earlier:
                if action.args_redacted:
                    undetermined.append(f"{policy}/{rule.name}")
                    return None
                value = _cel_true(rule, ctx, action)
                if value is not False:
                    assert rule.predicate is not None
                    why = "" if value is True else f" (could not be evaluated: {value}; denied)"
                    return (f"{action.name!r} after {', '.join(earlier)} with `{rule.predicate.source}`{why}", "", 1)
    elif kind == "budget":
        if rule.per != "run":
            return _shared_budget(rule, h, action, (ledgers or {}).get(rule.per))
        return _budget(rule, ctx, h, action)
    elif kind == "loop":
        if is_tool:
            return _loop(rule, h, action)
    elif kind == "guardrail_coverage" and action.type == "model" and not action.guarded:
        return f"model call {action.name!r} has no guardrail or evaluation", "", 1
    return None


def _budget(rule: Rule, ctx: RunContext, h: _History, action: Action) -> tuple[str, str, float] | None:
    values = {
        "model_calls": h.model_calls + (action.type == "model"),
        "tool_calls": h.tool_calls + (action.type == "tool"),
        "tokens": h.tokens + action.tokens,
        "cost_usd": h.cost_usd + action.cost_usd,
        "depth": action.depth,
        "wall_clock": max(0, action.start_ns - ctx.start_ns) / 1e9 if ctx.start_ns and action.start_ns else 0.0,
    }
    over = [(name, values[name], limit) for name, limit in rule.limits if values[name] > limit]
    if not over:
        return None
    name, value, limit = over[0]
    shown = f"{value:.4g}s" if name == "wall_clock" else (f"{value:.4f} USD" if name == "cost_usd" else f"{value:g}")
    more = f" (also {', '.join(n for n, _, _ in over[1:])})" if len(over) > 1 else ""
    return f"budget {name} exceeded: {shown} > {limit:g}{more}", name, value


def _shared_budget(rule: Rule, h: _History, action: Action, ledger: Ledger | None) -> tuple[str, str, float] | None:
    """A session or tenant budget: this run's actions (in the period, for a tenant) and the
    proposed one, plus what the ledger says other runs used before the proposed action."""
    since = period_start(action.start_ns, rule.period_s) if rule.period_s else 0
    # History actions without a start time (an inline caller may omit it) count as in the period.
    mine = [a for a in h.actions if not a.start_ns or a.start_ns >= since] + [action]
    values = {
        "model_calls": float(sum(a.type == "model" for a in mine)),
        "tool_calls": float(sum(a.type == "tool" for a in mine)),
        "tokens": float(sum(a.tokens for a in mine)),
        "cost_usd": sum(a.cost_usd for a in mine),
    }
    own = dict(values)
    if ledger is not None:
        for name, value in ledger.usage(since, action.start_ns).items():
            values[name] += value
    over = [(name, values[name], limit) for name, limit in rule.limits if values[name] > limit]
    if not over:
        return None
    name, value, limit = over[0]
    shown = f"{value:.4f} USD" if name == "cost_usd" else f"{value:g}"
    where = "session" if rule.per == "session" else f"tenant per {_period_text(rule.period_s)}"
    others = value - own[name]
    more = f", also {', '.join(n for n, _, _ in over[1:])}" if len(over) > 1 else ""
    return (f"{where} budget {name} exceeded: {shown} > {limit:g} (this run {own[name]:g}, other runs "
            f"{others:g}{more})", f"{rule.per}:{name}", value)


def _period_text(period_s: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if period_s >= size and period_s % size == 0:
            return f"{period_s / size:g}{unit}"
    return f"{period_s:g}s"


def _loop(rule: Rule, h: _History, action: Action) -> tuple[str, str, float] | None:
    if rule.max_repeats is not None:
        sig = action.signature()
        count = h.repeats.get(sig, 0) + 1
        if count >= rule.max_repeats:
            return (f"{action.name!r} called {count} times with the same arguments (limit {rule.max_repeats})",
                    f"repeat:{sig}", count)
    if rule.max_cycles is not None:
        names = [a.name for a in h.actions if a.type == "tool"] + [action.name]
        for period in range(2, MAX_CYCLE + 1):
            cycles = _cycle_count(names, period)
            if cycles >= rule.max_cycles:
                pattern = names[len(names) - period:]
                shown = "→".join([*pattern, pattern[0]])
                return (f"cycle {shown} repeated {cycles} times (limit {rule.max_cycles})",
                        "cycle:" + ">".join(sorted(pattern)), cycles)
    return None


def _cycle_count(names: list[str], period: int) -> int:
    """How many times the last ``period`` distinct tools repeat back to back at the end of
    ``names``; an A→B→A return counts as one cycle, A→B→A→B→A as two."""
    if len(names) < period + 1:
        return 0
    pattern = names[-period:]
    if len(set(pattern)) != period:
        return 0
    run = 0
    i = len(names) - 1
    while i - period >= 0 and names[i] == names[i - period]:
        run += 1
        i -= 1
    return (run + period - 1) // period


@dataclass
class Violation:
    """One grouped violation of a run: a rule, how often or how far, and its spans."""

    policy: str
    version: str
    rule: str
    kind: str
    effect: str
    message: str
    count: float
    span_id: str
    span_ids: list[str]
    start_ns: int

    def document(self) -> dict[str, Any]:
        """JSON form."""
        return {"policy": self.policy, "version": self.version, "rule": self.rule, "kind": self.kind,
                "effect": self.effect, "message": self.message, "count": self.count, "span_id": self.span_id,
                "span_ids": self.span_ids, "start_ns": self.start_ns}


@dataclass
class RunVerdict:
    """A run judged action by action: the decisions in order and the grouped violations."""

    decisions: list[Decision]
    violations: list[Violation]
    undetermined: list[str]


def evaluate_run(policies: Sequence[Policy], ctx: RunContext, actions: Sequence[Action],
                 ledgers: Mapping[str, Ledger] | None = None) -> RunVerdict:
    """Judge each action of a run against the ones before it (as :func:`decide` does inline);
    ``ledgers`` hold the other runs of its session and tenant for shared budgets."""
    ordered = sorted(actions, key=lambda a: (a.start_ns, a.span_id))
    decisions: list[Decision] = []
    groups: dict[tuple[str, str, str], Violation] = {}
    undetermined: set[str] = set()
    for i, action in enumerate(ordered):
        decision = decide(policies, ctx, ordered[:i], action, ledgers=ledgers)
        decisions.append(decision)
        undetermined.update(decision.undetermined)
        for r in decision.reasons:
            key = (r.policy, r.rule, r.key or f"@{i}")
            found = groups.get(key)
            if found is None:
                groups[key] = Violation(r.policy, r.version, r.rule, r.kind, r.effect, r.message, r.count,
                                        action.span_id, [action.span_id], action.start_ns)
            else:
                if len(found.span_ids) < 50:
                    found.span_ids.append(action.span_id)
                if r.count >= found.count:
                    found.count, found.message = r.count, r.message
    return RunVerdict(decisions, list(groups.values()), sorted(undetermined))



def shared_budget_scopes(policies: Sequence[Policy], ctx: RunContext) -> set[str]:
    """Which ledgers ("session", "tenant") the policies covering this run need."""
    return {r.per for p in applicable(policies, ctx) for r in p.rules if r.kind == "budget" and r.per != "run"}


def evaluate_runs(policies: Sequence[Policy], runs: Sequence[tuple[RunContext, Sequence[Action]]]) -> list[RunVerdict]:
    """Judge several runs together (a session split over runs, a tenant's period): each run
    as :func:`evaluate_run`, its ledgers built from the other runs' actions."""
    out: list[RunVerdict] = []
    for i, (ctx, actions) in enumerate(runs):
        others = [(c, a) for j, (c, a) in enumerate(runs) if j != i and c.tenant == ctx.tenant]
        ledgers = {"tenant": Ledger.of(a for _, a in others)}
        if ctx.session:
            ledgers["session"] = Ledger.of(a for c, a in others if c.session == ctx.session)
        out.append(evaluate_run(policies, ctx, actions, ledgers))
    return out
