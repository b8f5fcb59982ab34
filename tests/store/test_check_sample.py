"""The telemetry checker's sample from the store: one tenant's spans in a period, newest whole
traces first up to a bound, with each trace's journey as ingest resolved it; on every
backend of tests/store/conftest.py STORE_URLS."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from aisre.core.model import SpanSampleQuery
from aisre.derive.check import check_otlp_files, check_store
from aisre.normalize.spans import flatten
from aisre.receive.otlp_decode import parse_request
from aisre.store.factory import open_store
from tests.conftest import capture_files, capture_truth
from tests.store.conftest import STORE_URLS


def _load(store: Any, tenant: str, name: str) -> None:
    for path in capture_files(name):
        batch = flatten(parse_request(path.read_bytes(), "protobuf"), tenant)
        store.submit_spans(batch.table, batch.resources).result(30)


@pytest.mark.parametrize("url", STORE_URLS, ids=lambda url: url.split(":", 1)[0])
def test_sample_is_the_tenants_newest_whole_traces(tmp_path: Path, url: str) -> None:
    store = open_store(url.format(dir=tmp_path, name=re.sub(r"\W", "_", tmp_path.name)), retention_days=0)
    try:
        _load(store, "a", "openllmetry")
        _load(store, "b", "otel-genai")
        truth = capture_truth("openllmetry")
        everything = store.span_sample(SpanSampleQuery("a"))
        spans_per_trace = Counter(r["trace_id"] for r in everything.spans)
        assert everything.spans_seen == len(everything.spans) == 144
        assert sum(1 for r in everything.spans if r["is_root"]) == sum(truth["driver"]["journeys"].values())
        assert set(everything.journeys.values()) == {("ask", True), ("triage-agent", True)}
        assert {int(k) for k in everything.resources} == {r["resource_id"] for r in everything.spans}
        # The same report as the capture checked offline: what ingest stored is what was sent.
        live = check_store(store, SpanSampleQuery("a"))
        offline = check_otlp_files(capture_files("openllmetry")).document()
        assert live["findings"] == offline["findings"] and live["coverage"] == offline["coverage"]

        # Bounded: whole traces, newest first, never more spans than the limit.
        sample = store.span_sample(SpanSampleQuery("a", limit=40))
        assert sample.spans_seen == 144 and 0 < len(sample.spans) <= 40
        taken = Counter(r["trace_id"] for r in sample.spans)
        assert all(spans_per_trace[t] == n for t, n in taken.items())
        newest = sorted(spans_per_trace, key=lambda t: max(r["start_ns"] for r in everything.spans if r["trace_id"] == t),
                        reverse=True)
        assert set(taken) == set(newest[: len(taken)])

        # Filters: one journey; a period before everything; a service nobody sends as.
        triage = store.span_sample(SpanSampleQuery("a", journey="triage-agent"))
        assert {everything.journeys[r["trace_id"]][0] for r in triage.spans} == {"triage-agent"}
        assert sum(1 for r in triage.spans if r["is_root"]) == truth["driver"]["journeys"]["triage-agent"]
        first = min(r["start_ns"] for r in everything.spans)
        assert store.span_sample(SpanSampleQuery("a", until_ns=first)).spans_seen == 0
        assert store.span_sample(SpanSampleQuery("a", service="nobody")).spans == []
        # Tenant b's spans are b's alone.
        assert {r["service"] for r in store.span_sample(SpanSampleQuery("b")).spans} == {"support-bot"}
        assert store.span_sample(SpanSampleQuery("c")).spans_seen == 0
    finally:
        store.close()
