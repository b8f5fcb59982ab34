"""Prometheus-sourced SLIs: read a Prometheus SLI at minute resolution and store it as SLO
minutes, so budgets, burn rates, alerts, incidents and the gate treat it like any other SLO.

The shapes read (``core.slo.PROMETHEUS_SHAPES``):

- events: ``error_query`` (or ``good_query``) over ``total_query``, each the count of one
  minute, e.g. ``sum(increase(x[1m]))``;
- threshold: ``threshold_query`` with ``op``/``value``. Each series of the query's result at a
  minute's end is one event of that minute, good when ``value <op> threshold``, as the
  native threshold SLI counts each gauge series once a minute (and as Pyrra's bool-gauge
  and OpenSLO's threshold metrics judge each series' sample); aggregate in PromQL to get
  one event a minute (``max(avg_over_time(x[1m]))``);
- histogram: ``histogram`` (a classic histogram's base selector) with ``le``. Good is the
  minute's increase of ``<name>_bucket{le="<le>"}``, total that of ``<name>_count``, as
  Pyrra's latency SLO reads them; ``le`` must be one of the histogram's bucket bounds.

The raw shapes (``error_ratio_query``, ``good_ratio_query``) give a ratio with no count of
events behind it: a minute's weight in the budget is unknown, so they are refused
(:func:`unsupported_reason`) rather than read with invented counts.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Protocol

from aisre.core.errors import PermanentError
from aisre.core.series import format_selector, parse_selector
from aisre.core.slo import PrometheusSli, SloSpec, threshold_met
from aisre.core.slo import prometheus_unsupported as unsupported_reason
from aisre.receive.prometheus import MINUTE_NS
from aisre.store.lease import LeaseGate
from aisre.store.protocol import ExternalSloMinutes

log = logging.getLogger(__name__)


class MinuteReader(Protocol):
    def minutes(self, query: str, start_ns: int, end_ns: int) -> dict[int, float]: ...

    def series_minutes(self, query: str, start_ns: int, end_ns: int) -> dict[int, list[float]]: ...

    def label_values(self, label: str, match: str, start_ns: int, end_ns: int) -> list[str]: ...


def bucket_label(found: list[str], le: float, what: str) -> tuple[str, str]:
    """The ``le`` matcher (operator, value) that picks the bucket bounded by ``le`` among the
    bounds Prometheus holds (``found``, as exported: "2", "2.0", "+Inf"); PermanentError
    naming the bounds when ``le`` is not one of them."""
    same = sorted({v for v in found if _as_float(v) is not None and math.isclose(_as_float(v) or 0.0, le, rel_tol=1e-9)})
    if not same:
        bounds = sorted({b for v in found if (b := _as_float(v)) is not None})
        listed = ", ".join("+Inf" if b == math.inf else f"{b:g}" for b in bounds) or "none in the range read"
        raise PermanentError(f"le {le:g} is not a bucket bound of {what}; its bounds: {listed}")
    if len(same) == 1:
        return "=", same[0]
    # Targets may write one bound two ways ("2" by Go clients, "2.0" by Python ones).
    return "=~", "|".join(re.escape(v) for v in same)


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def histogram_queries(sli: PrometheusSli, reader: MinuteReader, start_ns: int, end_ns: int) -> tuple[str, str] | None:
    """(good, total) per-minute count queries of a histogram SLI, the ``le`` bound checked
    against the bucket bounds Prometheus holds; None when the histogram has no bucket
    series in [start_ns, end_ns)."""
    selector = parse_selector(sli.histogram or "")
    bucket = format_selector(f"{selector.metric}_bucket", selector.matchers)
    found = reader.label_values("le", bucket, start_ns, end_ns)
    if not found:
        return None
    op, bound = bucket_label(found, float(sli.le if sli.le is not None else math.inf), bucket)
    good = format_selector(f"{selector.metric}_bucket", (*selector.matchers, ("le", op, bound)))
    total = format_selector(f"{selector.metric}_count", selector.matchers)
    return f"sum(increase({good}[1m]))", f"sum(increase({total}[1m]))"


def _counted(part: dict[int, float], total: dict[int, float], part_is_good: bool) -> list[tuple[int, int, int]]:
    rows = []
    for minute in sorted(total):
        t = round(total[minute])
        if t <= 0:
            continue
        p = round(part.get(minute, 0.0))
        good = p if part_is_good else t - p
        rows.append((minute, min(max(good, 0), t), t))
    return rows


def prometheus_minutes(sli: PrometheusSli, reader: MinuteReader, start_ns: int, end_ns: int) -> list[tuple[int, int, int]]:
    """(minute_ns, good, total) of a Prometheus SLI over [start_ns, end_ns); PermanentError
    for a shape that cannot be read, or a histogram bound that is not a bucket bound."""
    reason = unsupported_reason(sli)
    if reason is not None:
        raise PermanentError(reason)
    shape = sli.shape
    if shape == "threshold":
        values = reader.series_minutes(sli.threshold_query or "", start_ns, end_ns)
        op, bound = sli.op or "", float(sli.value or 0.0)
        return [(minute, sum(threshold_met(v, op, bound) for v in vs), len(vs))
                for minute, vs in sorted(values.items()) if vs]
    if shape == "histogram":
        queries = histogram_queries(sli, reader, start_ns, end_ns)
        if queries is None:
            return []
        good_q, total_q = queries
        return _counted(reader.minutes(good_q, start_ns, end_ns), reader.minutes(total_q, start_ns, end_ns), True)
    total = reader.minutes(sli.total_query or "", start_ns, end_ns)
    good = sli.good_query is not None
    part = reader.minutes((sli.good_query if good else sli.error_query) or "", start_ns, end_ns)
    return _counted(part, total, good)


def sync_prometheus(specs: list[SloSpec], reader: MinuteReader, store: ExternalSloMinutes, tenant: str,
                    start_ns: int, end_ns: int, errors: dict[str, str] | None = None) -> dict[str, int]:
    """Re-read every readable Prometheus SLI of ``specs`` over [start_ns, end_ns) into the
    store; returns minutes written per SLO. An SLI Prometheus refuses (a bad query, a
    histogram bound that is no bucket bound) raises, or with ``errors`` is noted there by
    SLO and the others are still read."""
    start = start_ns // MINUTE_NS * MINUTE_NS
    written: dict[str, int] = {}
    for spec in specs:
        sli = spec.sli
        if not isinstance(sli, PrometheusSli) or unsupported_reason(sli) is not None:
            continue
        try:
            rows = prometheus_minutes(sli, reader, start, end_ns)
        except PermanentError as exc:
            if errors is None:
                raise
            errors[spec.id] = str(exc)
            continue
        store.put_slo_minutes(tenant, spec.id, start, end_ns, rows)
        written[spec.id] = len(rows)
    return written


class PrometheusSync:
    """Reads Prometheus SLIs every ``interval_s``: the whole SLO window once, then the last
    ``lookback_s`` (late scrapes and rule evaluations fill in)."""

    # Passes run only while this node holds the evaluator lease (app.py sets it; always, by default).
    gate: LeaseGate = LeaseGate()

    def __init__(self, specs_of: object, reader: MinuteReader, store: ExternalSloMinutes, tenant: str,
                 interval_s: float = 60.0, lookback_s: float = 3600.0, backfill_s: float = 30 * 86400.0,
                 report: Callable[[str, dict[str, str]], None] | None = None) -> None:
        self._specs_of = specs_of
        self._reader = reader
        self._store = store
        self._tenant = tenant
        self._interval = interval_s
        self._lookback_ns = int(lookback_s * 1e9)
        self._backfill_ns = int(backfill_s * 1e9)
        self._filled: dict[str, object] = {}  # SLO id -> the SLI whose whole window was read
        self._report = report
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync_once(self, now_ns: int | None = None) -> dict[str, int]:
        """One pass: read and store the minutes of every Prometheus SLI (the whole window of
        an SLI not read whole yet, the last ``lookback_s`` of the others); SLIs Prometheus
        refused are logged and handed to ``report`` (the SLO documents show them)."""
        now = now_ns or time.time_ns()
        end = now // MINUTE_NS * MINUTE_NS  # whole minutes only
        specs: list[SloSpec] = self._specs_of(self._tenant)  # type: ignore[operator]
        # An SLO added or changed later (PUT /api/slos), or refused before, is backfilled too.
        fresh = [s for s in specs if self._filled.get(s.id) != s.sli]
        known = [s for s in specs if self._filled.get(s.id) == s.sli]
        errors: dict[str, str] = {}
        written = sync_prometheus(known, self._reader, self._store, self._tenant, end - self._lookback_ns, end, errors)
        filled = sync_prometheus(fresh, self._reader, self._store, self._tenant, end - self._backfill_ns, end, errors)
        written.update(filled)
        self._filled = {s.id: s.sli for s in specs if s.id in written}
        for slo, message in errors.items():
            log.warning("reading Prometheus SLI %s failed: %s", slo, message)
        if self._report is not None:
            self._report(self._tenant, errors)
        return written

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.gate.admit()[0]:  # another node holds the evaluator lease and reads Prometheus
                self._stop.wait(self._interval)
                continue
            try:
                with self.gate.fenced():  # minutes refused once another node holds a newer lease term
                    self.sync_once()
            except Exception as exc:  # an unreachable Prometheus must not stop the server
                log.warning("reading Prometheus SLIs failed: %s", exc)
            self._stop.wait(self._interval)

    def start(self) -> None:
        """Start the background reader."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aisre-prometheus", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the reader. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
