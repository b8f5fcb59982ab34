"""Burn-rate window policies as data (Sloth's ``sloth.slok.dev/v1 AlertWindows`` files).

Built in: the SRE Workbook defaults for 30d and 28d as Sloth ships them, and Sloth's 7d
example. Users add their own files (same format) per SLO or for all SLOs. Pyrra's derived
windows are computed by :func:`pyrra_windows` for comparison and import.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path

from aisre.core.slo import AlertWindow, AlertWindows, SpecError, SpecValidationError
from aisre.evaluate._yaml import LineDict, View, parse_documents, read_documents

API_VERSION = "sloth.slok.dev/v1"
KIND = "AlertWindows"
BUILTIN_FILES = ("google-30d.yaml", "google-28d.yaml", "sloth-7d.yaml")
# Percent of budget per pair in the Workbook's table; used to scale to periods without a file.
WORKBOOK_PERCENTS = {"page_quick": 2.0, "page_slow": 5.0, "ticket_quick": 10.0, "ticket_slow": 10.0}


def parse_windows(text: str, file: str, errors: list[SpecError]) -> AlertWindows | None:
    """Parse one AlertWindows document; problems go to ``errors`` with file, line and field."""
    docs = [d for d in parse_documents(text, file, errors) if d[0] is not None]
    if errors:
        return None
    if len(docs) != 1 or not isinstance(docs[0][0], LineDict):
        errors.append(SpecError(file, 1, "", f"expected one {API_VERSION} {KIND} mapping"))
        return None
    return windows_from_document(View(docs[0][0], "", file, errors))


def windows_from_document(doc: View) -> AlertWindows | None:
    """Map a parsed ``AlertWindows`` mapping to the model."""
    start = len(doc.errors)
    if doc.text("apiVersion") != API_VERSION:
        doc.error("apiVersion", f"must be {API_VERSION} (got {doc.data.get('apiVersion')!r})")
    if doc.text("kind") != KIND:
        doc.error("kind", f"must be {KIND} (got {doc.data.get('kind')!r})")
    spec = doc.mapping("spec", required=True)
    if spec is None or len(doc.errors) > start:
        return None
    period = spec.duration("sloPeriod", required=True)
    pairs: dict[str, AlertWindow] = {}
    for severity in ("page", "ticket"):
        sev = spec.mapping(severity, required=True)
        for speed in ("quick", "slow"):
            pair = sev.mapping(speed, required=True) if sev else None
            if pair is None:
                continue
            pct = pair.number("errorBudgetPercent", required=True)
            short = pair.duration("shortWindow", required=True)
            long = pair.duration("longWindow", required=True)
            if pct is not None and not 0 < pct <= 100:
                pair.error("errorBudgetPercent", f"must be > 0 and <= 100 (got {pct:g})")
            if short and long and short >= long:
                pair.error("shortWindow", "must be shorter than longWindow")
            if pct is not None and short and long:
                pairs[f"{severity}_{speed}"] = AlertWindow(short, long, pct)
    if len(doc.errors) > start or period is None:
        return None
    return AlertWindows(slo_period=period, source=doc.file, **pairs)


def load_windows(path: Path) -> AlertWindows:
    """Load a user's AlertWindows file; raises SpecValidationError naming file, line and field."""
    errors: list[SpecError] = []
    docs = read_documents(path, errors)
    found = [d for d, _ in docs if d is not None]
    if not errors and (len(found) != 1 or not isinstance(found[0], LineDict)):
        errors.append(SpecError(str(path), 1, "", f"expected one {API_VERSION} {KIND} mapping"))
    windows = None if errors else windows_from_document(View(found[0], "", str(path), errors))
    if errors or windows is None:
        raise SpecValidationError(errors)
    return windows


def builtin_windows() -> dict[timedelta, AlertWindows]:
    """The shipped policies keyed by SLO period (30d, 28d, 7d)."""
    return dict(_builtin())


@functools.cache
def _builtin() -> dict[timedelta, AlertWindows]:
    out: dict[timedelta, AlertWindows] = {}
    folder = resources.files(__package__)
    for name in BUILTIN_FILES:
        errors: list[SpecError] = []
        windows = parse_windows((folder / name).read_text(encoding="utf-8"), name, errors)
        if windows is None:  # a packaging bug, not user input
            raise RuntimeError("; ".join(str(e) for e in errors))
        out[windows.slo_period] = windows
    return out


def windows_for(
    period: timedelta, custom: tuple[AlertWindows, ...] | list[AlertWindows] = ()
) -> AlertWindows | None:
    """The policy for an SLO period: a custom file for it, a built-in one, or the Workbook scaled.

    Sloth refuses periods it has no file for; aisre instead keeps the Workbook's budget shares
    (2/5/10/10 %) with its 30d windows, so factors scale with the period. Periods shorter than
    the longest window (3d) get no burn-rate alerts (None).
    """
    for windows in custom:
        if windows.slo_period == period:
            return windows
    builtin = builtin_windows()
    if period in builtin:
        return builtin[period]
    base = builtin[timedelta(days=30)]
    if period < base.ticket_slow.long:
        return None
    pairs = {name: AlertWindow(w.short, w.long, WORKBOOK_PERCENTS[name])
             for name, w in base.pairs().items()}
    return AlertWindows(slo_period=period, source="workbook-scaled", **pairs)


# ---------------------------------------------------------------------------- Pyrra


@dataclass(frozen=True)
class PyrraWindow:
    """One of Pyrra's four burn-rate alerts: both windows over factor × budget for ``for_``."""

    severity: str
    for_: timedelta
    long: timedelta
    short: timedelta
    factor: float


_MINUTE_NS = 60 * 10**9
# (severity, for divisor, long divisor, short divisor, factor) relative to the SLO window,
# from Pyrra's slo/rules.go Windows(): 28d gives for 2m/15m/1h/3h, long 1h/6h/1d/4d.
_PYRRA = (
    ("critical", 20160, 672, 8064, 14.0),
    ("critical", 2688, 112, 1344, 7.0),
    ("warning", 672, 28, 336, 2.0),
    ("warning", 224, 7, 112, 1.0),
)


def _go_div_round(period: timedelta, divisor: int) -> timedelta:
    # Go: time.Duration(ns) / n truncates, then .Round(time.Minute) rounds halves away from zero.
    ns = (period // timedelta(microseconds=1)) * 1000 // divisor
    q, r = divmod(ns, _MINUTE_NS)
    if 2 * r >= _MINUTE_NS:
        q += 1
    return timedelta(minutes=q)


def pyrra_windows(period: timedelta) -> list[PyrraWindow]:
    """Pyrra's multi-burn-rate windows for an SLO period (fixed factors 14/7/2/1)."""
    return [
        PyrraWindow(sev, _go_div_round(period, f), _go_div_round(period, lo),
                    _go_div_round(period, sh), factor)
        for sev, f, lo, sh, factor in _PYRRA
    ]


def pyrra_alert_windows(period: timedelta) -> AlertWindows:
    """Pyrra's windows expressed as Sloth-style budget shares (``for`` durations are dropped)."""
    pw = pyrra_windows(period)
    p = [AlertWindow(w.short, w.long, w.factor * (w.long / period) * 100) for w in pw]
    return AlertWindows(period, p[0], p[1], p[2], p[3], source="pyrra")
