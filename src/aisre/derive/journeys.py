"""Journey runs and per-journey summaries, in the API's shape."""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from typing import Any

from aisre.core.errors import Conflict, NotFound, PermanentError
from aisre.core.model import OUTCOMES, RunQuery, TimeRange
from aisre.core.timefmt import rfc3339
from aisre.derive.trace_view import run_document, trace_document
from aisre.store.protocol import Store

MAX_PAGE = 1000


def encode_cursor(start_ns: int, trace_id: str) -> str:
    """Opaque keyset cursor for the run after which the next page starts."""
    return base64.urlsafe_b64encode(f"{start_ns}:{trace_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of :func:`encode_cursor`; a tampered cursor is a clear 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        start, trace_id = raw.split(":", 1)
        return int(start), trace_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise PermanentError(f"cursor {cursor!r} is not one this API handed out") from None


def list_runs(store: Store, q: RunQuery) -> dict[str, Any]:
    """A page of runs plus the cursor for the next one (None on the last page)."""
    if q.outcome is not None and q.outcome not in OUTCOMES:
        raise PermanentError(f"outcome must be one of {', '.join(OUTCOMES)}; got {q.outcome!r}")
    if not 1 <= q.limit <= MAX_PAGE:
        raise PermanentError(f"limit must be between 1 and {MAX_PAGE}; got {q.limit}")
    rows = store.list_runs(replace(q, limit=q.limit + 1))
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    cursor = encode_cursor(rows[-1]["run_start_ns"], rows[-1]["trace_id"]) if more and rows else None
    return {"items": [run_document(row) for row in rows], "next_cursor": cursor}


def journey_summaries(store: Store, r: TimeRange) -> list[dict[str, Any]]:
    """Per journey: runs, failure rate, p50/p95 duration, tokens per run, last seen."""
    out = []
    for row in store.journey_summaries(r):
        runs = int(row["runs"])
        out.append(
            {
                "journey": row["journey"],
                "runs": runs,
                "failures": int(row["failures"]),
                "failure_rate": row["failures"] / runs if runs else 0.0,
                "p50_ms": row["p50_ms"],
                "p95_ms": row["p95_ms"],
                "tokens_per_run": row["tokens_per_run"],
                "llm_calls_per_run": row["llm_calls_per_run"],
                "retries": int(row["retries"] or 0),
                "cost_usd": row["cost_usd"],
                "last_seen": rfc3339(row["last_seen_ns"]),
            }
        )
    return out


MIN_PREFIX = 8


def get_trace(store: Store, tenant: str, trace_id: str) -> dict[str, Any]:
    """The full trace document; NotFound for an unknown id, 400 for a malformed one.

    A unique prefix of 8 or more hex digits works too (as the CLI's short ids), so a short
    id from a narrow table can be pasted; an ambiguous one is a 409 naming the matches."""
    normalized = trace_id.strip().lower()
    if not MIN_PREFIX <= len(normalized) <= 32 or any(c not in "0123456789abcdef" for c in normalized):
        raise PermanentError(f"trace id must be 32 hex digits (or a unique prefix of {MIN_PREFIX} or more); got {trace_id!r}")
    if len(normalized) < 32:
        found = store.trace_ids_with_prefix(tenant, normalized, 5)
        if not found:
            raise NotFound(f"no trace id starts with {normalized!r}")
        if len(found) > 1:
            raise Conflict(f"trace id prefix {normalized!r} is ambiguous: {', '.join(found)}{'…' if len(found) == 5 else ''}; "
                           "give more digits")
        normalized = found[0]
    run, spans = store.get_trace(tenant, normalized)
    return trace_document(run, spans)
