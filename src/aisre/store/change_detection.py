"""What counts as a detected change, once for every backend that keeps the changes table
(DuckDB, PostgreSQL): each backend reads its runs' first appearances and the values it has
seen, and writes through its own SQL; the rules are here.

A value (service.version, model, prompt name@version) that first appears in a journey's
runs is a change, unless it was there from the journey's first runs (its baseline), or
someone recorded that rollout (then the recording learns when it was first seen).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

# A trace's spans can arrive over a while and commits are not ordered by receive time, so
# detection re-reads this much before its mark; the seen values make that harmless.
DETECTION_OVERLAP_NS = 30 * 10**9
# A value first seen within this long of the journey's first run is its baseline, not a change.
BASELINE_NS = 5 * 10**9

# One appearance: (journey, kind, value, prompt_name, first_ns, service, received_ns).
Appearance = Sequence[Any]
Seen = dict[tuple[str, str], dict[str, int]]  # (journey, kind) -> value -> first seen


class ChangeWrites(Protocol):
    """The writes detection makes, in the caller's transaction."""

    def seen_earlier(self, journey: str, kind: str, value: str, first_ns: int) -> None: ...

    def seen_new(self, journey: str, kind: str, value: str, first_ns: int) -> None: ...

    def recorded(self, kind: str, version: str, prompt_name: str | None, journey: str) -> int | None:
        """The newest recorded (API) change of this rollout not yet observed in runs, if any."""
        ...

    def observed(self, change_id: int, first_ns: int) -> None: ...

    def insert(self, row: dict[str, Any]) -> dict[str, Any]: ...


def detect(tenant: str, seen: Seen, found: Sequence[Appearance], writes: ChangeWrites) -> list[dict[str, Any]]:
    """Judge ``found`` against ``seen`` (updated in place), writing through ``writes``;
    returns the changes added."""
    added: list[dict[str, Any]] = []
    # Earliest first, so a journey's baseline is known before its later values.
    for journey, kind, value, prompt_name, first_ns, service, _ in sorted(found, key=lambda r: r[4]):
        values = seen.setdefault((journey, kind), {})
        if value in values:
            if first_ns < values[value]:
                values[value] = first_ns
                writes.seen_earlier(journey, kind, value, first_ns)
            continue
        start = seen.setdefault((journey, "journey"), {})
        if "" not in start:
            start[""] = first_ns
            writes.seen_new(journey, "journey", "", first_ns)
        previous = max(values.items(), key=lambda kv: kv[1])[0] if values else None
        values[value] = first_ns
        writes.seen_new(journey, kind, value, first_ns)
        if first_ns - start[""] <= BASELINE_NS:
            continue  # there from the journey's first runs: its baseline
        version = value.split("@", 1)[1] if kind == "prompt" else value
        if kind == "prompt" and previous is not None:
            previous = previous.split("@", 1)[1]
        recorded = writes.recorded(kind, version, prompt_name, journey)
        if recorded is not None:  # someone recorded this rollout: note when it was first seen
            writes.observed(recorded, first_ns)
            continue
        what = {"deploy": "service.version", "model": "model", "prompt": f"prompt {prompt_name}"}[kind]
        summary = f"{what} {previous} → {version} in {journey}" if previous else f"{what} {version} in {journey}"
        added.append(writes.insert({
            "tenant": tenant, "kind": kind, "summary": summary, "who": None, "at_ns": first_ns,
            "services": [service] if service else [], "journeys": [journey], "version": version,
            "previous": previous, "prompt_name": prompt_name, "link": None, "metadata": None,
            "source": "detected", "observed_ns": first_ns, "created_ns": first_ns,
        }))
    return added
