"""Alert state: pending → firing → resolved, stored, resumed after a restart."""

from __future__ import annotations

import time
from pathlib import Path

from aisre.act.alerts import AlertEvaluator, Condition, step
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import load_specs
from aisre.normalize.spans import flatten
from aisre.store.duckdb import DuckDBStore
from tests.otlp_factory import journey_request

S = 10**9


def _cond(active: bool, burn: float = 20.0) -> list[Condition]:
    return [Condition("ask-success", "ask", "page", active, burn, "s")]


def _healthy_history(store: DuckDBStore, tenant: str, now: int) -> None:
    request, _ = journey_request(20, start_ns=now - 4 * 86400 * S)
    flat = flatten(request, tenant)
    store.submit_spans(flat.table, flat.resources).result(10)


def test_state_machine_without_for() -> None:
    active: dict = {}
    assert step(active, 1 * S, _cond(False), "t") == []
    rows = step(active, 2 * S, _cond(True, 20), "t")
    assert [(r["state"], r["started_ns"]) for r in rows] == [("firing", 2 * S)]
    rows = step(active, 3 * S, _cond(True, 30), "t")
    assert rows[0]["peak_burn"] == 30 and rows[0]["state"] == "firing"
    rows = step(active, 4 * S, _cond(False), "t")
    assert (rows[0]["state"], rows[0]["ended_ns"], rows[0]["started_ns"]) == ("resolved", 4 * S, 2 * S)
    assert active == {}


def test_a_burn_hovering_at_its_factor_keeps_one_episode_until_clear_for_keep_firing() -> None:
    active: dict = {}
    rows = step(active, 0, _cond(True), "t", keep_firing_s=300)
    assert [r["state"] for r in rows] == ["firing"]
    # Clear, burning, clear again: one firing episode throughout, nothing to store meanwhile.
    assert step(active, 15 * S, _cond(False), "t", keep_firing_s=300) == []
    assert step(active, 30 * S, _cond(True, 25), "t", keep_firing_s=300)[0]["state"] == "firing"
    assert step(active, 45 * S, _cond(False), "t", keep_firing_s=300) == []
    assert step(active, 300 * S, _cond(False), "t", keep_firing_s=300) == []  # clear for 255 s
    rows = step(active, 345 * S, _cond(False), "t", keep_firing_s=300)  # clear for 300 s
    assert [(r["state"], r["started_ns"], r["ended_ns"], r["peak_burn"]) for r in rows] == [
        ("resolved", 0, 345 * S, 25)]
    assert active == {}


def test_pending_waits_for_its_duration_and_may_clear_without_firing() -> None:
    active: dict = {}
    rows = step(active, 0, _cond(True), "t", for_s=60)
    assert rows[0]["state"] == "pending" and rows[0]["started_ns"] is None
    assert step(active, 30 * S, _cond(True), "t", for_s=60)[0]["state"] == "pending"
    assert step(active, 61 * S, _cond(True), "t", for_s=60)[0]["state"] == "firing"
    active = {}
    step(active, 0, _cond(True), "t", for_s=60)
    cleared = step(active, 10 * S, _cond(False), "t", for_s=60)[0]
    assert (cleared["state"], cleared["started_ns"]) == ("resolved", None)


def test_evaluator_stores_episodes_from_failing_runs_and_resumes(tmp_path: Path) -> None:
    spec = tmp_path / "slos.yaml"
    spec.write_text("slos:\n  - name: ask-success\n    journey: ask\n    objective: 99.9\n    sli: {kind: outcome}\n")
    store = DuckDBStore(str(tmp_path / "a.duckdb"))
    engine = SloEngine(store)
    engine.apply("t", load_specs([spec]))
    evaluator = AlertEvaluator(engine, store, "t")
    now = time.time_ns()
    assert evaluator.evaluate_once(now) == []

    # Healthy runs four days ago observe every alert window whole; then 20 runs fail.
    _healthy_history(store, "t", now)
    request, _ = journey_request(20, start_ns=now - 90 * S)
    for span in request.resource_spans[0].scope_spans[0].spans:
        if not span.parent_span_id:
            span.status.code = 2  # the root failed: the user got no answer
    flat = flatten(request, "t")
    store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()
    changed = evaluator.evaluate_once(now)
    assert {(r["severity"], r["state"]) for r in changed} == {("page", "firing"), ("ticket", "firing")}
    stored = store.list_alerts("t", state="firing")
    assert {a["severity"] for a in stored} == {"page", "ticket"}
    assert all(a["peak_burn"] > 14.4 and "burning" in a["summary"] for a in stored)

    # A new evaluator (a restarted server) resumes the open episodes instead of duplicating.
    resumed = AlertEvaluator(engine, store, "t")
    assert resumed.evaluate_once(now + S)[0]["id"] is not None
    assert len(store.list_alerts("t")) == 2

    # An hour later with healthy traffic, the short windows clear: resolved.
    later = now + 3600 * S
    healthy, _ = journey_request(200, start_ns=later - 10 * 60 * S)
    flat = flatten(healthy, "t")
    store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()
    resolved = resumed.evaluate_once(later)
    assert {(r["severity"], r["state"]) for r in resolved if r["severity"] == "page"} == {("page", "resolved")}
    page = next(a for a in store.list_alerts("t") if a["severity"] == "page")
    assert page["ended_ns"] == later and page["started_ns"] == now

    replayed = engine.replay("t", "ask-success", now - 3600 * S, later + 60 * S)
    assert [r["severity"] for r in replayed if r["severity"] == "page"] == ["page"]
    store.close()


def test_every_tenant_with_slos_is_evaluated(tmp_path: Path) -> None:
    spec = tmp_path / "slos.yaml"
    spec.write_text("slos:\n  - name: ask-success\n    journey: ask\n    objective: 99.9\n    sli: {kind: outcome}\n")
    store = DuckDBStore(str(tmp_path / "tenants.duckdb"))
    engine = SloEngine(store)
    for tenant in ("shop", "bank"):
        engine.apply(tenant, load_specs([spec]))
    # The default tenant has no SLOs; "bank" fails, "shop" is healthy.
    evaluator = AlertEvaluator(engine, store, "default")
    now = time.time_ns()
    for tenant, failing in (("shop", False), ("bank", True)):
        _healthy_history(store, tenant, now)
        request, _ = journey_request(20, start_ns=now - 90 * S)
        for span in request.resource_spans[0].scope_spans[0].spans:
            if failing and not span.parent_span_id:
                span.status.code = 2
        flat = flatten(request, tenant)
        store.submit_spans(flat.table, flat.resources).result(10)
    store.flush_rollups()
    changed = evaluator.evaluate_once(now)
    assert {(r["tenant"], r["severity"], r["state"]) for r in changed} == {
        ("bank", "page", "firing"), ("bank", "ticket", "firing")}
    assert store.list_alerts("shop") == [] and len(store.list_alerts("bank", state="firing")) == 2
    store.close()
