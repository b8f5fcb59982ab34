"""The weekly or monthly reliability review: what the person chairing it wants on the screen.
Top incidents and near misses (alert episodes that fired but opened no incident), SLO compliance
and budget burn per journey, cost and capacity per day, changes and their outcomes, open
remediation items, each journey's scorecard level, and saturation capacity (GPU, KV cache,
queue, and rate-limited models' token throughput and headroom: level, growth and when each
reaches its warning level, at the tenant's levels). A document of plain values; present/
renders it as HTML (with charts) and Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aisre.act.gameday import CHANGE_KIND as GAMEDAY
from aisre.act.gameday import drills, score_drill
from aisre.act.incidents import incident_times, severity_rank, summarize_times
from aisre.act.scorecards import NOT_CHANGES, Period, Rules, ScorecardReader
from aisre.core.rows import fired_at
from aisre.core.slo import SloSpec
from aisre.core.timefmt import rfc3339
from aisre.store.protocol import ReviewStore

DAY_NS = 86_400 * 10**9
TOP_INCIDENTS = 10


def _day_index(ns: int, period: Period) -> int:
    return (ns - period.start_ns) // DAY_NS


def review(store: ReviewStore, tenant: str, specs: Sequence[SloSpec], rules: Rules, period: Period,
           now_ns: int, capacity: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The review document for ``period``; ``capacity`` is its saturation section
    (evaluate/capacity.py capacity_review), computed by the caller that reads metrics and cost."""
    reader = ScorecardReader(store, tenant, specs, rules, now_ns)
    days = int(period.days)
    day_labels = [(rfc3339(period.start_ns + i * DAY_NS) or "")[:10] for i in range(days)]
    cards = [reader.scorecard(e, period, trend=4) for e in reader.entities("journey")]

    incidents = [i for i in store.incidents.list_incidents(tenant, since_ns=period.start_ns, until_ns=period.end_ns, limit=100_000)]
    times = summarize_times(incidents)
    ranked = sorted(incidents, key=lambda i: (severity_rank(i["severity"]),
                                              -(incident_times(i)["time_to_restore_s"] or 0), i["opened_ns"]))
    top = [{"id": i["id"], "title": i["title"], "journey": i["journey"], "severity": i["severity"], "state": i["state"],
            "opened": rfc3339(i["opened_ns"]), **incident_times(i)} for i in ranked[:TOP_INCIDENTS]]

    fired = [a for a in store.list_alerts(tenant, limit=1_000_000)
             if (started := a["started_ns"]) is not None and period.start_ns <= started < period.end_ns]
    keys = {f"slo:{a['slo']}:{a['severity']}:{a['pending_since_ns']}": a for a in fired}
    linked = store.incidents.incidents_for_alert_keys(tenant, list(keys))
    near = [{"slo": a["slo"], "journey": a["journey"], "severity": a["severity"], "started": rfc3339(a["started_ns"]),
             "ended": rfc3339(a.get("ended_ns")), "peak_burn": a["peak_burn"], "summary": a["summary"]}
            for key, a in sorted(keys.items(), key=lambda kv: fired_at(kv[1])) if key not in linked]

    # SLO compliance and the share of each SLO's period budget spent by the end of each day.
    arrays = store.slo_minute_arrays(tenant, period.start_ns, period.end_ns)
    slos = []
    for spec in specs:
        minutes, good, total = arrays.get(spec.id, ((), (), ()))
        bad_by_day = [0] * days
        total_sum = 0
        for m, g, t in zip(minutes, good, total, strict=False):
            d = _day_index(int(m), period)
            if 0 <= d < days:
                bad_by_day[d] += int(t) - int(g)
            total_sum += int(t)
        allowed = spec.error_budget * total_sum
        spent: list[float | None] = []
        cumulative = 0
        for d, b in enumerate(bad_by_day):
            cumulative += b
            # Days not begun yet (a running period) have no value: the line stops at today.
            begun = period.start_ns + d * DAY_NS <= now_ns
            spent.append(cumulative / allowed if allowed and begun else None)
        bad = sum(bad_by_day)
        slos.append({"slo": spec.id, "journey": spec.journey, "objective": spec.objective, "owner": spec.owner,
                     "diagnostic": spec.diagnostic, "total": total_sum, "good": total_sum - bad,
                     "attainment": (total_sum - bad) / total_sum if total_sum else None,
                     "met": None if not total_sum else (total_sum - bad) / total_sum * 100 >= spec.objective,
                     "budget_spent": bad / allowed if allowed else None, "budget_spent_by_day": spent})

    # Cost and capacity: runs, failures and cost per day.
    rows = store.cost.run_counts(tenant, period.start_ns, period.end_ns, bucket_ns=DAY_NS)
    runs, failures, cost = [0] * days, [0] * days, [0.0] * days
    for r in rows:
        d = _day_index(int(r["bucket_ns"]), period)
        if 0 <= d < days:
            runs[d], failures[d], cost[d] = int(r["runs"]), int(r["failures"]), float(r["run_cost_usd"])
    total_runs, total_fail, total_cost = sum(runs), sum(failures), sum(cost)

    # Game days are listed with their scores below, not as changes.
    changes = [c for c in store.incidents.list_changes(tenant, since_ns=period.start_ns, until_ns=period.end_ns, limit=100_000)
               if c["kind"] != GAMEDAY]
    game_days = [score_drill(store, tenant, d, specs, now_ns)
                 for d in drills(store, tenant, period.start_ns, period.end_ns)]
    change_rows = [{"id": c["id"], "at": rfc3339(c["at_ns"]), "kind": c["kind"], "summary": c["summary"], "who": c.get("who"),
                    "journeys": list(c.get("journeys") or []),
                    "failed": c["kind"] not in NOT_CHANGES and reader.change_failed(c)}
                   for c in sorted(changes, key=lambda c: c["at_ns"])]
    end = min(period.end_ns, now_ns)
    by_id: dict[int, Mapping[str, Any]] = {i["id"]: i for i in store.incidents.list_incidents(tenant, limit=1_000_000)}
    remediation = [{"id": a["id"], "title": a["title"], "owner": a.get("owner"), "incident": a["incident_id"],
                    "incident_title": by_id.get(a["incident_id"], {}).get("title"),
                    "journey": by_id.get(a["incident_id"], {}).get("journey"),
                    "due": rfc3339(a.get("due_ns")), "overdue": bool(a.get("due_ns") and a["due_ns"] < end),
                    "age_s": (end - a["created_ns"]) / 1e9}
                   for a in store.incidents.action_items(tenant)
                   if a["created_ns"] < end and (a["status"] != "done" or (a.get("done_ns") or 0) >= end)]
    remediation.sort(key=lambda a: -a["age_s"])
    return {
        "period": period.document(), "generated": rfc3339(now_ns), "days": day_labels,
        "summary": {
            "runs": total_runs, "failed_runs": total_fail, "success_rate": (total_runs - total_fail) / total_runs if total_runs else None,
            "cost_usd": total_cost, "cost_per_1k_successful_usd": total_cost / (total_runs - total_fail) * 1000 if total_runs > total_fail else None,
            "incidents": len(incidents), "by_severity": times["by_severity"], "mttd_s": times["mttd_s"], "mtta_s": times["mtta_s"],
            "mttr_s": times["mttr_s"], "alerts": len(fired), "pages": sum(1 for a in fired if a["severity"] == "page"),
            "near_misses": len(near), "changes": len(change_rows), "failed_changes": sum(1 for c in change_rows if c["failed"]),
            "slos_met": sum(1 for s in slos if s["met"]), "slos_measured": sum(1 for s in slos if s["total"]),
            "open_action_items": len(remediation), "overdue_action_items": sum(1 for a in remediation if a["overdue"]),
            "game_days": len(game_days), "game_days_passed": sum(1 for g in game_days if g["passed"]),
        },
        "top_incidents": top, "near_misses": near, "slos": slos,
        "daily": {"runs": runs, "failed_runs": failures, "cost_usd": cost},
        "changes": change_rows, "remediation": remediation, "game_days": game_days,
        "scorecards": [{"name": c["name"], "level": c["level"], "facts": c["facts"]} for c in cards],
        "levels": list(rules.levels),
        "capacity": [dict(c) for c in capacity],
    }
