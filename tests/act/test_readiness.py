"""Launch readiness from facts: a journey missing a runbook and a release gate fails those items
(and is not ready); completing them passes; a template adds items and switches built-ins off."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisre.act.readiness import Context, evaluate_readiness, load_template, parse_template
from aisre.core.slo import SloSpec, SpecValidationError
from aisre.evaluate.specs import load_specs
from aisre.store.duckdb import DuckDBStore
from tests.act.incident_data import S, load, runs_request

SLO = "slos:\n  - name: ask-success\n    journey: ask\n    objective: 99\n    sli: {kind: outcome}\n    owner: search-team\n    tier: 1\n"


def _specs(tmp_path: Path, extra: str = "") -> list[SloSpec]:
    (tmp_path / "slos.yaml").write_text(SLO + extra)
    return load_specs([tmp_path / "slos.yaml"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path / "r.duckdb"))
    load(s, runs_request(10, time.time_ns() - 3600 * S)[0])
    s.cost.put_budget({"tenant": "t", "name": "ask-monthly", "journey": "ask", "period": "month", "amount_usd": 100.0,
                  "thresholds": [0.8, 1.0]})
    s.incidents.add_change({"tenant": "t", "kind": "loadtest", "summary": "k6 ramp to 50 rps", "at_ns": time.time_ns() - 86400 * S,
                            "services": ["support-bot"], "journeys": ["ask"], "metadata": {"rps": 50, "p95_ms": 850},
                            "source": "api", "created_ns": time.time_ns()})
    yield s
    s.close()


def _by_id(doc: dict) -> dict[str, dict]:
    return {i["id"]: i for i in doc["items"]}


def test_missing_runbook_and_gate_fail_then_pass(store: DuckDBStore, tmp_path: Path) -> None:
    ctx = Context(receivers=1, gate_configured=False, policy_rules=0)
    doc = evaluate_readiness(store, "t", "ask", _specs(tmp_path), ctx)
    items = _by_id(doc)
    assert doc["ready"] is False
    assert set(doc["failed_required"]) == {"slo-runbook", "gate-configured", "gate-history", "policy"}
    assert items["slo-runbook"]["value"] == 1 and "runbook" in items["slo-runbook"]["fix"]
    assert "aisre gate --journey ask" in items["gate-history"]["fix"]
    for ok in ("slo-defined", "slo-owner", "slo-tier", "alerts-routed", "runs-seen", "telemetry", "budget-set", "loadtest"):
        assert items[ok]["passed"], items[ok]
    assert doc["facts"]["runs"] == 10 and doc["facts"]["loadtests"] == 1 and doc["facts"]["telemetry_violations"] == 0
    assert doc["detail"]["last_loadtest"]["metadata"] == {"rps": 50, "p95_ms": 850}

    # Complete them: a runbook on the SLO, a gate file (with its default policy) and a verdict on record.
    store.save_gate_verdict({"tenant": "t", "journey": "ask", "baseline": "service.version=1.4.1",
                             "candidate": "service.version=1.4.2", "verdict": "pass", "score": 100.0,
                             "baseline_runs": 50, "candidate_runs": 50, "decided_ns": time.time_ns(), "document": {}})
    specs = _specs(tmp_path, "    runbook: https://runbooks.example/ask\n")
    doc = evaluate_readiness(store, "t", "ask", specs, Context(receivers=1, gate_configured=True, policy_rules=3))
    assert doc["ready"] is True and doc["failed_required"] == [] and doc["passed"] == doc["total"] == 12
    assert doc["detail"]["last_verdict"]["verdict"] == "pass"


def test_unknown_journey_fails_everything_it_cannot_see(store: DuckDBStore, tmp_path: Path) -> None:
    doc = evaluate_readiness(store, "t", "checkout", _specs(tmp_path), Context())
    failed = set(doc["failed_required"])
    assert {"slo-defined", "slo-owner", "slo-runbook", "runs-seen", "telemetry", "loadtest", "alerts-routed"} <= failed
    assert "budget-set" in failed  # the budget names ask only


def test_template_adds_items_and_disables_builtins(store: DuckDBStore, tmp_path: Path) -> None:
    template = parse_template(
        "disable: [loadtest, policy]\n"
        "items:\n"
        "  - {id: two-slos, title: a latency SLO beside the success one, fact: slos, op: '>=', value: 2, fix: add a latency SLO}\n"
        "  - {id: many-runs, title: enough traffic, fact: runs, op: '>=', value: 5, required: false}\n",
        "readiness.yaml")
    doc = evaluate_readiness(store, "t", "ask", _specs(tmp_path, "    runbook: https://r.example\n"),
                             Context(receivers=1, gate_configured=True, policy_rules=0), template)
    items = _by_id(doc)
    assert "loadtest" not in items and "policy" not in items
    assert items["two-slos"]["passed"] is False and items["two-slos"]["fix"] == "add a latency SLO"
    assert items["many-runs"] == {**items["many-runs"], "passed": True, "required": False}
    assert set(doc["failed_required"]) == {"gate-history", "two-slos"}


def test_template_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "readiness.yaml"
    path.write_text("disable: [nope]\nitems:\n  - id: x\n    fact: vibes\n    op: '<>'\n    value: 1\n  - id: slo-tier\n    fact: runs\n    op: '>='\n    value: 1\n")
    with pytest.raises(SpecValidationError) as caught:
        load_template(path)
    lines = [str(e) for e in caught.value.errors]
    f = str(path)
    assert any(line.startswith(f"{f}:1: disable[0]: no built-in item 'nope'") for line in lines)
    assert any(line.startswith(f"{f}:4: items[0].fact: unknown fact 'vibes'") for line in lines)
    assert any(line.startswith(f"{f}:5: items[0].op: unknown operator '<>'") for line in lines)
    assert any(line.startswith(f"{f}:7: items[1].id: item 'slo-tier' is defined twice") for line in lines)
