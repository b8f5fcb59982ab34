"""The store's SQL agrees with the meanings declared in normalize/semantics.py.

Real captures are cut into batches (children first, the root last, one trace split over
several requests) and committed in that order; the runs, minute rollups and SLO counts
the store computes must equal what the plain-Python references compute from the same
partials. A second backend runs the same checks.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from aisre.core.model import RunQuery, SliRule
from aisre.core.schema import LLM_OPERATIONS, MINUTE_NS
from aisre.normalize.runs import trace_partials_of
from aisre.normalize.semantics import (
    COST_MINUTE_MEASURES,
    RUN_MERGE,
    RUN_MINUTE_MEASURES,
    call_flags,
    is_good,
    journey_of,
    measure_value,
    merge_partials,
)
from aisre.normalize.spans import flatten
from aisre.receive.otlp_decode import parse_request
from aisre.store.factory import open_store
from tests.otlp_factory import retry_runs
from tests.store.conftest import STORE_URLS
from tests.store.contract.data import BY_NAME, FIXTURES

TENANT = "t"
# Run columns the store's run listing shows, compared one by one.
LISTED = ("span_count", "error_spans", "llm_calls", "llm_errors", "tool_calls", "retrieval_calls", "agent_steps",
          "retries", "input_tokens", "output_tokens", "cached_input_tokens", "service_version", "prompt_name",
          "prompt_version", "environment", "user_id", "session_id", "root_name", "root_service", "failure_reason")


RETRIES = "retry-storm"  # synthetic: 429s, resent calls, failed last attempts


def _spans_of(capture: str) -> tuple[pa.Table, pa.Table]:
    if capture == RETRIES:
        flat = flatten(retry_runs(1_790_000_000 * 10**9), TENANT)
        return flat.table, flat.resources
    tables, resources = [], []
    for body in BY_NAME[capture].bodies:
        flat = flatten(parse_request(body, "protobuf"), TENANT)
        tables.append(flat.table)
        resources.append(flat.resources)
    return pa.concat_tables(tables), pa.concat_tables(resources)


def _batches(spans: pa.Table, seed: int) -> list[pa.Table]:
    """The spans cut into 2–4 batches at random, with every root in the last one."""
    rng = random.Random(seed)
    rows = spans.to_pylist()
    roots = [r for r in rows if r["is_root"]]
    children = [r for r in rows if not r["is_root"]]
    rng.shuffle(children)
    cuts = sorted(rng.sample(range(1, max(2, len(children))), k=min(2, max(0, len(children) - 1))))
    parts = [children[a:b] for a, b in zip([0, *cuts], [*cuts, len(children)], strict=True)]
    parts.append(roots)
    return [pa.Table.from_pylist(p, schema=spans.schema) for p in parts if p]


def _reference_runs(batches: list[pa.Table]) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for partial in trace_partials_of(batch).to_pylist():
            trace = partial["trace_id"]
            runs[trace] = merge_partials(runs[trace], partial) if trace in runs else partial
    return runs


@pytest.mark.parametrize("url", STORE_URLS, ids=lambda url: url.split(":", 1)[0])
@pytest.mark.parametrize("capture", [*(f.name for f in FIXTURES), RETRIES])
@pytest.mark.parametrize("seed", [1, 2])
def test_runs_rollups_and_slo_counts_match_the_declared_semantics(tmp_path: Path, capture: str, seed: int, url: str) -> None:
    spans, resources = _spans_of(capture)
    batches = _batches(spans, seed)
    expected = _reference_runs(batches)
    rules = [
        SliRule(slo="ok", journey=journey_of(r), kind="outcome") for r in expected.values() if r["has_root"]
    ][:1] + [
        SliRule(slo="fast", journey=journey_of(r), kind="latency", latency_ns=2 * 10**9)
        for r in expected.values() if r["has_root"]
    ][:1] + [
        SliRule(slo="cheap", journey=journey_of(r), kind="cost", max_cost_usd=0.0001)
        for r in expected.values() if r["has_root"]
    ][:1]
    store = open_store(url.format(dir=tmp_path))
    try:
        store.set_sli_rules(TENANT, rules)
        for batch in batches:
            store.submit_spans(batch, resources).result(30)
        store.flush_rollups()
        listed = {r["trace_id"]: r for r in store.list_runs(RunQuery(TENANT, limit=10_000))}
        assert set(listed) == set(expected)
        for trace, want in expected.items():
            got = listed[trace]
            for column in LISTED:
                assert got[column] == want[column], (trace, column)
            assert got["cost_usd"] == pytest.approx(want["cost_usd"], abs=1e-12)
            assert sorted(got["models"] or []) == sorted(want["models"])
            assert got["outcome"] == ("incomplete" if not want["has_root"] else "failure" if want["failed"] else "success")

        rooted = [r for r in expected.values() if r["has_root"]]
        minutes: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for run in rooted:
            minutes[(journey_of(run), run["root_start_ns"] // MINUTE_NS * MINUTE_NS)].append(run)
        for (journey, minute), runs in minutes.items():
            row = store.incidents.run_minutes(TENANT, journey, minute, minute + MINUTE_NS)
            assert len(row) == 1
            for measure in RUN_MINUTE_MEASURES:
                if measure.agg == "histogram" or measure.name not in row[0]:
                    continue
                assert row[0][measure.name] == pytest.approx(measure_value(measure, runs), abs=1e-12), (journey, measure.name)

        start = min(m for _, m in minutes)
        arrays = store.slo_minute_arrays(TENANT, start, max(m for _, m in minutes) + MINUTE_NS)
        for rule in rules:
            runs = [r for r in rooted if journey_of(r) == rule.journey]
            _, good, total = arrays[rule.slo]
            assert int(sum(total)) == len(runs)
            assert int(sum(good)) == sum(is_good(rule, r) for r in runs)

        # Model calls per journey, model and version, as the cost rollup sums them.
        dims = ("journey", "provider", "model", "prompt_version", "service_version")
        calls = []
        for span in spans.to_pylist():
            run = expected[span["trace_id"]]
            if span["operation"] in LLM_OPERATIONS and run["has_root"]:
                calls.append({**span, "journey": journey_of(run), "failed": run["failed"],
                              "provider": span["provider"] or "", "model": span["response_model"] or span["request_model"] or "",
                              "prompt_version": run["prompt_version"] or "", "service_version": run["service_version"] or ""})
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for call in call_flags(calls):
            groups[tuple(call[d] for d in dims)].append(call)
        got_groups = {tuple(r[d] for d in dims): r for r in store.cost.breakdown(TENANT, None, None, by=dims)}
        assert set(got_groups) == set(groups)
        for key, rows in groups.items():
            for measure in COST_MINUTE_MEASURES:
                assert got_groups[key][measure.name] == pytest.approx(measure_value(measure, rows), abs=1e-12), (key, measure.name)
    finally:
        store.close()


def test_every_partial_column_has_a_merge_rule() -> None:
    from aisre.core.schema import TRACE_PART_SCHEMA

    assert set(RUN_MERGE) == {f.name for f in TRACE_PART_SCHEMA} - {"tenant", "trace_id"}
