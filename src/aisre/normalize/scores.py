"""Scores sent through the REST API: each item checked on its own, refused with a reason."""

from __future__ import annotations

import math
import re
import time
from typing import Any

import pyarrow as pa

from aisre.core.errors import PermanentError
from aisre.core.schema import SCORE_ARROW_SCHEMA, SCORE_SOURCES
from aisre.core.timefmt import parse_time

_TRACE = re.compile(r"^[0-9a-f]{32}$")
_SPAN = re.compile(r"^[0-9a-f]{16}$")
MAX_BATCH = 10_000


def parse_scores(
    document: Any, tenant: str, now_ns: int | None = None
) -> tuple[pa.Table, list[int], list[dict[str, Any]]]:
    """(valid scores as a table, each row's index in the request, refusals as {index, reason});
    a malformed body raises."""
    items = document.get("scores") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise PermanentError('expected {"scores": [...]} or a JSON list of scores')
    if len(items) > MAX_BATCH:
        raise PermanentError(f"at most {MAX_BATCH} scores per request; got {len(items)}")
    now = now_ns if now_ns is not None else time.time_ns()
    rows: list[tuple[Any, ...]] = []
    indexes: list[int] = []
    refused: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            rows.append(_row(item, tenant, now))
            indexes.append(index)
        except PermanentError as exc:
            refused.append({"index": index, "reason": exc.message})
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in SCORE_ARROW_SCHEMA]
    table = pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, SCORE_ARROW_SCHEMA, strict=True)],
        schema=SCORE_ARROW_SCHEMA,
    )
    return table, indexes, refused


def _row(item: Any, tenant: str, now: int) -> tuple[Any, ...]:
    if not isinstance(item, dict):
        raise PermanentError("a score must be an object")
    trace_id = str(item.get("trace_id", "")).lower()
    if not _TRACE.match(trace_id):
        raise PermanentError("trace_id must be 32 hex digits")
    span_id = item.get("span_id")
    if span_id is not None and (not isinstance(span_id, str) or not _SPAN.match(span_id.lower())):
        raise PermanentError("span_id must be 16 hex digits when given")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise PermanentError("name must be a non-empty string of at most 128 characters")
    value, label = item.get("value"), item.get("label")
    if value is None and label is None:
        raise PermanentError("give a numeric value or a categorical label")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PermanentError(f"value must be a number; got {type(value).__name__}")
        if not math.isfinite(value):
            raise PermanentError("value must be a finite number (not NaN or infinity)")
    if label is not None and (not isinstance(label, str) or not label or len(label) > 256):
        raise PermanentError("label must be a non-empty string of at most 256 characters")
    source = item.get("source", "other")
    if source not in SCORE_SOURCES:
        raise PermanentError(f"source must be one of {', '.join(SCORE_SOURCES)}; got {source!r}")
    comment = item.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 4096):
        raise PermanentError("comment must be a string of at most 4096 characters")
    when = item.get("time")
    time_ns = parse_time(when, now, "time") if isinstance(when, str) else now
    return (
        tenant, trace_id, span_id.lower() if span_id else None, name.strip(),
        float(value) if value is not None else None, label, source, comment, time_ns, now,
    )
