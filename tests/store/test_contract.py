"""The store contract: what any backend must answer, through the methods the layers above
call (never SQL, never private attributes), for the captured fixtures in tests/data.

Each capture is ingested once per module into its own tenant, the way the server ingests a
request, with a fixed clock. Answers are checked against the captures' ground truth
(journeys, failures, calls and tokens per model, tool calls, retries, prices) where truth
exists, and against golden JSON files (tests/store/golden/) otherwise; three more tenants
receive one capture split, late and twice, and must answer exactly like the plain one.

Order: where a method's order is part of its contract the test says so and checks it;
elsewhere rows are compared as sets (sorted on their keys before comparing).
Run it against every backend in tests/store/conftest.py; docs/storage.md says how to add one.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from aisre.core.errors import NotFound
from aisre.core.model import RunQuery, SliRule, SpanSampleQuery, TimeRange
from aisre.core.population import PopulationQuery, RunSelector
from aisre.core.rows import (
    CostBreakdown,
    JourneyRun,
    JourneySummary,
    RunCounts,
    TraceRun,
    row_problems,
)
from aisre.core.schema import span_row_problems
from aisre.derive.catalog import discover
from aisre.derive.check import check_store
from aisre.evaluate.minute_cache import MinuteCache
from aisre.normalize.prices import default_catalog
from tests.store.conftest import OpenedStore
from tests.store.contract.data import (
    BY_NAME,
    FIXTURES,
    MINUTE_NS,
    NOW_NS,
    Fixture,
    ingest,
    later_release,
    span_count,
    split_by_root,
)
from tests.store.contract.golden import GOLDEN, REGENERATE, check, close_to, plain, render

MS = 10**6
ALL_TIME = (0, 2**62)
ASK_RULES = [
    SliRule(slo="ask-success", journey="ask", kind="outcome"),
    SliRule(slo="ask-latency", journey="ask", kind="latency", latency_ns=100 * MS),
    SliRule(slo="ask-cost", journey="ask", kind="cost", max_cost_usd=0.0002),
    SliRule(slo="ask-chat", journey="ask", kind="step", operation="chat", latency_ns=200 * MS),
]
# One capture delivered the awkward ways real exporters deliver; each must equal REFERENCE.
REFERENCE = "otel-genai"
SPLIT, LATE, TWICE = "split-root-last", "late-children", "redelivered"
SCENARIOS = (SPLIT, LATE, TWICE)
# The same capture again an hour later from a new release: a cost explanation's two windows.
RELEASE, NEXT_VERSION, HOUR_NS = "next-release", "1.5.0", 3600 * 10**9
NAMES = [f.name for f in FIXTURES]


def _deliver(store: Any, tenant: str, fixture: Fixture) -> list[int]:
    """Ingest ``fixture`` into ``tenant`` the way the tenant's scenario says; returns what
    each request stored."""
    bodies = fixture.bodies
    if tenant == SPLIT:  # every request as two: children first, the roots last
        return [ingest(store, tenant, part) for body in bodies for part in split_by_root(body)]
    if tenant == LATE:  # every root first; every child arrives after its run looked finished
        halves = [split_by_root(body) for body in bodies]
        return [ingest(store, tenant, roots) for _, roots in halves] + [ingest(store, tenant, c) for c, _ in halves]
    if tenant == TWICE:  # each request again right after it was committed (an exporter's retry)
        return [ingest(store, tenant, body) for body in bodies for _ in range(2)]
    return [ingest(store, tenant, body) for body in bodies]


@pytest.fixture(scope="module")
def loaded(contract_store: OpenedStore) -> Iterator[OpenedStore]:
    """Every capture in its own tenant, plus the delivery scenarios, then a restart: the
    tests read a reopened store, rollups up to date. SLO rules are set after ingest for the
    captures (a backfill) and before it for the scenarios (counted as spans arrive): both
    paths must agree."""
    store = contract_store.store
    stored: dict[str, list[int]] = {}
    for tenant in SCENARIOS:
        store.set_sli_rules(tenant, ASK_RULES)
        duplicates = store.stats()["duplicate_spans"]
        stored[tenant] = _deliver(store, tenant, BY_NAME[REFERENCE])
        stored[f"{tenant} duplicates"] = [store.stats()["duplicate_spans"] - duplicates]
    for fixture in FIXTURES:
        stored[fixture.name] = _deliver(store, fixture.name, fixture)
        store.set_sli_rules(fixture.name, ASK_RULES)
    for body in BY_NAME[REFERENCE].bodies:
        ingest(store, RELEASE, body)
    for body in BY_NAME[REFERENCE].bodies:
        ingest(store, RELEASE, later_release(body, HOUR_NS, NEXT_VERSION))
    # A restart: everything committed is still there, and the capture delivered a third
    # time (an exporter's persistent queue replaying) is acknowledged and stored nowhere.
    contract_store.reopen()
    store = contract_store.store
    for tenant in (*SCENARIOS, *NAMES, RELEASE):
        store.set_sli_rules(tenant, ASK_RULES)  # the server sets its rules at start
    stored[f"{TWICE} after restart"] = [ingest(store, TWICE, body) for body in BY_NAME[REFERENCE].bodies]
    store.flush_rollups()
    contract_store.stored = stored
    yield contract_store


def _runs(store: Any, tenant: str, **kw: Any) -> list[dict[str, Any]]:
    """Every run matching; ``models`` is a set (its order depends on arrival), sorted here."""
    return [{**r, "models": sorted(r["models"])} for r in store.list_runs(RunQuery(tenant, limit=100_000, **kw))]


def _minute(ns: int) -> int:
    return ns // MINUTE_NS * MINUTE_NS


def _window(store: Any, tenant: str) -> tuple[int, int]:
    """The minutes a tenant's runs started in: [first minute, last minute + 1)."""
    starts = [r["run_start_ns"] for r in _runs(store, tenant) if r["has_root"]]
    return _minute(min(starts)), _minute(max(starts)) + MINUTE_NS


def _ask_truth(fixture: Fixture) -> tuple[int, int]:
    driver = fixture.truth["driver"]
    return driver["journeys"].get("ask", 0), driver["failed_journeys"].get("ask", 0)


# --- truth: journey runs --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_span_is_stored_once_and_every_run_is_complete(loaded: OpenedStore, name: str) -> None:
    store, fixture = loaded.store, BY_NAME[name]
    sent = sum(span_count(b) for b in fixture.bodies)
    assert sum(loaded.stored[name]) == sent
    assert store.count_spans(name) == sent
    assert store.incomplete_traces(name) == 0
    runs = _runs(store, name)
    assert all(r["has_root"] and r["outcome"] in ("success", "failure") for r in runs)
    assert sum(r["span_count"] for r in runs) == sent


@pytest.mark.parametrize("name", NAMES)
def test_runs_and_failures_per_journey_equal_the_truth(loaded: OpenedStore, name: str) -> None:
    """journey_summaries is ordered by runs (descending), then journey: that order is contract."""
    store, driver = loaded.store, BY_NAME[name].truth["driver"]
    summaries = store.journey_summaries(TimeRange(name))
    assert [s["journey"] for s in summaries] == [
        j for j, _ in sorted(driver["journeys"].items(), key=lambda kv: (-kv[1], kv[0]))]
    assert {s["journey"]: s["runs"] for s in summaries} == driver["journeys"]
    assert {s["journey"]: s["failures"] for s in summaries if s["failures"]} == driver["failed_journeys"]
    runs = _runs(store, name)
    assert Counter(r["journey"] for r in runs) == Counter(driver["journeys"])
    assert Counter(r["journey"] for r in runs if r["outcome"] == "failure") == Counter(driver["failed_journeys"])
    # The summary's sums and averages are those of the runs themselves.
    for s in summaries:
        mine = [r for r in runs if r["journey"] == s["journey"]]
        assert s["retries"] == sum(r["retries"] for r in mine)
        assert math.isclose(s["cost_usd"], sum(r["cost_usd"] for r in mine), rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(s["tokens_per_run"], np.mean([r["input_tokens"] + r["output_tokens"] for r in mine]), rel_tol=1e-12)
        assert math.isclose(s["llm_calls_per_run"], np.mean([r["llm_calls"] for r in mine]), rel_tol=1e-12)
        assert math.isclose(s["p50_ms"], np.percentile([r["duration_ns"] for r in mine], 50) / 1e6, rel_tol=1e-9)
        assert math.isclose(s["p95_ms"], np.percentile([r["duration_ns"] for r in mine], 95) / 1e6, rel_tol=1e-9)
        assert s["last_seen_ns"] == max(r["run_start_ns"] for r in mine)


@pytest.mark.parametrize("name", NAMES)
def test_calls_tokens_tools_and_retries_of_runs_equal_the_truth(loaded: OpenedStore, name: str) -> None:
    fixture = BY_NAME[name]
    truth, driver = fixture.truth["provider_truth_by_model"], fixture.truth["driver"]
    runs = _runs(loaded.store, name)
    assert sum(r["input_tokens"] for r in runs) == sum(m["input_tokens"] for m in truth.values())
    assert sum(r["output_tokens"] for r in runs) == sum(m["output_tokens"] for m in truth.values())
    assert sum(r["cached_input_tokens"] for r in runs) == sum(m.get("cached_input_tokens", 0) for m in truth.values())
    if "spans_by_model" in fixture.truth:
        calls = sum(m["spans"] for m in fixture.truth["spans_by_model"].values())
    else:
        calls = driver["model_calls"] + driver.get("embed_calls", 0)
    assert sum(r["llm_calls"] for r in runs) == calls
    assert sum(r["tool_calls"] for r in runs) == driver.get("tool_executions", 0)
    assert sum(r["retries"] for r in runs) == driver.get("app_level_retries", 0)
    assert sum(r["retrieval_calls"] for r in runs) == driver.get("retrievals", sum(r["retrieval_calls"] for r in runs))
    models = {m for r in runs for m in r["models"]}
    assert models == set(truth)


@pytest.mark.parametrize("name", ("otel-genai", "otel-genai-content", "openllmetry"))
def test_versions_of_runs_are_those_the_service_sent(loaded: OpenedStore, name: str) -> None:
    """tests/data/fixtures/README.md: resource service.name=support-bot, service.version=1.4.2,
    deployment.environment.name=prod; the ``ask`` root carries aisre.prompt.name/version."""
    runs = _runs(loaded.store, name)
    assert {(r["root_service"], r["service_version"], r["environment"]) for r in runs} == {("support-bot", "1.4.2", "prod")}
    ask = [r for r in runs if r["journey"] == "ask"]
    assert all(r["prompt_name"] and r["prompt_version"] for r in ask)
    assert all(r["prompt_version"] is None for r in runs if r["journey"] != "ask")
    assert {r["root_name"] for r in runs} == {"POST /ask", "agent.run triage"}


@pytest.mark.parametrize("name", NAMES)
def test_cost_by_model_equals_the_provider_truth_priced_by_the_catalog(loaded: OpenedStore, name: str) -> None:
    """cost breakdown rows are unordered (ties in cost are possible): compared by model."""
    fixture = BY_NAME[name]
    truth = fixture.truth["provider_truth_by_model"]
    rows = {r["model"]: r for r in loaded.cost.breakdown(name, None, None, by=("provider", "model"))}
    called_at = _window(loaded.store, name)[0]  # prices in force when the capture was made
    assert set(rows) == set(truth)
    catalog = default_catalog()
    for model, want in truth.items():
        got = rows[model]
        assert got["billed_calls"] == want["calls_ok"]
        assert got["calls"] - got["errors"] == want["calls_ok"]
        assert (got["input_tokens"], got["output_tokens"]) == (want["input_tokens"], want["output_tokens"])
        assert got["cached_input_tokens"] == want.get("cached_input_tokens", 0)
        price = catalog.lookup(got["provider"], model, called_at)[0]
        assert price is not None
        expected = price.cost(want["input_tokens"], want["output_tokens"], want.get("cached_input_tokens", 0))
        assert got["cost_usd"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        if "spans_by_model" in fixture.truth:
            spans = fixture.truth["spans_by_model"][model]
            assert (got["calls"], got["errors"]) == (spans["spans"], spans["error_spans"])
    # Every way of cutting the same minutes sums to the same totals as the runs.
    runs = _runs(loaded.store, name)
    for by in (("journey",), ("prompt_version",), ("journey", "model", "prompt_version"), ()):
        cut = loaded.cost.breakdown(name, None, None, by=by)
        assert sum(r["cost_usd"] for r in cut) == pytest.approx(sum(r["cost_usd"] for r in runs), rel=1e-9, abs=1e-12)
        assert sum(r["input_tokens"] for r in cut) == sum(r["input_tokens"] for r in runs)
        assert [row_problems(dict(r), CostBreakdown) for r in cut] == [[]] * len(cut)
        assert all(set(by) <= set(r) for r in cut)
    hourly = loaded.cost.breakdown(name, None, None, by=("model",), bucket_ns=3600 * 10**9)
    assert [row_problems(dict(r), CostBreakdown) for r in hourly] == [[]] * len(hourly)
    counts = loaded.cost.run_counts(name, None, None, by_journey=True, bucket_ns=3600 * 10**9)
    assert [row_problems(dict(r), RunCounts) for r in counts] == [[]] * len(counts)
    assert sum(r["runs"] for r in counts) == len([r for r in runs if r["has_root"]])
    # Nothing in range: one row of zeros (not NULLs), on every backend.
    (empty,) = loaded.cost.breakdown(name, 0, 1, by=())
    assert row_problems(dict(empty), CostBreakdown) == [] and empty["calls"] == 0 and empty["cost_usd"] == 0
    (no_runs,) = loaded.cost.run_counts(name, 0, 1)
    assert row_problems(dict(no_runs), RunCounts) == [] and no_runs["runs"] == 0


# --- truth: rollups and SLO counts ----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_slo_minutes_count_the_runs(loaded: OpenedStore, name: str) -> None:
    """slo_minute_arrays answers per SLO, minutes ascending (that order is contract)."""
    store, fixture = loaded.store, BY_NAME[name]
    ask, failed = _ask_truth(fixture)
    arrays = store.slo_minute_arrays(name, *ALL_TIME)
    runs = [r for r in _runs(store, name) if r["journey"] == "ask"]
    if not ask:
        assert all(int(np.sum(t)) == 0 for _, _, t in arrays.values())
        return
    assert set(arrays) == {r.slo for r in ASK_RULES}
    for minutes, _, _ in arrays.values():
        assert list(minutes) == sorted(minutes) and len(minutes) == len(set(minutes))
    good = {slo: int(np.sum(a[1])) for slo, a in arrays.items()}
    total = {slo: int(np.sum(a[2])) for slo, a in arrays.items()}
    assert (total["ask-success"], total["ask-success"] - good["ask-success"]) == (ask, failed)
    assert total["ask-latency"] == total["ask-cost"] == ask
    assert good["ask-latency"] == sum(r["duration_ns"] <= 100 * MS for r in runs)
    assert good["ask-cost"] == sum(r["cost_usd"] <= 0.0002 for r in runs)
    # The step SLO counts the chat spans of the journey's runs, as the trace views show them.
    chats = [s for r in runs for s in store.get_trace(name, r["trace_id"])[1] if s["operation"] == "chat"]
    assert total["ask-chat"] == len(chats)
    assert good["ask-chat"] == sum(s["status"] != "error" and s["duration_ns"] <= 200 * MS for s in chats)
    # Per minute too: each run counts in the minute its root started.
    per_minute = Counter(_minute(r["run_start_ns"]) for r in runs)
    minutes, _, totals = arrays["ask-success"]
    assert {int(m): int(t) for m, t in zip(minutes, totals, strict=True) if t} == dict(per_minute)
    # The other readers of the same counts agree with the arrays.
    first = store.slo_first_minutes(name)
    assert first["ask-success"] == min(per_minute)
    at = store.slo_minutes_at(name, sorted(per_minute))
    assert sorted((s, m, g, t) for s, m, g, t in at if s == "ask-success") == sorted(
        (slo, int(m), int(g), int(t)) for slo, (ms, gs, ts) in arrays.items() if slo == "ask-success"
        for m, g, t in zip(ms, gs, ts, strict=True))
    totals_doc = store.metric_totals(name)
    slos = {r["slo"]: r for r in totals_doc["slos"]}
    assert (slos["ask-success"]["total"], slos["ask-success"]["bad"]) == (ask, failed)
    assert slos["ask-success"]["first_ns"] == min(per_minute)
    # What evaluate/minute_cache makes of them: dense per-minute counts over a window.
    start, end = min(per_minute), max(per_minute) + MINUTE_NS
    cached = MinuteCache(store).read(name, {slo: (start, end) for slo in arrays})
    for slo, (ms, gs, ts) in arrays.items():
        dense_good, dense_total = np.zeros((end - start) // MINUTE_NS), np.zeros((end - start) // MINUTE_NS)
        for m, g, t in zip(ms, gs, ts, strict=True):
            dense_good[(int(m) - start) // MINUTE_NS], dense_total[(int(m) - start) // MINUTE_NS] = g, t
        assert list(cached[slo][0]) == list(dense_good) and list(cached[slo][1]) == list(dense_total)
    # One SLO only, and a range that holds no minute.
    assert set(store.slo_minute_arrays(name, *ALL_TIME, slo="ask-cost")) == {"ask-cost"}
    assert store.slo_minute_arrays(name, 0, MINUTE_NS) == {}


@pytest.mark.parametrize("name", NAMES)
def test_run_rollups_equal_the_runs(loaded: OpenedStore, name: str) -> None:
    """metric_totals rows are unordered (compared by journey); duration buckets are ordered."""
    store, driver = loaded.store, BY_NAME[name].truth["driver"]
    totals = store.metric_totals(name)
    runs = _runs(store, name)
    got = {r["journey"]: r for r in totals["runs"]}
    assert {j: r["runs"] for j, r in got.items()} == driver["journeys"]
    assert {j: r["failures"] for j, r in got.items() if r["failures"]} == driver["failed_journeys"]
    for journey, row in got.items():
        mine = [r for r in runs if r["journey"] == journey]
        assert row["input_tokens"] == sum(r["input_tokens"] for r in mine)
        assert row["output_tokens"] == sum(r["output_tokens"] for r in mine)
        assert row["retries"] == sum(r["retries"] for r in mine)
        assert row["duration_ns"] == sum(r["duration_ns"] for r in mine)
        assert row["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in mine), rel=1e-9, abs=1e-12)
        assert sum(totals["duration_buckets"][journey]) == len(mine)
        # What incidents read per minute: the same runs, minutes ascending (contract).
        minutes = store.incidents.run_minutes(name, journey, *ALL_TIME)
        assert [m["minute_ns"] for m in minutes] == sorted(m["minute_ns"] for m in minutes)
        assert sum(m["runs"] for m in minutes) == len(mine)
        assert sum(m["failures"] for m in minutes) == sum(r["outcome"] == "failure" for r in mine)


@pytest.mark.parametrize("name", NAMES)
def test_what_triage_and_impact_read_equals_the_runs(loaded: OpenedStore, name: str) -> None:
    store, fixture = loaded.store, BY_NAME[name]
    tables = store.incidents
    ask, failed = _ask_truth(fixture)
    runs = [r for r in _runs(store, name) if r["journey"] == "ask"]
    failures = sorted((r for r in runs if r["outcome"] == "failure"), key=lambda r: r["run_start_ns"])
    assert tables.count_runs(name, "ask", *ALL_TIME, "failure") == failed
    assert tables.count_runs(name, "ask", *ALL_TIME, "success") == ask - failed
    assert tables.first_failure(name, "ask", *ALL_TIME) == (failures[0]["run_start_ns"] if failures else None)
    # sample_runs: newest first (contract), at most ``limit``.
    sample = tables.sample_runs(name, "ask", *ALL_TIME, "failure", 10)
    assert [r["trace_id"] for r in sample] == [r["trace_id"] for r in reversed(failures)]
    impact = tables.impact(name, "ask", *ALL_TIME)
    assert (impact["runs"], impact["failed_runs"]) == (ask, failed)
    assert impact["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in runs), rel=1e-9, abs=1e-12)
    assert impact["failed_cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in failures), rel=1e-9, abs=1e-12)
    assert impact["all_users"] == len({r["user_id"] for r in runs if r["user_id"] is not None})
    # span_profile rows are unordered: per trace they add up to the run's spans.
    ids = [r["trace_id"] for r in runs[:5]]
    profile = tables.span_profile(name, ids, *ALL_TIME)
    spans = Counter()
    for row in profile:
        spans[row["trace_id"]] += row["spans"]
    assert dict(spans) == {r["trace_id"]: r["span_count"] for r in runs[:5]}


@pytest.mark.parametrize("name", NAMES)
def test_gate_population_holds_the_journeys_runs_in_start_order(loaded: OpenedStore, name: str) -> None:
    store, fixture = loaded.store, BY_NAME[name]
    ask, failed = _ask_truth(fixture)
    runs = {r["trace_id"]: r for r in _runs(store, name) if r["journey"] == "ask"}
    version = next(iter({r["service_version"] for r in runs.values()}))
    selectors = (RunSelector("service.version", version),) if version else ()
    pop = store.gate_population(PopulationQuery(name, "ask", selectors, *ALL_TIME))
    assert pop.runs == ask and int(pop.failed.sum()) == failed
    assert list(pop.start_ns) == sorted(pop.start_ns)  # start order is contract
    assert set(pop.trace_ids) == set(runs)
    for i, trace in enumerate(pop.trace_ids):
        run = runs[trace]
        assert pop.start_ns[i] == run["run_start_ns"]
        assert pop.duration_ms[i] == pytest.approx(run["duration_ns"] / 1e6, rel=1e-12)
        assert pop.tokens[i] == run["input_tokens"] + run["output_tokens"]
        assert pop.cost_usd[i] == pytest.approx(run["cost_usd"], rel=1e-9, abs=1e-12)
    nobody = store.gate_population(PopulationQuery(name, "ask", (RunSelector("service.version", "no-such"),), *ALL_TIME))
    assert nobody.runs == 0


WINDOW_SUMS = ("calls", "billed_calls", "errors", "http_429", "http_5xx", "input_tokens", "output_tokens", "retry_calls")


def _side(rows: list[dict[str, Any]], w: int) -> dict[tuple[str, str, str], tuple[int, ...]]:
    """One window's model_windows rows: (provider, model, prompt version) -> its integer sums."""
    return {(r["provider"], r["model"], r["prompt_version"]): tuple(r[k] for k in WINDOW_SUMS) for r in rows if r["w"] == w}


def _explain_windows(store: Any) -> list[tuple[int, int]]:
    """Baseline: the minutes of the first delivery; current: the same minutes an hour later."""
    start, end = _window(store, REFERENCE)
    return [(start, end), (start + HOUR_NS, end + HOUR_NS)]


def test_cost_explanation_inputs_of_a_release_that_changed_nothing_but_its_version(loaded: OpenedStore) -> None:
    """What CostEngine.explain reads: per window sums by run and by model, prompt version and
    release, and when each version was first seen. Rows are unordered (compared by key)."""
    store, cost = loaded.store, loaded.cost
    windows = _explain_windows(store)
    for journey in ("ask", "triage-agent"):
        runs = {r["w"]: r for r in cost.run_windows(RELEASE, journey, windows)}
        assert set(runs) == {0, 1}
        mine = [r for r in _runs(store, REFERENCE) if r["journey"] == journey]
        for row in runs.values():
            assert (row["runs"], row["failures"], row["llm_calls"], row["retries"]) == (
                len(mine), sum(r["outcome"] == "failure" for r in mine), sum(r["llm_calls"] for r in mine),
                sum(r["retries"] for r in mine))
            assert row["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in mine), rel=1e-9, abs=1e-12)
        models = cost.model_windows(RELEASE, journey, windows)
        assert {r["service_version"] for r in models if r["w"] == 0} == {"1.4.2"}
        assert {r["service_version"] for r in models if r["w"] == 1} == {NEXT_VERSION}
        assert _side(models, 0) == _side(models, 1) and _side(models, 0)
        by_model = {r["model"]: r for r in cost.breakdown(REFERENCE, None, None, by=("model",), journey=journey)}
        assert {m: v[WINDOW_SUMS.index("input_tokens")] for (_, m, _), v in _side(models, 1).items()} == {
            m: r["input_tokens"] for m, r in by_model.items()}
        releases = cost.version_first_seen(RELEASE, journey, "service_version", windows[1][1])
        assert releases == {"1.4.2": _minute(min(r["run_start_ns"] for r in mine)),
                            NEXT_VERSION: _minute(min(r["run_start_ns"] for r in mine) + HOUR_NS)}
        # Before the new release, only the old one was seen.
        assert set(cost.version_first_seen(RELEASE, journey, "service_version", windows[1][0])) == {"1.4.2"}
        prompts = cost.version_first_seen(RELEASE, journey, "prompt_version", windows[1][1])
        assert set(prompts) == {r["prompt_version"] or "" for r in mine}
        # The costliest runs that called a model in the current window, costliest first (contract).
        for model in by_model:
            ids = cost.model_exemplars(RELEASE, journey, *windows[1], model, limit=3)
            chosen = _runs(store, RELEASE, journey=journey, model=model, since_ns=windows[1][0], until_ns=windows[1][1])
            costs = {r["trace_id"]: r["cost_usd"] for r in chosen}
            assert len(ids) == min(3, len(chosen)) and set(ids) <= set(costs)
            assert [costs[i] for i in ids] == sorted(costs.values(), reverse=True)[: len(ids)]


# --- delivery: late, split and re-delivered spans -------------------------------------------


def _view(loaded: OpenedStore, tenant: str) -> dict[str, Any]:
    """Everything a delivery is counted in, as plain values, rows sorted on their keys."""
    store = loaded.store
    totals = store.metric_totals(tenant)
    arrays = store.slo_minute_arrays(tenant, *ALL_TIME)
    runs = sorted(_runs(store, tenant), key=lambda r: r["trace_id"])
    return plain({
        "spans": store.count_spans(tenant),
        "runs": runs,
        "summaries": store.journey_summaries(TimeRange(tenant)),
        "rollups": {"runs": sorted(totals["runs"], key=lambda r: r["journey"]),
                    "slos": sorted(totals["slos"], key=lambda r: r["slo"]),
                    "duration_buckets": totals["duration_buckets"]},
        "slo_minutes": {slo: [list(map(int, a)) for a in arrays[slo]] for slo in sorted(arrays)},
        "cost": sorted(loaded.cost.breakdown(tenant, None, None, by=("journey", "model", "prompt_version")),
                       key=lambda r: (r["journey"], r["model"], r["prompt_version"])),
        "traces": {t: _span_values(store.get_trace(tenant, t)[1]) for t in [r["trace_id"] for r in runs]},
    })


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_split_late_and_redelivered_spans_count_as_one_delivery(loaded: OpenedStore, scenario: str) -> None:
    sent = sum(span_count(b) for b in BY_NAME[REFERENCE].bodies)
    if scenario == TWICE:
        # Every second delivery was acknowledged, stored nothing and was counted as duplicate;
        # so was the third, after the restart.
        stored = loaded.stored[TWICE]
        assert stored[1::2] == [0] * (len(stored) // 2) and sum(stored[0::2]) == sent
        assert loaded.stored[f"{TWICE} duplicates"] == [sent]
        assert set(loaded.stored[f"{TWICE} after restart"]) == {0}
    else:
        assert sum(loaded.stored[scenario]) == sent and loaded.stored[f"{scenario} duplicates"] == [0]
    assert loaded.store.incomplete_traces(scenario) == 0
    diffs = close_to(_view(loaded, scenario), _view(loaded, REFERENCE))
    assert not diffs, diffs[:10]


def test_rows_have_the_declared_fields_and_types(loaded: OpenedStore) -> None:
    """Runs, journey summaries and a trace's run row carry exactly the fields and types
    core/rows.py declares, on every backend (so consumers type-checked against them hold)."""
    store = loaded.store
    runs = store.list_runs(RunQuery(REFERENCE, limit=100_000))
    assert runs
    for run in runs:
        assert row_problems(dict(run), JourneyRun) == [], run["trace_id"]
    for summary in store.journey_summaries(TimeRange(REFERENCE)):
        assert row_problems(dict(summary), JourneySummary) == [], summary["journey"]
    run, _ = store.get_trace(REFERENCE, runs[0]["trace_id"])
    assert row_problems(dict(run), TraceRun) == []


# --- list_runs: order, pagination, filters --------------------------------------------------


def test_list_runs_is_newest_first_and_pages_without_gaps(loaded: OpenedStore) -> None:
    """Order is contract: run start descending, then trace id descending (the keyset cursor)."""
    store = loaded.store
    everything = _runs(store, REFERENCE)
    assert [(r["run_start_ns"], r["trace_id"]) for r in everything] == sorted(
        ((r["run_start_ns"], r["trace_id"]) for r in everything), reverse=True)
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        page = store.list_runs(RunQuery(REFERENCE, limit=7, after=after))
        if not page:
            break
        pages += page
        after = (page[-1]["run_start_ns"], page[-1]["trace_id"])
    assert [r["trace_id"] for r in pages] == [r["trace_id"] for r in everything]


def test_list_runs_filters(loaded: OpenedStore) -> None:
    store = loaded.store
    everything = _runs(store, REFERENCE)
    ask, failed = _ask_truth(BY_NAME[REFERENCE])
    assert len(_runs(store, REFERENCE, journey="ask")) == ask
    assert len(_runs(store, REFERENCE, journey="ask", outcome="failure")) == failed
    for model in {m for r in everything for m in r["models"]}:
        assert {r["trace_id"] for r in _runs(store, REFERENCE, model=model)} == {
            r["trace_id"] for r in everything if model in r["models"]}
    assert len(_runs(store, REFERENCE, service_version="1.4.2")) == len(everything)
    assert _runs(store, REFERENCE, service_version="0.0.0") == []
    middle = sorted(r["run_start_ns"] for r in everything)[len(everything) // 2]
    assert {r["trace_id"] for r in _runs(store, REFERENCE, since_ns=middle)} == {
        r["trace_id"] for r in everything if r["run_start_ns"] >= middle}
    assert {r["trace_id"] for r in _runs(store, REFERENCE, until_ns=middle)} == {
        r["trace_id"] for r in everything if r["run_start_ns"] < middle}
    summaries = store.journey_summaries(TimeRange(REFERENCE, since_ns=middle))
    assert sum(s["runs"] for s in summaries) == sum(r["run_start_ns"] >= middle for r in everything)


def test_get_trace_answers_the_run_and_its_spans_in_start_order(loaded: OpenedStore) -> None:
    """Spans come ordered by start, then span id (contract); an unknown id is NotFound."""
    store = loaded.store
    for run in _runs(store, REFERENCE)[:5]:
        got, spans = store.get_trace(REFERENCE, run["trace_id"])
        assert {k: sorted(got[k]) if k == "models" else got[k] for k in run} == run
        assert len(spans) == run["span_count"]
        assert [(s["start_ns"], s["span_id"]) for s in spans] == sorted((s["start_ns"], s["span_id"]) for s in spans)
        assert sum(s["is_root"] for s in spans) == 1
        assert [span_row_problems(s) for s in spans] == [[]] * len(spans)
    with pytest.raises(NotFound):
        store.get_trace(REFERENCE, "0" * 32)


# --- goldens --------------------------------------------------------------------------------


def _keyed(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Rows whose order is not contract, sorted on their keys."""
    return sorted(rows, key=lambda row: tuple(str(row[k]) for k in keys))


# Span columns that hold JSON documents: compared as the values they encode, not as text
# (a backend may store a map and write its keys in another order).
JSON_COLUMNS = ("attributes", "events", "links", "resource")


def _span_values(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: json.loads(v) if k in JSON_COLUMNS and isinstance(v, str) else v for k, v in s.items()} for s in spans]


def _trace_of(store: Any, tenant: str) -> str:
    """The trace shown for a capture: its first failed run by trace id, else its first run."""
    runs = sorted(_runs(store, tenant), key=lambda r: (r["outcome"] != "failure", r["trace_id"]))
    return str(runs[0]["trace_id"])


def _documents(loaded: OpenedStore) -> dict[str, Any]:
    """Every golden document, computed from the store (rows sorted where order is not contract)."""
    store, cost = loaded.store, loaded.cost
    docs: dict[str, dict[str, Any]] = {"journey_runs": {}, "rollups": {}, "cost": {}, "traces": {}, "gate": {}}
    for name in NAMES:
        runs = sorted(_runs(store, name), key=lambda r: r["trace_id"])
        docs["journey_runs"][name] = {"runs": runs, "summaries": store.journey_summaries(TimeRange(name))}
        totals = store.metric_totals(name)
        arrays = store.slo_minute_arrays(name, *ALL_TIME)
        docs["rollups"][name] = {
            "metric_totals": {"runs": sorted(totals["runs"], key=lambda r: r["journey"]),
                              "slos": sorted(totals["slos"], key=lambda r: r["slo"]),
                              "duration_buckets": totals["duration_buckets"]},
            "slo_minutes": {slo: {"minute_ns": a[0], "good": a[1], "total": a[2]} for slo, a in sorted(arrays.items())},
            "slo_first_minutes": store.slo_first_minutes(name),
            "run_minutes": {j: store.incidents.run_minutes(name, j, *ALL_TIME)
                            for j in sorted({r["journey"] for r in runs})},
        }
        start, end = _window(store, name)
        windows = [(start - 10 * MINUTE_NS, start), (start, end)]

        docs["cost"][name] = {
            "by_journey": _keyed(cost.breakdown(name, None, None, by=("journey",)), "journey"),
            "by_model": _keyed(cost.breakdown(name, None, None, by=("model",)), "model"),
            "by_prompt_version": _keyed(cost.breakdown(name, None, None, by=("prompt_version",)), "prompt_version"),
            "by_journey_model_prompt": _keyed(
                cost.breakdown(name, None, None, by=("journey", "model", "prompt_version")),
                "journey", "model", "prompt_version"),
            "per_minute": _keyed(cost.breakdown(name, None, None, by=("model",), bucket_ns=MINUTE_NS), "bucket_ns", "model"),
            "run_counts": _keyed(cost.run_counts(name, None, None, by_journey=True), "journey"),
            "unpriced": _keyed(cost.unpriced(name, None, None), "model"),
            "peak_minutes": _keyed(cost.peak_minutes(name, *ALL_TIME), "provider", "model"),
            "explain_inputs": {
                journey: {
                    "windows": windows,
                    "model_windows": _keyed(cost.model_windows(name, journey, windows),
                                           "w", "provider", "model", "prompt_version", "service_version"),
                    "run_windows": _keyed(cost.run_windows(name, journey, windows), "w"),
                    "prompt_versions_first_seen": cost.version_first_seen(name, journey, "prompt_version", end),
                    "releases_first_seen": cost.version_first_seen(name, journey, "service_version", end),
                    "model_exemplars": {m: cost.model_exemplars(name, journey, start, end, m)
                                        for m in sorted({m for r in runs if r["journey"] == journey for m in r["models"]})},
                }
                for journey in sorted({r["journey"] for r in runs})
            },
        }
        trace = _trace_of(store, name)
        run, spans = store.get_trace(name, trace)
        docs["traces"][name] = {"run": {**run, "models": sorted(run["models"])}, "spans": _span_values(spans)}
        pop = store.gate_population(PopulationQuery(name, "ask", (), *ALL_TIME))
        docs["gate"][name] = {"trace_ids": pop.trace_ids, "start_ns": pop.start_ns, "failed": pop.failed,
                              "duration_ms": pop.duration_ms, "cost_usd": pop.cost_usd, "tokens": pop.tokens,
                              "scores": pop.scores}
    windows = _explain_windows(store)
    docs["cost"][f"{RELEASE} explain inputs"] = {
        journey: {
            "windows": windows,
            "run_windows": _keyed(cost.run_windows(RELEASE, journey, windows), "w"),
            "model_windows": _keyed(cost.model_windows(RELEASE, journey, windows),
                                    "w", "provider", "model", "prompt_version", "service_version"),
            "prompt_versions_first_seen": cost.version_first_seen(RELEASE, journey, "prompt_version", windows[1][1]),
            "releases_first_seen": cost.version_first_seen(RELEASE, journey, "service_version", windows[1][1]),
        }
        for journey in ("ask", "triage-agent")
    }
    return docs


GOLDENS = ("journey_runs", "rollups", "cost", "traces", "gate")


@pytest.fixture(scope="module")
def documents(loaded: OpenedStore) -> dict[str, Any]:
    return _documents(loaded)


@pytest.mark.parametrize("golden", GOLDENS)
def test_answers_equal_the_goldens(loaded: OpenedStore, documents: dict[str, Any], golden: str) -> None:
    check(golden, documents[golden], loaded.reference)


@pytest.mark.parametrize("golden", GOLDENS)
def test_regenerating_the_goldens_on_the_reference_backend_changes_nothing(
    loaded: OpenedStore, documents: dict[str, Any], golden: str
) -> None:
    """The goldens are exactly what the reference backend writes (no hand edits, no drift)."""
    if not loaded.reference:
        pytest.skip("goldens are written by the reference backend")
    assert not REGENERATE or (GOLDEN / f"{golden}.json").exists()
    assert render(documents[golden]) == (GOLDEN / f"{golden}.json").read_text()


# --- the rest of the data plane: checker sample, catalog, trace ids, policy usage -----------


def _sample_doc(store: Any, q: SpanSampleQuery, whole: bool = True) -> dict[str, Any]:
    """A checker sample as a golden holds it: its spans whole (or their keys), resources,
    journeys and the spans seen."""
    sample = store.span_sample(q)
    spans = _span_values(sample.spans) if whole else [[s["trace_id"], s["span_id"]] for s in sample.spans]
    return {"spans": spans, "resources": sample.resources,
            "journeys": {t: list(j) for t, j in sorted(sample.journeys.items())}, "spans_seen": sample.spans_seen}


def _data_plane(loaded: OpenedStore) -> dict[str, Any]:
    """What the checker, the catalog, the CLI's short trace ids and the agent-policy budget
    checks read from the spans, per capture."""
    store = loaded.store
    docs: dict[str, Any] = {}
    for name in NAMES:
        runs = sorted(_runs(store, name), key=lambda r: r["trace_id"])
        start, end = _window(store, name)
        deps = store.dependency_calls(name)
        sessions = sorted({r["session_id"] for r in runs if r["session_id"]})
        first = runs[0]["trace_id"]
        docs[name] = {
            "span_sample": _sample_doc(store, SpanSampleQuery(name, limit=12)),
            "span_sample_ask": _sample_doc(store, SpanSampleQuery(name, start, end + HOUR_NS, journey="ask", limit=1000),
                                           whole=False),
            "check": check_store(store, SpanSampleQuery(name)),
            "dependency_calls": {"services": deps["services"],
                                 "dependencies": _keyed(deps["dependencies"], "service", "journey", "kind", "provider", "name")},
            "catalog": discover(store, name),
            "trace_ids_with_prefix": {p: store.trace_ids_with_prefix(name, p) for p in (first[:1], first[:3], first)},
            "policy_usage": sorted(store.policy_usage(name, *ALL_TIME, exclude_trace_id=first),
                                   key=lambda r: (r["start_ns"], r["kind"], r["tokens"], r["cost_usd"])),
            "policy_usage_totals": store.policy_usage_totals(name, *ALL_TIME),
            "policy_usage_totals_sessions": {
                "sessions": sessions, "none": store.policy_usage_totals(name, *ALL_TIME, sessions=[]),
                "all": store.policy_usage_totals(name, *ALL_TIME, exclude_trace_id=first, sessions=sessions)},
        }
    return docs


@pytest.fixture(scope="module")
def data_plane(loaded: OpenedStore) -> dict[str, Any]:
    return _data_plane(loaded)


def test_data_plane_answers_equal_the_golden(loaded: OpenedStore, data_plane: dict[str, Any]) -> None:
    check("data_plane", data_plane, loaded.reference)


def test_regenerating_the_data_plane_golden_changes_nothing(loaded: OpenedStore, data_plane: dict[str, Any]) -> None:
    if not loaded.reference:
        pytest.skip("goldens are written by the reference backend")
    assert render(data_plane) == (GOLDEN / "data_plane.json").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_data_plane_reads_agree_with_the_runs(loaded: OpenedStore, data_plane: dict[str, Any], name: str) -> None:
    """Truth the goldens rest on: the sample holds whole newest traces, the catalog's model
    calls are the runs' model calls, the short ids are prefixes, and the usage totals add
    up the usage rows."""
    store, doc = loaded.store, data_plane[name]
    runs = _runs(store, name)
    sample = doc["span_sample"]
    assert sample["spans_seen"] == store.count_spans(name)
    by_trace = Counter(s["trace_id"] for s in sample["spans"])
    assert all(by_trace[t] == next(r["span_count"] for r in runs if r["trace_id"] == t) for t in by_trace)
    assert len(sample["spans"]) <= 12 or len(by_trace) == 1
    assert {s["resource_id"] for s in sample["spans"]} == set(sample["resources"])
    ask = doc["span_sample_ask"]["spans"]
    ask_runs = [r for r in runs if r["journey"] == "ask"]
    assert {t for t, _ in ask} == {r["trace_id"] for r in ask_runs}
    assert len(ask) == sum(r["span_count"] for r in ask_runs)
    models = Counter()
    for dep in doc["dependency_calls"]["dependencies"]:
        if dep["kind"] == "model":
            models[dep["name"]] += dep["calls"]
    assert set(models) <= {m for r in runs for m in r["models"]}
    for prefix, ids in doc["trace_ids_with_prefix"].items():
        want = sorted(r["trace_id"] for r in runs if r["trace_id"].startswith(prefix))[:5]
        assert ids == want
    first = min(r["trace_id"] for r in runs)
    usage = store.policy_usage(name, *ALL_TIME)
    totals = doc["policy_usage_totals"]
    assert totals["model_calls"] == sum(1 for u in usage if u["kind"] == "model")
    assert totals["tool_calls"] == sum(1 for u in usage if u["kind"] == "tool")
    assert totals["tokens"] == sum(u["tokens"] for u in usage)
    assert math.isclose(totals["cost_usd"], sum(u["cost_usd"] for u in usage), rel_tol=1e-9, abs_tol=1e-12)
    assert totals["tool_calls"] == sum(r["tool_calls"] for r in runs)
    calls_of_first = [s for s in store.get_trace(name, first)[1]
                      if s["operation"] in ("execute_tool", "chat", "text_completion")]
    assert len(doc["policy_usage"]) == len(usage) - len(calls_of_first)
    assert doc["policy_usage_totals_sessions"]["none"] == {"model_calls": 0, "tool_calls": 0, "tokens": 0, "cost_usd": 0.0}


# --- scores ----------------------------------------------------------------------------------

SCORED = "scored"
SCORE_RULE = SliRule(slo="ask-grounded", journey="ask", kind="score", score="groundedness", min_value=0.7)


def _scores(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    from aisre.core.schema import SCORE_ARROW_SCHEMA

    full = [{"span_id": None, "label": None, "source": "model", "comment": None, "received_ns": NOW_NS, **r} for r in rows]
    return pa.Table.from_pylist(full, schema=SCORE_ARROW_SCHEMA)


def test_scores_of_known_runs_are_stored_and_counted_unknown_ones_refused(loaded: OpenedStore) -> None:
    """add_scores refuses (by row index) scores of traces never received; the stored ones
    reach the gate's population and the score SLO of their run's minute, also when they
    arrive after the minute was counted."""
    store = loaded.store
    store.set_sli_rules(SCORED, [SCORE_RULE])
    for body in BY_NAME[REFERENCE].bodies:
        ingest(store, SCORED, body)
    store.flush_rollups()
    ask = sorted((r for r in _runs(store, SCORED) if r["journey"] == "ask"), key=lambda r: r["trace_id"])
    assert len(ask) >= 3
    assert store.slo_minute_arrays(SCORED, *ALL_TIME).get("ask-grounded") is None
    values = [0.9, 0.5, 0.8]
    refused = store.add_scores(_scores(
        [{"tenant": SCORED, "trace_id": r["trace_id"], "name": "groundedness", "value": v, "time_ns": r["run_start_ns"]}
         for r, v in zip(ask, values, strict=False)]
        + [{"tenant": SCORED, "trace_id": "f" * 32, "name": "groundedness", "value": 1.0, "time_ns": NOW_NS}]))
    assert refused == [3]
    store.flush_rollups()
    minutes, good, total = store.slo_minute_arrays(SCORED, *ALL_TIME)["ask-grounded"]
    assert (int(good.sum()), int(total.sum())) == (2, 3)
    assert sorted(int(m) for m in minutes) == sorted({_minute(r["run_start_ns"]) for r in ask[:3]})
    # A second evaluation of the first run: the run's score is the mean (0.9 + 0.3) / 2 < 0.7.
    assert store.add_scores(_scores([{"tenant": SCORED, "trace_id": ask[0]["trace_id"], "name": "groundedness",
                                      "value": 0.3, "time_ns": NOW_NS}])) == []
    store.flush_rollups()
    _, good, total = store.slo_minute_arrays(SCORED, *ALL_TIME)["ask-grounded"]
    assert (int(good.sum()), int(total.sum())) == (1, 3)
    pop = store.gate_population(PopulationQuery(SCORED, "ask", (), *ALL_TIME))
    got = dict(zip(pop.trace_ids, pop.scores["groundedness"].tolist(), strict=True))
    assert got[ask[0]["trace_id"]] == pytest.approx(0.6)
    assert got[ask[1]["trace_id"]] == pytest.approx(0.5)
    assert sum(1 for v in got.values() if not math.isnan(v)) == 3
