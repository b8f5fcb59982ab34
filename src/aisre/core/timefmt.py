"""Times at the edges: RFC 3339 UTC strings outside, Unix nanoseconds inside."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aisre.core.errors import PermanentError

_RELATIVE = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNIT_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}


def rfc3339(ns: int | None) -> str | None:
    """Unix nanoseconds → '2026-11-23T09:29:05.123456Z' (None stays None)."""
    if ns is None:
        return None
    seconds, rest = divmod(int(ns), 10**9)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1000:06d}Z"


def parse_time(text: str, now_ns: int, field: str = "time") -> int:
    """RFC 3339 (e.g. 2026-11-23T09:00:00Z) or a look-back like '15m', '6h', '7d' → Unix ns."""
    value = text.strip()
    match = _RELATIVE.match(value)
    if match:
        return now_ns - int(match.group(1)) * _UNIT_NS[match.group(2)]
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise PermanentError(
            f"{field} must be an RFC 3339 time such as 2026-11-23T09:00:00Z or a look-back such as 15m, 6h, 7d; got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        raise PermanentError(f"{field} must carry a time zone (e.g. a trailing Z); got {text!r}")
    return int(parsed.timestamp()) * 10**9 + parsed.microsecond * 1000


def span_text(seconds: float) -> str:
    """A length people read at a glance, to the minute: 8 min, 3 h 20 min, 2 d 4 h."""
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_due(text: str, now_ns: int, field: str = "due") -> int:
    """A due date: a day (2026-12-20, due at the end of that day UTC) or an RFC 3339 time;
    a moment already past is refused, since a task cannot be due before it is written down."""
    value = text.strip()
    if _DATE.match(value):
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise PermanentError(f"{field} must be a date such as 2026-12-20 or an RFC 3339 time; got {text!r}") from None
        due = (int(day.timestamp()) + 86400) * 10**9 - 1000  # 23:59:59.999999 UTC that day
    elif _RELATIVE.match(value):
        raise PermanentError(f"{field} must be a date such as 2026-12-20 or an RFC 3339 time; got {text!r}")
    else:
        due = parse_time(value, now_ns, field)
    if due < now_ns:
        raise PermanentError(f"{field} {value} is in the past (now is {rfc3339(now_ns)}); give a future date such as "
                             f"{datetime.fromtimestamp(now_ns // 10**9 + 7 * 86400, tz=UTC):%Y-%m-%d}")
    return due
