"""Cost attribution documents: spend and tokens by journey, model, provider, prompt version
and release over any range and bucket, with the FinOps ratios (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aisre.core.timefmt import rfc3339
from aisre.store.protocol import CostStore


def ratios(row: Mapping[str, Any], runs: int | None) -> dict[str, Any]:
    """Derived figures of one group of sums."""
    cost = float(row.get("cost_usd") or 0.0)
    inp = int(row.get("input_tokens") or 0)
    return {
        "cost_per_1k_runs_usd": 1000 * cost / runs if runs else None,
        "retry_cost_share": float(row.get("retry_cost_usd") or 0.0) / cost if cost else None,
        "failed_run_cost_share": float(row.get("failed_run_cost_usd") or 0.0) / cost if cost else None,
        "cache_hit_rate": int(row.get("cached_input_tokens") or 0) / inp if inp else None,
        "cost_per_call_usd": cost / row["billed_calls"] if row.get("billed_calls") else None,
    }


def breakdown_document(
    db: CostStore,
    tenant: str,
    since_ns: int | None,
    until_ns: int | None,
    by: Sequence[str] = ("journey",),
    bucket_ns: int | None = None,
    journey: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Groups (and buckets) with their sums and ratios, the totals, and unpriced models."""
    rows = db.breakdown(tenant, since_ns, until_ns, by, bucket_ns, journey, model)
    totals = db.breakdown(tenant, since_ns, until_ns, (), None, journey, model)[0]
    runs_all = db.run_counts(tenant, since_ns, until_ns, journey=journey)[0]
    # Runs are counted per journey (and bucket). A group keyed by anything else (model,
    # prompt version, release) is divided by the runs of the journeys it was seen in (in its
    # bucket): cost of gpt-4.1 per 1K runs of the journeys that call it.
    by_journey = "journey" in by
    per_run = set(by) <= {"journey"}
    run_rows = db.run_counts(tenant, since_ns, until_ns, by_journey=True, bucket_ns=bucket_ns, journey=journey)
    runs_of: dict[tuple[Any, ...], int] = {(r.get("bucket_ns"), r["journey"]): int(r["runs"]) for r in run_rows}
    journeys_of: dict[tuple[Any, ...], set[Any]] = {}
    if not per_run or not by_journey:
        dims = tuple(by) if by_journey else (*by, "journey")
        for r in db.breakdown(tenant, since_ns, until_ns, dims, bucket_ns, journey, model):
            journeys_of.setdefault(_group_key(r, by), set()).add(r["journey"])
    groups = []
    for row in rows:
        bucket = row.get("bucket_ns")
        if by_journey and per_run:
            runs: int | None = runs_of.get((bucket, row.get("journey")))
        else:
            seen = journeys_of.get(_group_key(row, by), set())
            runs = sum(runs_of.get((bucket, j), 0) for j in seen) if seen else None
        doc = {k: v for k, v in row.items() if k != "bucket_ns"}
        if bucket_ns is not None:
            doc["bucket"] = rfc3339(row["bucket_ns"])
            doc["bucket_ns"] = row["bucket_ns"]
        doc["runs"] = runs
        doc.update(ratios(row, runs))
        groups.append(doc)
    total_runs = int(runs_all["runs"] or 0)
    total: dict[str, Any] = dict(totals)
    total["runs"] = total_runs
    total["failures"] = int(runs_all["failures"] or 0)
    total.update(ratios(total, total_runs))
    # Failed runs: all their spend bought nothing (run_minutes knows which runs failed).
    run_cost = float(runs_all["run_cost_usd"] or 0.0)
    total["failed_run_cost_usd"] = float(runs_all["failed_cost_usd"] or 0.0)
    total["failed_run_cost_share"] = total["failed_run_cost_usd"] / run_cost if run_cost else None
    return {
        "since": rfc3339(since_ns),
        "until": rfc3339(until_ns),
        "by": list(by),
        "bucket_s": bucket_ns // 10**9 if bucket_ns else None,
        "journey": journey,
        "model": model,
        "groups": groups,
        "total": total,
        "unpriced": [
            {"provider": r["provider"], "model": r["model"], "calls": r["calls"], "tokens": r["tokens"]}
            for r in db.unpriced(tenant, since_ns, until_ns)
        ],
    }


def _group_key(row: Mapping[str, Any], by: Sequence[str]) -> tuple[Any, ...]:
    return (row.get("bucket_ns"), *(row.get(k) for k in by))
