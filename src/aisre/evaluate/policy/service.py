"""The policy service: applied sets per tenant, inline decisions with their records, and the
pass that judges committed runs (off the ingest path, on its own thread).

A run is judged by the set in force when it started (the newest applied at or before its
start; runs older than every set are judged by the first). Each pass takes runs never
judged or changed since (a late span moves a trace's last_received_ns), rebuilds their
actions from every stored span, and replaces their violations. A session budget of a run
counts the session's runs that started before it: when an earlier run of a session is
judged (it arrived late, or changed) after later ones were, those later runs are judged
again in the same pass (at most REJUDGE_LIMIT per session), so their stored verdict is
what judging all the session's runs together gives.

Inline decisions with session or tenant budgets read running counts kept in memory
(usage.py), not the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aisre.core.errors import LeaseLost, NotFound
from aisre.evaluate.policy.actions import run_actions
from aisre.evaluate.policy.engine import (
    Ledger,
    RunContext,
    Totals,
    evaluate_run,
    period_start,
    shared_budget_scopes,
)
from aisre.evaluate.policy.inline import decide_request, decision_record, parse_request
from aisre.evaluate.policy.spec import Policy, bundle_version, policies_from_text
from aisre.evaluate.policy.usage import UsageCounts
from aisre.normalize.attribute_rules import hash_value
from aisre.store.lease import LeaseGate
from aisre.store.protocol import PolicyStore

log = logging.getLogger(__name__)

Scrub = Callable[[str, Any], Any]
# Decision records are written in batches this often; a crash loses at most the last
# fraction of a second of the log, as with OPA's buffered decision logs.
FLUSH_INTERVAL_S = 0.2
# Later runs of one session judged again per pass when an earlier run was (re)judged.
REJUDGE_LIMIT = 200


@dataclass(frozen=True)
class PolicySet:
    """One applied set: its policies, content hash and when it came into force."""

    bundle: str
    applied_ns: int
    policies: tuple[Policy, ...]
    source: str


class PolicyService:
    """Policies in force per tenant (cached from the store), decisions and trace judging."""

    # Passes run only while this node holds the evaluator lease (app.py sets it; always, by default).
    gate: LeaseGate = LeaseGate()

    def __init__(self, store: PolicyStore, scrub: Scrub | None = None, digest_key: bytes = b"",
                 tenants: Callable[[], Sequence[str]] = lambda: (), interval_s: float = 10.0) -> None:
        self.store = store
        self.scrub: Scrub = scrub or (lambda tenant, value: value)
        self.digest_key = digest_key
        self._tenants = tenants
        self.interval_s = interval_s
        self._sets: dict[str, list[PolicySet]] = {}
        self._lock = threading.Lock()
        # Decision records wait here for one batched write: an answer never waits for a commit.
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        # For /metrics: (tenant, result) → inline decisions; (tenant, verdict) → runs judged.
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.judged: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Session and tenant budgets decided inline count other runs' calls here.
        self.usage = UsageCounts(store, digest_key)
        self.rejudged: Counter[str] = Counter()  # tenant → later runs judged again

    # -- policy sets ---------------------------------------------------------------

    def sets(self, tenant: str) -> list[PolicySet]:
        """Every applied set of a tenant, newest first (parsed once, then cached)."""
        with self._lock:
            found = self._sets.get(tenant)
        if found is None:
            found = [PolicySet(r["bundle"], int(r["applied_ns"]), tuple(policies_from_text(r["source"], "stored policy set")),
                               r["source"]) for r in self.store.policy_sets(tenant, limit=1000)]
            with self._lock:
                self._sets[tenant] = found
        return found

    def cached(self, tenant: str) -> bool:
        """Whether the tenant's sets are in memory (a decision then touches no store)."""
        with self._lock:
            return tenant in self._sets

    def answers_from_memory(self, tenant: str, body: Any = None) -> bool:
        """Whether a decision needs nothing from the store: the sets are cached and either the
        set in force has no session or tenant budget, or the running counts the request asks
        about (``body``: its session and time) are in memory and fresh."""
        if not self.cached(tenant):
            return False
        current = self.current(tenant)
        if current is None or not any(r.kind == "budget" and r.per != "run" for p in current.policies for r in p.rules):
            return True
        if not isinstance(body, dict):
            return False
        action = body.get("action")
        start = action.get("start_ns") if isinstance(action, dict) else None
        at = start if isinstance(start, int) and start else time.time_ns()
        def text(key: str) -> str | None:
            value = body.get(key)
            return value if isinstance(value, str) and value else None

        # Only the policies covering this run count (a journey no shared budget covers never waits).
        ctx = RunContext(tenant, text("journey"), text("service"), text("agent"), session=text("session_id"))
        scopes = shared_budget_scopes(current.policies, ctx)
        return not scopes or self.usage.ready(tenant, ctx.session, self.usage.windows(current.policies, at), scopes)

    def current(self, tenant: str) -> PolicySet | None:
        """The set in force now."""
        found = self.sets(tenant)
        return found[0] if found else None

    def in_force_at(self, tenant: str, at_ns: int) -> PolicySet | None:
        """The set in force at ``at_ns`` (the first ever for runs before it)."""
        found = self.sets(tenant)
        for s in found:
            if s.applied_ns <= at_ns:
                return s
        return found[-1] if found else None

    def apply(self, tenant: str, text: str | bytes, actor: str, name: str = "request body") -> dict[str, Any]:
        """Validate and apply a policy file as the tenant's whole set (all or nothing), audited
        with the set before and after; SpecValidationError lists every problem."""
        policies = policies_from_text(text, name)
        source = text.decode("utf-8") if isinstance(text, bytes) else text
        bundle = bundle_version(policies)
        current = self.current(tenant)
        if current is not None and current.bundle == bundle:
            return {"bundle": bundle, "changed": False, "policies": _summary(policies), "before": None}
        saved = self.store.put_policy_set({
            "tenant": tenant, "bundle": bundle, "source": source, "actor": actor,
            "policies": _summary(policies),
        })
        with self._lock:
            self._sets.pop(tenant, None)
        return {"bundle": bundle, "changed": True, "policies": _summary(policies), "before": saved.get("before")}

    # -- inline decisions ----------------------------------------------------------

    def decide(self, tenant: str, body: Any, now_ns: int | None = None, record: bool = True,
               actor: str = "policy") -> dict[str, Any]:
        """Answer a decide request with the set in force now, and record the decision (denies and
        warnings also in the audit trail, under ``actor``)."""
        req = parse_request(body, tenant, now_ns)
        current = self.current(tenant)
        policies = current.policies if current is not None else ()
        scopes = shared_budget_scopes(policies, req.context)
        ledgers = (self.usage.ledgers(scopes, req.context, self.usage.windows(policies, req.action.start_ns))
                   if scopes else None)
        decision = decide_request(policies, req, ledgers)
        if scopes and decision.result != "deny":
            self.usage.decided(req.context, req.history, req.action)
        doc = decision_record(req, decision, policies, lambda value: self.scrub(tenant, value), self.digest_key,
                              now_ns=now_ns)
        doc["actor"] = actor
        self.decisions[(tenant, decision.result)] += 1
        if record:
            with self._pending_lock:
                self._pending.append(doc)
            if self._flusher is None:
                self.flush()  # not started (a library caller, a test): write now
        return {"id": doc["id"], "result": decision.result, "reasons": doc["reasons"], "policies": doc["policies"],
                "bundle": doc["bundle"], "input_digest": doc["input_digest"], "undetermined": list(decision.undetermined)}

    def ledgers(self, policies: Sequence[Policy], ctx: RunContext, first_ns: int, last_ns: int,
                clear_session: bool = False) -> dict[str, Ledger] | None:
        """What the tenant's other runs (and the session's) used up to ``last_ns``, for session
        and tenant budgets, read from the store (trace judging; inline decisions read the
        running counts, ``usage``, which give the same totals once the runs are committed);
        None when no policy covering the run has one. An inline caller sends
        the clear session id, stored traces hold it as ingest left it (hashed by default): both
        forms are looked up."""
        scopes = shared_budget_scopes(policies, ctx)
        if not scopes:
            return None
        found: dict[str, Ledger] = {}
        # Inline (one action): totals summed in the store per window; over a trace: the other
        # runs' calls, so each action of the run is judged at its own time.
        one = first_ns == last_ns
        if "tenant" in scopes:
            periods = {r.period_s for p in policies for r in p.rules if r.kind == "budget" and r.per == "tenant"}
            starts = sorted({period_start(first_ns, period) for period in periods})
            if one:
                found["tenant"] = Totals({s: self.store.policy_usage_totals(ctx.tenant, s, last_ns, ctx.trace_id)
                                          for s in starts})
            else:
                found["tenant"] = _ledger(self.store.policy_usage(ctx.tenant, starts[0], last_ns, ctx.trace_id))
        if "session" in scopes and ctx.session:
            sessions = [ctx.session]
            if clear_session:
                sessions.append(str(hash_value(self.digest_key, ctx.session)))
            if one:
                found["session"] = Totals({0: self.store.policy_usage_totals(ctx.tenant, 0, last_ns, ctx.trace_id, sessions)})
            else:
                found["session"] = _ledger(self.store.policy_usage(ctx.tenant, 0, last_ns, ctx.trace_id, sessions))
        return found

    def flush(self) -> int:
        """Write the pending decision records (one batch); returns how many."""
        with self._pending_lock:
            rows, self._pending = self._pending, []
        if rows:
            self.store.add_decisions(rows)
        return len(rows)

    # -- traces --------------------------------------------------------------------

    def judge_trace(self, tenant: str, trace_id: str, run: dict[str, Any] | None = None) -> dict[str, Any]:
        """Judge one stored trace by the set in force when it ran; store its violations."""
        stored_run, spans = self.store.get_trace(tenant, trace_id)
        run = {**stored_run, **(run or {})}
        acts = run_actions(run, spans, tenant)
        chosen = self.in_force_at(tenant, acts.context.start_ns)
        policies = chosen.policies if chosen is not None else ()
        times = [a.start_ns for a in acts.actions if a.start_ns]
        ledgers = self.ledgers(policies, acts.context, min(times, default=0), max(times, default=0)) if times else None
        verdict = evaluate_run(policies, acts.context, acts.actions, ledgers)
        rows = [{"tenant": tenant, "trace_id": trace_id, "journey": acts.context.journey,
                 "run_start_ns": acts.context.start_ns, **v.document()} for v in verdict.violations]
        mark = {"tenant": tenant, "trace_id": trace_id, "journey": acts.context.journey, "run_start_ns": acts.context.start_ns,
                "bundle": chosen.bundle if chosen else None, "last_received_ns": int(run.get("last_received_ns") or 0),
                "actions": len(acts.actions), "guardrail_checks": acts.guardrail_checks,
                "guardrail_trips": acts.guardrail_trips, "undetermined": verdict.undetermined}
        self.store.save_policy_run(mark, rows)
        self.usage.committed(tenant, trace_id, acts.context.session, acts.actions)
        denied = any(v.effect == "deny" for v in verdict.violations)
        self.judged[(tenant, "violating" if denied else "undetermined" if verdict.undetermined else "clean")] += 1
        return {**mark, "session": acts.context.session, "violations": [v.document() for v in verdict.violations]}

    def judge_pending(self, tenant: str, limit: int = 500) -> int:
        """Judge runs committed or changed since the last pass, then the later runs of their
        sessions where a session budget applies; returns how many runs were judged (those
        judged again are counted in ``rejudged``)."""
        if not self.sets(tenant):
            return 0
        done: list[dict[str, Any]] = []
        # Oldest run first: a batch's own session runs then need no second judgement.
        for run in sorted(self.store.runs_to_judge(tenant, limit), key=lambda r: (int(r["run_start_ns"]), str(r["trace_id"]))):
            if self._stop.is_set():
                break  # stopping: the rest waits for the next start
            try:
                done.append(self.judge_trace(tenant, str(run["trace_id"]), run))
            except NotFound:
                continue  # expired between the listing and the read
        self.rejudge_sessions(tenant, done)
        return len(done)

    def rejudge_sessions(self, tenant: str, judged: Sequence[dict[str, Any]]) -> int:
        """Judge again the runs of the sessions of ``judged`` (in the order they were judged)
        that started after one of them and were judged before it: their session budgets
        count it now. At most REJUDGE_LIMIT runs per session; returns how many."""
        if not any(r.kind == "budget" and r.per == "session"
                   for s in self.sets(tenant) for p in s.policies for r in p.rules):
            return 0
        by_session: dict[str, list[tuple[int, int, str]]] = {}
        for position, mark in enumerate(judged):
            if mark.get("session"):
                by_session.setdefault(str(mark["session"]), []).append(
                    (position, int(mark["run_start_ns"]), str(mark["trace_id"])))
        again = 0
        for session, items in by_session.items():
            earliest = min(start for _, start, _ in items)
            position_of = {trace_id: position for position, _, trace_id in items}
            later = self.store.policy_session_runs(tenant, session, earliest - 1, REJUDGE_LIMIT)
            # Runs never judged are judged in their own pass, against what is stored by then.
            marked = self.store.policy_marks(tenant, [str(r["trace_id"]) for r in later])
            for run in later:
                trace_id, start = str(run["trace_id"]), int(run["run_start_ns"])
                mine = position_of.get(trace_id)
                # Judged in this pass after every earlier run of the batch: already right.
                if trace_id not in marked or (mine is not None and all(p < mine for p, s, _ in items if s < start)):
                    continue
                if self._stop.is_set():
                    break
                try:
                    # With its received mark as stored: judged again, not changed.
                    self.judge_trace(tenant, trace_id, {"last_received_ns": run["last_received_ns"]})
                except NotFound:
                    continue
                again += 1
        self.rejudged[tenant] += again
        return again

    # -- the background pass --------------------------------------------------------

    def start(self) -> None:
        """Judge pending runs every ``interval_s``, and write decision records every
        FLUSH_INTERVAL_S, on daemon threads."""
        if self._thread is None and self.interval_s > 0:
            self._thread = threading.Thread(target=self._loop, name="aisre-policy", daemon=True)
            self._thread.start()
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="aisre-policy-log", daemon=True)
            self._flusher.start()

    def stop(self) -> None:
        """Stop both threads and write what is pending (idempotent)."""
        self._stop.set()
        for thread in (self._thread, self._flusher):
            if thread is not None:
                thread.join(timeout=30)
        self._thread = self._flusher = None
        self.flush()

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                self.flush()
            except Exception:
                log.exception("writing policy decision records failed")

    def run_pass(self) -> int:
        """One background pass: judge every tenant's pending runs, then one expiry step, while
        this node holds the evaluator lease. Its writes carry the lease term it was admitted
        under (store/fencing.py): once another node holds a newer term they are refused with
        LeaseLost, nothing of the refused write applied, and the pass ends there. Returns
        the runs judged (0 when another node holds the lease)."""
        run, fresh = self.gate.admit()
        if not run:
            return 0  # another node holds the evaluator lease and judges the runs
        if fresh:  # sets applied through another node meanwhile: read them again
            with self._lock:
                self._sets.clear()
        judged = 0
        with self.gate.fenced():
            for tenant in self._tenants():
                try:
                    judged += self.judge_pending(tenant)
                except LeaseLost:
                    raise
                except Exception:
                    log.exception("policy pass failed for tenant %s", tenant)
            try:
                self.expire_step()
            except LeaseLost:
                raise
            except Exception:
                log.exception("expiring policy records failed")
        return judged

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_pass()
            except LeaseLost as exc:  # paused past the lease: the new holder judges these runs
                log.warning("policy judging refused: %s", exc)
            except Exception:  # one failed pass must not end judging
                log.exception("policy pass failed")

    def expire_step(self, now_ns: int | None = None) -> dict[str, int]:
        """One bounded step of expiring decision records and violations past the store's
        rollup retention (on a split store the control store's; DuckDB's writer also takes
        these steps in its own retention job); nothing while expiry is off."""
        cutoff = self.store.rollup_cutoff(now_ns, periodic=now_ns is None)
        return {} if cutoff is None else self.store.expire_policy_records(cutoff)


def _summary(policies: Sequence[Policy]) -> list[dict[str, Any]]:
    return [{"name": p.name, "version": p.version, "rules": [r.name for r in p.rules]} for p in policies]



def _ledger(rows: list[dict[str, Any]]) -> Ledger:
    return Ledger((int(r["start_ns"]), str(r["kind"]), int(r["tokens"]), float(r["cost_usd"])) for r in rows)
