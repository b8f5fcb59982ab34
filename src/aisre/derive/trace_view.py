"""A trace as people read it: span tree in waterfall order, with GenAI details pulled out
of whichever convention the instrumentation spoke."""

from __future__ import annotations

import re
from typing import Any

import orjson

from aisre.core.rows import JourneyRun, TraceRun
from aisre.core.timefmt import rfc3339

# Prompts and completions, newest conventions first.
# Mastra's model-call spans carry no input: its agent_step span holds the step's messages.
_INPUT_MESSAGE_KEYS = ("gen_ai.input.messages", "gen_ai.prompt", "ai.prompt.messages", "mastra.model_step.input")
_OUTPUT_MESSAGE_KEYS = ("gen_ai.output.messages", "gen_ai.completion")
# Vercel AI SDK completions: the text, else the tool calls the model asked for.
_AI_SDK_OUTPUTS = ("ai.response.text", "ai.response.toolCalls", "ai.response.object")
_SYSTEM_KEYS = ("gen_ai.system_instructions",)
_INDEXED_PROMPT = re.compile(r"^gen_ai\.prompt\.(\d+)\.(role|content)$")
_INDEXED_COMPLETION = re.compile(r"^gen_ai\.completion\.(\d+)\.(role|content)$")
_OPENINFERENCE_IN = re.compile(r"^llm\.input_messages\.(\d+)\.message\.(role|content)$")
_OPENINFERENCE_OUT = re.compile(r"^llm\.output_messages\.(\d+)\.message\.(role|content)$")
# OpenInference tool calls inside a message: ...message.tool_calls.M.tool_call.function.name.
_OPENINFERENCE_TOOL_CALL = re.compile(
    r"^llm\.(input|output)_messages\.(\d+)\.message\.tool_calls\.(\d+)\.tool_call\.(id|function\.name|function\.arguments)$"
)
_OPENINFERENCE_DOC = re.compile(r"^retrieval\.documents\.(\d+)\.document\.(id|content|score)$")
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}

SPAN_FIELDS = (
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "service",
    "scope",
    "status",
    "status_message",
    "operation",
    "provider",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_usd",
    "http_status",
    "retry_attempt",
    "error_type",
    "tool_name",
    "service_version",
    "prompt_name",
    "prompt_version",
)


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _indexed(attrs: dict[str, Any], pattern: re.Pattern[str]) -> list[dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        match = pattern.match(key)
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return [found[i] for i in sorted(found)]


def _messages(attrs: dict[str, Any], keys: tuple[str, ...], *patterns: re.Pattern[str]) -> Any:
    for key in keys:
        if key in attrs:
            return _json(attrs[key])
    for pattern in patterns:
        indexed = _indexed(attrs, pattern)
        if indexed:
            return indexed
    return None


def _with_openinference_tool_calls(attrs: dict[str, Any], messages: Any, direction: str) -> Any:
    """OpenInference messages with the tool calls the model asked for put back in them
    ({"role": "assistant", "tool_calls": [{"id", "name", "arguments"}]})."""
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    for key, value in attrs.items():
        match = _OPENINFERENCE_TOOL_CALL.match(key)
        if match and match.group(1) == direction:
            field = match.group(4).removeprefix("function.")
            calls.setdefault(int(match.group(2)), {}).setdefault(int(match.group(3)), {})[field] = (
                _json(value) if field == "arguments" else value
            )
    if not calls or not isinstance(messages, list):
        return messages
    out = [dict(m) if isinstance(m, dict) else m for m in messages]
    for index, by_call in calls.items():
        if index < len(out) and isinstance(out[index], dict):
            out[index]["tool_calls"] = [by_call[i] for i in sorted(by_call)]
    return out


def _tool_message(value: Any) -> dict[str, Any] | None:
    """The fields of a LangChain ToolMessage as instrumentations dump it: OpenInference's
    ``{"type": "tool", "data": {...}}``, LangChain's serialised ``{"lc": 1, "id": [..,
    "ToolMessage"], "kwargs": {...}}``, or OpenLLMetry's ``{"output": <either>}``."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("output"), dict):
        value = value["output"]
    if value.get("type") == "tool" and isinstance(value.get("data"), dict):
        return dict(value["data"])
    ids = value.get("id")
    if value.get("lc") and isinstance(ids, list) and ids[-1:] == ["ToolMessage"] and isinstance(value.get("kwargs"), dict):
        return dict(value["kwargs"])
    return None


def _langchain_tool_io(details: dict[str, Any]) -> None:
    """A LangChain tool run's callback payloads as the call's arguments and result: the
    ToolMessage's content is the result, OpenLLMetry's ``inputs`` the arguments."""
    message = _tool_message(details.get("tool_result"))
    if message is not None:
        details["tool_result"] = _json(message.get("content"))
        if message.get("tool_call_id"):
            details["tool_call_id"] = message["tool_call_id"]
    arguments = details.get("tool_arguments")
    if isinstance(arguments, dict) and "input_str" in arguments and isinstance(arguments.get("inputs"), dict):
        details["tool_arguments"] = arguments["inputs"]
        call_id = (arguments.get("kwargs") or {}).get("tool_call_id")
        if call_id and "tool_call_id" not in details:
            details["tool_call_id"] = call_id


def genai_details(attrs: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Prompts, completions, tool call, retrieval documents and errors found on one span."""
    details: dict[str, Any] = {}
    system = _messages(attrs, _SYSTEM_KEYS)
    if system is not None:
        details["system_instructions"] = system
    inputs = _messages(attrs, _INPUT_MESSAGE_KEYS, _INDEXED_PROMPT, _OPENINFERENCE_IN)
    outputs = _messages(attrs, _OUTPUT_MESSAGE_KEYS, _INDEXED_COMPLETION, _OPENINFERENCE_OUT)
    if "openinference.span.kind" in attrs:
        inputs = _with_openinference_tool_calls(attrs, inputs, "input")
        outputs = _with_openinference_tool_calls(attrs, outputs, "output")
    event_inputs = []
    for event in events:
        role = _MESSAGE_EVENTS.get(event.get("name", ""))
        if role:
            event_attrs = event.get("attributes") or {}
            event_inputs.append({"role": role, "content": _json(event_attrs.get("content", event_attrs))})
        elif event.get("name") == "gen_ai.choice" and outputs is None:
            outputs = [_json((event.get("attributes") or {}).get("message", event.get("attributes")))]
    if attrs.get("gen_ai.operation.name") == "execute_tool" and "gen_ai.tool.call.arguments" not in attrs:
        # Strands (older GenAI events): a tool span's gen_ai.tool.message event holds the
        # call's arguments and its gen_ai.choice event the result.
        for event in events:
            event_attrs = event.get("attributes") or {}
            if event.get("name") == "gen_ai.tool.message" and "content" in event_attrs:
                details["tool_arguments"] = _json(event_attrs["content"])
            elif event.get("name") == "gen_ai.choice" and "message" in event_attrs:
                details["tool_result"] = _json(event_attrs["message"])
        if "tool_arguments" in details:
            event_inputs = []  # shown as the arguments, not as a message
        if "tool_result" in details and not any(k in attrs for k in _OUTPUT_MESSAGE_KEYS):
            outputs = None  # the result came from the gen_ai.choice event
    if inputs is None and event_inputs:
        inputs = event_inputs
    if outputs is None:
        for key in _AI_SDK_OUTPUTS:
            if attrs.get(key):
                value = _json(attrs[key])
                outputs = [{"role": "assistant", "content": value}] if isinstance(value, str) else value
                break
    if inputs is not None:
        details["input_messages"] = inputs
    if outputs is not None:
        details["output_messages"] = outputs
    if "gen_ai.tool.definitions" in attrs:
        details["tool_definitions"] = _json(attrs["gen_ai.tool.definitions"])
    openinference_tool = attrs.get("openinference.span.kind") == "TOOL"
    if openinference_tool:
        # OpenInference: the call's arguments and result are the span's input and output;
        # tool.parameters is the tool's parameter schema, a definition.
        for key, name in (("input.value", "tool_arguments"), ("output.value", "tool_result")):
            if key in attrs:
                details[name] = _json(attrs[key])
        if "tool.parameters" in attrs:
            details["tool_definitions"] = [{
                "name": attrs.get("tool.name"), "description": attrs.get("tool.description"),
                "parameters": _json(attrs["tool.parameters"]),
            }]
    for key, name in (
        ("gen_ai.tool.call.arguments", "tool_arguments"),
        ("gen_ai.tool.call.result", "tool_result"),
        ("gen_ai.tool.call.id", "tool_call_id"),
        ("ai.toolCall.args", "tool_arguments"),
        ("ai.toolCall.result", "tool_result"),
        ("ai.toolCall.id", "tool_call_id"),
    ):
        if key in attrs and name not in details:
            details[name] = _json(attrs[key])
    _langchain_tool_io(details)
    documents = _json(attrs.get("aisre.retrieval.documents")) or _indexed(attrs, _OPENINFERENCE_DOC)
    if documents:
        details["retrieval_documents"] = documents
    for key in ("db.query.text", "input.value"):
        if key in attrs and "query" not in details and not openinference_tool:
            details["query"] = attrs[key]
    errors = [
        {
            "type": (event.get("attributes") or {}).get("exception.type"),
            "message": (event.get("attributes") or {}).get("exception.message"),
            "stacktrace": (event.get("attributes") or {}).get("exception.stacktrace"),
        }
        for event in events
        if event.get("name") == "exception"
    ]
    if errors:
        details["errors"] = errors
    return details


def trace_document(run: TraceRun, spans: list[dict[str, Any]]) -> dict[str, Any]:
    """The API's trace shape: run summary plus spans in depth-first waterfall order."""
    by_parent: dict[str, list[dict[str, Any]]] = {}
    ids = {span["span_id"] for span in spans}
    for span in spans:
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else ""
        by_parent.setdefault(parent, []).append(span)
    ordered: list[tuple[dict[str, Any], int]] = []
    seen: set[str] = set()

    def walk(parent: str, depth: int) -> None:
        for child in sorted(by_parent.get(parent, []), key=lambda s: (s["start_ns"], s["span_id"])):
            if child["span_id"] in seen:
                continue  # a span sent twice is shown once
            seen.add(child["span_id"])
            ordered.append((child, depth))
            walk(child["span_id"], depth + 1)

    walk("", 0)
    trace_start = min((s["start_ns"] for s in spans), default=0)
    out_spans = []
    for span, depth in ordered:
        attrs = _json(span.get("attributes")) or {}
        events = _json(span.get("events")) or []
        item = {field: span.get(field) for field in SPAN_FIELDS}
        item.update(
            depth=depth,
            orphan=bool(span["parent_span_id"]) and span["parent_span_id"] not in ids,
            start_time=rfc3339(span["start_ns"]),
            end_time=rfc3339(span["end_ns"]),
            offset_ms=(span["start_ns"] - trace_start) / 1e6,
            duration_ms=span["duration_ns"] / 1e6,
            attributes=attrs,
            resource=_json(span.get("resource")) or {},
            events=[
                {"name": e.get("name"), "time": rfc3339(e.get("time_ns")), "attributes": e.get("attributes") or {}}
                for e in events
            ],
            links=_json(span.get("links")) or [],
            genai=genai_details(attrs, events),
        )
        out_spans.append(item)
    _arguments_from_the_model_calls(out_spans)
    document = run_document(run)
    document["spans"] = out_spans
    return document


def _arguments_from_the_model_calls(spans: list[dict[str, Any]]) -> None:
    """Tool spans that sent a bare value as their arguments (OpenInference's LangChain TOOL span
    has the single argument's value only) show the arguments object of the model's tool call
    with the same call id, keeping what the span sent in ``tool_arguments_as_sent``."""
    asked: dict[str, Any] = {}
    for span in spans:
        for message in span["genai"].get("output_messages") or []:
            for call in (message.get("tool_calls") or []) if isinstance(message, dict) else []:
                if isinstance(call, dict) and call.get("id") and isinstance(call.get("arguments"), dict):
                    asked[str(call["id"])] = call["arguments"]
    for span in spans:
        genai = span["genai"]
        call_id = genai.get("tool_call_id")
        if call_id in asked and "tool_arguments" in genai and not isinstance(genai["tool_arguments"], dict):
            genai["tool_arguments_as_sent"] = genai["tool_arguments"]
            genai["tool_arguments"] = asked[call_id]


def run_document(run: JourneyRun) -> dict[str, Any]:
    """One journey run as the API shows it (times RFC 3339, durations in ms)."""
    return {
        "trace_id": run["trace_id"],
        "journey": run["journey"],
        "outcome": run["outcome"],
        "failure_reason": run.get("failure_reason"),
        "start_time": rfc3339(run["run_start_ns"]),
        "duration_ms": run["duration_ns"] / 1e6 if run["duration_ns"] is not None else None,
        "root_span": run.get("root_name"),
        "service": run.get("root_service"),
        "span_count": run.get("span_count"),
        "error_spans": run.get("error_spans"),
        "llm_calls": run.get("llm_calls"),
        "llm_errors": run.get("llm_errors"),
        "tool_calls": run.get("tool_calls"),
        "retrieval_calls": run.get("retrieval_calls"),
        "agent_steps": run.get("agent_steps"),
        "retries": run.get("retries"),
        "input_tokens": run.get("input_tokens"),
        "output_tokens": run.get("output_tokens"),
        "cached_input_tokens": run.get("cached_input_tokens"),
        "cost_usd": run.get("cost_usd"),
        "service_version": run.get("service_version"),
        "prompt_name": run.get("prompt_name"),
        "prompt_version": run.get("prompt_version"),
        "environment": run.get("environment"),
        "models": list(run.get("models") or []),
        "user_id": run.get("user_id"),
        "session_id": run.get("session_id"),
    }
