"""Prometheus-sourced SLIs: read an event-shaped Prometheus SLI (error or good query over
total query, each the count of one minute, e.g. ``sum(increase(x[1m]))``) at minute
resolution and store it as SLO minutes, so budgets, burn rates, alerts, incidents and the
gate treat it like any other SLO."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from aisre.core.slo import PrometheusSli, SloSpec
from aisre.receive.prometheus import MINUTE_NS
from aisre.store.lease import LeaseGate
from aisre.store.protocol import ExternalSloMinutes

log = logging.getLogger(__name__)


class MinuteReader(Protocol):
    def minutes(self, query: str, start_ns: int, end_ns: int) -> dict[int, float]: ...


def prometheus_minutes(sli: PrometheusSli, reader: MinuteReader, start_ns: int, end_ns: int) -> list[tuple[int, int, int]]:
    """(minute_ns, good, total) of an event-shaped Prometheus SLI over [start_ns, end_ns)."""
    total = reader.minutes(sli.total_query or "", start_ns, end_ns)
    bad = sli.good_query is None
    part = reader.minutes((sli.error_query if bad else sli.good_query) or "", start_ns, end_ns)
    rows = []
    for minute in sorted(total):
        t = round(total[minute])
        if t <= 0:
            continue
        p = round(part.get(minute, 0.0))
        good = t - p if bad else p
        rows.append((minute, min(max(good, 0), t), t))
    return rows


def sync_prometheus(specs: list[SloSpec], reader: MinuteReader, store: ExternalSloMinutes, tenant: str,
                    start_ns: int, end_ns: int) -> dict[str, int]:
    """Re-read every event-shaped Prometheus SLI of ``specs`` over [start_ns, end_ns) into
    the store; returns minutes written per SLO."""
    start = start_ns // MINUTE_NS * MINUTE_NS
    written: dict[str, int] = {}
    for spec in specs:
        sli = spec.sli
        if not isinstance(sli, PrometheusSli) or sli.shape not in ("events", "good_total"):
            continue
        rows = prometheus_minutes(sli, reader, start, end_ns)
        store.put_slo_minutes(tenant, spec.id, start, end_ns, rows)
        written[spec.id] = len(rows)
    return written


class PrometheusSync:
    """Reads Prometheus SLIs every ``interval_s``: the whole SLO window once, then the last
    ``lookback_s`` (late scrapes and rule evaluations fill in)."""

    # Passes run only while this node holds the evaluator lease (app.py sets it; always, by default).
    gate: LeaseGate = LeaseGate()

    def __init__(self, specs_of: object, reader: MinuteReader, store: ExternalSloMinutes, tenant: str,
                 interval_s: float = 60.0, lookback_s: float = 3600.0, backfill_s: float = 30 * 86400.0) -> None:
        self._specs_of = specs_of
        self._reader = reader
        self._store = store
        self._tenant = tenant
        self._interval = interval_s
        self._lookback_ns = int(lookback_s * 1e9)
        self._backfill_ns = int(backfill_s * 1e9)
        self._backfilled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync_once(self, now_ns: int | None = None) -> dict[str, int]:
        """One pass: read and store the minutes of every Prometheus SLI."""
        now = now_ns or time.time_ns()
        end = now // MINUTE_NS * MINUTE_NS  # whole minutes only
        start = end - (self._lookback_ns if self._backfilled else self._backfill_ns)
        specs = self._specs_of(self._tenant)  # type: ignore[operator]
        written = sync_prometheus(specs, self._reader, self._store, self._tenant, start, end)
        self._backfilled = True
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
