"""Scores sent through the REST API: each item checked on its own, refused with a reason.

An item scores a trace (``trace_id``) or a subject (``subject``: a model, a dataset) at a
``time``: a platform score, such as a drift report's share of drifted columns."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from aisre.core.errors import PermanentError
from aisre.core.schema import (
    MINUTE_NS,
    PLATFORM_SCORE_ARROW_SCHEMA,
    SCORE_ARROW_SCHEMA,
    SCORE_SOURCES,
)
from aisre.core.scores import subject_problem
from aisre.core.timefmt import parse_time

_TRACE = re.compile(r"^[0-9a-f]{32}$")
_SPAN = re.compile(r"^[0-9a-f]{16}$")
MAX_BATCH = 10_000
MAX_TIME_NS = 2**63 - 1  # what a 64-bit nanosecond column holds


@dataclass(frozen=True)
class ScoreBatch:
    """A request's scores: those of traces and those of subjects (platform scores), each
    with its rows' indexes in the request, and the items refused as {index, reason}."""

    traces: pa.Table
    trace_indexes: list[int]
    platform: pa.Table
    platform_indexes: list[int]
    refused: list[dict[str, Any]]


def parse_scores(
    document: Any, tenant: str, now_ns: int | None = None
) -> tuple[pa.Table, list[int], list[dict[str, Any]]]:
    """(valid trace scores as a table, each row's index in the request, refusals as {index,
    reason}); a malformed body raises. Platform scores (with ``subject``) are refused here:
    parse_score_batch takes both."""
    batch = parse_score_batch(document, tenant, now_ns)
    refused = batch.refused + [{"index": i, "reason": "a score of a subject is not taken here"}
                               for i in batch.platform_indexes]
    return batch.traces, batch.trace_indexes, sorted(refused, key=lambda r: r["index"])


def parse_score_batch(document: Any, tenant: str, now_ns: int | None = None) -> ScoreBatch:
    """Each item checked on its own: a trace's score (``trace_id``) or a subject's
    (``subject`` and ``time``, e.g. a model's drift at a time); a malformed body raises."""
    items = document.get("scores") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise PermanentError('expected {"scores": [...]} or a JSON list of scores')
    if len(items) > MAX_BATCH:
        raise PermanentError(f"at most {MAX_BATCH} scores per request; got {len(items)}")
    now = now_ns if now_ns is not None else time.time_ns()
    rows: list[tuple[Any, ...]] = []
    indexes: list[int] = []
    platform_rows: list[tuple[Any, ...]] = []
    platform_indexes: list[int] = []
    refused: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, dict) and "subject" in item:
                platform_rows.append(_platform_row(item, tenant, now))
                platform_indexes.append(index)
            else:
                rows.append(_row(item, tenant, now))
                indexes.append(index)
        except PermanentError as exc:
            refused.append({"index": index, "reason": exc.message})
    return ScoreBatch(_table(rows, SCORE_ARROW_SCHEMA), indexes, _table(platform_rows, PLATFORM_SCORE_ARROW_SCHEMA),
                      platform_indexes, refused)


def _table(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    return pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema)


def _platform_row(item: dict[str, Any], tenant: str, now: int) -> tuple[Any, ...]:
    if item.get("trace_id") is not None:
        raise PermanentError("give trace_id (a trace's score) or subject (a model's or dataset's), not both")
    if item.get("span_id") is not None:
        raise PermanentError("span_id goes with trace_id, not with subject")
    subject = item.get("subject")
    problem = subject_problem(subject)
    if problem:
        raise PermanentError(problem)
    name = _name(item)
    if item.get("label") is not None:
        raise PermanentError("a subject's score takes a numeric value; labels go with trace scores")
    value = item.get("value")
    if value is None:
        raise PermanentError("a subject's score needs a numeric value")
    _check_value(value)
    source = _source(item)
    comment = _comment(item)
    when = item.get("time")
    if when is not None and not isinstance(when, str):
        raise PermanentError("time must be an RFC 3339 time such as 2026-11-23T09:00:00Z")
    time_ns = parse_time(when, now, "time") if when is not None else now
    if not 0 <= time_ns < MAX_TIME_NS:
        raise PermanentError("time must be between 1970 and 2262 (Unix nanoseconds)")
    return (tenant, str(subject), name, float(value), source, comment, time_ns,
            time_ns // MINUTE_NS * MINUTE_NS, now)


def _name(item: dict[str, Any]) -> str:
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise PermanentError("name must be a non-empty string of at most 128 characters")
    return name.strip()


def _check_value(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentError(f"value must be a number; got {type(value).__name__}")
    if not math.isfinite(value):
        raise PermanentError("value must be a finite number (not NaN or infinity)")


def _source(item: dict[str, Any]) -> str:
    source = item.get("source", "other")
    if source not in SCORE_SOURCES:
        raise PermanentError(f"source must be one of {', '.join(SCORE_SOURCES)}; got {source!r}")
    return str(source)


def _comment(item: dict[str, Any]) -> str | None:
    comment = item.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 4096):
        raise PermanentError("comment must be a string of at most 4096 characters")
    return comment


def _row(item: Any, tenant: str, now: int) -> tuple[Any, ...]:
    if not isinstance(item, dict):
        raise PermanentError("a score must be an object")
    if item.get("trace_id") is None:
        raise PermanentError("give trace_id (32 hex digits: a trace's score) or subject (e.g. model:churn-v3) and time")
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
