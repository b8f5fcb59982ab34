"""Checks on the SLO model, whatever format it came from (after Sloth's pkg/common/validation).

Loaders report structural problems (missing fields, wrong types, bad durations, unknown
kinds); this module checks meaning: ranges, names, queries and references.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from datetime import timedelta

from aisre.core.slo import (
    CostSli,
    LatencySli,
    OutcomeSli,
    PrometheusSli,
    ScoreSli,
    SloSpec,
    SpecError,
    StepSli,
    prometheus_unsupported,
)

# Sloth's name rule for SLO names and services (one-character names allowed too).
NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
WINDOW_VAR_RE = re.compile(r"{{ *\.window *}}")
MAX_WINDOW = timedelta(days=366)
# The operations normalize/ maps spans to (DESIGN §2).
OPERATIONS = ("chat", "text_completion", "embeddings", "retrieval", "execute_tool", "agent", "other")


def _err(spec: SloSpec, name: str, message: str) -> SpecError:
    path, line = spec.source.where(name)
    return SpecError(spec.source.file, line, path, message)


def objective_problem(objective: float) -> str | None:
    """Why an objective (a percentage) is out of range, or None."""
    if 0 < objective < 100:
        return None
    hint = "; 100 leaves no error budget" if objective == 100 else ""
    return f"must be > 0 and < 100 (got {objective:g}){hint}"


def warnings_for(spec: SloSpec) -> list[SpecError]:
    """Valid but probably not meant: an objective written as a ratio (0.995 is 0.995 %), or
    a raw-ratio Prometheus SLI, which exports to rules but is never evaluated."""
    out = []
    if 0 < spec.objective <= 1 and spec.format == "aisre":
        out.append(_err(spec, "objective", f"{spec.objective:g} means {spec.objective:g} % (a percentage); "
                                           f"did you mean {spec.objective * 100:g}?"))
    sli = spec.sli
    if isinstance(sli, PrometheusSli) and sli.shape in ("raw", "raw_good"):
        key = "sli.error_ratio_query" if sli.shape == "raw" else "sli.good_ratio_query"
        out.append(_err(spec, key, f"not evaluated: {prometheus_unsupported(sli)}"))
    return out


def validate_slo(
    spec: SloSpec,
    known_journeys: Collection[str] | None = None,
    known_scores: Collection[str] | None = None,
) -> list[SpecError]:
    """Problems with one SLO; an empty list means it is valid."""
    errors: list[SpecError] = []
    add = errors.append
    if not NAME_RE.match(spec.name):
        add(_err(spec, "name", f"must match {NAME_RE.pattern} (got {spec.name!r})"))
    if spec.service is not None and not NAME_RE.match(spec.service):
        add(_err(spec, "service", f"must match {NAME_RE.pattern} (got {spec.service!r})"))
    problem = objective_problem(spec.objective)
    if problem:
        add(_err(spec, "objective", problem))
    if spec.window.duration > MAX_WINDOW:
        # Evaluation holds a count per minute of the window: bound it.
        add(_err(spec, "window", f"must be at most {MAX_WINDOW.days} days (got {spec.window})"))
    if spec.journey is not None and known_journeys is not None and spec.journey not in known_journeys:
        add(_err(spec, "journey", f"unknown journey {spec.journey!r}; known: {_list(known_journeys)}"))
    errors.extend(_check_sli(spec, known_scores))
    errors.extend(_check_budgeting(spec))
    errors.extend(_check_alerting(spec))
    return errors


def validate(
    specs: Iterable[SloSpec],
    known_journeys: Collection[str] | None = None,
    known_scores: Collection[str] | None = None,
) -> list[SpecError]:
    """Problems across a set of SLOs: each SLO's own, duplicated names, and dependencies
    (``depends_on``) on unknown SLOs or in a cycle."""
    errors: list[SpecError] = []
    seen: dict[str, SloSpec] = {}
    for spec in specs:
        errors.extend(validate_slo(spec, known_journeys, known_scores))
        first = seen.setdefault(spec.id, spec)
        if first is not spec:
            at = f"{first.source.file}:{first.source.line}"
            errors.append(_err(spec, "name", f"duplicate SLO {spec.id!r} (first declared at {at})"))
    errors.extend(check_dependencies(list(seen.values())))
    return errors


def check_dependencies(specs: list[SloSpec]) -> list[SpecError]:
    """Each ``depends_on`` id names a known SLO, not itself, and no chain of them loops back."""
    errors: list[SpecError] = []
    by_id = {spec.id: spec for spec in specs}
    for spec in specs:
        for i, dep in enumerate(spec.depends_on):
            if dep == spec.id:
                errors.append(_err(spec, f"depends_on[{i}]", f"an SLO cannot depend on itself ({dep!r})"))
            elif dep not in by_id:
                errors.append(_err(spec, f"depends_on[{i}]", f"unknown SLO {dep!r}; known: {_list(by_id)}"))
    # Depth-first search; a back edge to an SLO still on the path closes a cycle.
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    reported: set[frozenset[str]] = set()

    def visit(sid: str, path: list[str]) -> None:
        state[sid] = 1
        path.append(sid)
        spec = by_id[sid]
        for i, dep in enumerate(spec.depends_on):
            if dep == sid or dep not in by_id:
                continue
            if state.get(dep) == 1:
                loop = [*path[path.index(dep):], dep]
                if frozenset(loop) not in reported:
                    reported.add(frozenset(loop))
                    errors.append(_err(spec, f"depends_on[{i}]", "dependency cycle: " + " -> ".join(loop)))
            elif dep not in state:
                visit(dep, path)
        path.pop()
        state[sid] = 2

    for sid in by_id:
        if sid not in state:
            visit(sid, [])
    return errors


def _list(names: Collection[str]) -> str:
    return ", ".join(sorted(names)) or "(none)"


def _positive(spec: SloSpec, name: str, value: float | None) -> list[SpecError]:
    if value is not None and not value > 0:
        return [_err(spec, name, f"must be > 0 (got {value:g})")]
    return []


def _check_sli(spec: SloSpec, known_scores: Collection[str] | None) -> list[SpecError]:
    sli = spec.sli
    errors: list[SpecError] = []
    if isinstance(sli, OutcomeSli | LatencySli):
        errors += _positive(spec, "sli.latency_ms", sli.latency_ms)
    elif isinstance(sli, CostSli):
        errors += _positive(spec, "sli.max_usd", sli.max_usd)
    elif isinstance(sli, ScoreSli):
        if sli.min is None and sli.max is None:
            errors.append(_err(spec, "sli", "a score SLI needs min, max or both"))
        if sli.min is not None and sli.max is not None and sli.min > sli.max:
            errors.append(_err(spec, "sli.min", f"must be <= max (got {sli.min:g} > {sli.max:g})"))
        # Platform scores (a subject's) are not among the trace scores this set was read from.
        if known_scores is not None and sli.subject is None and sli.score not in known_scores:
            errors.append(_err(spec, "sli.score",
                               f"unknown score {sli.score!r}; known: {_list(known_scores)}"))
    elif isinstance(sli, StepSli):
        if sli.operation not in OPERATIONS:
            errors.append(_err(spec, "sli.operation",
                               f"must be one of {', '.join(OPERATIONS)} (got {sli.operation!r})"))
        errors += _positive(spec, "sli.latency_ms", sli.latency_ms)
    elif isinstance(sli, PrometheusSli):
        errors += _check_queries(spec, sli)
    return errors


def _check_queries(spec: SloSpec, sli: PrometheusSli) -> list[SpecError]:
    errors: list[SpecError] = []
    queries = {
        "sli.error_query": sli.error_query, "sli.total_query": sli.total_query,
        "sli.good_query": sli.good_query, "sli.error_ratio_query": sli.error_ratio_query,
        "sli.good_ratio_query": sli.good_ratio_query, "sli.threshold_query": sli.threshold_query,
        "sli.histogram": sli.histogram,
    }
    for name, query in queries.items():
        if query is not None and not query.strip():
            errors.append(_err(spec, name, "must not be empty"))
        # Sloth substitutes each alert window into the query; without the variable every
        # window would read the same range.
        if spec.format == "sloth" and query and not WINDOW_VAR_RE.search(query):
            errors.append(_err(spec, name, "must contain the {{.window}} template variable"))
    if sli.error_query is not None and sli.error_query == sli.total_query:
        errors.append(_err(spec, "sli.error_query", "must differ from total_query"))
    return errors


def _check_budgeting(spec: SloSpec) -> list[SpecError]:
    b = spec.budgeting
    errors: list[SpecError] = []
    if b.method in ("timeslices", "ratio_timeslices"):
        if b.slice_length is None:
            errors.append(_err(spec, "budgeting.slice", f"is required for {b.method} budgeting"))
        elif b.slice_length > spec.window.duration:
            errors.append(_err(spec, "budgeting.slice", "must not be longer than the SLO window"))
    if b.method == "timeslices":
        if b.slice_objective is None:
            errors.append(_err(spec, "budgeting.slice_objective",
                               "is required for timeslices budgeting (percent of good events per slice)"))
        elif not 0 < b.slice_objective <= 100:
            errors.append(_err(spec, "budgeting.slice_objective",
                               f"must be > 0 and <= 100 (got {b.slice_objective:g})"))
    return errors


def _check_alerting(spec: SloSpec) -> list[SpecError]:
    a = spec.alerting
    errors: list[SpecError] = []
    if spec.format == "sloth" and not a.name and (a.page.enabled or a.ticket.enabled):
        errors.append(_err(spec, "alerting.name",
                           "is required unless both page and ticket alerts are disabled"))
    w = a.windows
    if w is not None and a.windows_file is not None and w.slo_period != spec.window.duration:
        errors.append(_err(spec, "alerting.windows",
                           f"the windows file is for sloPeriod {w.slo_period.days}d but the SLO window "
                           f"is {spec.window}; use a file made for the SLO's window"))
    return errors
