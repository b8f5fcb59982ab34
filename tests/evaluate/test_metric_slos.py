"""A metric SLI goes through the same SLO minutes → budget → burn rate → alert machinery
as a journey SLI: evaluated against a hand-built minute series of the same truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aisre.act.alerts import AlertEvaluator
from aisre.core.series import MetricPoint, series_id
from aisre.core.timefmt import rfc3339
from aisre.evaluate.budget import MinuteSeries, replay
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import load_specs
from aisre.evaluate.windows import windows_for
from aisre.store.duckdb import DuckDBStore

MIN = 60 * 10**9
T0 = 1_767_225_600 * 10**9
HOURS = 8
BURST = range(5 * 60, 6 * 60)  # minutes with 30 % errors; 1 % otherwise


def point(name: str, labels: str, at: int, value: float) -> MetricPoint:
    return MetricPoint(series_id(name, labels), name, labels, "sum", "delta", "1", at - MIN, at, value, 0.0, (), ())


def test_ratio_metric_slo_budget_burn_and_alerts(tmp_path: Path) -> None:
    spec_file = tmp_path / "slos.yaml"
    spec_file.write_text(
        "slos:\n  - name: errors\n    service: vllm\n    objective: 99\n    window: 30d\n"
        "    sli: {kind: ratio, bad: 'requests{code=~\"5..\"}', total: requests}\n"
    )
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    try:
        engine = SloEngine(store)
        engine.apply("t", load_specs([spec_file]))
        points, good, total = [], [], []
        for i in range(HOURS * 60):
            bad = 30 if i in BURST else 1
            at = T0 + i * MIN + 30 * 10**9
            points += [point("requests", '{"code":"200"}', at, 100.0 - bad), point("requests", '{"code":"503"}', at, bad)]
            good.append(100 - bad)
            total.append(100)
        store.submit_metrics("t", points).result(60)
        store.flush_rollups()
        now = T0 + HOURS * 60 * MIN
        status = engine.status("t", "vllm-errors", now_ns=now)
        bad_total = 60 * 30 + (HOURS * 60 - 60) * 1
        assert (status["good"], status["total"]) == (HOURS * 60 * 100 - bad_total, HOURS * 60 * 100)
        assert abs(status["sli"] - (1 - bad_total / (HOURS * 60 * 100))) < 1e-9
        # Replay equals the budget machinery run on the truth, minute by minute.
        truth = MinuteSeries(T0, np.array(good, dtype=np.int64), np.array(total, dtype=np.int64))
        spec = engine.specs("t")[0]
        windows = windows_for(spec.window.duration)
        assert windows is not None
        expected = replay(truth, 99, spec.window.duration, windows, spec.alert_guard)
        got = engine.replay("t", "vllm-errors", T0, now)
        assert [(a["severity"], a["start"], a["end"]) for a in got] == [
            (a.severity, rfc3339(a.start_ns), rfc3339(a.end_ns)) for a in expected
        ]
        assert {a["severity"] for a in got} >= {"page"}
        page = next(a for a in expected if a.severity == "page")
        assert T0 + BURST.start * MIN <= page.start_ns <= T0 + BURST.stop * MIN
        # The alert evaluator fires a page inside the burst, with no journey: grouped by SLO.
        fired = AlertEvaluator(engine, store, "t").evaluate_once(now_ns=T0 + (BURST.start + 45) * MIN)
        assert any(r["severity"] == "page" and r["state"] in ("firing", "pending") and r["journey"] is None
                   for r in fired)
    finally:
        store.close()
