"""Flatten an OTLP export request into typed span rows (DESIGN §2-3).

This is the hot path of ingest: one pass over each span's attributes builds a plain
dict, the typed columns are looked up in it, and the dict is kept whole as JSON.
Spans that are unusable are rejected one by one with a reason; the rest go on.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aisre.core.errors import PermanentError
from aisre.core.schema import (
    LLM_OPERATIONS,
    RESOURCE_ARROW_SCHEMA,
    SCORE_ARROW_SCHEMA,
    SPAN_ARROW_SCHEMA,
    SPAN_COLUMN_NAMES,
)
from aisre.normalize import conventions as cv
from aisre.normalize.duplicates import CallNote, merge_duplicate_calls
from aisre.normalize.journeys import JourneyRule
from aisre.normalize.prices import PriceCatalog, default_catalog
from aisre.normalize.redaction import (
    ATTRIBUTES_DROPPED_ATTRIBUTE,
    ATTRS_DROPPED,
    CONTENT_DROPPED,
    DROPPED_ATTRIBUTE,
    HASHED,
    HASHED_ATTRIBUTE,
    REDACTED,
    REDACTIONS_ATTRIBUTE,
    ContentFilter,
)
from aisre.normalize.runs import trace_partials

_ZERO_TRACE = b"\x00" * 16
_ZERO_SPAN = b"\x00" * 8
_EMPTY_LIST_JSON = "[]"
_MAX_REASONS = 5


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may hold (settings max_span_attributes, max_attribute_chars,
    max_value_depth, max_spans_per_request)."""

    max_attributes: int = 1000
    max_value_chars: int = 1_000_000
    max_depth: int = 16
    max_spans: int = 100_000


DEFAULT_LIMITS = Limits()
TRUNCATED_ATTRIBUTE = "aisre.truncated"


@dataclass
class ContentCounts:
    """What ingest changed in accepted spans' values: redacted (a detector's finding
    replaced, or a value hashed by the attribute rules: either way the clear value is gone),
    dropped (content under content_capture=drop, attributes the rules drop), truncated
    (max_attribute_chars); ``hashed`` says how many of ``redacted`` were hashes."""

    redacted: int = 0
    dropped: int = 0
    truncated: int = 0
    hashed: int = 0


@dataclass
class FlatBatch:
    """Typed span rows ready for the store, plus what was refused and why."""

    table: pa.Table
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    resources: pa.Table | None = None
    traces: pa.Table | None = None
    scores: pa.Table | None = None
    warnings: list[str] = field(default_factory=list)
    content: ContentCounts = field(default_factory=ContentCounts)

    @property
    def accepted(self) -> int:
        return int(self.table.num_rows)

    def message(self) -> str:
        """One line for OTLP partial_success.error_message (OTLP lets it carry warnings too)."""
        parts = []
        if self.rejected:
            shown = "; ".join(self.reasons[:_MAX_REASONS])
            more = self.rejected - min(len(self.reasons), _MAX_REASONS)
            suffix = f"; and {more} more" if more > 0 else ""
            parts.append(f"rejected {self.rejected} span(s): {shown}{suffix}")
        if self.warnings:
            parts.append("accepted with changes: " + "; ".join(self.warnings[:_MAX_REASONS]))
        return " | ".join(parts)


class _TooDeep(Exception):
    pass


def any_value(value: Any, max_depth: int = DEFAULT_LIMITS.max_depth) -> Any:
    """An OTLP AnyValue as a plain Python value (bytes become base64 text); arrays and
    kvlists nested deeper than ``max_depth`` raise _TooDeep."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bool_value":
        return value.bool_value
    if which == "array_value":
        if max_depth <= 0:
            raise _TooDeep
        return [any_value(v, max_depth - 1) for v in value.array_value.values]
    if which == "kvlist_value":
        if max_depth <= 0:
            raise _TooDeep
        return {kv.key: any_value(kv.value, max_depth - 1) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def attributes_dict(key_values: Iterable[Any], max_depth: int = DEFAULT_LIMITS.max_depth) -> dict[str, Any]:
    """Repeated KeyValue → dict, keeping every attribute."""
    out: dict[str, Any] = {}
    for kv in key_values:
        value = kv.value
        which = value.WhichOneof("value")
        # The common scalar cases inline: this loop runs ~20 times per span.
        if which == "string_value":
            out[kv.key] = value.string_value
        elif which == "int_value":
            out[kv.key] = value.int_value
        elif which == "double_value":
            out[kv.key] = value.double_value
        elif which == "bool_value":
            out[kv.key] = value.bool_value
        else:
            out[kv.key] = any_value(value, max_depth)
    return out


def _checked_attributes(key_values: Any, limits: Limits, what: str) -> dict[str, Any]:
    """attributes_dict, refusing the span when ``what`` has too many or too deep attributes."""
    if len(key_values) > limits.max_attributes:
        raise _BadSpan(
            f"{what} has {len(key_values)} attributes; the limit is {limits.max_attributes} (max_span_attributes)"
        )
    try:
        return attributes_dict(key_values, limits.max_depth)
    except _TooDeep:
        raise _BadSpan(
            f"{what} has an attribute value nested deeper than {limits.max_depth} levels (max_value_depth)"
        ) from None


def _truncate(value: Any, limit: int) -> tuple[Any, int]:
    """``value`` with every string longer than ``limit`` cut to it, and how many were cut."""
    if isinstance(value, str):
        return (value[:limit], 1) if len(value) > limit else (value, 0)
    if isinstance(value, list):
        out, total = [], 0
        for item in value:
            new, count = _truncate(item, limit)
            out.append(new)
            total += count
        return out, total
    if isinstance(value, dict):
        mapped, total = {}, 0
        for key, item in value.items():
            new, count = _truncate(item, limit)
            mapped[key] = new
            total += count
        return mapped, total
    return value, 0


def _dump_limited(obj: Any, limit: int) -> tuple[str, int]:
    """JSON of ``obj``; strings over ``limit`` characters are truncated (rare: only a document
    longer than the limit can hold one)."""
    text = orjson.dumps(obj).decode()
    if len(text) <= limit:
        return text, 0
    cut, count = _truncate(obj, limit)
    return (orjson.dumps(cut).decode(), count) if count else (text, 0)


def _first(attrs: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


class _BadSpan(Exception):
    pass


def _operation(v: list[Any]) -> str:
    if v[S_LOGFIRE_SPAN_TYPE] == "log":
        return "other"
    name = v[S_OPERATION_NAME]
    if isinstance(name, str):
        mapped = cv.GENAI_OPERATIONS.get(name.lower())
        if mapped:
            return mapped
    kind = v[S_OI_KIND]
    if isinstance(kind, str):
        mapped = cv.OPENINFERENCE_OPERATIONS.get(kind.upper())
        if mapped:
            return mapped
    ai_operation = v[S_AI_OPERATION_ID]
    if isinstance(ai_operation, str):
        return cv.ai_sdk_operation(ai_operation)
    request_type = v[S_LLM_REQUEST_TYPE]
    if isinstance(request_type, str):
        mapped = cv.LLM_REQUEST_TYPES.get(request_type.lower())
        if mapped:
            return mapped
    traceloop = v[S_TRACELOOP_KIND]
    if isinstance(traceloop, str):
        mapped = cv.TRACELOOP_OPERATIONS.get(traceloop.lower())
        if mapped:
            return mapped
    db_system = v[S_DB_SYSTEM]
    if isinstance(db_system, str) and db_system.lower() in cv.VECTOR_STORES:
        return "retrieval"
    return "other"


def _invocation_model(raw: Any) -> str | None:
    if not isinstance(raw, str) or '"model"' not in raw:
        return None
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    model = params.get("model") if isinstance(params, dict) else None
    return model if isinstance(model, str) else None


def _status_code(raw: Any, status_message: str, exc_message: str | None) -> int | None:
    """HTTP status from the attribute, else from "Error code: 429 - ..." in a message."""
    if type(raw) is int:
        return raw if 100 <= raw <= 599 else None
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) == 3:
        return int(raw)
    for message in (status_message, exc_message):
        if message:
            match = cv.HTTP_STATUS_IN_MESSAGE.search(message)
            if match:
                return int(match.group(1))
    return None


def _attribute_score(
    scores: list[tuple[Any, ...]], tenant: str, trace_id: str, span_id: str, name: str, value: Any, time_ns: int, received: int
) -> None:
    # A number is a score value, a string a categorical label; anything else is not a score.
    if isinstance(value, bool) or not name:
        return
    if isinstance(value, int | float):
        if math.isfinite(value):
            scores.append((tenant, trace_id, span_id, name, float(value), None, "span", None, time_ns, received))
    elif isinstance(value, str) and value:
        scores.append((tenant, trace_id, span_id, name, None, value, "span", None, time_ns, received))


def _events(
    span: Any,
    scores: list[tuple[Any, ...]] | None = None,
    tenant: str = "",
    trace_id: str = "",
    span_id: str = "",
    received: int = 0,
    content: ContentFilter | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """(events, exception type, exception message); evaluation events become scores."""
    if not span.events:
        return [], None, None
    out = []
    exc_type = exc_message = None
    for event in span.events:
        if event.time_unix_nano > _MAX_NS:
            raise _BadSpan(f"event {event.name!r} time_unix_nano {event.time_unix_nano} is past the year 2262: not a time")
        attrs = _checked_attributes(event.attributes, limits, f"event {event.name!r}")
        if content is not None and attrs:
            content.event(event.name, attrs)
        if event.name == "exception":
            exc_type = exc_type or _text(attrs.get("exception.type"))
            exc_message = exc_message or _text(attrs.get("exception.message"))
        elif event.name == "gen_ai.evaluation.result" and scores is not None:
            name = _text(attrs.get("gen_ai.evaluation.name"))
            value = attrs.get("gen_ai.evaluation.score.value")
            label = _text(attrs.get("gen_ai.evaluation.score.label"))
            number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) else None
            if name and (number is not None or label):
                scores.append((
                    tenant, trace_id, span_id, name, number, label, "span",
                    _text(attrs.get("gen_ai.evaluation.explanation")), event.time_unix_nano, received,
                ))
        out.append({"name": event.name, "time_ns": event.time_unix_nano, "attributes": attrs})
    return out, exc_type, exc_message


def _links(span: Any, content: ContentFilter | None = None, limits: Limits = DEFAULT_LIMITS) -> list[dict[str, Any]]:
    links = []
    for link in span.links:
        attrs = _checked_attributes(link.attributes, limits, "a link")
        if content is not None and attrs:
            content.attributes(attrs)
        links.append({"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(), "attributes": attrs})
    return links


# Every attribute name a typed column reads, mapped to (slot, priority): one set
# intersection per span finds the few that are present, instead of probing each
# candidate name in turn.
_SLOT_NAMES = (
    "journey", "outcome", "operation_name", "openinference_kind", "llm_request_type",
    "traceloop_kind", "db_system", "provider", "request_model", "response_model",
    "invocation_parameters", "input_tokens", "output_tokens", "cached_input_tokens",
    "prompt_name", "prompt_version", "service_version", "http_status", "resend_count",
    "error_type", "tool_name", "user_id", "session_id", "ai_operation_id", "logfire_span_type",
    "cache_write_tokens",
)
_SLOT = {name: i for i, name in enumerate(_SLOT_NAMES)}
_SLOT_KEYS: dict[str, tuple[str, ...]] = {
    "journey": cv.JOURNEY,
    "outcome": cv.OUTCOME,
    "operation_name": (cv.OPERATION_NAME,),
    "openinference_kind": (cv.OPENINFERENCE_KIND,),
    "llm_request_type": (cv.LLM_REQUEST_TYPE,),
    "traceloop_kind": (cv.TRACELOOP_KIND,),
    "db_system": cv.DB_SYSTEM,
    "provider": cv.PROVIDER,
    "request_model": cv.REQUEST_MODEL,
    "response_model": cv.RESPONSE_MODEL,
    "invocation_parameters": (cv.INVOCATION_PARAMETERS,),
    "input_tokens": cv.INPUT_TOKENS,
    "output_tokens": cv.OUTPUT_TOKENS,
    "cached_input_tokens": cv.CACHED_INPUT_TOKENS,
    "prompt_name": cv.PROMPT_NAME,
    "prompt_version": cv.PROMPT_VERSION,
    "service_version": cv.SERVICE_VERSION,
    "http_status": cv.HTTP_STATUS,
    "resend_count": cv.RESEND_COUNT,
    "error_type": cv.ERROR_TYPE,
    "tool_name": cv.TOOL_NAME,
    "user_id": cv.USER_ID,
    "session_id": cv.SESSION_ID,
    "ai_operation_id": (cv.AI_OPERATION_ID,),
    "logfire_span_type": (cv.LOGFIRE_SPAN_TYPE,),
    "cache_write_tokens": cv.CACHE_WRITE_INPUT_TOKENS,
}
_KEYMAP: dict[str, tuple[tuple[int, int], ...]] = {}
for _name, _keys in _SLOT_KEYS.items():
    for _priority, _key in enumerate(_keys):
        _KEYMAP[_key] = (*_KEYMAP.get(_key, ()), (_SLOT[_name], _priority))
_KNOWN = frozenset(_KEYMAP)
_NO_VALUES: tuple[Any, ...] = (None,) * len(_SLOT_NAMES)
(
    S_JOURNEY, S_OUTCOME, S_OPERATION_NAME, S_OI_KIND, S_LLM_REQUEST_TYPE, S_TRACELOOP_KIND,
    S_DB_SYSTEM, S_PROVIDER, S_REQUEST_MODEL, S_RESPONSE_MODEL, S_INVOCATION, S_INPUT_TOKENS,
    S_OUTPUT_TOKENS, S_CACHED_TOKENS, S_PROMPT_NAME, S_PROMPT_VERSION, S_SERVICE_VERSION,
    S_HTTP_STATUS, S_RESEND, S_ERROR_TYPE, S_TOOL_NAME, S_USER_ID, S_SESSION_ID, S_AI_OPERATION_ID,
    S_LOGFIRE_SPAN_TYPE, S_CACHE_WRITE_TOKENS,
) = range(len(_SLOT_NAMES))


# Slots whose column is text: a non-string value there (a number, a list) becomes text.
_TEXT_SLOTS = frozenset(
    _SLOT[name]
    for name in (
        "journey", "provider", "request_model", "response_model", "prompt_name",
        "prompt_version", "service_version", "error_type", "tool_name", "user_id", "session_id",
    )
)


def _known_values(attrs: dict[str, Any]) -> list[Any]:
    """Values of the typed-column attributes present in ``attrs``, first-listed name winning."""
    present = attrs.keys() & _KNOWN
    values = list(_NO_VALUES)
    if not present:
        return values
    ranks: dict[int, int] = {}
    for key in present:
        value = attrs[key]
        if value is None or value == "":
            continue
        for slot, rank in _KEYMAP[key]:
            if slot not in ranks or rank < ranks[slot]:
                ranks[slot] = rank
                values[slot] = value if type(value) is str or slot not in _TEXT_SLOTS else _text(value)
    return values


def flatten(
    request: ExportTraceServiceRequest,
    tenant: str,
    received_ns: int | None = None,
    journey_rules: tuple[JourneyRule, ...] = (),
    catalog: PriceCatalog | None = None,
    content: ContentFilter | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> FlatBatch:
    """Normalize every span of ``request``; bad spans are counted and explained, never raised.

    ``content`` redacts or drops prompt/completion/tool/retrieval content (None keeps it).
    A request over ``limits.max_spans`` is refused whole (PermanentError, 400); a span over
    the other limits is rejected alone, and over-long values are truncated with a warning.
    """
    total = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if total > limits.max_spans:
        raise PermanentError(
            f"request holds {total} spans; the limit is {limits.max_spans} (max_spans_per_request): "
            "send smaller batches"
        )
    received = received_ns if received_ns is not None else time.time_ns()
    prices = catalog if catalog is not None else default_catalog()
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    rejected = 0
    reasons: list[str] = []
    any_error = False

    resources: dict[int, str] = {}
    scores: list[tuple[Any, ...]] = []
    tally = [0]  # values truncated
    notes: dict[int, CallNote] = {}
    pending: list[CallNote | None] = [None]  # what _checked_row noted of the span it just read
    start = list(content.tally) if content is not None else [0, 0, 0, 0]
    for resource_spans in request.resource_spans:
        try:
            resource = _checked_attributes(resource_spans.resource.attributes, limits, "the resource")
        except _BadSpan as exc:
            # Every span of that resource is refused, with the resource's reason.
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    rejected += 1
                    if len(reasons) < _MAX_REASONS:
                        reasons.append(_describe(span, str(exc)))
            continue
        if content is not None and resource:
            content.resource(resource)  # before the resource id: it is a hash of what is stored
        resource, cut = _truncate(resource, limits.max_value_chars)
        tally[0] += cut
        resource_json = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
        resource_id = int.from_bytes(hashlib.blake2b(resource_json, digest_size=8).digest(), "big", signed=True)
        resources[resource_id] = resource_json.decode()
        context = (
            tenant,
            _text(resource.get(cv.SERVICE_NAME)) or "unknown_service",
            _text(_first(resource, cv.SERVICE_VERSION)),
            _text(_first(resource, cv.ENVIRONMENT)),
            resource_id,
            received,
            prices,
            scores,
            content,
            limits,
            tally,
            pending,
        )
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                try:
                    append(_row(span, scope, context))
                    if pending[0] is not None:
                        notes[len(rows) - 1] = pending[0]
                        pending[0] = None
                    if span.status.code == 2:
                        any_error = True
                except _BadSpan as exc:
                    rejected += 1
                    if len(reasons) < _MAX_REASONS:
                        reasons.append(_describe(span, str(exc)))

    if len(notes) > 1:
        merge_duplicate_calls(rows, notes, _pricer(prices))
    _mark_sibling_retries(rows, any_error)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in SPAN_COLUMN_NAMES]
    table = pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, SPAN_ARROW_SCHEMA, strict=True)],
        schema=SPAN_ARROW_SCHEMA,
    )
    resource_table = pa.Table.from_pydict(
        {"tenant": [tenant] * len(resources), "resource_id": list(resources), "resource": list(resources.values())},
        schema=RESOURCE_ARROW_SCHEMA,
    )
    score_columns = list(zip(*scores, strict=True)) if scores else [() for _ in SCORE_ARROW_SCHEMA]
    score_table = pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(score_columns, SCORE_ARROW_SCHEMA, strict=True)],
        schema=SCORE_ARROW_SCHEMA,
    )
    warnings = []
    if tally[0]:
        warnings.append(
            f"{tally[0]} value(s) longer than {limits.max_value_chars} characters were truncated "
            "(max_attribute_chars; counted in each span's aisre.truncated)"
        )
    changed = [now - then for now, then in zip(content.tally, start, strict=True)] if content is not None else start
    return FlatBatch(
        table=table, rejected=rejected, reasons=reasons, resources=resource_table,
        traces=trace_partials(rows, journey_rules), scores=score_table, warnings=warnings,
        content=ContentCounts(
            redacted=changed[REDACTED] + changed[HASHED],
            dropped=changed[CONTENT_DROPPED] + changed[ATTRS_DROPPED],
            truncated=tally[0],
            hashed=changed[HASHED],
        ),
    )


_PROVIDER_COL, _RESP_MODEL_COL, _IN_COL, _OUT_COL, _CACHED_COL = (
    SPAN_COLUMN_NAMES.index(name)
    for name in ("provider", "response_model", "input_tokens", "output_tokens", "cached_input_tokens")
)
_ATTRS_COL = SPAN_COLUMN_NAMES.index("attributes")


def _pricer(prices: PriceCatalog) -> Callable[[Sequence[Any], Sequence[Any]], tuple[float | None, str | None]]:
    """(cost, price version) of a row, as _checked_row prices a model call; cache writes are
    read from the attributes of ``usage_row``, the span the usage came from."""

    def price(row: Sequence[Any], usage_row: Sequence[Any]) -> tuple[float | None, str | None]:
        found, version = prices.lookup(row[_PROVIDER_COL], row[_RESP_MODEL_COL], row[_START])
        if found is None:
            return 0.0, None
        writes = _known_values(orjson.loads(usage_row[_ATTRS_COL]))[S_CACHE_WRITE_TOKENS]
        written = writes if type(writes) is int and writes >= 0 else None
        return found.cost(row[_IN_COL], row[_OUT_COL], row[_CACHED_COL], written), version

    return price


def _describe(span: Any, reason: str) -> str:
    span_id = span.span_id.hex() if len(span.span_id) == 8 else "?"
    return f"span {span_id!s} ({span.name or 'unnamed'}): {reason}"


_MAX_TOKENS = 1 << 40  # sums of counts this size stay far inside int64
_MAX_NS = (1 << 63) - 1  # int64 nanoseconds: up to the year 2262


def _token_count(raw: Any, label: str) -> int | None:
    """A token count: absent → None; negative, fractional, non-numeric or absurdly large →
    the span is refused."""
    if raw is None:
        return None
    count: int | None = None
    if type(raw) is int:
        count = raw
    elif (isinstance(raw, float) and raw.is_integer()) or (isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit() and len(raw.strip()) < 20):
        count = int(raw)
    if count is None or count < 0:
        raise _BadSpan(f"{label} must be a non-negative integer, got {str(raw)[:40]!r}")
    if count > _MAX_TOKENS:
        raise _BadSpan(f"{label} {count} is beyond any real count (limit {_MAX_TOKENS})")
    return count


def _raw_usage_cached(raw: Any) -> int | None:
    """Cached input tokens from a provider usage object sent as JSON (Logfire's gen_ai.usage.raw)."""
    try:
        usage = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        return None
    for path in cv.RAW_USAGE_CACHED:
        value = usage
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if type(value) is int and value >= 0:
            return value
    return None


def _only_error_finish(raw: Any) -> bool:
    """True for finish reasons that are exactly ["error"] (a list, or its JSON text)."""
    if isinstance(raw, str):
        if "error" not in raw or not raw.startswith("["):
            return False
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
    return isinstance(raw, list) and raw == ["error"]


def _litellm_usage(raw: Any, v: list[Any]) -> None:
    """Cached and cache-write input tokens from LiteLLM's usage object (metadata.usage_object),
    where no attribute of their own says so."""
    if not isinstance(raw, str) or len(raw) > 100_000:
        return
    block = cv.LITELLM_USAGE_DETAILS.search(raw)
    if block is None:
        return
    for slot, pattern in ((S_CACHED_TOKENS, cv.LITELLM_CACHED), (S_CACHE_WRITE_TOKENS, cv.LITELLM_CACHE_WRITES)):
        found = pattern.search(block.group(1))
        if v[slot] is None and found is not None:
            v[slot] = int(found.group(1))


def _ai_sdk_usage(attrs: dict[str, Any], v: list[Any], operation: str) -> None:
    """AI SDK usage: read ai.usage.* on the do* spans (embeddings report only
    ai.usage.tokens); on the outer spans drop every count, as they sum their steps'."""
    if operation in LLM_OPERATIONS:
        for slot, keys in (
            (S_INPUT_TOKENS, cv.AI_SDK_INPUT_TOKENS),
            (S_OUTPUT_TOKENS, cv.AI_SDK_OUTPUT_TOKENS),
            (S_CACHED_TOKENS, cv.AI_SDK_CACHED_INPUT_TOKENS),
        ):
            if v[slot] is None:
                value = _first(attrs, keys)
                # The SDK reports NaN when a provider returned no usage: that is "absent".
                v[slot] = None if isinstance(value, float) and not math.isfinite(value) else value
    elif operation == "other":
        v[S_INPUT_TOKENS] = v[S_OUTPUT_TOKENS] = v[S_CACHED_TOKENS] = None


def _row(span: Any, scope: str, context: tuple[Any, ...]) -> tuple[Any, ...]:
    content = context[8]
    if content is None:
        return _checked_row(span, scope, context)
    # A rejected span's changes are not counted: only committed values are.
    before = list(content.tally)
    try:
        return _checked_row(span, scope, context)
    except _BadSpan:
        content.tally[:] = before
        raise


def _checked_row(span: Any, scope: str, context: tuple[Any, ...]) -> tuple[Any, ...]:
    tenant, service, service_version, environment, resource_id, received, prices, scores, content, limits, tally, pending = context
    trace_id = span.trace_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        raise _BadSpan(f"trace_id must be 16 non-zero bytes, got {len(trace_id)} byte(s)")
    span_id = span.span_id
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        raise _BadSpan(f"span_id must be 8 non-zero bytes, got {len(span_id)} byte(s)")
    parent = span.parent_span_id
    if parent and (len(parent) != 8 or parent == _ZERO_SPAN):
        raise _BadSpan(f"parent_span_id must be empty or 8 non-zero bytes, got {len(parent)} byte(s)")
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    if start == 0:
        raise _BadSpan("start_time_unix_nano is missing")
    if end < start:
        raise _BadSpan("end_time_unix_nano is before start_time_unix_nano")
    if end > _MAX_NS:
        raise _BadSpan(f"end_time_unix_nano {end} is past the year 2262: not a time")

    attrs = _checked_attributes(span.attributes, limits, "the span")
    before = list(content.tally) if content is not None else None
    if content is not None:
        content.attributes(attrs)
    v = _known_values(attrs)
    operation = _operation(v)
    if (
        operation == "execute_tool" and v[S_TOOL_NAME] is None and v[S_OI_KIND] == "TOOL"
        and span.name.startswith(cv.OPENINFERENCE_HANDOFF_PREFIX)
    ):
        operation = "agent"
    if v[S_AI_OPERATION_ID] is not None:
        _ai_sdk_usage(attrs, v, operation)
    elif operation == "agent":
        # An agent span's usage is the sum of its model calls' (Strands' invoke_agent): the
        # calls carry it, so counting it here too would double it. It stays in attributes.
        v[S_INPUT_TOKENS] = v[S_OUTPUT_TOKENS] = v[S_CACHED_TOKENS] = v[S_CACHE_WRITE_TOKENS] = None
    input_tokens = output_tokens = cached_tokens = None
    if v[S_INPUT_TOKENS] is not None:
        input_tokens = _token_count(v[S_INPUT_TOKENS], "input token count")
    if v[S_OUTPUT_TOKENS] is not None:
        output_tokens = _token_count(v[S_OUTPUT_TOKENS], "output token count")
    if v[S_CACHED_TOKENS] is None and cv.RAW_USAGE in attrs:
        v[S_CACHED_TOKENS] = _raw_usage_cached(attrs[cv.RAW_USAGE])
    if cv.LITELLM_USAGE in attrs and operation in LLM_OPERATIONS:
        _litellm_usage(attrs[cv.LITELLM_USAGE], v)
    if v[S_CACHED_TOKENS] is not None:
        cached_tokens = _token_count(v[S_CACHED_TOKENS], "cached input token count")
    cache_writes = None
    if v[S_CACHE_WRITE_TOKENS] is not None:
        cache_writes = _token_count(v[S_CACHE_WRITE_TOKENS], "cache write input token count")
    if input_tokens is not None and (cached_tokens or 0) + (cache_writes or 0) > input_tokens:
        attrs[cv.INPUT_TOKENS_AS_SENT] = input_tokens
        input_tokens += (cached_tokens or 0) + (cache_writes or 0)

    status_code = span.status.code
    status = cv.STATUS_CODES[status_code] if 0 <= status_code < 3 else "unset"
    if status != "error" and operation in LLM_OPERATIONS and _only_error_finish(attrs.get(cv.FINISH_REASONS)):
        status = "error"
    status_message = span.status.message
    for key in attrs:
        if key[:12] == "aisre.score.":
            _attribute_score(scores, tenant, trace_id.hex(), span_id.hex(), key[12:], attrs[key], end, received)
    max_chars = limits.max_value_chars
    cut = 0
    if span.events:
        events, exc_type, exc_message = _events(
            span, scores, tenant, trace_id.hex(), span_id.hex(), received, content, limits
        )
        events_json, cut_events = _dump_limited(events, max_chars)
        cut += cut_events
    else:
        events_json, exc_type, exc_message = _EMPTY_LIST_JSON, None, None
    links_json = _EMPTY_LIST_JSON
    if span.links:
        links = _links(span, content, limits)
        links_json, cut_links = _dump_limited(links, max_chars)
        cut += cut_links
    name = span.name
    if content is not None and before is not None:
        name, status_message = content.text(name), content.text(status_message)
        for index, attribute in (
            (REDACTED, REDACTIONS_ATTRIBUTE), (CONTENT_DROPPED, DROPPED_ATTRIBUTE),
            (HASHED, HASHED_ATTRIBUTE), (ATTRS_DROPPED, ATTRIBUTES_DROPPED_ATTRIBUTE),
        ):
            if content.tally[index] != before[index]:
                attrs[attribute] = content.tally[index] - before[index]
    attrs_json, cut_attrs = _dump_limited(attrs, max_chars)
    cut += cut_attrs
    if len(name) > max_chars or len(status_message) > max_chars:
        cut += (len(name) > max_chars) + (len(status_message) > max_chars)
        name, status_message = name[:max_chars], status_message[:max_chars]
    if cut:
        tally[0] += cut
        attrs[TRUNCATED_ATTRIBUTE] = cut
        attrs_json = _dump_limited(attrs, max_chars)[0]
    http_status = _status_code(v[S_HTTP_STATUS], status_message, exc_message)
    error_type = v[S_ERROR_TYPE] or exc_type
    if http_status is None and status == "error" and isinstance(error_type, str):
        # The google-genai instrumentation's error.type is the HTTP status ("500", "429").
        http_status = _status_code(error_type, "", None)
    if error_type is None and status == "error" and http_status:
        error_type = str(http_status)

    request_model = v[S_REQUEST_MODEL]
    if request_model is None and v[S_INVOCATION] is not None:
        request_model = _invocation_model(v[S_INVOCATION])
    response_model = v[S_RESPONSE_MODEL]
    resend = v[S_RESEND]
    retry_attempt = resend if type(resend) is int and 0 < resend < (1 << 31) else 0

    provider = v[S_PROVIDER]
    if provider in cv.NOT_PROVIDERS:
        provider = None
    if provider is None and operation in LLM_OPERATIONS:
        routed = attrs.get(cv.LITELLM_PROVIDER_MODEL)
        if isinstance(routed, str) and "/" in routed:
            provider = routed.split("/", 1)[0]
    if provider is not None:
        provider = cv.canonical_provider(provider)
    cost = price_version = None
    if operation in LLM_OPERATIONS:
        price, version = prices.lookup(provider, response_model or request_model, start)
        cost = price.cost(input_tokens, output_tokens, cached_tokens, cache_writes) if price is not None else 0.0
        price_version = version if price is not None else None

    is_root = not parent
    outcome_attr = v[S_OUTCOME]
    marks_failure = (
        is_root and (status == "error" or (http_status is not None and http_status >= 500))
    ) or (isinstance(outcome_attr, str) and outcome_attr.lower() == "failure")
    kind_code = span.kind
    kind = cv.SPAN_KINDS[kind_code] if 0 <= kind_code < 6 else "unspecified"
    logfire_log = v[S_LOGFIRE_SPAN_TYPE] == "log"
    if operation in LLM_OPERATIONS or logfire_log:
        response_id = _first(attrs, cv.RESPONSE_ID)
        pending[0] = CallNote(_text(response_id), logfire_log, len(attrs))

    return (
        tenant,
        trace_id.hex(),
        span_id.hex(),
        parent.hex(),
        name,
        kind,
        service,
        scope,
        start,
        end,
        end - start,
        status,
        status_message,
        v[S_JOURNEY],
        is_root,
        operation,
        provider,
        request_model,
        response_model or request_model,
        input_tokens,
        output_tokens,
        cached_tokens,
        cost,
        price_version,
        v[S_SERVICE_VERSION] or service_version,
        v[S_PROMPT_NAME],
        v[S_PROMPT_VERSION],
        environment,
        http_status,
        retry_attempt,
        error_type,
        v[S_TOOL_NAME],
        v[S_USER_ID],
        v[S_SESSION_ID],
        marks_failure,
        attrs_json,
        resource_id,
        events_json,
        links_json,
        received,
    )


_TRACE, _PARENT, _START, _END, _STATUS, _OPERATION, _REQUEST_MODEL, _RETRY = (
    SPAN_COLUMN_NAMES.index(name)
    for name in ("trace_id", "parent_span_id", "start_ns", "end_ns", "status", "operation", "request_model", "retry_attempt")
)


def _mark_sibling_retries(rows: list[tuple[Any, ...]], any_error: bool) -> None:
    """An application-level retry is a model call repeated under the same parent after a
    failed sibling: number such calls 1, 2, … in ``retry_attempt``. A call after a sibling
    that succeeded is a new call (e.g. the answer after a tool call), not a retry."""
    if not any_error:
        return
    failed: dict[tuple[str, str, str, str | None], list[int]] = {}
    for row in rows:
        if row[_STATUS] == "error" and row[_OPERATION] in LLM_OPERATIONS:
            key = (row[_TRACE], row[_PARENT], row[_OPERATION], row[_REQUEST_MODEL])
            failed.setdefault(key, []).append(row[_END])
    if not failed:
        return
    succeeded: dict[tuple[str, str, str, str | None], list[int]] = {}
    for row in rows:
        key = (row[_TRACE], row[_PARENT], row[_OPERATION], row[_REQUEST_MODEL])
        if row[_STATUS] != "error" and key in failed:
            succeeded.setdefault(key, []).append(row[_END])
    for i, row in enumerate(rows):
        if row[_OPERATION] not in LLM_OPERATIONS:
            continue
        key = (row[_TRACE], row[_PARENT], row[_OPERATION], row[_REQUEST_MODEL])
        ends = failed.get(key)
        if ends:
            last_ok = max((end for end in succeeded.get(key, ()) if end <= row[_START]), default=-1)
            earlier = sum(1 for end in ends if last_ok < end <= row[_START])
            if earlier > row[_RETRY]:
                rows[i] = (*row[:_RETRY], earlier, *row[_RETRY + 1 :])
