"""Hand-built agent runs as OTLP requests: a root, an agent span, and tool, model and
guardrail steps in order, each with known arguments, so every policy verdict is known."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

S = 10**9
T0 = 1_790_000_000 * S


def kv(key: str, value: object) -> KeyValue:
    out = KeyValue(key=key)
    if isinstance(value, bool):
        out.value.bool_value = value
    elif isinstance(value, int):
        out.value.int_value = value
    elif isinstance(value, float):
        out.value.double_value = value
    else:
        out.value.string_value = str(value)
    return out


@dataclass
class Step:
    """One step of a run: ``tool`` (name, args), ``model`` (name, tokens) or ``guardrail`` (name, tripped)."""

    kind: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0
    tripped: bool = False


def tool(name: str, **args: Any) -> Step:
    return Step("tool", name, args)


def model(name: str = "gpt-4o-mini", tokens: int = 100) -> Step:
    return Step("model", name, tokens=tokens)


def guardrail(name: str = "input-guardrail", tripped: bool = False) -> Step:
    return Step("guardrail", name, tripped=tripped)


@dataclass
class Run:
    """A built run: its trace id, the spans (root first) and the root."""

    trace_id: str
    spans: list[Span]
    step_span_ids: list[str]
    version: str = "1.0"

    def request(self, spans: Sequence[Span] | None = None) -> ExportTraceServiceRequest:
        """An export request holding ``spans`` (all of them by default)."""
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.extend([kv("service.name", "triage-svc"), kv("service.version", self.version)])
        rs.scope_spans.add().spans.extend(spans if spans is not None else self.spans)
        return request


def agent_run(steps: Sequence[Step], *, journey: str = "triage", agent: str = "triage-agent", start_ns: int = T0,
              step_ns: int = S, version: str = "1.0", session: str | None = None) -> Run:
    """A run: root (journey) → agent span (agent name) → one span per step, ``step_ns`` apart.
    A guardrail step is a child of the model call that follows it."""
    trace_id, root_id, agent_id = os.urandom(16), os.urandom(8), os.urandom(8)
    end = start_ns + (len(steps) + 2) * step_ns
    spans = [
        Span(trace_id=trace_id, span_id=root_id, name="POST /triage", kind=Span.SPAN_KIND_SERVER,
             start_time_unix_nano=start_ns, end_time_unix_nano=end,
             attributes=[kv("aisre.journey", journey), *([kv("session.id", session)] if session else [])]),
        Span(trace_id=trace_id, span_id=agent_id, parent_span_id=root_id, name=f"invoke_agent {agent}",
             start_time_unix_nano=start_ns + 1, end_time_unix_nano=end - 1,
             attributes=[kv("gen_ai.operation.name", "invoke_agent"), kv("gen_ai.agent.name", agent)]),
    ]
    ids: list[str] = []
    pending_guard: list[Step] = []
    for i, step in enumerate(steps):
        t = start_ns + (i + 1) * step_ns
        sid = os.urandom(8)
        ids.append(sid.hex())
        if step.kind == "guardrail":
            pending_guard.append(step)
            span = Span(trace_id=trace_id, span_id=sid, parent_span_id=agent_id, name=f"guardrail {step.name}",
                        start_time_unix_nano=t, end_time_unix_nano=t + step_ns // 2,
                        attributes=[kv("guardrail.name", step.name), kv("guardrail.triggered", step.tripped)])
            spans.append(span)
            continue
        if step.kind == "tool":
            attrs = [kv("gen_ai.operation.name", "execute_tool"), kv("gen_ai.tool.name", step.name),
                     kv("gen_ai.tool.call.arguments", json.dumps(step.args))]
            name = f"execute_tool {step.name}"
        else:
            attrs = [kv("gen_ai.operation.name", "chat"), kv("gen_ai.provider.name", "openai"),
                     kv("gen_ai.request.model", step.name), kv("gen_ai.usage.input_tokens", step.tokens),
                     kv("gen_ai.usage.output_tokens", 0)]
            name = f"chat {step.name}"
        spans.append(Span(trace_id=trace_id, span_id=sid, parent_span_id=agent_id, name=name,
                          start_time_unix_nano=t, end_time_unix_nano=t + step_ns // 2, attributes=attrs,
                          status=Status(code=Status.STATUS_CODE_OK)))
        if step.kind == "model" and pending_guard:
            # The guardrail spans seen just before belong to this model call.
            for g in spans:
                if g.name.startswith("guardrail ") and g.parent_span_id == agent_id:
                    g.parent_span_id = sid
            pending_guard.clear()
    return Run(trace_id.hex(), spans, ids, version)
