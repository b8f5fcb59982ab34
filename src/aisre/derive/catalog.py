"""The service catalog as the traces show it: services, the journeys they serve, and what each
calls (model providers and models, vector stores, tools, databases, downstream HTTP hosts and
other traced services) with call volume, error rate and latency."""

from __future__ import annotations

from typing import Any, Protocol

DEPENDENCY_KINDS = ("model", "vector_store", "tool", "database", "http", "service")


class CatalogSource(Protocol):
    def dependency_calls(self, tenant: str, since_ns: int | None = None, until_ns: int | None = None) -> dict[str, list[dict[str, Any]]]: ...


def _merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One dependency over several journeys: sums, a calls-weighted mean, the worst p95."""
    calls = sum(int(r["calls"]) for r in rows)
    errors = sum(int(r["errors"]) for r in rows)
    mean = sum(float(r["mean_ms"] or 0) * int(r["calls"]) for r in rows) / calls if calls else None
    return {
        "kind": rows[0]["kind"], "provider": rows[0]["provider"] or None, "name": rows[0]["name"],
        "calls": calls, "errors": errors, "error_rate": errors / calls if calls else None,
        "mean_ms": round(mean, 3) if mean is not None else None,
        # Per journey the quantiles are exact; across journeys the worst is shown (never hides a slow one).
        "p50_ms": round(max(float(r["p50_ms"] or 0) for r in rows), 3),
        "p95_ms": round(max(float(r["p95_ms"] or 0) for r in rows), 3),
        "journeys": sorted({r["journey"] for r in rows if r["journey"]}),
    }


def discover(store: CatalogSource, tenant: str, since_ns: int | None = None, until_ns: int | None = None) -> dict[str, Any]:
    """Services with their journeys and dependencies, and each journey's services, from the spans."""
    found = store.dependency_calls(tenant, since_ns, until_ns)
    by_service: dict[str, dict[tuple[str, str, str], list[dict[str, Any]]]] = {}
    for row in found["dependencies"]:
        key = (row["kind"], row["provider"] or "", row["name"])
        by_service.setdefault(row["service"], {}).setdefault(key, []).append(row)
    services = []
    journeys: dict[str, set[str]] = {}
    for s in found["services"]:
        deps = [_merge(rows) for rows in by_service.get(s["service"], {}).values()]
        deps.sort(key=lambda d: (DEPENDENCY_KINDS.index(d["kind"]), -d["calls"], d["name"]))
        for j in s["journeys"] or ():
            journeys.setdefault(j, set()).add(s["service"])
        services.append({
            "name": s["service"], "spans": int(s["spans"]), "traces": int(s["traces"]), "errors": int(s["errors"]),
            "error_rate": int(s["errors"]) / int(s["spans"]) if s["spans"] else None, "roots": int(s["roots"]),
            "journeys": list(s["journeys"] or []), "first_ns": s["first_ns"], "last_ns": s["last_ns"],
            "dependencies": deps,
        })
    return {
        "services": services,
        "journeys": [{"name": j, "services": sorted(svc)} for j, svc in sorted(journeys.items())],
    }
