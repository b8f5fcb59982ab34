"""A run's spans → the actions the policy engine judges (tool calls and model calls in order).

Works on span rows as the store returns them and as the offline check flattens OTLP files
(attributes as JSON text or a mapping). Split traces and late spans need nothing special:
the actions are rebuilt from every span of the trace each time it is judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from aisre.evaluate.policy.engine import REDACTED_MARK, Action, RunContext

MODEL_OPERATIONS = frozenset({"chat", "text_completion"})
ARGUMENT_KEYS = ("gen_ai.tool.call.arguments", "ai.toolCall.args", "input.value")
TRIP_KEYS = ("guardrail.triggered", "gen_ai.guardrail.triggered", "triggered", "tripwire_triggered")


@dataclass
class RunActions:
    """What a trace gives the engine: its context, its actions, and guardrail trips counted."""

    context: RunContext
    actions: list[Action]
    guardrail_trips: int
    guardrail_checks: int


def _json(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _attrs(row: dict[str, Any]) -> dict[str, Any]:
    found = _json(row.get("attributes"))
    return found if isinstance(found, dict) else {}


def _events(row: dict[str, Any]) -> list[Any]:
    found = _json(row.get("events"))
    return found if isinstance(found, list) else []


def _is_guardrail(row: dict[str, Any], attrs: dict[str, Any]) -> bool:
    name = str(row.get("name") or "").lower()
    if "guardrail" in name:
        return True
    if str(attrs.get("openinference.span.kind", "")).upper() == "GUARDRAIL":
        return True
    return any(k.startswith(("guardrail.", "gen_ai.guardrail.")) for k in attrs)


def _tripped(row: dict[str, Any], attrs: dict[str, Any]) -> bool:
    if any(attrs.get(k) in (True, "true", "True", 1) for k in TRIP_KEYS):
        return True
    return str(row.get("status") or "").lower() == "error"


def _has_evaluation_event(events: list[Any]) -> bool:
    for event in events:
        name = str(event.get("name", "") if isinstance(event, dict) else "").lower()
        if "guardrail" in name or name.startswith("gen_ai.evaluation"):
            return True
    return False


def _arguments(attrs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    for key in ARGUMENT_KEYS:
        if key in attrs:
            value = _json(attrs[key])
            args = value if isinstance(value, dict) else {"value": value}
            redacted = REDACTED_MARK in orjson.dumps(args, default=str).decode()
            return args, redacted
    return {}, False


def run_actions(run: dict[str, Any], spans: Sequence[dict[str, Any]], tenant: str) -> RunActions:
    """The actions of one trace (``run`` is its journey_runs row, or a summary with journey)."""
    by_id = {str(s["span_id"]): s for s in spans}
    attrs_of = {sid: _attrs(s) for sid, s in by_id.items()}

    def depth(span_id: str) -> int:
        n, seen, current = 0, set(), by_id.get(span_id)
        while current is not None and current["span_id"] not in seen:
            seen.add(current["span_id"])
            if current.get("operation") == "agent":
                n += 1
            current = by_id.get(str(current.get("parent_span_id") or ""))
        return n

    guard_parents: set[str] = set()
    trips = checks = 0
    for sid, s in by_id.items():
        if _is_guardrail(s, attrs_of[sid]):
            checks += 1
            trips += _tripped(s, attrs_of[sid])
            guard_parents.add(str(s.get("parent_span_id") or ""))
    agent, agent_depth = None, 1 << 30
    actions: list[Action] = []
    for sid, s in by_id.items():
        op = s.get("operation")
        attrs = attrs_of[sid]
        if op == "agent" and attrs.get("gen_ai.agent.name"):
            d = depth(sid)
            if d < agent_depth:
                agent, agent_depth = str(attrs["gen_ai.agent.name"]), d
        if op == "execute_tool":
            args, redacted = _arguments(attrs)
            name = str(s.get("tool_name") or attrs.get("gen_ai.tool.name") or s.get("name") or "")
            actions.append(Action("tool", name, args, depth=depth(sid), start_ns=int(s["start_ns"]), span_id=sid,
                                  args_redacted=redacted))
        elif op in MODEL_OPERATIONS:
            guarded = (sid in guard_parents or str(s.get("parent_span_id") or "") in guard_parents
                       or _has_evaluation_event(_events(s)))
            tokens = int(s.get("input_tokens") or 0) + int(s.get("output_tokens") or 0)
            model = str(s.get("response_model") or s.get("request_model") or s.get("name") or "")
            actions.append(Action("model", model, {}, tokens, float(s.get("cost_usd") or 0.0), depth(sid),
                                  int(s["start_ns"]), sid, guarded))
    roots = [s for s in spans if s.get("is_root")]
    root = roots[0] if roots else None
    start = int(run.get("run_start_ns") or (root or {}).get("start_ns") or min((int(s["start_ns"]) for s in spans), default=0))
    ctx = RunContext(
        tenant=tenant, journey=run.get("journey") or (root or {}).get("journey"),
        service=run.get("root_service") or (root or {}).get("service"), agent=agent,
        trace_id=str(run.get("trace_id") or (spans[0]["trace_id"] if spans and "trace_id" in spans[0] else "")),
        start_ns=start,
        session=str(run.get("session_id") or next((s["session_id"] for s in spans if s.get("session_id")), "")) or None,
    )
    actions.sort(key=lambda a: (a.start_ns, a.span_id))
    return RunActions(ctx, actions, trips, checks)


def group_traces(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Span rows by trace id (for OTLP files, where one request may hold parts of many traces)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(str(row["trace_id"]), []).append(row)
    return out
