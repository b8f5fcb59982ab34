"""What a journey run, a retry, a rollup minute and a good event mean, as data.

normalize/runs.py builds one partial run row per trace and batch; a store merges those
partials into one row per trace, rolls runs up per minute and counts each SLI's good
events. Those meanings are declared here once, with a plain-Python reference for each,
and every backend compiles them to its own SQL (store/duckdb/semantics.py). The store
contract tests check a backend's results against the references, so a second backend
cannot drift from the first.

They sit in normalize/ (not derive/) because the store compiles them and the store comes
before derive/ in the data flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from aisre.core.model import SliRule
from aisre.core.schema import TRACE_PART_SCHEMA


class Merge(StrEnum):
    """How the stored value of a run column combines with a new batch's partial."""

    FIRST = "first"          # the value seen first wins; a later batch only fills a gap
    ROOT_WINS = "root_wins"  # the batch carrying the root wins, else FIRST
    ANY = "any"              # true once any batch says so
    SUM = "sum"
    MIN = "min"
    MAX = "max"
    UNION = "union"          # distinct elements of both lists
    CONCAT = "concat"        # both lists, in arrival order
    RETRIES = "retries"      # the cross-batch retry rule (retried_calls)


RUN_KEY = ("tenant", "trace_id")

# Every column of a partial run (core/schema.py TRACE_PART_SCHEMA) but the key.
RUN_MERGE: Mapping[str, Merge] = {
    "journey_attr": Merge.FIRST,
    "journey_rule": Merge.FIRST,
    "has_root": Merge.ANY,
    "root_span_id": Merge.FIRST,
    "root_name": Merge.FIRST,
    "root_service": Merge.FIRST,
    "root_start_ns": Merge.FIRST,
    "root_end_ns": Merge.FIRST,
    "start_ns": Merge.MIN,
    "end_ns": Merge.MAX,
    "failed": Merge.ANY,
    "failure_reason": Merge.FIRST,
    "span_count": Merge.SUM,
    "error_spans": Merge.SUM,
    "llm_calls": Merge.SUM,
    "llm_errors": Merge.SUM,
    "tool_calls": Merge.SUM,
    "retrieval_calls": Merge.SUM,
    "agent_steps": Merge.SUM,
    "retries": Merge.RETRIES,
    "input_tokens": Merge.SUM,
    "output_tokens": Merge.SUM,
    "cached_input_tokens": Merge.SUM,
    "cost_usd": Merge.SUM,
    "service_version": Merge.ROOT_WINS,
    "prompt_name": Merge.ROOT_WINS,
    "prompt_version": Merge.ROOT_WINS,
    "environment": Merge.FIRST,
    "models": Merge.UNION,
    "llm_call_log": Merge.CONCAT,
    "user_id": Merge.FIRST,
    "session_id": Merge.FIRST,
    "first_received_ns": Merge.MIN,
    "last_received_ns": Merge.MAX,
}


def retried_calls(llm_errors: int, retries_if_none_failed: int, call_log: list[Mapping[str, Any]]) -> int:
    """Retries of a run whose calls arrived over several batches.

    A call is a retry if its instrumentation says so (``r`` > 0), or if an earlier call of
    the same operation and model under the same parent failed before it started. Only a
    run with a failed model call can hold a retry the batches could not see alone.
    """
    if llm_errors == 0:
        return retries_if_none_failed
    return sum(
        1 for c in call_log
        if (c["r"] or 0) > 0 or any(x["f"] and x["p"] == c["p"] and x["m"] == c["m"] and x["e"] <= c["s"] for x in call_log)
    )


def merge_partials(stored: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The reference merge: the run row ``stored`` becomes once ``new`` (a partial of the
    same trace) is merged in, as RUN_MERGE says."""
    out = dict(stored)
    root_arrives = bool(new["has_root"]) and not bool(stored["has_root"])
    for column, rule in RUN_MERGE.items():
        a, b = stored[column], new[column]
        if rule is Merge.FIRST:
            out[column] = a if a is not None else b
        elif rule is Merge.ROOT_WINS:
            first, second = (b, a) if root_arrives else (a, b)
            out[column] = first if first is not None else second
        elif rule is Merge.ANY:
            out[column] = bool(a) or bool(b)
        elif rule is Merge.SUM:
            out[column] = a + b
        elif rule is Merge.MIN:
            out[column] = min(a, b)
        elif rule is Merge.MAX:
            out[column] = max(a, b)
        elif rule is Merge.UNION:
            out[column] = list(dict.fromkeys([*a, *b]))
        elif rule is Merge.CONCAT:
            out[column] = [*a, *b]
    out["retries"] = retried_calls(
        stored["llm_errors"] + new["llm_errors"], stored["retries"] + new["retries"],
        [*stored["llm_call_log"], *new["llm_call_log"]],
    )
    return out


# -- runs per minute ---------------------------------------------------------------

# Fields of a run a measure or predicate may name, beyond the run columns themselves.
DERIVED_RUN_FIELDS: Mapping[str, tuple[str, str]] = {
    # name: (minuend, subtrahend)
    "duration_ns": ("root_end_ns", "root_start_ns"),
}

Aggregate = Literal["count", "sum", "histogram"]
Operator = Literal["<=", ">=", "==", ">", "is_true", "is_false", "is_null", "not_error", "is_error"]


@dataclass(frozen=True)
class Condition:
    """One condition a row must meet: ``field op value``."""

    field: str
    op: Operator
    value: float | int | None = None


@dataclass(frozen=True)
class Measure:
    """One column of a per-minute rollup: ``agg`` over ``field`` of the rows that meet every
    condition of ``where`` (none: every row). A sum over no rows is 0."""

    name: str
    agg: Aggregate
    field: str | None = None
    where: tuple[Condition, ...] = ()


def holds(c: Condition, value: Any) -> bool:
    """The reference meaning of one condition on a value."""
    if c.op == "is_true":
        return bool(value)
    if c.op == "is_false":
        return not value
    if c.op == "is_null":
        return value is None
    if c.op == "not_error":
        return value != "error"
    if c.op == "is_error":
        return value == "error"
    if value is None:
        return False  # as SQL: a comparison with NULL is not true
    if c.op == "<=":
        return bool(value <= c.value)
    if c.op == ">=":
        return bool(value >= c.value)
    if c.op == ">":
        return bool(value > c.value)
    return bool(value == c.value)


FAILED = (Condition("failed", "is_true"),)


# The run_minutes rollup, column by column after (tenant, journey, minute_ns). A run
# belongs to the minute its root span starts in; runs without a root are not counted yet.
RUN_MINUTE_MEASURES: tuple[Measure, ...] = (
    Measure("runs", "count"),
    Measure("failures", "count", where=FAILED),
    Measure("duration_sum_ns", "sum", "duration_ns"),
    Measure("duration_buckets", "histogram", "duration_ns"),
    Measure("llm_calls", "sum", "llm_calls"),
    Measure("tool_calls", "sum", "tool_calls"),
    Measure("retries", "sum", "retries"),
    Measure("input_tokens", "sum", "input_tokens"),
    Measure("output_tokens", "sum", "output_tokens"),
    Measure("cached_input_tokens", "sum", "cached_input_tokens"),
    Measure("cost_usd", "sum", "cost_usd"),
    Measure("failed_cost_usd", "sum", "cost_usd", where=FAILED),
)

# A run's journey: its aisre.journey attribute, else a configured rule, else the root's name.
JOURNEY_OF_RUN = ("journey_attr", "journey_rule", "root_name")


def run_field(run: Mapping[str, Any], field: str) -> Any:
    """A field of a run row, derived ones included (the reference for backends)."""
    if field in DERIVED_RUN_FIELDS:
        minuend, subtrahend = DERIVED_RUN_FIELDS[field]
        return run[minuend] - run[subtrahend]
    return run[field]


def journey_of(run: Mapping[str, Any]) -> str:
    return next(run[c] for c in JOURNEY_OF_RUN if run[c] is not None)


# -- good events ---------------------------------------------------------------------

def good_conditions(rule: SliRule) -> tuple[Condition, ...]:
    """What makes an event of ``rule`` good (all conditions hold).

    Run SLIs read run fields; step SLIs read a span's ``status`` and ``duration_ns``;
    score SLIs read ``value``, a run's mean score of that name.
    """
    if rule.kind == "outcome":
        latency = (Condition("duration_ns", "<=", int(rule.latency_ns)),) if rule.latency_ns is not None else ()
        return (Condition("failed", "is_false"), *latency)
    if rule.kind == "latency":
        return (Condition("duration_ns", "<=", int(rule.latency_ns or 0)),)
    if rule.kind == "cost":
        return (Condition("cost_usd", "<=", float(rule.max_cost_usd or 0.0)),)
    if rule.kind == "step":
        latency = (Condition("duration_ns", "<=", int(rule.latency_ns)),) if rule.latency_ns is not None else ()
        return (Condition("status", "not_error"), *latency)
    if rule.kind == "score":
        low = (Condition("value", ">=", float(rule.min_value)),) if rule.min_value is not None else ()
        high = (Condition("value", "<=", float(rule.max_value)),) if rule.max_value is not None else ()
        return (*low, *high)
    raise ValueError(f"no store can count SLI kind {rule.kind!r}")


def is_good(rule: SliRule, event: Mapping[str, Any]) -> bool:
    """The reference predicate: whether ``event`` (a run, a span or a run's score) is good."""
    return all(
        holds(c, run_field(event, c.field) if c.field in DERIVED_RUN_FIELDS and c.field not in event else event[c.field])
        for c in good_conditions(rule)
    )


# -- model calls per minute ----------------------------------------------------------

# A model call (a span of an LLM operation) of a rooted run, with the run's failed flag,
# journey, prompt version and release. Its minute is the run's, like every rollup.
# Fields a measure may name beyond the span's columns:
#   billed   the call reported tokens (input + output > 0): the provider charged it
#   retried  the instrumentation marks it a retry (retry_attempt > 0)
#   resent   a billed retry of a call that was answered, and billed, before: paid twice;
#            a retry after a 429 or 5xx costs nothing extra
#   tokens   input + output tokens
BILLED = (Condition("billed", "is_true"),)
RETRIED = (Condition("retry_attempt", ">", 0),)
UNPRICED = (*BILLED, Condition("price_version", "is_null"))
COST_MINUTE_KEYS = ("journey", "minute_ns", "provider", "model", "prompt_version", "service_version")
COST_MINUTE_MEASURES: tuple[Measure, ...] = (
    Measure("calls", "count"),
    Measure("billed_calls", "count", where=BILLED),
    Measure("first_calls", "count", where=(*BILLED, Condition("resent", "is_false"))),
    Measure("resent_calls", "count", where=(Condition("resent", "is_true"),)),
    Measure("retry_calls", "count", where=RETRIED),
    Measure("retry_billed_calls", "count", where=(*BILLED, *RETRIED)),
    Measure("errors", "count", where=(Condition("status", "is_error"),)),
    Measure("http_429", "count", where=(Condition("http_status", "==", 429),)),
    Measure("http_5xx", "count", where=(Condition("http_status", ">=", 500),)),
    Measure("input_tokens", "sum", "input_tokens"),
    Measure("output_tokens", "sum", "output_tokens"),
    Measure("cached_input_tokens", "sum", "cached_input_tokens"),
    Measure("cost_usd", "sum", "cost_usd"),
    Measure("retry_cost_usd", "sum", "cost_usd", where=RETRIED),
    Measure("failed_run_cost_usd", "sum", "cost_usd", where=FAILED),
    Measure("unpriced_calls", "count", where=UNPRICED),
    Measure("unpriced_tokens", "sum", "tokens", where=UNPRICED),
)
# What a cost breakdown may group by: the minute row's keys but its time (bucketed apart).
COST_DIMENSIONS = tuple(k for k in COST_MINUTE_KEYS if k != "minute_ns")


def call_flags(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reference for ``billed``, ``resent`` and ``tokens`` of a trace's model calls.

    Attempts of one call share (parent span, request model) and a number that a first
    attempt (retry_attempt 0) starts, in start order; an attempt is resent when it is a
    billed retry and an earlier attempt of the same call was billed.
    """
    out = []
    billed_before: dict[tuple[Any, ...], bool] = {}
    call_no: dict[tuple[Any, ...], int] = {}
    for c in sorted(calls, key=lambda c: (c["start_ns"], c["span_id"])):
        row = dict(c)
        retry = c.get("retry_attempt") or 0
        row["retry_attempt"] = retry
        row["tokens"] = (c.get("input_tokens") or 0) + (c.get("output_tokens") or 0)
        row["billed"] = row["tokens"] > 0
        group = (c["trace_id"], c["parent_span_id"], c.get("request_model") or "")
        if retry == 0:
            call_no[group] = call_no.get(group, 0) + 1
        key = (*group, call_no.get(group, 0))
        row["resent"] = row["billed"] and retry > 0 and billed_before.get(key, False)
        billed_before[key] = billed_before.get(key, False) or row["billed"]
        out.append(row)
    return out


def measure_value(m: Measure, rows: list[Mapping[str, Any]]) -> float:
    """The reference value of one measure over ``rows``."""
    picked = [r for r in rows if all(holds(c, run_field(r, c.field) if c.field in DERIVED_RUN_FIELDS else r[c.field])
                                      for c in m.where)]
    if m.agg == "count":
        return len(picked)
    if m.agg == "sum":
        assert m.field is not None
        return sum((run_field(r, m.field) if m.field in DERIVED_RUN_FIELDS else r[m.field]) or 0 for r in picked)
    raise ValueError(f"no reference for {m.agg!r}")


def _check_covers_partials() -> None:
    columns = [f.name for f in TRACE_PART_SCHEMA]
    missing = set(columns) - set(RUN_KEY) - set(RUN_MERGE)
    extra = set(RUN_MERGE) - set(columns)
    if missing or extra:
        raise AssertionError(f"RUN_MERGE out of step with TRACE_PART_SCHEMA: missing {missing}, unknown {extra}")


_check_covers_partials()
