"""Triage evidence for an incident: which layer the failing runs point at, which changes
they carry, and which traces show it best.

Bad runs (failures since impact start) are compared with good runs (successes over the
same period and a baseline before it): span error shares and latency per layer, and for
every change near the impact the share of bad and of good runs that carry it.

Only a change made at or before impact start can have caused it: those are the ranked
suspects. Changes made after impact began (a rollback, a hotfix, an unrelated deploy) are
listed apart as "changed during the incident", with the same shares, and never ranked.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from aisre.core.rows import Change
from aisre.core.schema import LLM_OPERATIONS
from aisre.core.timefmt import rfc3339
from aisre.store.protocol import TriageStore

# "data": retrieval that returned nothing (an empty or stale index, a broken filter).
LAYERS = ("model provider", "retrieval", "tool calls", "data", "service code")
SAMPLE_RUNS = 1000  # per outcome, for change shares
PROFILE_RUNS = 200  # per outcome, for span profiles
BASELINE_NS = 3600 * 10**9  # good runs also come from this long before impact (or as long as the incident)
LOOKBACK_NS = 24 * 3600 * 10**9  # changes this long before impact are suspects
PROXIMITY_NS = 1800 * 10**9  # a change this long before impact counts half as close


def layer_of(operation: str | None, is_root: bool) -> str:
    """The layer a span belongs to."""
    if operation in LLM_OPERATIONS:
        return "model provider"
    if operation == "retrieval":
        return "retrieval"
    if operation == "execute_tool":
        return "tool calls"
    return "service code"


def carries(change: Mapping[str, Any], run: dict[str, Any]) -> bool:
    """Whether a run carries a change: its version is on the run, or (config, flag and
    changes without a version) the run started after it."""
    version = change.get("version")
    kind = change["kind"]
    if version and kind == "deploy":
        return bool(run.get("service_version") == version)
    if version and kind == "prompt":
        return bool(run.get("prompt_version") == version and (
            not change.get("prompt_name") or run.get("prompt_name") == change["prompt_name"]))
    if version and kind == "model":
        return version in (run.get("models") or [])
    return bool(run["run_start_ns"] >= change["at_ns"])


def _profiles(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """trace → layer → {errors, duration_ns, http, types}; a root error counts for the
    service's own code only when no dependency of the run failed."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    roots: dict[str, int] = {}
    for row in rows:
        layer = layer_of(row["operation"], bool(row["is_root"]))
        layers = out.setdefault(row["trace_id"], {})
        if row["is_root"] and layer == "service code":
            roots[row["trace_id"]] = roots.get(row["trace_id"], 0) + int(row["errors"])
            continue
        entry = layers.setdefault(layer, {"errors": 0, "duration_ns": 0, "http": set(), "types": set()})
        entry["errors"] += int(row["errors"])
        entry["duration_ns"] += int(row["duration_ns"] or 0)
        if row.get("empty_results"):
            data = layers.setdefault("data", {"errors": 0, "duration_ns": 0, "http": set(), "types": set()})
            data["errors"] += int(row["empty_results"])
            data["types"].add("empty retrieval result")
        if row["http_status"]:
            entry["http"].add(int(row["http_status"]))
        entry["types"].update(row["error_types"] or [])
    for trace, errors in roots.items():
        layers = out[trace]
        if errors and not any(v["errors"] for k, v in layers.items() if k != "service code"):
            entry = layers.setdefault("service code", {"errors": 0, "duration_ns": 0, "http": set(), "types": set()})
            entry["errors"] += errors
    return out


def layer_evidence(bad: dict[str, dict[str, dict[str, Any]]], good: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per layer: share of bad and good runs with an error there, mean time spent there, and
    a score (error-share lift plus a latency term); highest score first."""
    out = []
    for layer in LAYERS:
        row: dict[str, Any] = {"layer": layer}
        for name, runs in (("bad", bad), ("good", good)):
            with_layer = [r[layer] for r in runs.values() if layer in r]
            row[f"{name}_error_share"] = sum(1 for v in with_layer if v["errors"]) / len(runs) if runs else 0.0
            timed = [v["duration_ns"] for v in with_layer if v["duration_ns"]]
            row[f"{name}_ms"] = sum(timed) / len(timed) / 1e6 if timed else None
        statuses: Counter[str] = Counter()
        types: Counter[str] = Counter()
        for r in bad.values():
            if layer in r and r[layer]["errors"]:
                statuses.update(str(s) for s in r[layer]["http"])
                types.update(r[layer]["types"])
        row["http_statuses"] = dict(statuses.most_common(5))
        row["error_types"] = dict(types.most_common(5))
        lift = row["bad_error_share"] - row["good_error_share"]
        slower = 0.0
        if row["bad_ms"] and row["good_ms"]:
            slower = max(0.0, math.log2(row["bad_ms"] / row["good_ms"])) / 4
        row["latency_ratio"] = (row["bad_ms"] / row["good_ms"]) if row["bad_ms"] and row["good_ms"] else None
        row["score"] = round(max(0.0, lift) + min(slower, 0.5), 4)
        out.append(row)
    out.sort(key=lambda r: -r["score"])
    return out


def _carried(change: Change, bad: list[dict[str, Any]], good: list[dict[str, Any]]) -> dict[str, Any]:
    """A change as evidence shows it, with the shares of bad and good runs carrying it."""
    return {
        "change_id": change["id"],
        "kind": change["kind"],
        "summary": change["summary"],
        "version": change.get("version"),
        "previous": change.get("previous"),
        "who": change.get("who"),
        "source": change["source"],
        "at": rfc3339(change["at_ns"]),
        "bad_share": round(sum(1 for r in bad if carries(change, r)) / len(bad), 4) if bad else 0.0,
        "good_share": round(sum(1 for r in good if carries(change, r)) / len(good), 4) if good else 0.0,
        "matched_by": "version" if change.get("version") and change["kind"] in ("deploy", "prompt", "model") else "time",
    }


def rank_suspects(
    changes: Sequence[Change], bad: list[dict[str, Any]], good: list[dict[str, Any]], impact_start_ns: int
) -> list[dict[str, Any]]:
    """Changes made at or before impact start, scored by the share of bad runs carrying them
    over the share of good runs, weighted by how close before the impact they happened; best
    first. Changes after impact start are not suspects (see :func:`changed_during`)."""
    out = []
    for change in changes:
        before = impact_start_ns - change["at_ns"]
        if before < 0:
            continue
        row = _carried(change, bad, good)
        proximity = 1.0 / (1.0 + before / PROXIMITY_NS)
        row["minutes_before_impact"] = round(before / 60e9, 2)
        row["score"] = round(max(0.0, row["bad_share"] - row["good_share"]) * proximity, 4)
        out.append(row)
    out.sort(key=lambda s: (-s["score"], s["minutes_before_impact"]))
    return out


def changed_during(
    changes: Sequence[Change], bad: list[dict[str, Any]], good: list[dict[str, Any]], impact_start_ns: int
) -> list[dict[str, Any]]:
    """Changes made after impact start, oldest first: what changed during the incident."""
    out = []
    for change in sorted(changes, key=lambda c: (c["at_ns"], c["id"])):
        after = change["at_ns"] - impact_start_ns
        if after > 0:
            out.append({**_carried(change, bad, good), "minutes_after_impact": round(after / 60e9, 2)})
    return out


def pick_exemplars(bad: list[dict[str, Any]], top: dict[str, Any] | None, changes: Mapping[int, Change], n: int = 3) -> list[str]:
    """Failing traces that show the most: carrying the top suspect, with tool calls and
    retrieval, different failure reasons first, newest first."""
    suspect = changes.get(top["change_id"]) if top else None

    def rank(run: dict[str, Any]) -> tuple[int, int, int]:
        return (
            0 if suspect is None or carries(suspect, run) else 1,
            0 if run.get("tool_calls") else 1,
            0 if run.get("retrieval_calls") else 1,
        )

    ordered = sorted(bad, key=lambda r: (rank(r), -r["run_start_ns"]))
    picked: list[str] = []
    reasons: set[str | None] = set()
    for run in ordered:  # one per failure reason first
        if len(picked) < n and run.get("failure_reason") not in reasons:
            picked.append(run["trace_id"])
            reasons.add(run.get("failure_reason"))
    for run in ordered:
        if len(picked) < n and run["trace_id"] not in picked:
            picked.append(run["trace_id"])
    return picked


def good_sample(store: TriageStore, tenant: str, journey: str, start_ns: int, impact_ns: int, end_ns: int) -> list[dict[str, Any]]:
    """Good runs from before and since impact in their true proportion (newest-first alone
    would be all post-change runs, hiding what a change did)."""
    before = store.count_runs(tenant, journey, start_ns, impact_ns, "success")
    since = store.count_runs(tenant, journey, impact_ns, end_ns, "success")
    total = before + since
    if total <= SAMPLE_RUNS:
        n_before, n_since = before, since
    else:
        n_before = round(SAMPLE_RUNS * before / total)
        n_since = SAMPLE_RUNS - n_before
    out = store.sample_runs(tenant, journey, impact_ns, end_ns, "success", n_since) if n_since else []
    if n_before:
        out += store.sample_runs(tenant, journey, start_ns, impact_ns, "success", n_before)
    return out


def triage(store: TriageStore, tenant: str, journey: str, impact_start_ns: int, now_ns: int) -> dict[str, Any]:
    """The evidence document of one journey's incident at ``now_ns``."""
    baseline = max(BASELINE_NS, now_ns - impact_start_ns)
    bad = store.sample_runs(tenant, journey, impact_start_ns, now_ns + 1, "failure", SAMPLE_RUNS)
    good = good_sample(store, tenant, journey, impact_start_ns - baseline, impact_start_ns, now_ns + 1)
    profile_start = impact_start_ns - baseline
    bad_ids = [r["trace_id"] for r in bad[:PROFILE_RUNS]]
    good_ids = [r["trace_id"] for r in good[:PROFILE_RUNS]]
    bad_profile = _profiles(store.span_profile(tenant, bad_ids, impact_start_ns - 60 * 10**9, now_ns + 1))
    good_profile = _profiles(store.span_profile(tenant, good_ids, profile_start - 60 * 10**9, now_ns + 1))
    for trace in bad_ids:
        bad_profile.setdefault(trace, {})
    for trace in good_ids:
        good_profile.setdefault(trace, {})
    layers = layer_evidence(bad_profile, good_profile)
    changes = store.list_changes(tenant, since_ns=impact_start_ns - LOOKBACK_NS, until_ns=now_ns + 1, journey=journey)
    suspects = rank_suspects(changes, bad, good, impact_start_ns)
    during = changed_during(changes, bad, good, impact_start_ns)
    top = suspects[0] if suspects and suspects[0]["score"] > 0 else None
    reasons = Counter(r.get("failure_reason") or "(no reason recorded)" for r in bad)
    return {
        "computed_at": rfc3339(now_ns),
        "journey": journey,
        "window": {"impact_start": rfc3339(impact_start_ns), "baseline_start": rfc3339(impact_start_ns - baseline),
                   "end": rfc3339(now_ns)},
        "bad_runs": len(bad),
        "good_runs": len(good),
        "sampled": len(bad) >= SAMPLE_RUNS or len(good) >= SAMPLE_RUNS,  # shares then come from samples
        "points_at": layers[0]["layer"] if bad and layers and layers[0]["score"] > 0 else None,
        "layers": layers,
        "suspects": suspects[:10],
        "top_suspect": top,
        "changed_during": during[:20],
        "failure_reasons": [{"reason": k, "runs": v} for k, v in reasons.most_common(5)],
        "exemplars": pick_exemplars(bad, top, {c["id"]: c for c in changes}),
    }
