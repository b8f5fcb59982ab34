"""Where an incident's impact began: the sustained stretch of bad minutes that led to an alert.

The rule, over per-minute (total, bad) counts of the alert's SLO (or journey runs):

1. A minute is *bad* when it had traffic and its error ratio ``bad / total`` is above the
   threshold (for an SLO: the error rate its objective allows, ``1 − objective``).
2. Walk back minute by minute from the minute the alert started in. The stretch must reach
   the alert: its last bad minute lies within the alert's reach, the short window of the
   alert pairs that fired it (``REACH_MIN``: 30 minutes for a page, 6 hours for a ticket), since
   a pair fires only while its short window still burns, and telemetry can arrive minutes
   late. Going back from the last bad minute, the stretch goes on across at most
   ``MAX_GAP_MIN`` consecutive minutes that are quiet (no traffic) or within the threshold;
   one more ends it.
3. The stretch must be sustained: it holds at least ``MIN_BAD_EVENTS`` bad events. One or
   two stray failures are noise, not an outage, so they start nothing.
4. The first bad minute of that stretch is where impact began (callers refine it to the
   first failing run inside that minute).

Isolated failures before the stretch (more than ``MAX_GAP_MIN`` good or quiet minutes
before it) are never part of it, however far back the walk may go.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aisre.core.schema import MINUTE_NS

MAX_GAP_MIN = 2  # good or quiet minutes tolerated inside a stretch (low traffic leaves some minutes clean)
MIN_BAD_EVENTS = 3  # a stretch with fewer bad events is stray failures, not impact
LOOKBACK_MIN = 24 * 60  # the walk never goes further back than this
# How long before an alert its stretch may end: the longest short window of the severity's pairs.
REACH_MIN = {"page": 30, "ticket": 6 * 60}


@dataclass(frozen=True)
class Stretch:
    """A sustained run of bad minutes ending at an alert."""

    start_ns: int  # the first bad minute
    last_ns: int  # the last bad minute
    bad_minutes: int
    bad_events: int
    events: int  # all events from the first to the last bad minute
    threshold: float

    @property
    def error_ratio(self) -> float:
        return self.bad_events / self.events if self.events else 0.0


def find_stretch(
    minutes: Iterable[tuple[int, int, int]], threshold: float, alert_ns: int,
    max_gap: int = MAX_GAP_MIN, min_bad_events: int = MIN_BAD_EVENTS, lookback_min: int = LOOKBACK_MIN,
    reach: int = MAX_GAP_MIN,
) -> Stretch | None:
    """The sustained stretch of bad minutes that reaches the alert, or None.
    ``minutes`` are (minute_ns, total, bad); the stretch's last bad minute lies at most
    ``reach`` minutes before the alert's."""
    by_minute = {int(m): (int(t), int(b)) for m, t, b in minutes}
    minute = alert_ns // MINUTE_NS * MINUTE_NS
    first: int | None = None
    last: int | None = None
    gap = 0
    for _ in range(lookback_min + 1):
        total, bad = by_minute.get(minute, (0, 0))
        if total and bad / total > threshold:
            first, gap = minute, 0
            last = minute if last is None else last
        else:
            gap += 1
            if gap > (max_gap if last is not None else max(max_gap, reach)):
                break
        minute -= MINUTE_NS
    if first is None or last is None:
        return None
    span = [by_minute.get(m, (0, 0)) for m in range(first, last + MINUTE_NS, MINUTE_NS)]
    bad_minutes = sum(1 for t, b in span if t and b / t > threshold)
    bad_events = sum(b for _, b in span)
    if bad_events < min_bad_events:
        return None
    return Stretch(first, last, bad_minutes, bad_events, sum(t for t, _ in span), threshold)
