"""Why a journey's cost changed between two windows (DESIGN §5).

**Decomposition.** A journey's model spend over a window is, summed over its models m,

    cost = R · K · Σ_m s_m · ρ_m · (qin_m + qout_m) · P_m

- R      runs (scaled to the current window's length when the windows differ);
- K      answered model calls per run, not counting re-sends;
- s_m    share of those calls that went to model m (the model mix);
- ρ_m    billed calls per answered call of m: re-sends of an already answered (and billed)
         call push it above 1 (a retry after a 429 or 5xx was not billed and does not);
- qin_m, qout_m  input (incl. cached) and output tokens per billed call, valued at one
         reference price list (the prices in force at the end of the current window), so
         they measure token volume only;
- P_m    what was actually paid per unit of that valued volume (1 when the recorded cost
         used the reference prices; a catalog or override change moves it).

The identity holds exactly, so the difference between the windows splits into one term per
factor with the Shapley value: each factor's term is its average marginal effect over every
order of switching the seven factors from baseline to current. The terms add up to the
delta exactly, whatever the interactions (a log-mean/LMDI split would not handle a model
that appears in only one window).

**Causes.** Terms are then named, each only with its evidence:

- runs → ``traffic_growth``;
- re-sends per call → ``retry_storm`` when retries or 429/5xx answers per run went up;
- input/output tokens per call → ``prompt_regression`` when a prompt version (or
  service.version) new to the current window carries the growth; otherwise left
  unexplained (aisre does not yet tell a provider's tokenizer change apart);
- model mix and paid price per unit → ``model_shift`` (a fallback or routing change to a
  costlier model, or a price change);
- anything else (e.g. more first-attempt calls per run, or a term without evidence) is
  reported as ``unexplained`` with the factor it came from, never guessed.

**Sufficiency.** Nothing is decomposed unless both windows hold at least
``Minimums.runs`` runs and as many billed model calls: with fewer, the answer is
``status: "insufficient_data"`` with the counts and the minimums, and no cause (a baseline
with no runs would otherwise make the whole current cost "traffic growth"). A cause is
named only when its term carries at least ``Minimums.share`` of the delta and at least
``Minimums.exemplars`` runs of the current window show it; a term short of that goes to
``unexplained``, and ``not_named`` says which cause was held back and why.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aisre.core.display import money
from aisre.core.errors import PermanentError
from aisre.normalize.prices import Price

FACTORS: tuple[str, ...] = (
    "runs", "calls_per_run", "model_mix", "resends_per_call", "input_per_call", "output_per_call", "price",
)
CAUSES: tuple[str, ...] = ("retry_storm", "prompt_regression", "model_shift", "traffic_growth", "unexplained")
MIN_RUNS = 20  # runs, and billed model calls, each window needs before anything is decomposed
MIN_EXEMPLARS = 3  # runs of the current window that must show a cause before it is named
# Relative difference of two windows' spend that is float rounding of their sums, not a change.
ROUNDING = 1e-9
MIN_SHARE = 0.05  # a term below this share of |delta| is noise, folded into "unexplained"
_M = 1_000_000


@dataclass(frozen=True)
class Minimums:
    """The evidence an explanation needs (settings explain_min_runs, explain_min_exemplars,
    explain_min_share)."""

    runs: int = MIN_RUNS
    exemplars: int = MIN_EXEMPLARS
    share: float = MIN_SHARE

    def __post_init__(self) -> None:
        if self.runs < 1 or self.exemplars < 1 or not 0 <= self.share < 1:
            raise PermanentError(
                f"explanation minimums: runs and exemplars must be at least 1 and share in [0, 1); got "
                f"runs={self.runs}, exemplars={self.exemplars}, share={self.share}"
            )

    def document(self) -> dict[str, Any]:
        return {"runs": self.runs, "billed_calls": self.runs, "exemplars": self.exemplars, "share": self.share}


@dataclass
class ModelUse:
    """One model's calls in one window (sums of `cost_minutes`)."""

    provider: str
    model: str
    calls: int = 0
    billed: int = 0
    first: int = 0
    resent: int = 0
    retry_calls: int = 0
    errors: int = 0
    http_429: int = 0
    http_5xx: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, row: Mapping[str, Any]) -> None:
        for name, column in (("calls", "calls"), ("billed", "billed_calls"), ("first", "first_calls"),
                             ("resent", "resent_calls"), ("retry_calls", "retry_calls"), ("errors", "errors"),
                             ("http_429", "http_429"), ("http_5xx", "http_5xx"), ("input_tokens", "input_tokens"),
                             ("output_tokens", "output_tokens"), ("cached_input_tokens", "cached_input_tokens")):
            setattr(self, name, getattr(self, name) + int(row[column] or 0))
        self.cost_usd += float(row["cost_usd"] or 0.0)


@dataclass
class Window:
    """A journey's aggregates over one window."""

    start_ns: int
    end_ns: int
    runs: int = 0
    failures: int = 0
    retries: int = 0
    models: dict[str, ModelUse] = field(default_factory=dict)
    # per prompt version / release: runs aside, the same sums as models (calls, tokens, cost)
    prompts: dict[str, ModelUse] = field(default_factory=dict)
    releases: dict[str, ModelUse] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float:
        return sum(m.cost_usd for m in self.models.values())

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def summary(self, scale: float = 1.0) -> dict[str, Any]:
        billed = sum(m.billed for m in self.models.values())
        first = sum(m.first for m in self.models.values())
        tokens_in = sum(m.input_tokens for m in self.models.values())
        tokens_out = sum(m.output_tokens for m in self.models.values())
        cached = sum(m.cached_input_tokens for m in self.models.values())
        runs = self.runs
        return {
            "runs": runs,
            "failures": self.failures,
            "cost_usd": self.cost_usd,
            "cost_per_run_usd": self.cost_usd / runs if runs else None,
            "cost_per_1k_runs_usd": 1000 * self.cost_usd / runs if runs else None,
            "llm_calls": sum(m.calls for m in self.models.values()),
            "billed_calls": billed,
            "answered_calls_per_run": first / runs if runs else None,
            "resends_per_call": billed / first if first else None,
            "retries_per_run": self.retries / runs if runs else None,
            "http_429": sum(m.http_429 for m in self.models.values()),
            "http_5xx": sum(m.http_5xx for m in self.models.values()),
            "input_tokens_per_call": tokens_in / billed if billed else None,
            "output_tokens_per_call": tokens_out / billed if billed else None,
            "cache_hit_rate": cached / tokens_in if tokens_in else None,
            "models": {
                name: {"provider": m.provider, "calls": m.calls, "billed_calls": m.billed, "cost_usd": m.cost_usd,
                       "input_tokens": m.input_tokens, "output_tokens": m.output_tokens,
                       "share_of_calls": m.first / first if first else None}
                for name, m in sorted(self.models.items(), key=lambda kv: -kv[1].cost_usd)
            },
            "prompt_versions": {
                v: {"runs": p.calls, "input_tokens_per_call": p.input_tokens / p.billed if p.billed else None,
                    "cost_usd": p.cost_usd}
                for v, p in sorted(self.prompts.items())
            },
            "service_versions": {
                v: {"runs": p.calls, "input_tokens_per_call": p.input_tokens / p.billed if p.billed else None,
                    "cost_usd": p.cost_usd}
                for v, p in sorted(self.releases.items())
            },
            "scaled_by": scale,
        }


# -- the decomposition -------------------------------------------------------------------


@dataclass(frozen=True)
class _Side:
    runs: float
    per_run: float  # K
    mix: dict[str, float]  # s_m
    resend: dict[str, float]  # ρ_m
    qin: dict[str, float]
    qout: dict[str, float]
    paid: dict[str, float]  # P_m


def _valued(m: ModelUse, ref: Price | None) -> tuple[float, float]:
    """(input, output) volume per billed call, at reference prices (raw tokens if unpriced)."""
    if not m.billed:
        return 0.0, 0.0
    cached = min(m.cached_input_tokens, m.input_tokens)
    if ref is not None and (ref.input or ref.output):
        vin = ((m.input_tokens - cached) * ref.input + cached * ref.cached_input) / _M
        vout = m.output_tokens * ref.output / _M
    else:
        vin, vout = float(m.input_tokens), float(m.output_tokens)
    return vin / m.billed, vout / m.billed


def _side(w: Window, scale: float, refs: Mapping[str, Price | None]) -> _Side | None:
    first = sum(m.first for m in w.models.values())
    if not w.runs or not first:
        return None
    mix, resend, qin, qout, paid = {}, {}, {}, {}, {}
    for name, m in w.models.items():
        if not m.first:
            continue
        mix[name] = m.first / first
        resend[name] = m.billed / m.first
        qin[name], qout[name] = _valued(m, refs.get(name))
        volume = (qin[name] + qout[name]) * m.billed
        paid[name] = m.cost_usd / volume if volume else 0.0
    return _Side(w.runs * scale, first / w.runs, mix, resend, qin, qout, paid)


def _fill(a: _Side, b: _Side) -> _Side:
    """``a`` with b's per-model values for models only b has (their share in ``a`` is 0)."""
    def merged(x: dict[str, float], y: dict[str, float]) -> dict[str, float]:
        return {**{k: v for k, v in y.items() if k not in x}, **x}
    return _Side(a.runs, a.per_run, {k: a.mix.get(k, 0.0) for k in {*a.mix, *b.mix}}, merged(a.resend, b.resend),
                 merged(a.qin, b.qin), merged(a.qout, b.qout), merged(a.paid, b.paid))


def _cost(values: Sequence[Any]) -> float:
    runs, per_run, mix, resend, qin, qout, paid = values
    return float(runs * per_run * sum(mix[m] * resend[m] * (qin[m] + qout[m]) * paid[m] for m in mix))


def shapley(base: Sequence[Any], cur: Sequence[Any], value: Callable[[Sequence[Any]], float]) -> list[float]:
    """Exact Shapley values of switching each factor from ``base`` to ``cur``."""
    n = len(base)
    cache: dict[int, float] = {}

    def v(mask: int) -> float:
        if mask not in cache:
            cache[mask] = value([cur[i] if mask >> i & 1 else base[i] for i in range(n)])
        return cache[mask]

    weights = [math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)]
    out = []
    for i in range(n):
        total = 0.0
        others = [j for j in range(n) if j != i]
        for k in range(n):
            for combo in itertools.combinations(others, k):
                mask = sum(1 << j for j in combo)
                total += weights[k] * (v(mask | 1 << i) - v(mask))
        out.append(total)
    return out


def decompose(base: Window, cur: Window, refs: Mapping[str, Price | None]) -> dict[str, Any]:
    """The delta of model spend between the windows, split over FACTORS (terms add up to it)."""
    scale = cur.seconds / base.seconds if base.seconds > 0 else 1.0
    b, c = _side(base, scale, refs), _side(cur, 1.0, refs)
    delta = cur.cost_usd - base.cost_usd * scale
    if abs(delta) <= ROUNDING * max(abs(cur.cost_usd), abs(base.cost_usd * scale)):
        # Equal spend, up to float rounding of sums: there is no change to split.
        return {"delta_usd": 0.0, "scale": scale, "terms": dict.fromkeys(FACTORS, 0.0), "residual_usd": 0.0,
                "ratios": {}}
    if b is None and c is None:
        return {"delta_usd": delta, "scale": scale, "terms": dict.fromkeys(FACTORS, 0.0), "ratios": {}}
    if b is None or c is None:
        # Nothing to compare with: all of it is traffic appearing (or vanishing).
        return {"delta_usd": delta, "scale": scale, "terms": {**dict.fromkeys(FACTORS, 0.0), "runs": delta}, "ratios": {}}
    b, c = _fill(b, c), _fill(c, b)
    bv = [b.runs, b.per_run, b.mix, b.resend, b.qin, b.qout, b.paid]
    cv = [c.runs, c.per_run, c.mix, c.resend, c.qin, c.qout, c.paid]
    terms = dict(zip(FACTORS, shapley(bv, cv, _cost), strict=True))
    # Numerical crumbs (and costs outside the identity, e.g. unbilled calls with a cost) → residual.
    residual = delta - sum(terms.values())
    return {
        "delta_usd": delta,
        "scale": scale,
        "terms": terms,
        "residual_usd": residual,
        "ratios": {
            "runs": _ratio(c.runs, b.runs),
            "calls_per_run": _ratio(c.per_run, b.per_run),
            "resends_per_call": _ratio(_avg(c.resend, c.mix), _avg(b.resend, b.mix)),
            "input_per_call": _ratio(_avg(c.qin, c.mix), _avg(b.qin, b.mix)),
            "output_per_call": _ratio(_avg(c.qout, c.mix), _avg(b.qout, b.mix)),
        },
    }


def _avg(values: Mapping[str, float], weights: Mapping[str, float]) -> float:
    return sum(values[k] * w for k, w in weights.items())


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


# -- naming the causes -------------------------------------------------------------------


@dataclass
class Evidence:
    """What the rules need besides the two windows: version history and exemplar lookups."""

    first_seen_prompt: Mapping[str, int]  # version → first minute seen (before current end)
    first_seen_release: Mapping[str, int]
    exemplars: Callable[[str, Mapping[str, Any]], list[str]]  # kind, hints → trace ids


def _pct(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b:
        return "n/a"
    return f"{(a / b - 1) * 100:+.0f}%"


def _new_versions(base: dict[str, ModelUse], cur: dict[str, ModelUse], first_seen: Mapping[str, int], start_ns: int) -> list[str]:
    """Versions that carry a larger share of the current window than of the baseline:
    first seen after the baseline, or grown by 20 points of share."""
    bt = sum(p.calls for p in base.values()) or 1
    ct = sum(p.calls for p in cur.values()) or 1
    out = []
    for v, p in cur.items():
        if not v:
            continue
        grew = p.calls / ct - (base[v].calls / bt if v in base else 0.0)
        if (v not in base and first_seen.get(v, start_ns) >= start_ns - 1) or grew >= 0.2:
            out.append(v)
    return sorted(out, key=lambda v: -cur[v].calls)


def shortfalls(base: Window, cur: Window, minimums: Minimums) -> list[str]:
    """What the two windows lack before a change between them can be explained (empty: nothing)."""
    out = []
    for label, w in (("baseline", base), ("current", cur)):
        billed = sum(m.billed for m in w.models.values())
        if w.runs < minimums.runs:
            out.append(f"{label} window: {_count(w.runs, 'run')}, fewer than the {minimums.runs} needed")
        if billed < minimums.runs:
            out.append(f"{label} window: {_count(billed, 'billed model call')}, fewer than the {minimums.runs} needed")
    return out


def insufficient(journey: str, base: Window, cur: Window, minimums: Minimums, short: Sequence[str]) -> dict[str, Any]:
    """The answer when there is too little data: the counts, the minimums, and no cause."""
    def counts(w: Window) -> dict[str, Any]:
        return {"from": w.start_ns, "to": w.end_ns, "runs": w.runs,
                "billed_calls": sum(m.billed for m in w.models.values()), "cost_usd": w.cost_usd}

    return {
        "journey": journey,
        "status": "insufficient_data",
        "summary": "not enough data to explain a change: " + "; ".join(short),
        "shortfalls": list(short),
        "minimums": minimums.document(),
        "baseline": counts(base),
        "current": counts(cur),
        "causes": [],
    }


def explain(
    journey: str, base: Window, cur: Window, refs: Mapping[str, Price | None], ev: Evidence,
    minimums: Minimums | None = None,
) -> dict[str, Any]:
    """The explanation document: both windows, the delta, its decomposition and named causes
    (or, with too little data in either window, the insufficient_data answer)."""
    minimums = minimums or Minimums()
    short = shortfalls(base, cur, minimums)
    if short:
        return insufficient(journey, base, cur, minimums, short)
    d = decompose(base, cur, refs)
    scale = d["scale"]
    delta = d["delta_usd"]
    terms: dict[str, float] = d["terms"]
    bs, cs = base.summary(scale), cur.summary()
    causes: list[dict[str, Any]] = []
    leftover: list[tuple[str, float, str]] = []
    not_named: list[dict[str, Any]] = []

    def material(x: float) -> bool:
        return abs(delta) > 0 and abs(x) >= minimums.share * abs(delta)

    def add(cause: str, usd: float, evidence: dict[str, Any], kind: str, hints: Mapping[str, Any] | None = None) -> bool:
        exemplars = ev.exemplars(kind, hints or {})
        if cause != "unexplained" and len(exemplars) < minimums.exemplars:
            # The rule matched on sums, but too few runs show it: not named.
            not_named.append({"cause": cause, "delta_usd": usd,
                              "reason": f"{_count(len(exemplars), 'run')} of the current window "
                                        f"{'shows' if len(exemplars) == 1 else 'show'} it, "
                                        f"fewer than the {minimums.exemplars} needed"})
            return False
        causes.append({
            "cause": cause, "delta_usd": usd, "share": usd / delta if delta else 0.0,
            "evidence": evidence, "exemplar_trace_ids": exemplars,
        })
        return True

    # Traffic.
    runs_term = terms["runs"]
    named = material(runs_term) and add("traffic_growth", runs_term, {
        "summary": f"runs {_pct(cur.runs, base.runs * scale)} ({base.runs} → {cur.runs}"
                   + (f", baseline scaled ×{scale:.3g} to the current window's length" if scale != 1 else "")
                   + f"); cost per run {_pct(cs['cost_per_run_usd'], bs['cost_per_run_usd'])}",
        "runs": {"baseline": base.runs, "current": cur.runs},
        "cost_per_run_usd": {"baseline": bs["cost_per_run_usd"], "current": cs["cost_per_run_usd"]},
    }, "recent")
    if not named:
        leftover.append(("runs", runs_term, "runs"))

    # Retries.
    resend_term = terms["resends_per_call"]
    retry_up = (cs["retries_per_run"] or 0) > (bs["retries_per_run"] or 0) * 1.1 or (
        (cs["http_429"] + cs["http_5xx"]) / max(cur.runs, 1) > (bs["http_429"] + bs["http_5xx"]) / max(base.runs, 1) * 1.1
    )
    named = material(resend_term) and resend_term > 0 and retry_up and add("retry_storm", resend_term, {
        "summary": f"billed calls per answered call {_fmt(bs['resends_per_call'])} → {_fmt(cs['resends_per_call'])}; "
                   f"retries per run {_fmt(bs['retries_per_run'])} → {_fmt(cs['retries_per_run'])}; "
                   f"429/5xx answers {bs['http_429']}/{bs['http_5xx']} → {cs['http_429']}/{cs['http_5xx']}",
        "resends_per_call": {"baseline": bs["resends_per_call"], "current": cs["resends_per_call"]},
        "retries_per_run": {"baseline": bs["retries_per_run"], "current": cs["retries_per_run"]},
        "http_429": {"baseline": bs["http_429"], "current": cs["http_429"]},
        "http_5xx": {"baseline": bs["http_5xx"], "current": cs["http_5xx"]},
    }, "retries")
    if not named:
        leftover.append(("resends_per_call", resend_term, "re-sends per call"))

    # Tokens per call.
    token_term = terms["input_per_call"] + terms["output_per_call"]
    new_prompts = _new_versions(base.prompts, cur.prompts, ev.first_seen_prompt, cur.start_ns)
    new_releases = _new_versions(base.releases, cur.releases, ev.first_seen_release, cur.start_ns)
    named = False
    if material(token_term) and token_term > 0 and (new_prompts or new_releases):
        versions = new_prompts or new_releases
        which = "prompt version" if new_prompts else "service.version"
        table = cur.prompts if new_prompts else cur.releases
        first_seen = ev.first_seen_prompt if new_prompts else ev.first_seen_release
        named = add("prompt_regression", token_term, {
            "summary": f"input tokens per call {_pct(cs['input_tokens_per_call'], bs['input_tokens_per_call'])} "
                       f"({_fmt(bs['input_tokens_per_call'])} → {_fmt(cs['input_tokens_per_call'])}), output tokens per call "
                       f"{_pct(cs['output_tokens_per_call'], bs['output_tokens_per_call'])}, with new {which} "
                       + ", ".join(versions),
            "versions": {v: {"input_tokens_per_call": table[v].input_tokens / table[v].billed if table[v].billed else None,
                             "first_seen_ns": first_seen.get(v)} for v in versions},
            "input_tokens_per_call": {"baseline": bs["input_tokens_per_call"], "current": cs["input_tokens_per_call"]},
            "output_tokens_per_call": {"baseline": bs["output_tokens_per_call"], "current": cs["output_tokens_per_call"]},
            "input_delta_usd": terms["input_per_call"],
            "output_delta_usd": terms["output_per_call"],
        }, "prompt", {"prompt_versions": new_prompts, "service_versions": new_releases})
    if not named:
        leftover.append(("input_per_call", terms["input_per_call"], "input tokens per call"))
        leftover.append(("output_per_call", terms["output_per_call"], "output tokens per call"))

    # Model mix and price.
    mix_term = terms["model_mix"] + terms["price"]
    named = False
    if material(mix_term) and mix_term > 0:
        grown = sorted(
            (m for m in cur.models),
            key=lambda m: -((cs["models"][m]["share_of_calls"] or 0) - (bs["models"].get(m, {}).get("share_of_calls") or 0)),
        )
        prices = {m: _unit(cur.models[m]) for m in cur.models}
        base_prices = {m: _unit(base.models[m]) for m in base.models}
        named = add("model_shift", mix_term, {
            "summary": "calls moved to costlier models: " + ", ".join(
                f"{m} {_share(bs, m)} → {_share(cs, m)} of calls ({money(prices[m] * 1000)} per 1K calls)" for m in grown[:3]
            ) + (f"; paid price per unit of usage changed ({money(terms['price'])})" if material(terms["price"]) else ""),
            "share_of_calls": {m: {"baseline": bs["models"].get(m, {}).get("share_of_calls"),
                                   "current": cs["models"][m]["share_of_calls"]} for m in cur.models},
            "cost_per_call_usd": {m: {"baseline": base_prices.get(m), "current": prices[m]} for m in cur.models},
            "mix_delta_usd": terms["model_mix"],
            "price_delta_usd": terms["price"],
        }, "model", {"models": grown[:1]})
    if not named:
        leftover.append(("model_mix", terms["model_mix"], "model mix"))
        leftover.append(("price", terms["price"], "price per unit"))

    leftover.append(("calls_per_run", terms["calls_per_run"], "answered model calls per run"))
    rest = sum(x for _, x, _ in leftover) + d.get("residual_usd", 0.0)
    # The rest is always reported, so the shares add up to the delta; below the minimum share it is noise.
    if abs(rest) > 1e-9 * abs(delta) or not causes:
        parts = [f"{label} {x:+.4g} USD" for _, x, label in sorted(leftover, key=lambda t: -abs(t[1])) if x]
        held = [f"{n['cause'].replace('_', ' ')} not named ({n['reason']})" for n in not_named]
        noise = f"noise, below {minimums.share * 100:.3g} % of the change"
        add("unexplained", rest, {
            "summary": "; ".join([
                *((("no rule explains this part of the change" if material(rest) else noise)
                   + "; by factor: " + ", ".join(parts[:4]),) if parts else ("no change to explain",)),
                *held,
            ]),
            "terms_usd": {k: x for k, x, _ in leftover},
        }, "costliest")
    # Same cause named twice (model_shift from tokens and from mix): merge.
    merged: dict[str, dict[str, Any]] = {}
    for c in causes:
        if c["cause"] in merged:
            m = merged[c["cause"]]
            m["delta_usd"] += c["delta_usd"]
            m["share"] = m["delta_usd"] / delta if delta else 0.0
            m["evidence"] = {"parts": [m["evidence"], c["evidence"]], "summary": m["evidence"]["summary"] + "; " + c["evidence"]["summary"]}
            m["exemplar_trace_ids"] = list(dict.fromkeys(m["exemplar_trace_ids"] + c["exemplar_trace_ids"]))[:5]
        else:
            merged[c["cause"]] = c
    ordered = sorted(merged.values(), key=lambda c: -c["share"])
    return {
        "journey": journey,
        "status": "explained",
        "minimums": minimums.document(),
        "not_named": not_named,
        "baseline": {"from": base.start_ns, "to": base.end_ns, **bs},
        "current": {"from": cur.start_ns, "to": cur.end_ns, **cs},
        "delta_usd": delta,
        "delta_pct": delta / (base.cost_usd * scale) if base.cost_usd else None,
        "causes": ordered,
        "decomposition": {
            "method": "shapley",
            "identity": "cost = runs × calls/run × Σ_model mix × resends/call × (input+output value)/call × paid price",
            "terms_usd": terms,
            "residual_usd": d.get("residual_usd", 0.0),
            "ratios": d["ratios"],
        },
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _share(summary: Mapping[str, Any], model: str) -> str:
    s = summary["models"].get(model, {}).get("share_of_calls")
    return "0%" if s is None else f"{s * 100:.0f}%"


def _unit(m: ModelUse) -> float:
    return m.cost_usd / m.billed if m.billed else 0.0
