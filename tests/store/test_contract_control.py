"""The store contract, control plane: keys, audit, alerts, incidents, changes, gate verdicts,
scores, retention, capacity warning levels, and tenant isolation across every read, through the methods the layers
above call. Part of the suite every backend must pass (see tests/store/test_contract.py).

Timestamps the store takes from the wall clock (key creation, audit records) are checked as
present and ordered, never as values. Order is checked where it is part of a method's
contract (said per test) and ignored elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

from aisre.core.auth import Forbidden, acting_for
from aisre.core.errors import Conflict, NotFound, PermanentError, StaleState
from aisre.core.model import RunQuery, SliRule, TimeRange
from aisre.core.population import PopulationQuery
from aisre.core.rows import (
    AlertEpisode,
    ApiKey,
    AuditEntry,
    CapacityLevel,
    Change,
    CostBudget,
    GateVerdictSummary,
    Incident,
    PriceOverride,
    RateLimit,
    row_problems,
)
from aisre.core.schema import SCORE_ARROW_SCHEMA
from tests.store.conftest import OpenedStore
from tests.store.contract.data import BY_NAME, MINUTE_NS, NOW_NS, ingest, later_release

A, B, C = "tenant-a", "tenant-b", "tenant-c"
HOUR_NS = 3600 * 10**9
ALL_TIME = (0, 2**62)
CAPTURE = "pydantic-ai"  # small: 4 runs of ``ask``, one failed


@pytest.fixture(scope="module")
def seeded(contract_store: OpenedStore) -> Iterator[OpenedStore]:
    """Tenant A holds one capture with an outcome SLO; tenant B holds nothing yet."""
    store = contract_store.store
    assert not store.auth_latched()  # a new store has never had a key
    for body in BY_NAME[CAPTURE].bodies:
        ingest(store, A, body)
    store.set_sli_rules(A, [SliRule(slo="ask-success", journey="ask", kind="outcome")])
    for body in BY_NAME[CAPTURE].bodies:  # tenant C: the same runs, for change detection
        ingest(store, C, body)
    store.flush_rollups()
    yield contract_store


def _ask_runs(store: Any, tenant: str = A) -> list[dict[str, Any]]:
    return list(store.list_runs(RunQuery(tenant, journey="ask", limit=1000)))


# --- keys and audit -----------------------------------------------------------------------


def test_keys_round_trip_latch_auth_and_are_audited(seeded: OpenedStore) -> None:
    store = seeded.store
    store.add_key({"key_id": "k-admin", "digest": "d-admin", "tenant": A, "role": "admin", "name": "ops"}, "alice")
    store.add_key({"key_id": "k-ingest", "digest": "d-ingest", "tenant": A, "role": "ingest", "name": "collector",
                   "expires_ns": NOW_NS + 86_400 * 10**9}, "alice")
    assert store.auth_latched()
    # list_keys never shows digests; creation order is contract.
    keys = store.list_keys(A)
    assert [k["key_id"] for k in keys] == ["k-admin", "k-ingest"]
    assert all("digest" not in k and k["created_by"] == "alice" and k["revoked_ns"] is None for k in keys)
    assert keys[1]["expires_ns"] == NOW_NS + 86_400 * 10**9 and keys[0]["expires_ns"] is None
    active = {k["key_id"]: k for k in store.active_keys() if k["tenant"] == A}  # all tenants; unordered
    assert {k: (v["digest"], v["role"]) for k, v in active.items()} == {
        "k-admin": ("d-admin", "admin"), "k-ingest": ("d-ingest", "ingest")}

    with pytest.raises(Conflict, match="last admin key"):
        store.revoke_key(A, "k-admin", "alice", keep_admin=True)
    with pytest.raises(NotFound):
        store.revoke_key(B, "k-ingest", "mallory")  # another tenant's key is not there
    with pytest.raises(NotFound):
        store.revoke_key(A, "k-none", "alice")
    revoked = store.revoke_key(A, "k-ingest", "bob")
    assert revoked["revoked_ns"] is not None
    assert store.revoke_key(A, "k-ingest", "bob")["revoked_ns"] == revoked["revoked_ns"]  # idempotent
    assert {k["key_id"] for k in store.active_keys() if k["tenant"] == A} == {"k-admin"}
    listed = {k["key_id"]: k for k in store.list_keys(A)}
    assert (listed["k-ingest"]["revoked_ns"], listed["k-ingest"]["revoked_by"]) == (revoked["revoked_ns"], "bob")
    assert store.auth_latched()  # the latch outlives the keys

    # The audit log: newest first (contract), with what changed.
    audit = store.list_audit(A, action="key")
    assert [(r["action"], r["target"], r["actor"]) for r in audit] == [
        ("key.revoke", "k-ingest", "bob"), ("key.create", "k-ingest", "alice"), ("key.create", "k-admin", "alice")]
    assert audit[2]["before"] is None and audit[2]["after"] == {
        "key_id": "k-admin", "tenant": A, "role": "admin", "name": "ops", "expires_ns": None}
    assert audit[0]["before"]["revoked_ns"] is None and audit[0]["after"]["revoked_ns"] == revoked["revoked_ns"]
    assert [r["at_ns"] for r in audit] == sorted((r["at_ns"] for r in audit), reverse=True)
    # Keys and audit records have exactly the fields and types core/rows.py declares.
    assert [row_problems(dict(k), ApiKey) for k in store.list_keys(A)] == [[], []]
    assert [row_problems(dict(r), AuditEntry) for r in audit] == [[], [], []]


def test_audit_appends_and_filters(seeded: OpenedStore) -> None:
    store = seeded.store
    store.audit(A, "carol", "slo.put", "ask-success", None, {"objective": 99.5})
    store.audit(A, "carol", "slo.put", "ask-success", {"objective": 99.5}, {"objective": 99.9})
    store.audit(A, "dave", "slos.reload", "all", None, None)
    puts = store.list_audit(A, action="slo")
    # "slo" matches "slo" and "slo.*", not "slos.*".
    assert [(r["actor"], r["before"], r["after"]) for r in puts] == [
        ("carol", {"objective": 99.5}, {"objective": 99.9}), ("carol", None, {"objective": 99.5})]
    assert len(store.list_audit(A, limit=2)) == 2
    newest = store.list_audit(A, limit=1)[0]
    assert newest["action"] == "slos.reload"
    assert {r["action"] for r in store.list_audit(A, since_ns=newest["at_ns"])} >= {"slos.reload"}
    assert store.list_audit(A, since_ns=newest["at_ns"] + 1) == []


# --- alerts and incidents -----------------------------------------------------------------


def _alert(**kw: Any) -> dict[str, Any]:
    row = {"tenant": A, "slo": "ask-success", "journey": "ask", "severity": "page", "state": "pending",
           "pending_since_ns": NOW_NS, "started_ns": None, "ended_ns": None, "peak_burn": 15.0,
           "updated_ns": NOW_NS, "summary": "burning 15x"}
    return {**row, **kw}


def test_alert_episodes_round_trip(seeded: OpenedStore) -> None:
    store = seeded.store
    page, ticket = _alert(), _alert(severity="ticket", pending_since_ns=NOW_NS + 60 * 10**9, peak_burn=3.5)
    store.save_alerts([page, ticket])
    assert isinstance(page["id"], int) and isinstance(ticket["id"], int) and page["id"] != ticket["id"]
    # active_alerts: unresolved, by id (contract).
    assert [a["id"] for a in store.active_alerts(A)] == [page["id"], ticket["id"]]
    page.update(state="firing", started_ns=NOW_NS + 30 * 10**9, peak_burn=16.25, updated_ns=NOW_NS + 30 * 10**9)
    store.save_alerts([page])
    ticket.update(state="resolved", ended_ns=NOW_NS + 120 * 10**9, updated_ns=NOW_NS + 120 * 10**9)
    store.save_alerts([ticket])
    active = store.active_alerts(A)
    assert [(a["id"], a["state"], a["peak_burn"], a["started_ns"]) for a in active] == [
        (page["id"], "firing", 16.25, NOW_NS + 30 * 10**9)]
    # list_alerts: newest pending_since first (contract), filtered.
    assert [a["id"] for a in store.list_alerts(A)] == [ticket["id"], page["id"]]
    assert [a["id"] for a in store.list_alerts(A, state="resolved")] == [ticket["id"]]
    assert store.list_alerts(A, slo="other") == []
    assert len(store.list_alerts(A, limit=1)) == 1
    got = store.list_alerts(A, state="firing")[0]
    assert {k: got[k] for k in page} == page
    # Every episode read back has exactly the fields and types core/rows.py declares.
    for episode in [*store.active_alerts(A), *store.list_alerts(A)]:
        assert row_problems(dict(episode), AlertEpisode) == []


def test_incident_lifecycle_round_trip(seeded: OpenedStore) -> None:
    tables = seeded.store.incidents
    t0 = NOW_NS
    evidence = {"bad_runs": 1, "changes": [{"kind": "deploy", "version": "1.4.2"}]}
    row = {"tenant": A, "group_key": "journey:ask", "opened_ns": t0, "title": "ask failing", "journey": "ask",
           "slo": "ask-success", "severity": "sev2", "state": "open", "source": "slo", "tier": 0,
           "first_alert_ns": t0, "impact_start_ns": t0 - 5 * MINUTE_NS, "evidence": evidence, "updated_ns": t0}
    events = [{"at_ns": t0, "kind": "alert", "actor": "aisre", "message": "ask-success paging", "data": {"burn": 15}}]
    alerts = [{"alert_key": "slo:1", "source": "slo", "name": "ask-success", "severity": "page", "started_ns": t0,
               "summary": "burning", "labels": {"journey": "ask"}}]
    new = tables.create_incident(row, events, alerts)
    iid = new["id"]
    assert {k: new[k] for k in row} == row  # evidence comes back as the object it was
    assert tables.get_incident(A, iid)["evidence"] == evidence
    assert tables.open_incident_for(A, "journey:ask")["id"] == iid
    assert tables.open_incident_for(A, "journey:other") is None
    assert tables.incidents_for_alert_keys(A, ["slo:1", "slo:404"]) == {"slo:1": iid}
    assert [i["id"] for i in tables.incidents_of_alert(A, "slo:1")] == [iid]

    # Two people acknowledge at once: the second sees the conflict, nothing is applied twice.
    ack = {"state": "acknowledged", "acknowledged_ns": t0 + 10, "acknowledged_by": "erin", "updated_ns": t0 + 10}
    note = [{"at_ns": t0 + 10, "kind": "state", "actor": "erin", "message": "acknowledged", "data": None}]
    first = tables.update_incident(A, iid, ack, note, expect_state="open")
    assert first["state"] == "acknowledged"
    with pytest.raises(StaleState) as stale:
        tables.update_incident(A, iid, {**ack, "acknowledged_by": "frank"}, note, expect_state="open")
    assert stale.value.state == "acknowledged"
    assert tables.get_incident(A, iid)["acknowledged_by"] == "erin"
    assert len(tables.events(A, iid)) == 2  # the refused update added no timeline entry
    ended = [{**alerts[0], "ended_ns": t0 + 20, "summary": None}]
    tables.update_incident(A, iid, {"state": "resolved", "resolved_ns": t0 + 30, "resolved_by": "erin",
                                    "updated_ns": t0 + 30}, [], ended)
    # Timeline oldest first (contract); the alert link updated in place, its summary kept.
    assert [(e["kind"], e["actor"], e["data"]) for e in tables.events(A, iid)] == [
        ("alert", "aisre", {"burn": 15}), ("state", "erin", None)]
    (link,) = tables.alerts(A, iid)
    assert (link["ended_ns"], link["summary"], link["labels"]) == (t0 + 20, "burning", {"journey": "ask"})
    assert tables.incidents_of_alert(A, "slo:1")[0]["alert_ended_ns"] == t0 + 20
    assert tables.open_incident_for(A, "journey:ask") is None
    with pytest.raises(NotFound):
        tables.get_incident(A, iid + 1000)
    with pytest.raises(NotFound):
        tables.update_incident(B, iid, {"state": "open"})

    # list_incidents: newest opened first (contract), filtered; evidence only when asked.
    other = tables.create_incident({**row, "group_key": "journey:other", "journey": "other", "opened_ns": t0 + 50,
                                    "evidence": None}, [], [])
    assert [i["id"] for i in tables.list_incidents(A)] == [other["id"], iid]
    assert [i["id"] for i in tables.list_incidents(A, state="active")] == [other["id"]]
    assert [i["id"] for i in tables.list_incidents(A, state="resolved", journey="ask")] == [iid]
    assert [i["id"] for i in tables.list_incidents(A, since_ns=t0 + 1)] == [other["id"]]
    assert [i["id"] for i in tables.list_incidents(A, until_ns=t0 + 1)] == [iid]
    assert "evidence" not in tables.list_incidents(A)[0]
    assert tables.list_incidents(A, with_evidence=True)[1]["evidence"] == evidence
    # Every incident read back has exactly the fields and types core/rows.py declares.
    for incident in [*tables.list_incidents(A), *tables.list_incidents(A, with_evidence=True),
                     tables.get_incident(A, iid), new, first]:
        assert row_problems(dict(incident), Incident) == []

    # Action items: by id (contract); each change also lands on the timeline.
    item = tables.add_action_item({"tenant": A, "incident_id": iid, "title": "add a canary", "owner": "erin",
                                   "created_ns": t0 + 40},
                                  {"at_ns": t0 + 40, "kind": "action_item", "actor": "erin", "message": "added"})
    assert (item["status"], item["title"]) == ("open", "add a canary")
    done = tables.update_action_item(A, item["id"], {"status": "done"},
                                     {"at_ns": t0 + 41, "kind": "action_item", "actor": "erin", "message": "done"})
    assert done["status"] == "done"
    assert [i["id"] for i in tables.action_items(A)] == [i["id"] for i in tables.action_items(A, iid)] == [item["id"]]
    assert [e["message"] for e in tables.events(A, iid)][-2:] == ["added", "done"]
    with pytest.raises(NotFound):
        tables.update_action_item(B, item["id"], {"status": "open"}, {"at_ns": 0, "kind": "x", "actor": "x", "message": "x"})

    # Notification attempts: by id (contract).
    for attempt in (1, 2):
        tables.add_notification_attempt({
            "tenant": A, "incident_id": iid, "receiver": "pager", "receiver_type": "pagerduty", "event": "opened",
            "message_id": "m1", "attempt": attempt, "at_ns": t0 + attempt, "duration_ms": 12.5,
            "status_code": 500 if attempt == 1 else 202, "ok": attempt == 2, "final": attempt == 2,
            "error": "HTTP 500" if attempt == 1 else None})
    sent = tables.notification_attempts(A, iid)
    assert [(n["attempt"], n["ok"], n["status_code"]) for n in sent] == [(1, False, 500), (2, True, 202)]
    assert tables.notification_attempts(A) == sent


def test_changes_recorded_and_detected(seeded: OpenedStore) -> None:
    tables = seeded.store.incidents
    base = {"tenant": A, "summary": "", "who": "ci", "services": ["support-bot"], "version": None, "previous": None,
            "prompt_name": None, "link": None, "metadata": None, "source": "api", "observed_ns": None,
            "created_ns": NOW_NS}
    flag = tables.add_change({**base, "kind": "flag", "summary": "cache on", "at_ns": NOW_NS - 3 * MINUTE_NS,
                              "journeys": [], "metadata": {"flag": "cache", "on": True}})
    deploy = tables.add_change({**base, "kind": "deploy", "summary": "2.0", "at_ns": NOW_NS - 2 * MINUTE_NS,
                                "journeys": ["summarise"], "version": "2.0", "previous": "1.9"})
    assert flag["metadata"] == {"flag": "cache", "on": True} and isinstance(flag["id"], int)
    # Newest first (contract); a journey filter keeps changes naming it or naming no journey.
    assert [c["id"] for c in tables.list_changes(A)] == [deploy["id"], flag["id"]]
    assert [c["id"] for c in tables.list_changes(A, journey="ask")] == [flag["id"]]
    assert [c["id"] for c in tables.list_changes(A, journey="summarise")] == [deploy["id"], flag["id"]]
    assert [c["id"] for c in tables.list_changes(A, kind="deploy")] == [deploy["id"]]
    assert [c["id"] for c in tables.list_changes(A, since_ns=NOW_NS - 2 * MINUTE_NS)] == [deploy["id"]]
    assert [c["id"] for c in tables.list_changes(A, until_ns=NOW_NS - 2 * MINUTE_NS)] == [flag["id"]]
    assert len(tables.list_changes(A, limit=1)) == 1

    # Detection: what the journey's first runs carry is its baseline, not a change; a new
    # release an hour later is one change at its first run, found once.
    runs = _ask_runs(seeded.store)
    (old,) = {r["service_version"] for r in runs}
    assert tables.detect_changes(C) == []
    for body in BY_NAME[CAPTURE].bodies:
        ingest(seeded.store, C, later_release(body, HOUR_NS, "9.9.9"))
    (change,) = tables.detect_changes(C)
    first_new = min(r["run_start_ns"] for r in _ask_runs(seeded.store, C) if r["service_version"] == "9.9.9")
    assert first_new == min(r["run_start_ns"] for r in runs) + HOUR_NS
    assert {k: change[k] for k in ("kind", "version", "previous", "journeys", "source", "at_ns", "observed_ns")} == {
        "kind": "deploy", "version": "9.9.9", "previous": old, "journeys": ["ask"], "source": "detected",
        "at_ns": first_new, "observed_ns": first_new}
    assert change["services"] == [runs[0]["root_service"]]
    assert tables.detect_changes(C) == []
    assert [c["id"] for c in tables.list_changes(C)] == [change["id"]]
    # Recorded and detected changes have exactly the fields and types core/rows.py declares.
    for row in [flag, deploy, change, *tables.list_changes(A), *tables.list_changes(C)]:
        assert row_problems(dict(row), Change) == [], row["id"]


# --- gate verdicts, scores, retention ------------------------------------------------------


def test_gate_verdicts_round_trip(seeded: OpenedStore) -> None:
    store = seeded.store
    ids = [store.save_gate_verdict({
        "tenant": A, "journey": journey, "baseline": "service.version=1.4", "candidate": "service.version=1.5",
        "verdict": verdict, "score": score, "baseline_runs": 40, "candidate_runs": 38, "decided_ns": NOW_NS + i,
        "document": {"verdict": verdict, "metrics": [{"name": "cost_usd", "classification": "High"}]},
    }) for i, (journey, verdict, score) in enumerate([("ask", "pass", 100.0), ("ask", "fail", 40.0),
                                                       ("summarise", "marginal", 75.0)])]
    assert len(set(ids)) == 3
    assert store.get_gate_verdict(A, ids[1]) == {"verdict": "fail", "metrics": [{"name": "cost_usd", "classification": "High"}],
                                                 "id": ids[1]}
    # Newest first (contract), by journey.
    listed = store.list_gate_verdicts(A, "ask")
    assert [v["id"] for v in listed] == [ids[1], ids[0]]
    assert (listed[0]["verdict"], listed[0]["score"], listed[0]["candidate_runs"]) == ("fail", 40.0, 38)
    assert [v["id"] for v in store.list_gate_verdicts(A)] == ids[::-1]
    assert len(store.list_gate_verdicts(A, limit=1)) == 1
    with pytest.raises(NotFound):
        store.get_gate_verdict(B, ids[0])
    assert [row_problems(dict(v), GateVerdictSummary) for v in store.list_gate_verdicts(A)] == [[], [], []]


def _scores(rows: list[tuple[str, str, str, float]]) -> pa.Table:
    cols: dict[str, list[Any]] = {name: [] for name in SCORE_ARROW_SCHEMA.names}
    for tenant, trace, name, value in rows:
        for key, v in (("tenant", tenant), ("trace_id", trace), ("span_id", None), ("name", name), ("value", value),
                       ("label", None), ("source", "human"), ("comment", None), ("time_ns", NOW_NS),
                       ("received_ns", NOW_NS)):
            cols[key].append(v)
    return pa.table(cols, schema=SCORE_ARROW_SCHEMA)


def test_scores_of_known_traces_reach_the_gate_population(seeded: OpenedStore) -> None:
    store = seeded.store
    runs = sorted(_ask_runs(store), key=lambda r: (r["run_start_ns"], r["trace_id"]))
    first, second = runs[0]["trace_id"], runs[1]["trace_id"]
    refused = store.add_scores(_scores([(A, first, "groundedness", 0.5), (A, first, "groundedness", 0.75),
                                        (A, "f" * 32, "groundedness", 1.0), (A, second, "groundedness", 0.25),
                                        (B, first, "groundedness", 1.0)]))
    assert refused == [2, 4]  # an unknown trace, and tenant A's trace sent as tenant B's
    pop = store.gate_population(PopulationQuery(A, "ask", (), *ALL_TIME))
    means = dict(zip(pop.trace_ids, pop.scores["groundedness"].tolist(), strict=True))
    assert means[first] == pytest.approx(0.625, abs=1e-12) and means[second] == pytest.approx(0.25, abs=1e-12)
    assert sum(1 for v in means.values() if v == v) == 2  # the others have none (NaN)


def test_retention_set_and_read_per_tenant(seeded: OpenedStore) -> None:
    store = seeded.store
    default = store.retention(B)
    assert default["tenant"] == B and default["source"] == "default"
    assert default["rollup_retention_days"] > 0 and default["dedup_window_s"] >= 3600
    # Longer than the capture's age: nothing of tenant A may expire under the other tests.
    assert store.set_retention(A, 3650)["retention_days"] == 3650.0
    got = store.retention(A)
    assert (got["retention_days"], got["source"]) == (3650.0, "api")
    assert store.retention(B) == default  # one tenant's setting is its own
    store.set_retention(A, 1000.5)
    assert store.retention(A)["retention_days"] == 1000.5
    for bad in (-1, "7", True):
        with pytest.raises(PermanentError):
            store.set_retention(A, bad)
    assert store.set_retention(A, None) == {**default, "tenant": A}


def test_capacity_levels_replace_per_tenant(seeded: OpenedStore) -> None:
    store = seeded.store
    assert store.capacity_levels(A) == []
    store.put_capacity_levels(A, [{"metric": "vllm.num_requests_waiting", "threshold": 25.0, "enabled": True},
                                  {"metric": "hw.gpu.utilization", "threshold": 0.8, "enabled": True},
                                  {"metric": "DCGM_FI_DEV_FB_USED", "threshold": None, "enabled": False}])
    # By metric (contract); a PUT replaces the tenant's whole set.
    got = store.capacity_levels(A)
    assert [(r["tenant"], r["metric"], r["threshold"], r["enabled"]) for r in got] == [
        (A, "DCGM_FI_DEV_FB_USED", None, False), (A, "hw.gpu.utilization", 0.8, True),
        (A, "vllm.num_requests_waiting", 25.0, True)]
    assert [row_problems(dict(r), CapacityLevel) for r in got] == [[], [], []]
    assert len({r["updated_ns"] for r in got}) == 1 and got[0]["updated_ns"] > 0  # one write
    store.put_capacity_levels(A, [{"metric": "hw.gpu.utilization", "threshold": 0.85, "enabled": True}])
    assert [(r["metric"], r["threshold"]) for r in store.capacity_levels(A)] == [("hw.gpu.utilization", 0.85)]
    assert store.capacity_levels(B) == []  # one tenant's levels are its own
    store.put_capacity_levels(B, [{"metric": "hw.gpu.utilization", "threshold": 0.7, "enabled": True}])
    assert [(r["metric"], r["threshold"]) for r in store.capacity_levels(A)] == [("hw.gpu.utilization", 0.85)]
    store.put_capacity_levels(B, [])
    assert store.capacity_levels(B) == []


# --- cost control plane: overrides, budgets, rate limits, reprice ---------------------------


def test_price_overrides_budgets_and_rate_limits_round_trip(seeded: OpenedStore) -> None:
    cost = seeded.cost
    for effective in (NOW_NS, NOW_NS - HOUR_NS):
        cost.put_override({"tenant": A, "model": "gpt-4o-mini", "provider": "openai", "input": 0.2, "output": 0.8,
                           "cached_input": 0.1, "effective_ns": effective})
    cost.put_override({"tenant": A, "model": "gpt-4o-mini", "provider": "openai", "input": 0.3, "output": 0.9,
                       "cached_input": 0.1, "effective_ns": NOW_NS})  # the same key again: replaced
    # By model, then effective time (contract).
    got = [(o["effective_ns"], o["input"], o["output"]) for o in cost.list_overrides(A)]
    assert got == [(NOW_NS - HOUR_NS, 0.2, 0.8), (NOW_NS, 0.3, 0.9)]
    assert [row_problems(dict(o), PriceOverride) for o in cost.list_overrides()] == [[], []]
    assert cost.delete_override(A, "gpt-4o-mini") == 2
    assert cost.list_overrides(A) == []
    with pytest.raises(NotFound):
        cost.delete_override(A, "gpt-4o-mini")

    for name, amount in (("monthly", 100.0), ("ask-weekly", 5.0), ("monthly", 120.0)):
        cost.put_budget({"tenant": A, "name": name, "journey": "ask" if name == "ask-weekly" else "",
                         "period": "month" if name == "monthly" else "week", "amount_usd": amount,
                         "thresholds": [0.5, 0.9, 1.0]})
    budgets = cost.list_budgets(A)  # by name (contract)
    assert [(b["name"], b["journey"], b["period"], b["amount_usd"], list(b["thresholds"])) for b in budgets] == [
        ("ask-weekly", "ask", "week", 5.0, [0.5, 0.9, 1.0]), ("monthly", "", "month", 120.0, [0.5, 0.9, 1.0])]
    assert [row_problems(dict(b), CostBudget) for b in budgets] == [[], []]
    assert A in cost.budget_tenants() and B not in cost.budget_tenants()
    with acting_for(B):
        assert cost.budget_tenants() == []
    cost.delete_budget(A, "ask-weekly")
    assert [b["name"] for b in cost.list_budgets(A)] == ["monthly"]
    with pytest.raises(NotFound):
        cost.delete_budget(A, "ask-weekly")

    cost.put_rate_limit({"tenant": A, "model": "gpt-4o-mini", "requests_per_min": 500.0, "tokens_per_min": None,
                         "warn_at": 0.8})
    cost.put_rate_limit({"tenant": A, "model": "gpt-4o-mini", "requests_per_min": 600.0, "tokens_per_min": 2e5,
                         "warn_at": 0.7})
    assert [(r["model"], r["requests_per_min"], r["tokens_per_min"], r["warn_at"]) for r in cost.list_rate_limits(A)] == [
        ("gpt-4o-mini", 600.0, 2e5, 0.7)]
    assert [row_problems(dict(r), RateLimit) for r in cost.list_rate_limits(A)] == [[]]
    assert cost.list_rate_limits(B) == [] and cost.list_budgets(B) == [] and cost.list_overrides(B) == []



def _prices(models: list[tuple[str, str]], factor: float, version: str | None) -> pa.Table:
    """A reprice table: the shipped catalog's prices times ``factor`` for all time."""
    from aisre.normalize.prices import default_catalog

    rows = [(p, m, default_catalog().lookup(p, m, NOW_NS)[0]) for p, m in models]
    return pa.table({
        "provider": pa.array([p for p, _, _ in rows], pa.string()), "model": pa.array([m for _, m, _ in rows], pa.string()),
        "from_ns": pa.array([0] * len(rows), pa.int64()), "to_ns": pa.array([2**62] * len(rows), pa.int64()),
        "version": pa.array([version] * len(rows), pa.string()),
        "input": pa.array([x.input * factor for _, _, x in rows], pa.float64()),
        "output": pa.array([x.output * factor for _, _, x in rows], pa.float64()),
        "cached_input": pa.array([x.cached_input * factor for _, _, x in rows], pa.float64()),
    })


def test_reprice_changes_calls_runs_and_rollups_together(seeded: OpenedStore) -> None:
    store, cost = seeded.store, seeded.cost
    before = {r["trace_id"]: r["cost_usd"] for r in _ask_runs(store)}
    rolled = sum(r["cost_usd"] for r in store.metric_totals(A)["runs"])
    models = cost.priced_models(A, *ALL_TIME)
    assert {m for _, m in models if m} == {m for r in _ask_runs(store) for m in r["models"]}
    doubled = cost.reprice(A, *ALL_TIME, _prices([pm for pm in models if pm[1]], 2.0, "test-x2"))
    assert doubled["runs"] == len(before) and doubled["unpriced_calls"] == 0
    assert doubled["cost_before_usd"] == pytest.approx(sum(before.values()), rel=1e-9, abs=1e-12)
    assert doubled["cost_after_usd"] == pytest.approx(2 * sum(before.values()), rel=1e-9, abs=1e-12)
    after = {r["trace_id"]: r["cost_usd"] for r in _ask_runs(store)}
    assert after == pytest.approx({t: 2 * c for t, c in before.items()}, rel=1e-9, abs=1e-12)
    store.flush_rollups()
    assert sum(r["cost_usd"] for r in store.metric_totals(A)["runs"]) == pytest.approx(2 * rolled, rel=1e-9, abs=1e-12)
    by_model = cost.breakdown(A, None, None, by=("model",))
    assert sum(r["cost_usd"] for r in by_model) == pytest.approx(2 * rolled, rel=1e-9, abs=1e-12)
    # Back to the catalog's prices: every cost as it was.
    cost.reprice(A, *ALL_TIME, _prices([pm for pm in models if pm[1]], 1.0, "test-x1"))
    assert {r["trace_id"]: r["cost_usd"] for r in _ask_runs(store)} == pytest.approx(before, rel=1e-9, abs=1e-12)
    # A null version means unpriced: the calls cost nothing and are counted as unpriced.
    gone = cost.reprice(A, *ALL_TIME, _prices([pm for pm in models if pm[1]], 1.0, None))
    assert gone["cost_after_usd"] == 0.0 and gone["unpriced_calls"] > 0
    store.flush_rollups()
    unpriced = cost.unpriced(A, None, None)
    assert sum(u["calls"] for u in unpriced) == gone["unpriced_calls"]
    cost.reprice(A, *ALL_TIME, _prices([pm for pm in models if pm[1]], 1.0, "test-x1"))
    assert cost.unpriced(A, None, None) == []


# --- tenant isolation ----------------------------------------------------------------------


def _reads(store: Any, cost: Any, tenant: str, trace_id: str, minute: int) -> dict[str, Callable[[], Any]]:
    """Every tenant-scoped read the layers above make, for ``tenant`` (``trace_id`` and
    ``minute`` are tenant A's)."""
    tables = store.incidents
    return {
        "list_runs": lambda: store.list_runs(RunQuery(tenant, limit=1000)),
        "journey_summaries": lambda: store.journey_summaries(TimeRange(tenant)),
        "count_spans": lambda: store.count_spans(tenant),
        "incomplete_traces": lambda: store.incomplete_traces(tenant),
        "metric_totals": lambda: store.metric_totals(tenant)["slos"] + store.metric_totals(tenant)["runs"],
        "slo_minute_arrays": lambda: store.slo_minute_arrays(tenant, *ALL_TIME),
        "slo_first_minutes": lambda: store.slo_first_minutes(tenant),
        "slo_minutes_at": lambda: store.slo_minutes_at(tenant, [minute]),
        "list_alerts": lambda: store.list_alerts(tenant),
        "active_alerts": lambda: store.active_alerts(tenant),
        "list_keys": lambda: store.list_keys(tenant),
        "list_audit": lambda: store.list_audit(tenant),
        "list_gate_verdicts": lambda: store.list_gate_verdicts(tenant),
        "gate_population": lambda: store.gate_population(PopulationQuery(tenant, "ask", (), *ALL_TIME)).trace_ids,
        "list_incidents": lambda: tables.list_incidents(tenant),
        "incidents_of_alert": lambda: tables.incidents_of_alert(tenant, "slo:iso"),
        "incidents_for_alert_keys": lambda: tables.incidents_for_alert_keys(tenant, ["slo:iso"]),
        "open_incident_for": lambda: tables.open_incident_for(tenant, "journey:iso") or [],
        "action_items": lambda: tables.action_items(tenant),
        "notification_attempts": lambda: tables.notification_attempts(tenant),
        "list_changes": lambda: tables.list_changes(tenant),
        "run_minutes": lambda: tables.run_minutes(tenant, "ask", *ALL_TIME),
        "first_failure": lambda: tables.first_failure(tenant, "ask", *ALL_TIME) or [],
        "sample_runs": lambda: tables.sample_runs(tenant, "ask", *ALL_TIME, "failure", 10),
        "count_runs": lambda: tables.count_runs(tenant, "ask", *ALL_TIME, "failure"),
        "span_profile": lambda: tables.span_profile(tenant, [trace_id], *ALL_TIME),
        "impact": lambda: tables.impact(tenant, "ask", *ALL_TIME)["runs"],
        "cost.breakdown": lambda: cost.breakdown(tenant, None, None, by=("model",)),
        "cost.run_counts": lambda: [r for r in cost.run_counts(tenant, None, None, by_journey=True) if r["runs"]],
        "cost.model_windows": lambda: cost.model_windows(tenant, "ask", [ALL_TIME]),
        "cost.run_windows": lambda: [r for r in cost.run_windows(tenant, "ask", [ALL_TIME]) if r["runs"]],
        "cost.version_first_seen": lambda: cost.version_first_seen(tenant, "ask", "service_version", 2**62),
        "cost.model_exemplars": lambda: cost.model_exemplars(tenant, "ask", *ALL_TIME, "gpt-4o-mini"),
        "cost.peak_minutes": lambda: cost.peak_minutes(tenant, *ALL_TIME),
        "cost.unpriced": lambda: cost.unpriced(tenant, None, None),
        "cost.priced_models": lambda: cost.priced_models(tenant, *ALL_TIME),
        "cost.list_overrides": lambda: cost.list_overrides(tenant),
        "cost.list_budgets": lambda: cost.list_budgets(tenant),
        "cost.list_rate_limits": lambda: cost.list_rate_limits(tenant),
        "capacity_levels": lambda: store.capacity_levels(tenant),
    }


@pytest.fixture(scope="module")
def isolated(seeded: OpenedStore) -> OpenedStore:
    """Tenant A with a row of every control-plane kind (whatever other tests left too)."""
    store, cost, tables = seeded.store, seeded.cost, seeded.store.incidents
    store.add_key({"key_id": "k-iso", "digest": "d-iso", "tenant": A, "role": "read", "name": "iso"}, "iso")
    store.save_alerts([_alert(state="firing", started_ns=NOW_NS)])
    tables.create_incident({"tenant": A, "group_key": "journey:iso", "opened_ns": NOW_NS, "title": "iso",
                            "severity": "sev3", "state": "open", "source": "manual", "updated_ns": NOW_NS},
                           [{"at_ns": NOW_NS, "kind": "note", "actor": "iso", "message": "opened"}],
                           [{"alert_key": "slo:iso", "source": "slo", "name": "ask-success", "severity": "page",
                             "started_ns": NOW_NS}])
    iid = tables.open_incident_for(A, "journey:iso")["id"]
    tables.add_action_item({"tenant": A, "incident_id": iid, "title": "iso", "created_ns": NOW_NS},
                           {"at_ns": NOW_NS, "kind": "action_item", "actor": "iso", "message": "added"})
    tables.add_notification_attempt({"tenant": A, "incident_id": iid, "receiver": "hook", "receiver_type": "webhook",
                                     "event": "opened", "message_id": "iso", "attempt": 1, "at_ns": NOW_NS,
                                     "duration_ms": 1.0, "status_code": 200, "ok": True, "final": True, "error": None})
    tables.add_change({"tenant": A, "kind": "config", "summary": "iso", "at_ns": NOW_NS, "services": [],
                       "journeys": [], "source": "api", "created_ns": NOW_NS})
    store.save_gate_verdict({"tenant": A, "journey": "ask", "baseline": "a", "candidate": "b", "verdict": "pass",
                             "score": 100.0, "baseline_runs": 1, "candidate_runs": 1, "decided_ns": NOW_NS,
                             "document": {}})
    cost.put_override({"tenant": A, "model": "gpt-4.1", "provider": "openai", "input": 1.0, "output": 4.0,
                       "cached_input": 0.25, "effective_ns": NOW_NS})
    cost.put_budget({"tenant": A, "name": "iso", "journey": "", "period": "month", "amount_usd": 1.0,
                     "thresholds": [1.0]})
    cost.put_rate_limit({"tenant": A, "model": "gpt-4o-mini", "requests_per_min": 1.0, "tokens_per_min": None,
                         "warn_at": 0.8})
    store.put_capacity_levels(A, [{"metric": "hw.gpu.utilization", "threshold": 0.8, "enabled": True}])
    return seeded


def test_tenant_b_never_sees_tenant_a(isolated: OpenedStore) -> None:
    store = isolated.store
    trace_id, minute = _ask_runs(store)[0]["trace_id"], store.slo_first_minutes(A)["ask-success"]
    seen_by_a = _reads(store, isolated.cost, A, trace_id, minute)
    empty = [name for name, read in seen_by_a.items() if not read()]
    # Every run of the capture is complete, and every model of it priced; all else has rows.
    assert empty == ["incomplete_traces", "cost.unpriced"]
    for name, read in _reads(store, isolated.cost, B, trace_id, minute).items():
        assert not read(), f"{name} shows tenant B rows of tenant A"
    with pytest.raises(NotFound):
        store.get_trace(B, trace_id)
    with pytest.raises(NotFound):
        store.incidents.get_incident(B, store.incidents.open_incident_for(A, "journey:iso")["id"])


def test_a_caller_bound_to_tenant_b_cannot_read_tenant_a(isolated: OpenedStore) -> None:
    """The guard: whatever tenant a route passes, the store answers only the caller's, and
    changes only the caller's."""
    store, cost, tables = isolated.store, isolated.cost, isolated.store.incidents
    trace_id, minute = _ask_runs(store)[0]["trace_id"], store.slo_first_minutes(A)["ask-success"]
    reads = _reads(store, cost, A, trace_id, minute)
    iid = tables.open_incident_for(A, "journey:iso")["id"]
    writes: dict[str, Callable[[], Any]] = {
        "set_retention": lambda: store.set_retention(A, 1),
        "set_sli_rules": lambda: store.set_sli_rules(A, []),
        "revoke_key": lambda: store.revoke_key(A, "k-iso", "mallory"),
        "add_scores": lambda: store.add_scores(_scores([(A, trace_id, "x", 1.0)])),
        "create_incident": lambda: tables.create_incident(
            {"tenant": A, "group_key": "g", "opened_ns": 0, "title": "x", "severity": "sev4", "state": "open",
             "source": "manual", "updated_ns": 0}, [], []),
        "update_incident": lambda: tables.update_incident(A, iid, {"state": "resolved"}),
        "add_action_item": lambda: tables.add_action_item(
            {"tenant": A, "incident_id": iid, "title": "x", "created_ns": 0},
            {"at_ns": 0, "kind": "x", "actor": "x", "message": "x"}),
        "add_change": lambda: tables.add_change({"tenant": A, "kind": "config", "summary": "x", "at_ns": 0,
                                                 "services": [], "journeys": [], "source": "api", "created_ns": 0}),
        "detect_changes": lambda: tables.detect_changes(A),
        "save_gate_verdict": lambda: store.save_gate_verdict(
            {"tenant": A, "journey": "ask", "baseline": "a", "candidate": "b", "verdict": "pass", "score": 0.0,
             "baseline_runs": 0, "candidate_runs": 0, "decided_ns": 0, "document": {}}),
        "put_override": lambda: cost.put_override({"tenant": A, "model": "m", "provider": "p", "input": 0.0,
                                                   "output": 0.0, "cached_input": 0.0, "effective_ns": 0}),
        "put_budget": lambda: cost.put_budget({"tenant": A, "name": "x", "journey": "", "period": "week",
                                               "amount_usd": 0.0, "thresholds": [1.0]}),
        "put_rate_limit": lambda: cost.put_rate_limit({"tenant": A, "model": "m", "requests_per_min": 1.0,
                                                       "tokens_per_min": None, "warn_at": 0.8}),
        "reprice": lambda: cost.reprice(A, *ALL_TIME, _prices([], 1.0, "x")),
        "put_capacity_levels": lambda: store.put_capacity_levels(A, []),
        "add_key": lambda: store.add_key({"key_id": "k-b", "digest": "d-b", "tenant": A, "role": "admin",
                                          "name": "mallory"}, "mallory"),
        "audit": lambda: store.audit(A, "mallory", "key.create", "k-b", None, None),
        "save_alerts": lambda: store.save_alerts([_alert(state="firing", started_ns=NOW_NS)]),
    }
    with acting_for(B):
        refused = []
        for name, read in reads.items():
            try:
                read()
            except Forbidden:
                refused.append(name)
        assert refused == list(reads)
        with pytest.raises(Forbidden):
            store.get_trace(A, trace_id)
        with pytest.raises(Forbidden):
            store.retention(A)
        with pytest.raises(Forbidden):
            tables.get_incident(A, iid)
        for name, write in writes.items():
            with pytest.raises(Forbidden):
                write()
                pytest.fail(f"{name} changed tenant A for a caller bound to tenant B")
        # Its own tenant stays readable.
        assert store.list_runs(RunQuery(B)) == []
    # Nothing was changed.
    assert store.retention(A)["source"] == "default"
    assert [k["revoked_ns"] for k in store.list_keys(A) if k["key_id"] == "k-iso"] == [None]
    assert "k-b" not in {k["key_id"] for k in store.list_keys(A)}
    assert not [row for row in store.list_audit(A) if row["actor"] == "mallory"]
    assert tables.get_incident(A, iid)["state"] == "open"
    assert [b["name"] for b in cost.list_budgets(A) if b["name"] == "x"] == []
    assert [r["metric"] for r in store.capacity_levels(A)] == ["hw.gpu.utilization"]


# --- SLO minute changes ----------------------------------------------------------------------


def test_slo_changes_name_the_minutes_new_runs_touched(seeded: OpenedStore) -> None:
    """What evaluate/minute_cache polls: take the generation, then read; a later commit is
    reported as its minutes (or None: reload everything), never lost."""
    store, tenant = seeded.store, "tenant-d"
    store.set_sli_rules(tenant, [SliRule(slo="ask-success", journey="ask", kind="outcome")])
    generation, _ = store.slo_changes(tenant, 0)
    for body in BY_NAME[CAPTURE].bodies:
        ingest(store, tenant, body)
    store.flush_rollups()
    later, minutes = store.slo_changes(tenant, generation)
    assert later > generation
    touched = {r["run_start_ns"] // MINUTE_NS * MINUTE_NS for r in _ask_runs(store, tenant)}
    assert minutes is None or minutes >= touched
    assert store.slo_changes(tenant, later) == (later, set())  # nothing since
    # Another tenant's commits are not this tenant's changes.
    for body in BY_NAME[CAPTURE].bodies:
        ingest(store, "tenant-e", body)
    store.flush_rollups()
    assert store.slo_changes(tenant, later)[1] == set()
