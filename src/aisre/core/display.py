"""The one way money, times and axis ticks are written for people: the UI, the CLI and the
text of API messages all call these, so `$0.00182` reads the same everywhere."""

from __future__ import annotations

import math
from datetime import UTC, datetime

# Sums of float costs leave noise like -4.5e-19 where the truth is 0; a millionth of a cent
# is far below any price in the catalog, so anything smaller is shown as $0.
MONEY_EPSILON = 1e-9
_NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)


def money(usd: float | None, missing: str = "—") -> str:
    """USD for people: '$5,000.00', '$50.00', '$0.0379', '$0.00000032', '-$1.20', '$0'.

    At least two decimals, and below $1 three significant digits (trailing zeros dropped), so
    per-call costs stay distinguishable without scientific notation or float noise."""
    if usd is None or (isinstance(usd, float) and math.isnan(usd)):
        return missing
    value = float(usd)
    if abs(value) < MONEY_EPSILON:
        return "$0"
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size >= 1:
        return f"{sign}${size:,.2f}"
    decimals = max(2, 2 - math.floor(math.log10(size)))
    text = f"{size:.{decimals}f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{sign}${whole}.{frac.ljust(2, '0')}"


def utc_text(when: datetime | int | str | None, missing: str = "—", seconds: bool = True) -> str:
    """A moment as '2026-12-05 09:00:00' in UTC, never with microseconds. Accepts a datetime,
    Unix nanoseconds or an RFC 3339 string; anything unreadable is returned as given."""
    if when is None or when == "":
        return missing
    moment: datetime
    if isinstance(when, datetime):
        moment = when if when.tzinfo else when.replace(tzinfo=UTC)
    elif isinstance(when, int):
        moment = datetime.fromtimestamp(when / 1e9, UTC)
    else:
        try:
            moment = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
        except ValueError:
            return str(when)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def nice_step(span: float, count: int = 4) -> float:
    """A round tick step (1, 2, 2.5 or 5 × 10^k) giving about ``count`` intervals over ``span``."""
    if not math.isfinite(span) or span <= 0:
        return 1.0
    raw = span / max(1, count)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(s * power for s in _NICE_STEPS if s * power >= raw * (1 - 1e-9))


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering [low, high]: nice_ticks(0, 0.7654) → [0, 0.2, 0.4, 0.6, 0.8]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1.0
    step = nice_step(high - low, count)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def _decimals(step: float) -> int:
    """Decimals that write every multiple of ``step`` exactly (0.25 → 2, 2.5 → 1, 50 → 0)."""
    return next((d for d in range(12) if abs(round(step * 10**d) - step * 10**d) < 1e-6), 12)


def money_tick(usd: float, step: float) -> str:
    """An axis label for a money tick: as many decimals as the step needs ('$0.02', '$150')."""
    if abs(usd) < step * 1e-6:
        return "$0"
    decimals = _decimals(step)
    decimals = max(2, decimals) if decimals else 0
    sign = "-" if usd < 0 else ""
    return f"{sign}${abs(usd):,.{decimals}f}"


def number_tick(value: float, step: float) -> str:
    """An axis label for a plain number, with the decimals its step needs ('0.25', '1,500')."""
    if abs(value) < step * 1e-6:
        return "0"
    return f"{value:,.{_decimals(step)}f}"


_TIME_STEPS_S = (60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)


def time_ticks(t0_s: float, t1_s: float, most: int = 6) -> list[tuple[float, str]]:
    """Tick moments on whole minutes, hours or days between two Unix times, at most ``most`` of
    them, each with its label ('09:15', 'Dec 05 12:00', 'Dec 05'); the date is shown on the
    first tick and wherever the day changes."""
    span = max(t1_s - t0_s, 1.0)
    step = next((s for s in _TIME_STEPS_S if span / s <= most), _TIME_STEPS_S[-1])
    first = math.ceil(t0_s / step) * step
    if step > 86400:  # several days: from the first midnight, not an epoch-aligned weekday
        first = math.ceil(t0_s / 86400) * 86400
    out: list[tuple[float, str]] = []
    previous_day = None
    moment = first
    while moment <= t1_s + 1e-6:
        at = datetime.fromtimestamp(moment, UTC)
        day = at.date()
        if step >= 86400:
            label = at.strftime("%b %d")
        elif day != previous_day:
            label = at.strftime("%b %d %H:%M")
        else:
            label = at.strftime("%H:%M")
        previous_day = day
        out.append((float(moment), label))
        moment += step
    return out


def round_bounds(stored: tuple[float, ...], wanted: tuple[float, ...]) -> list[tuple[float, int]]:
    """For each round bound in ``wanted``, the index of the largest ``stored`` bound not above
    it (so a cumulative count up to it never includes anything above the round bound); round
    bounds below the smallest stored one are left out."""
    out = []
    for bound in wanted:
        index = max((i for i, b in enumerate(stored) if b <= bound * (1 + 1e-9)), default=None)
        if index is not None:
            out.append((bound, index))
    return out
