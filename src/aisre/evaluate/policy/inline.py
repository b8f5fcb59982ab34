"""Inline decisions: a decide request → the engine's answer and an OPA-style decision record.

The record names every policy applied with its version, a keyed digest of the input (HMAC
with the tenant's hash key, so a guessable argument cannot be confirmed from its digest),
the input as the tenant's redaction leaves it, the result, the reasons and the trace/span.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from aisre.core.errors import PermanentError
from aisre.evaluate.policy.engine import Action, Decision, Ledger, RunContext, decide
from aisre.evaluate.policy.spec import Policy, bundle_version

MAX_HISTORY = 10_000
ACTION_KEYS = ("type", "name", "args", "tokens", "cost_usd", "depth", "start_ns", "span_id", "guarded")
REQUEST_KEYS = ("journey", "service", "agent", "session_id", "trace_id", "span_id", "run_start_ns", "action", "history")

Redact = Callable[[Any], Any]


@dataclass(frozen=True)
class DecideRequest:
    """A parsed decide request."""

    context: RunContext
    history: tuple[Action, ...]
    action: Action
    span_id: str
    raw: dict[str, Any]


def _text(body: dict[str, Any], key: str, where: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PermanentError(f"{where}{key} must be text")
    return value


def _number(body: dict[str, Any], key: str, where: str, kind: type = float) -> Any:
    value = body.get(key, 0) or 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentError(f"{where}{key} must be a number")
    return kind(value)


def parse_action(body: Any, where: str, now_ns: int) -> Action:
    """One action from JSON (``type`` tool|model, ``name``, ``args``…)."""
    if not isinstance(body, dict):
        raise PermanentError(f"{where} must be an object")
    unknown = sorted(set(body) - set(ACTION_KEYS))
    if unknown:
        raise PermanentError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(ACTION_KEYS)}")
    kind = body.get("type")
    if kind not in ("tool", "model"):
        raise PermanentError(f"{where}.type must be tool or model")
    name = _text(body, "name", where + ".")
    if not name:
        raise PermanentError(f"{where}.name is required (the tool, or the model)")
    args = body.get("args") or {}
    if not isinstance(args, dict):
        raise PermanentError(f"{where}.args must be an object")
    return Action(kind, name, args, _number(body, "tokens", where + ".", int), _number(body, "cost_usd", where + "."),
                  _number(body, "depth", where + ".", int), _number(body, "start_ns", where + ".", int) or now_ns,
                  _text(body, "span_id", where + ".") or "", bool(body.get("guarded", False)))


def parse_request(body: Any, tenant: str, now_ns: int | None = None) -> DecideRequest:
    """A decide request from its JSON body; PermanentError (400) says what is wrong."""
    now = now_ns if now_ns is not None else time.time_ns()
    if not isinstance(body, dict):
        raise PermanentError("the body must be a JSON object with action (and journey, history…)")
    unknown = sorted(set(body) - set(REQUEST_KEYS))
    if unknown:
        raise PermanentError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(REQUEST_KEYS)}")
    if "action" not in body:
        raise PermanentError("action is required: {type: tool|model, name, args}")
    history_raw = body.get("history") or []
    if not isinstance(history_raw, list):
        raise PermanentError("history must be a list of actions")
    if len(history_raw) > MAX_HISTORY:
        raise PermanentError(f"history holds {len(history_raw)} actions; at most {MAX_HISTORY}")
    history = tuple(parse_action(a, f"history[{i}]", 0) for i, a in enumerate(history_raw))
    action = parse_action(body["action"], "action", now)
    ctx = RunContext(tenant, _text(body, "journey", ""), _text(body, "service", ""), _text(body, "agent", ""),
                     _text(body, "trace_id", "") or "", _number(body, "run_start_ns", "", int),
                     _text(body, "session_id", "") or None)
    return DecideRequest(ctx, history, action, _text(body, "span_id", "") or action.span_id, body)


def input_digest(key: bytes, body: dict[str, Any]) -> str:
    """Keyed digest of the canonical input (same input, same digest; not reversible by guessing)."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=str)
    return "hmac-sha256:" + hmac.new(key or b"aisre", canonical, hashlib.sha256).hexdigest()[:32]


def decision_record(
    req: DecideRequest, decision: Decision, policies: Sequence[Policy], redact: Redact, key: bytes,
    source: str = "inline", now_ns: int | None = None,
) -> dict[str, Any]:
    """The append-only record of one decision (inputs as the tenant's redaction leaves them)."""
    applied = [p for p in policies if (p.name, p.version) in set(decision.policies)]
    reasons = [r.document() for r in decision.reasons]
    # An evaluation error's text could quote an argument: reasons get the input's redaction
    # too (under the drop mode, which drops inputs whole, they are kept: rule-authored text).
    scrubbed = redact(reasons)
    return {
        "id": str(uuid.uuid4()),
        "tenant": req.context.tenant,
        "at_ns": now_ns if now_ns is not None else time.time_ns(),
        "source": source,
        "journey": req.context.journey,
        "trace_id": req.context.trace_id or None,
        "span_id": req.span_id or None,
        "result": decision.result,
        "policies": [{"name": n, "version": v} for n, v in decision.policies],
        "bundle": bundle_version(applied) if applied else None,
        "rules": sorted({r.rule for r in decision.reasons}),
        "reasons": scrubbed if scrubbed is not None else reasons,
        "input_digest": input_digest(key, req.raw),
        "input": redact(req.raw),
    }


def decide_request(policies: Sequence[Policy], req: DecideRequest, ledgers: dict[str, Ledger] | None = None) -> Decision:
    """The engine's answer for a parsed request (``ledgers``: other runs, for shared budgets)."""
    return decide(policies, req.context, req.history, req.action, ledgers=ledgers)
