"""A small helper an agent runtime uses to ask aisre before each tool or model call::

    from aisre.present.policy_client import PolicyClient

    guard = PolicyClient("http://aisre:4318", key=INGEST_KEY, journey="triage", agent="triage-agent")
    answer = guard.check_tool("send_email", {"to": to, "body": body})
    if answer["result"] == "deny":
        raise PermissionError("; ".join(r["message"] for r in answer["reasons"]))

It keeps the run's history (what the policy's budgets, loops and sequences read) and sends it
with each question, with the current OpenTelemetry trace id when there is one, so the decision
record links to the trace. ``mode="monitor"`` records what would be denied but lets the run go
on (its denied calls join the history, as they ran). If aisre cannot be reached the answer is
deny (``fail_open=True`` allows instead), with the reason said.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import httpx


def _current_trace_id() -> str:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - the SDK is a dependency; a runtime may lack it
        return ""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else ""


class PolicyClient:
    """Asks ``POST /api/policy/decide`` for one run, keeping its history."""

    def __init__(
        self, url: str, *, key: str | None = None, journey: str | None = None, service: str | None = None,
        agent: str | None = None, trace_id: str | None = None, session_id: str | None = None, mode: Literal["enforce", "monitor"] = "enforce",
        fail_open: bool = False, timeout_s: float = 2.0, client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.context: dict[str, Any] = {"journey": journey, "service": service, "agent": agent,
                                        "session_id": session_id, "run_start_ns": time.time_ns()}
        self.trace_id = trace_id
        self.mode = mode
        self.fail_open = fail_open
        self.history: list[dict[str, Any]] = []
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = client or httpx.Client(timeout=timeout_s, headers=headers)

    def check_tool(self, name: str, args: dict[str, Any] | None = None, *, depth: int = 0) -> dict[str, Any]:
        """Ask before calling tool ``name`` with ``args``."""
        return self._ask({"type": "tool", "name": name, "args": args or {}, "depth": depth})

    def check_model(self, model: str, *, tokens: int = 0, cost_usd: float = 0.0, guarded: bool = False,
                    depth: int = 0) -> dict[str, Any]:
        """Ask before a model call (``tokens``/``cost_usd``: its estimate; ``guarded``: a guardrail runs on it)."""
        return self._ask({"type": "model", "name": model, "tokens": tokens, "cost_usd": cost_usd,
                          "guarded": guarded, "depth": depth})

    def _ask(self, action: dict[str, Any]) -> dict[str, Any]:
        action = {**action, "start_ns": time.time_ns()}
        body = {**{k: v for k, v in self.context.items() if v is not None},
                "trace_id": self.trace_id or _current_trace_id(), "action": action, "history": self.history}
        try:
            response = self._client.post(self.url + "/api/policy/decide", json=body)
            response.raise_for_status()
            answer: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            result = "allow" if self.fail_open else "deny"
            answer = {"result": result, "reasons": [{"rule": "", "message": f"aisre policy service unavailable: {exc}"}],
                      "unavailable": True}
        if answer["result"] == "allow" or self.mode == "monitor":
            self.history.append(action)
        if self.mode == "monitor":
            answer = {**answer, "enforced": False}
        return answer

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()
