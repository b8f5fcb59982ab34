"""The gate's configuration file: how each metric is judged, scored, and which budgets must be left.

```yaml
judge:
  confidence: 0.98          # Kayenta's judge runs at 98%
  tolerance: 0.25           # the interval must clear 25% of the shift estimate
  min_runs: 20              # fewer runs on either side: insufficient data, no verdict
  window: 1h                # runs started within this long before now
  thresholds: {pass: 95, marginal: 75}
  group_weights: {errors: 40, latency: 20, cost: 20, quality: 20}
metrics:
  outcome: {direction: increase, critical: true}       # failure rate: Fisher's exact test per run
  latency: {direction: increase, allowed_increase: 1.1}
  cost: {direction: increase}
  tokens: {direction: increase, muted: true}
  scores:
    groundedness: {better: higher, must_have_data: true}
    thumbs: {better: higher, min_runs: 5}   # fewer scored runs needed for this one
    "*": {nan_strategy: remove}             # every other score
policy:                               # absent: the default tier-0 rule below; `policy: off` or []: none
  - name: tier-0-budget
    slos: {tier: [0]}
    min_budget_remaining: 0           # percent of the error budget that must be left
    allow_fix: true                   # a release marked as a fix passes this rule
```

A score's bad direction comes from its own entry (``better`` or ``direction``), else from its name
when the name is a known one (:mod:`aisre.evaluate.gate.directions`), else from ``"*"``, else
higher is assumed better, and the verdict says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from aisre.core.slo import SpecError, SpecValidationError
from aisre.evaluate._yaml import LineDict, LineList, View, parse_documents, read_documents
from aisre.evaluate.gate.classifier import Direction, EffectSize, MetricSettings, NanStrategy
from aisre.evaluate.gate.directions import Better, known_better
from aisre.evaluate.gate.policy import PolicyRule, SloSelector

BUILTIN_METRICS = ("outcome", "latency", "cost", "tokens")
# What each built-in measures, its group and its default judgement.
BUILTIN_DEFAULTS: dict[str, tuple[str, MetricSettings]] = {
    "outcome": ("errors", MetricSettings(direction=Direction.INCREASE, critical=True)),
    "latency": ("latency", MetricSettings(direction=Direction.INCREASE)),
    "cost": ("cost", MetricSettings(direction=Direction.INCREASE)),
    "tokens": ("cost", MetricSettings(direction=Direction.INCREASE)),
}
# A score whose name says nothing and that the gate file does not describe: higher is assumed
# better (groundedness, relevance and feedback are the common case), and the verdict says so.
SCORE_DEFAULT = ("quality", MetricSettings(direction=Direction.DECREASE))
# The README's promise, on unless a gate file says otherwise: no release of a journey while one of
# its tier-0 user-outcome SLOs has spent its error budget (a release marked as a fix may go).
DEFAULT_POLICY = (
    PolicyRule(
        name="tier-0-budget",
        slos=SloSelector(tiers=(0,)),
        description="no release while a tier-0 user-outcome SLO of the journey has its error budget exhausted",
        where="(defaults)",
    ),
)


# A known score (groundedness, hallucination, …) that is significantly worse by more than this share
# of its baseline mean is a critical failure; a smaller significant change counts in its group.
KNOWN_SCORE_CRITICAL = 0.1


class MetricTest(StrEnum):
    """The test a metric is judged with: by its values (auto), or as the gate file says."""

    AUTO = "auto"  # Fisher when every per-run value on both sides is 0 or 1, else Mann-Whitney
    FISHER = "fisher"
    MANN_WHITNEY = "mann-whitney"


class DirectionFrom(StrEnum):
    """Where a metric's bad direction came from (shown in the verdict)."""

    BUILT_IN = "built-in"
    GATE_FILE = "gate file"
    GATE_FILE_STAR = "gate file (*)"
    SCORE_NAME = "score name"
    ASSUMED = "assumed"


@dataclass(frozen=True)
class MetricConfig:
    """How one metric is judged and which group it scores in."""

    group: str
    settings: MetricSettings
    muted: bool = False
    test: MetricTest = MetricTest.AUTO
    min_runs: int | None = None  # runs with a value needed on each side; None: the judge's min_runs
    direction_from: DirectionFrom = DirectionFrom.BUILT_IN
    declared: frozenset[str] = frozenset()  # the fields the gate file's own entry for this metric sets


@dataclass(frozen=True)
class GateConfig:
    """Everything the judge needs besides the two populations."""

    confidence: float = 0.98
    tolerance: float = 0.25
    min_runs: int = 20
    window: timedelta = timedelta(hours=1)
    pass_threshold: float = 95.0
    marginal_threshold: float = 75.0
    group_weights: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, MetricConfig] = field(
        default_factory=lambda: {name: MetricConfig(g, s) for name, (g, s) in BUILTIN_DEFAULTS.items()}
    )
    scores: dict[str, MetricConfig] = field(default_factory=dict)
    score_default: MetricConfig = field(
        default_factory=lambda: MetricConfig(*SCORE_DEFAULT, direction_from=DirectionFrom.ASSUMED)
    )
    policy: tuple[PolicyRule, ...] = DEFAULT_POLICY
    policy_source: str = "defaults"  # "defaults", or the gate file that set the rules (or switched them off)
    source: str = "(defaults)"
    notes: tuple[str, ...] = ()  # said in every verdict judged with this configuration

    def score_config(self, name: str) -> MetricConfig:
        """The settings of one score, its bad direction resolved (own entry, name, ``"*"``, assumed)."""
        config = self.scores.get(name, self.score_default)
        better = known_better(name)
        declared = config.direction_from is DirectionFrom.GATE_FILE
        if better is None or (declared and config.settings.direction is not better.bad_direction):
            return config  # an unknown name, or the gate file says otherwise: nothing from the name
        # A known quality or safety score: its name says which way is bad, and a regression
        # beyond KNOWN_SCORE_CRITICAL of its mean fails the release on its own.
        own = self.scores[name].declared if name in self.scores else frozenset()
        known: dict[str, Any] = {"direction": better.bad_direction}
        for key, value in (("critical", True), ("critical_increase", 1 + KNOWN_SCORE_CRITICAL),
                           ("critical_decrease", 1 - KNOWN_SCORE_CRITICAL)):
            if key not in own:  # the score's own entry wins; "*" does not (the name is more specific)
                known[key] = value
        source = DirectionFrom.GATE_FILE if declared else DirectionFrom.SCORE_NAME
        return replace(config, settings=replace(config.settings, **known), direction_from=source)


_JUDGE_KEYS = ("confidence", "tolerance", "min_runs", "window", "outcome_batch", "thresholds", "group_weights")
_METRIC_KEYS = (
    "direction", "nan_strategy", "critical", "must_have_data", "allowed_increase", "allowed_decrease",
    "critical_increase", "critical_decrease", "effect_size", "group", "muted", "test", "min_runs",
)
_SCORE_KEYS = (*_METRIC_KEYS, "better")
_POLICY_KEYS = ("name", "journeys", "slos", "min_budget_remaining", "allow_fix", "description")


def load_gate_config(path: Path) -> GateConfig:
    """Read a gate file; every problem is reported with file, line and field, nothing half-loaded."""
    errors: list[SpecError] = []
    docs = read_documents(path, errors)
    return _finish(docs, str(path), errors)


def parse_gate_config(text: str | bytes, file: str = "<gate config>") -> GateConfig:
    """Like :func:`load_gate_config` for text already read."""
    errors: list[SpecError] = []
    return _finish(parse_documents(text, file, errors), file, errors)


def _finish(docs: list[tuple[Any, int]], file: str, errors: list[SpecError]) -> GateConfig:
    config = GateConfig(source=file)
    if not errors:
        if len(docs) != 1 or not isinstance(docs[0][0], LineDict):
            errors.append(SpecError(file, docs[0][1] if docs else 0, "", "expected one YAML mapping"))
        else:
            config = _config(View(docs[0][0], "", file, errors), config)
    if errors:
        raise SpecValidationError(errors)
    return config


def _config(v: View, base: GateConfig) -> GateConfig:
    v.check_keys(("judge", "metrics", "policy"))
    out = base
    if (j := v.mapping("judge")) is not None:
        out = _judge(j, out)
    if (m := v.mapping("metrics")) is not None:
        out = _metrics(m, out)
    raw = v.data.get("policy")
    if raw is None:
        return out  # the default policy stays on
    if isinstance(raw, bool):
        # `policy: off` (or false) switches the policy off; `policy: on` keeps the default rule.
        return replace(out, policy=DEFAULT_POLICY if raw else (), policy_source=v.file)
    if raw is not None and not isinstance(raw, LineList):
        v.error("policy", "must be a list of rules, or off")
        return out
    rules: list[PolicyRule] = []
    for item, path, line in v.items("policy"):
        if (p := v.as_view(item, path, line)) is not None and (rule := _rule(p)) is not None:
            rules.append(rule)
    names = [r.name for r in rules]
    for i, name in enumerate(names):
        if name in names[:i]:
            v.error("policy", f"duplicate policy rule name {name!r}")
    return replace(out, policy=tuple(rules), policy_source=v.file)


def _judge(j: View, out: GateConfig) -> GateConfig:
    j.check_keys(_JUDGE_KEYS)
    changes: dict[str, Any] = {}
    if (c := j.number("confidence")) is not None:
        if 0.5 <= c < 1:
            changes["confidence"] = c
        else:
            j.error("confidence", f"must be at least 0.5 and below 1 (got {c:g})")
    if (t := j.number("tolerance")) is not None:
        if t >= 0:
            changes["tolerance"] = t
        else:
            j.error("tolerance", f"must be 0 or more (got {t:g})")
    if (n := j.integer("min_runs")) is not None:
        if n >= 1:
            changes["min_runs"] = n
        else:
            j.error("min_runs", f"must be at least 1 (got {n})")
    if j.integer("outcome_batch") is not None:
        # Accepted so older gate files still load; failure rates are now compared run by run.
        changes["notes"] = (*out.notes, "judge.outcome_batch is no longer used: failure rates are compared "
                            "run by run with Fisher's exact test")
    if (w := j.duration("window")) is not None:
        changes["window"] = w
    if (th := j.mapping("thresholds")) is not None:
        th.check_keys(("pass", "marginal"))
        pass_t = th.number("pass")
        marginal_t = th.number("marginal")
        for key, val in (("pass", pass_t), ("marginal", marginal_t)):
            if val is not None and not 0 <= val <= 100:
                th.error(key, f"must be within 0..100 (got {val:g})")
        p = pass_t if pass_t is not None else out.pass_threshold
        m = marginal_t if marginal_t is not None else out.marginal_threshold
        if m > p:
            th.error("marginal", f"must not be above the pass threshold ({m:g} > {p:g})")
        changes["pass_threshold"], changes["marginal_threshold"] = p, m
    if (gw := j.mapping("group_weights")) is not None:
        weights: dict[str, float] = {}
        for key in gw.data:
            if (w2 := gw.number(str(key))) is not None:
                if w2 < 0:
                    gw.error(str(key), f"must be 0 or more (got {w2:g})")
                weights[str(key)] = w2
        if sum(weights.values()) > 100:
            j.error("group_weights", f"must add up to at most 100 (got {sum(weights.values()):g})")
        changes["group_weights"] = weights
    return replace(out, **changes)


def _metrics(m: View, out: GateConfig) -> GateConfig:
    m.check_keys((*BUILTIN_METRICS, "scores"))
    metrics = dict(out.metrics)
    for name in BUILTIN_METRICS:
        if (mv := m.mapping(name)) is not None:
            metrics[name] = _metric(mv, metrics[name])
    scores: dict[str, MetricConfig] = {}
    default = out.score_default
    if (sv := m.mapping("scores")) is not None:
        if (star := sv.mapping("*")) is not None:
            default = _metric(star, default, score=True)
            if default.direction_from is DirectionFrom.GATE_FILE:
                # A known score name still says its own direction over "*".
                default = replace(default, direction_from=DirectionFrom.GATE_FILE_STAR)
        for key in sv.data:
            if key != "*" and (one := sv.mapping(str(key))) is not None:
                scores[str(key)] = _metric(one, default, score=True)
    return replace(out, metrics=metrics, scores=scores, score_default=default)


def _choice(v: View, key: str, enum: Any, current: Any) -> Any:
    raw = v.text(key)
    if raw is None:
        return current
    try:
        return enum(raw)
    except ValueError:
        v.error(key, f"must be one of {', '.join(e.value for e in enum)} (got {raw!r})")
        return current


def _metric(v: View, base: MetricConfig, score: bool = False) -> MetricConfig:
    v.check_keys(_SCORE_KEYS if score else _METRIC_KEYS)
    s = base.settings
    numbers: dict[str, float] = {}
    for key in ("allowed_increase", "allowed_decrease", "critical_increase", "critical_decrease"):
        if (n := v.number(key)) is not None:
            if n < 0:
                v.error(key, f"must be 0 or more (got {n:g})")
            numbers[key] = n
    direction = _choice(v, "direction", Direction, s.direction)
    if score and v.has("better"):
        if v.has("direction"):
            v.error("better", "give better (higher | lower) or direction, not both")
        better = _choice(v, "better", Better, None)
        if better is not None:
            direction = better.bad_direction
    declared = v.has("direction") or (score and v.has("better"))
    settings = replace(
        s,
        direction=direction,
        nan_strategy=_choice(v, "nan_strategy", NanStrategy, s.nan_strategy),
        effect_size=_choice(v, "effect_size", EffectSize, s.effect_size),
        critical=v.boolean("critical", s.critical),
        must_have_data=v.boolean("must_have_data", s.must_have_data),
        **numbers,
    )
    min_runs = v.integer("min_runs")
    if min_runs is not None and min_runs < 1:
        v.error("min_runs", f"must be at least 1 (got {min_runs})")
        min_runs = None
    return MetricConfig(
        group=v.text("group") or base.group,
        settings=settings,
        muted=v.boolean("muted", base.muted),
        test=_choice(v, "test", MetricTest, base.test),
        min_runs=min_runs if min_runs is not None else base.min_runs,
        direction_from=DirectionFrom.GATE_FILE if declared else base.direction_from,
        declared=frozenset(str(k) for k in v.data),
    )


def _rule(p: View) -> PolicyRule | None:
    p.check_keys(_POLICY_KEYS)
    name = p.text("name", required=True)
    journeys: list[str] = []
    for item, path, line in p.items("journeys"):
        if isinstance(item, str):
            journeys.append(item)
        else:
            p.errors.append(SpecError(p.file, line, path, "must be a journey name"))
    tiers: list[int] = []
    names: list[str] = []
    if (s := p.mapping("slos", required=True)) is not None:
        s.check_keys(("tier", "names"))
        raw = s.data.get("tier")
        for t in raw if isinstance(raw, list) else ([raw] if raw is not None else []):
            if isinstance(t, bool) or not isinstance(t, int):
                s.error("tier", f"must be a tier number or a list of them (got {t!r})")
            else:
                tiers.append(t)
        for item, path, line in s.items("names"):
            if isinstance(item, str):
                names.append(item)
            else:
                s.errors.append(SpecError(s.file, line, path, "must be an SLO name"))
        if not tiers and not names:
            s.error("tier", "give tier and/or names to say which SLOs the rule covers")
    remaining = p.number("min_budget_remaining")
    if remaining is not None and not 0 <= remaining < 100:
        p.error("min_budget_remaining", f"must be within 0..100, as a percent of the budget (got {remaining:g})")
    if name is None:
        return None
    where = f"{p.file}:{p.line}"
    return PolicyRule(
        name=name,
        slos=SloSelector(tuple(tiers), tuple(names)),
        journeys=tuple(journeys),
        min_budget_remaining=(remaining or 0.0) / 100,
        allow_fix=p.boolean("allow_fix", True),
        description=p.text("description") or "",
        where=where,
    )
