"""One model call reported twice in a batch counts once (DESIGN §3).

Provider SDKs now trace themselves (e.g. anthropic with a tracer provider set), so with an
instrumentation library on top one call can arrive as two spans. Two model-call spans of a
trace are one call when
  - they carry the same response id (`gen_ai.response.id`, `ai.response.id`), or
  - neither response id contradicts it, they come from different instrumentation scopes,
    are siblings or parent and child, ask for the same model, have the same status and
    report the same input and output tokens (none, for two failed spans), and start within
    DUPLICATE_START_WINDOW_NS of each other.
The richer span (more typed fields set, then more attributes) stays the call, and takes
from the other whatever it lacks (usage and its cost, response model, provider, error
type); the other becomes operation `other` with no tokens or cost, and records
`aisre.duplicate_of` = the kept span's id, so nothing is counted twice and nothing is lost.

A Logfire log record (`logfire.span_type=log`, e.g. "streaming response from … took 1.2s")
is never a call; when it carries the usage of a streamed call whose request span has
none, the usage moves to that span (`aisre.usage_of` on the log record).

Only spans of one export request are compared: a duplicate arriving in another request
is counted (the usual SDK batch holds both, as they end together).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from aisre.core.schema import LLM_OPERATIONS, SPAN_COLUMN_NAMES
from aisre.normalize import conventions as cv

_I = {name: i for i, name in enumerate(SPAN_COLUMN_NAMES)}
_TRACE, _SPAN, _PARENT, _SCOPE, _START = _I["trace_id"], _I["span_id"], _I["parent_span_id"], _I["scope"], _I["start_ns"]
_OPERATION, _REQ_MODEL, _STATUS = _I["operation"], _I["request_model"], _I["status"]
_IN, _OUT, _CACHED, _COST, _PRICE_VERSION = (
    _I["input_tokens"], _I["output_tokens"], _I["cached_input_tokens"], _I["cost_usd"], _I["price_version"]
)
_ATTRS = _I["attributes"]
_USAGE = (_IN, _OUT, _CACHED, _COST, _PRICE_VERSION)
# Fields the kept span takes from its duplicate when it has none of its own.
_FILL = tuple(
    _I[name]
    for name in (
        "provider", "request_model", "response_model", "http_status", "error_type", "prompt_name",
        "prompt_version", "tool_name", "user_id", "session_id",
    )
)
_TYPED = (*_FILL, _IN, _OUT, _CACHED)


@dataclass(frozen=True)
class CallNote:
    """What the duplicate rules need of a span beyond its row."""

    response_id: str | None
    logfire_log: bool
    attribute_count: int


def _richness(row: Sequence[Any], note: CallNote) -> tuple[int, int]:
    return sum(1 for i in _TYPED if row[i] is not None), note.attribute_count


def _with_attribute(row: tuple[Any, ...], key: str, value: str) -> tuple[Any, ...]:
    attrs = orjson.loads(row[_ATTRS])
    attrs[key] = value
    return (*row[:_ATTRS], orjson.dumps(attrs).decode(), *row[_ATTRS + 1 :])


def _merge(rows: list[tuple[Any, ...]], group: list[int], notes: dict[int, CallNote]) -> None:
    keep = max(group, key=lambda i: _richness(rows[i], notes[i]))
    kept = list(rows[keep])
    for i in group:
        if i == keep:
            continue
        other = rows[i]
        for field in _FILL:
            if kept[field] is None and other[field] is not None:
                kept[field] = other[field]
        if kept[_IN] is None and kept[_OUT] is None and (other[_IN] is not None or other[_OUT] is not None):
            for field in _USAGE:
                kept[field] = other[field]
        gone = list(other)
        gone[_OPERATION] = "other"
        for field in _USAGE:
            gone[field] = None
        rows[i] = _with_attribute(tuple(gone), "aisre.duplicate_of", kept[_SPAN])
    rows[keep] = tuple(kept)


def _related(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return a[_PARENT] == b[_PARENT] or a[_PARENT] == b[_SPAN] or b[_PARENT] == a[_SPAN]


# (cost, price version) of a row priced with the usage (and cache writes) of a second row.
Pricer = Callable[[Sequence[Any], Sequence[Any]], tuple[float | None, str | None]]


def merge_duplicate_calls(rows: list[tuple[Any, ...]], notes: dict[int, CallNote], price: Pricer) -> None:
    """Apply the rules above to ``rows`` in place; ``notes`` hold each noted row's extras,
    ``price`` gives (cost, price version) of a row whose usage moved to it."""
    calls = [i for i in notes if rows[i][_OPERATION] in LLM_OPERATIONS]
    merged: set[int] = set()
    by_id: dict[tuple[str, str], list[int]] = {}
    for i in calls:
        rid = notes[i].response_id
        if rid:
            by_id.setdefault((rows[i][_TRACE], rid), []).append(i)
    for group in by_id.values():
        if len(group) > 1:
            _merge(rows, group, notes)
            merged.update(group)
    by_usage: dict[tuple[Any, ...], list[int]] = {}
    for i in calls:
        row = rows[i]
        # A failed call has no usage: its twins are told by everything else.
        if i not in merged and (row[_IN] is not None or row[_STATUS] == "error"):
            by_usage.setdefault((row[_TRACE], row[_REQ_MODEL], row[_STATUS], row[_IN], row[_OUT]), []).append(i)
    for group in by_usage.values():
        for pos, i in enumerate(group):
            if i in merged:
                continue
            twins = [i]
            for j in group[pos + 1 :]:
                a, b = rows[i], rows[j]
                ids = {notes[k].response_id for k in (i, j)} - {None}
                if (
                    j not in merged and len(ids) <= 1 and a[_SCOPE] != b[_SCOPE] and _related(a, b)
                    and abs(a[_START] - b[_START]) <= cv.DUPLICATE_START_WINDOW_NS
                ):
                    twins.append(j)
            if len(twins) > 1:
                _merge(rows, twins, notes)
                merged.update(twins)
    _fold_logfire_usage(rows, notes, calls, price)


def _fold_logfire_usage(rows: list[tuple[Any, ...]], notes: dict[int, CallNote], calls: list[int], price: Pricer) -> None:
    for i, note in notes.items():
        log = rows[i]
        if not note.logfire_log or (log[_IN] is None and log[_OUT] is None):
            continue
        for j in calls:
            call = rows[j]
            if (
                call[_TRACE] == log[_TRACE] and call[_IN] is None and call[_OUT] is None
                and (call[_SPAN] == log[_PARENT] or call[_PARENT] == log[_PARENT])
                and call[_REQ_MODEL] == log[_REQ_MODEL]
            ):
                moved = list(call)
                for field in (_IN, _OUT, _CACHED):
                    moved[field] = log[field]
                moved[_COST], moved[_PRICE_VERSION] = price(moved, log)
                rows[j] = tuple(moved)
                gone = list(log)
                for field in _USAGE:
                    gone[field] = None
                rows[i] = _with_attribute(tuple(gone), "aisre.usage_of", call[_SPAN])
                break
