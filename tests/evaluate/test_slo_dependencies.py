"""A journey SLO's platform dependencies (depends_on): validated (unknown ids, cycles) with
file, line and field; the status gives each dependency's burn over its alert window and names
the burning ones while the journey burns; an incident opened for the journey names them."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from aisre.act.incidents import IncidentManager
from aisre.core.pipeline import EncodedExport
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import check_files, load_specs
from aisre.ingest.metrics import decode_metrics
from aisre.store.duckdb import DuckDBStore
from tests.metrics_otlp import DELTA, MIN, T0, counter, gauge, histogram, request


def _errors(tmp_path: Path, text: str) -> list[tuple[int, str, str]]:
    path = tmp_path / "slos.yaml"
    path.write_text(textwrap.dedent(text))
    return [(e.line, e.field, e.message) for e in check_files([path]).errors]


def test_unknown_ids_self_dependencies_and_cycles_are_errors_with_file_line_and_field(tmp_path: Path) -> None:
    errors = _errors(tmp_path, """\
        slos:
          - name: a
            journey: ask
            objective: 99
            sli: {kind: outcome}
            depends_on: [svc-b, nope]
          - name: b
            service: svc
            objective: 99
            sli: {kind: ratio, good: g, total: t}
            depends_on:
              - a
          - name: c
            journey: ask
            objective: 99
            sli: {kind: outcome}
            depends_on: [c]
          - name: d
            journey: ask
            objective: 99
            sli: {kind: outcome}
            depends_on: [svc-b]
        """)
    assert sorted(errors) == [
        (6, "slos[0].depends_on[1]", "unknown SLO 'nope'; known: a, c, d, svc-b"),
        (12, "slos[1].depends_on[0]", "dependency cycle: a -> svc-b -> a"),
        (17, "slos[2].depends_on[0]", "an SLO cannot depend on itself ('c')"),
    ]


def test_a_dependency_must_be_an_slo_id(tmp_path: Path) -> None:
    errors = _errors(tmp_path, """\
        slos:
          - name: a
            journey: ask
            objective: 99
            sli: {kind: outcome}
            depends_on: [5]
          - name: b
            journey: ask
            objective: 99
            sli: {kind: outcome}
            depends_on: x
        """)
    assert errors == [(6, "slos[0].depends_on[0]", "must be an SLO id (got 5)"),
                      (11, "slos[1].depends_on", "must be a list (got text ('x'))")]


def test_a_longer_cycle_is_reported_once(tmp_path: Path) -> None:
    body = "".join(f"  - name: s{i}\n    journey: j\n    objective: 99\n    sli: {{kind: outcome}}\n"
                   f"    depends_on: [s{(i + 1) % 3}]\n" for i in range(3))
    errors = _errors(tmp_path, "slos:\n" + body)
    assert [m for _, _, m in errors] == ["dependency cycle: s0 -> s1 -> s2 -> s0"]


SPECS = """\
slos:
  - name: triage-success
    journey: triage-agent
    objective: 99
    window: 30d
    sli: {kind: ratio, good: 'runs{outcome="ok"}', total: runs}
    depends_on: [inference-latency, gpu-pool-gpu-util]
  - name: gpu-util
    service: gpu-pool
    objective: 95
    window: 30d
    sli: {kind: threshold, metric: gpu.util, max: 0.9}
  - name: latency
    service: inference
    objective: 99
    window: 30d
    sli: {kind: histogram, metric: lat, le: 4}
"""
BURST = 150  # from this minute on: 10 % of triage runs fail and three GPUs of four run at 97 %
MINUTES = 180


def dependency_request(t0: int) -> Any:
    """Three hours from ``t0`` of triage runs (a counter pair), four GPUs and a latency histogram."""
    runs, gpus, lat = [], [], []
    for i in range(MINUTES):
        at = t0 + i * MIN + 30 * 10**9
        bad = 10 if i >= BURST else 0
        runs += [(at, 100.0 - bad, {"outcome": "ok"}), (at, float(bad), {"outcome": "failed"})]
        gpus += [(at, 0.97 if i >= BURST and g < 3 else 0.6, {"gpu": str(g)}) for g in range(4)]
        lat.append((at, [5, 20, 0, 0], {}))  # every observation within 1 s
    return request([counter("runs", runs, temporality=DELTA, start_ns=t0 - MIN), gauge("gpu.util", gpus),
                    histogram("lat", [0.5, 1, 4], lat, temporality=DELTA, start_ns=t0 - MIN)])


def _send(store: DuckDBStore) -> None:
    batch = decode_metrics(EncodedExport(dependency_request(T0).SerializeToString(), "protobuf"), 1 << 22)
    store.submit_metrics("t", batch.points).result(60)
    store.flush_rollups()


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    spec = tmp_path / "slos.yaml"
    spec.write_text(SPECS)
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    engine = SloEngine(store)
    engine.apply("t", load_specs([spec]))
    _send(store)
    yield engine
    store.close()


def test_status_names_the_burning_dependency_while_the_journey_burns(engine: SloEngine) -> None:
    now = T0 + (MINUTES - 1) * MIN + 30 * 10**9  # inside the last minute of data: the last hour is minutes 120-179
    doc = engine.status("t", "triage-success", now_ns=now)
    assert doc["depends_on"] == ["inference-latency", "gpu-pool-gpu-util"]
    # The last hour: 300 bad of 6,000 runs against a 1 % budget is 5×; 90 hot GPU-minutes of
    # 240 against 5 % is 7.5×; no slow inference at all.
    assert doc["alerts"][0]["name"] == "page_quick" and doc["alerts"][0]["long_burn"] == pytest.approx(5.0)
    deps = doc["dependencies"]
    assert [(d["slo"], d["window"], d["burning"]) for d in deps] == [
        ("gpu-pool-gpu-util", "1h", True), ("inference-latency", "1h", False)]
    assert deps[0]["burn_rate"] == pytest.approx(7.5) and deps[1]["burn_rate"] == 0.0
    gpu = engine.status("t", "gpu-pool-gpu-util", now_ns=now)
    assert deps[0]["remaining_ratio"] == pytest.approx(gpu["error_budget"]["remaining_ratio"])
    assert deps[0]["status"] == gpu["status"] and deps[0]["kind"] == "threshold"
    assert [(b["slo"], b["text"]) for b in doc["burning_because"]] == [("gpu-pool-gpu-util", "gpu-pool-gpu-util SLO, burn 7.5×")]
    # The list of every SLO carries the same, evaluated once.
    listed = {d["name"]: d for d in engine.statuses("t", now_ns=now)}
    assert [b["slo"] for b in listed["triage-success"]["burning_because"]] == ["gpu-pool-gpu-util"]
    assert "dependencies" not in listed["gpu-pool-gpu-util"]


def test_nothing_is_named_while_the_journey_does_not_burn(engine: SloEngine) -> None:
    doc = engine.status("t", "triage-success", now_ns=T0 + (BURST - 1) * MIN + 30 * 10**9)
    assert [d["burn_rate"] for d in doc["dependencies"]] == [0.0, 0.0]
    assert doc["burning_because"] == []


def test_an_incident_for_the_journey_names_the_burning_dependency(engine: SloEngine) -> None:
    store = engine.store
    now = T0 + (MINUTES - 1) * MIN + 30 * 10**9
    manager = IncidentManager(store.incidents, engine, "t", clock=lambda: now,  # type: ignore[attr-defined]
                              slo_minutes=store.slo_minute_arrays)
    opened = manager.on_slo_alerts([{
        "slo": "triage-success", "journey": "triage-agent", "severity": "ticket", "state": "firing",
        "pending_since_ns": now - 10 * MIN, "started_ns": now - 10 * MIN, "ended_ns": None,
        "summary": "triage-success: burning 5x", "peak_burn": 5.0}])
    assert len(opened) == 1
    doc = manager.get(opened[0]["id"])
    [dep] = doc["burning_dependencies"]
    assert (dep["slo"], dep["window"], dep["summary"]) == ("gpu-pool-gpu-util", "1h", "gpu-pool-gpu-util SLO, burn 7.5×")
    assert dep["burn_rate"] == pytest.approx(7.5)
    # Kept as it stood at opening when triage refreshes the evidence.
    assert manager.refresh(opened[0]["id"])["burning_dependencies"] == doc["burning_dependencies"]
