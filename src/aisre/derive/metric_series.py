"""The metric series a tenant has sent (what its Collector or SDK exports), filtered and
paged, with the selector that picks each one: what a user reads to write metric SLIs."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from aisre.core.errors import PermanentError
from aisre.core.schema import MINUTE_NS
from aisre.core.series import MetricSelector, format_selector, parse_selector
from aisre.core.timefmt import rfc3339
from aisre.store.protocol import Store

MAX_PAGE = 1000
SERVICE_LABEL = "service.name"


@dataclass(frozen=True)
class SeriesQuery:
    """Which of a tenant's series to list: a metric name, label matchers (``{gpu="0"}`` or a
    whole selector ``name{gpu="0"}``), a service (the ``service.name`` label), and a page."""

    tenant: str
    metric: str | None = None
    match: str | None = None
    service: str | None = None
    limit: int = 100
    cursor: str | None = None


def encode_cursor(metric: str, labels: str) -> str:
    """Opaque keyset cursor: the series after which the next page starts."""
    return base64.urlsafe_b64encode(orjson.dumps([metric, labels])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Inverse of :func:`encode_cursor`; a tampered cursor is a clear 400."""
    try:
        metric, labels = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(metric, str) and isinstance(labels, str):
            return metric, labels
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        pass
    raise PermanentError(f"cursor {cursor!r} is not one this API handed out")


def _matchers(match: str | None) -> MetricSelector | None:
    if not match or not match.strip():
        return None
    text = match.strip()
    try:
        # Label matchers alone: read them as a selector of a placeholder name.
        return parse_selector("_" + text) if text.startswith("{") else parse_selector(text)
    except ValueError as exc:
        raise PermanentError(f"match: {exc}") from None


def list_series(store: Store, q: SeriesQuery) -> dict[str, Any]:
    """A page of the tenant's series, ordered by name then labels, and the cursor of the next
    page (None on the last). Each: name, kind, unit, labels, the selector that picks exactly
    it, what a recognised metric measures, first seen (its first point, kept for ever), last
    seen and points (over the minutes still kept, ``rollup_retention_days``)."""
    if not 1 <= q.limit <= MAX_PAGE:
        raise PermanentError(f"limit must be between 1 and {MAX_PAGE}; got {q.limit}")
    selector = _matchers(q.match)
    named = selector.metric if selector is not None and not (q.match or "").strip().startswith("{") else None
    if q.metric and named and q.metric != named:
        return {"items": [], "next_cursor": None}
    after = decode_cursor(q.cursor) if q.cursor else None
    rows = store.metric_series(q.tenant, q.metric or named)
    picked = []
    for row in sorted(rows, key=lambda r: (r["metric"], r["labels"])):
        if after is not None and (row["metric"], row["labels"]) <= after:
            continue
        labels = orjson.loads(row["labels"])
        if q.service is not None and labels.get(SERVICE_LABEL) != q.service:
            continue
        if selector is not None and not MetricSelector(row["metric"], selector.matchers).matches(row["metric"], labels):
            continue
        picked.append((row, labels))
        if len(picked) > q.limit:
            break
    page, more = picked[: q.limit], len(picked) > q.limit
    stats = {s["series_id"]: s for s in store.metric_series_stats(q.tenant, [int(r["series_id"]) for r, _ in page])}
    items = []
    for row, labels in page:
        kept = stats.get(int(row["series_id"]))
        first = int(row["first_ns"]) // MINUTE_NS * MINUTE_NS
        last = kept["last_minute_ns"] if kept else None
        items.append({
            "metric": row["metric"],
            "kind": row["kind"],
            "unit": row["unit"],
            "labels": labels,
            "selector": format_selector(row["metric"], [(k, "=", str(v)) for k, v in sorted(labels.items())]),
            "meaning": row.get("meaning"),
            "first_seen": rfc3339(first),
            "first_seen_ns": first,
            "last_seen": rfc3339(last) if last is not None else None,
            "last_seen_ns": last,
            "points": kept["points"] if kept else 0,
        })
    next_cursor = encode_cursor(page[-1][0]["metric"], page[-1][0]["labels"]) if more and page else None
    return {"items": items, "next_cursor": next_cursor}
