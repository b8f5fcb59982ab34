"""The Prometheus SLI shapes in the native spec (threshold, histogram, raw), what is refused
and why, and the pieces the reader builds its queries from. Reading them from a real
Prometheus is tests/integration/test_prometheus_sli.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aisre.core.errors import PermanentError
from aisre.core.series import format_selector, parse_selector
from aisre.core.slo import PrometheusSli, threshold_met
from aisre.evaluate.export.prometheus import ExportError, sli_error_query
from aisre.evaluate.prometheus import bucket_label, unsupported_reason
from aisre.evaluate.slo import SloEngine, sli_rule
from aisre.evaluate.specs import check_files, load_specs
from aisre.store.duckdb import DuckDBStore
from tests.conftest import REFS

SPECS = """\
slos:
  - name: gpu
    service: gpu-pool
    objective: 95
    sli: {kind: prometheus, threshold_query: 'max(avg_over_time(DCGM_FI_DEV_GPU_UTIL[1m]))', op: lte, value: 90}
  - name: latency
    service: api
    objective: 99
    sli: {kind: prometheus, histogram: 'http_request_duration_seconds{job="api",code!~"5.."}', le: 2}
  - name: raw
    service: api
    objective: 99
    sli: {kind: prometheus, error_ratio_query: 'sum(rate(errors[5m])) / sum(rate(requests[5m]))'}
  - name: events
    service: api
    objective: 99
    sli: {kind: prometheus, error_query: 'sum(increase(errors[1m]))', total_query: 'sum(increase(requests[1m]))'}
"""


def _write(tmp_path: Path, text: str, name: str = "slos.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_native_threshold_and_histogram_shapes_load(tmp_path: Path) -> None:
    gpu, latency, raw, events = load_specs([_write(tmp_path, SPECS)])
    assert gpu.sli == PrometheusSli(threshold_query="max(avg_over_time(DCGM_FI_DEV_GPU_UTIL[1m]))", op="lte", value=90)
    assert gpu.sli.shape == "threshold" and not gpu.diagnostic and gpu.id == "gpu-pool-gpu"
    assert latency.sli == PrometheusSli(histogram='http_request_duration_seconds{job="api",code!~"5.."}', le=2)
    assert latency.sli.shape == "histogram"
    assert (raw.sli.shape, events.sli.shape) == ("raw", "events")
    # With a Prometheus server, every shape but the raw ratio is counted from what is read.
    assert [sli_rule(s, prometheus=True) is not None for s in (gpu, latency, raw, events)] == [True, True, False, True]
    assert [sli_rule(s) is None for s in (gpu, latency, raw, events)] == [True] * 4
    # The raw ratio loads (its rules export) and is warned about where it is declared.
    (warning,) = [str(w) for w in check_files([tmp_path / "slos.yaml"]).warnings]
    assert warning.startswith(f"{tmp_path / 'slos.yaml'}:13: slos[2].sli.error_ratio_query: not evaluated: "
                              "error_ratio_query (a raw ratio SLI) gives a ratio per minute")


def test_shape_errors_name_the_field(tmp_path: Path) -> None:
    cases = {
        "{kind: prometheus, threshold_query: x, value: 90}": "sli.op: is required",
        "{kind: prometheus, threshold_query: x, op: '<=', value: 90}": "sli.op: must be one of lte, gte, lt, gt",
        "{kind: prometheus, threshold_query: x, op: lt}": "sli.value: is required",
        "{kind: prometheus, threshold_query: x, op: lt, value: 1, le: 2}": "sli.le: goes with histogram",
        "{kind: prometheus, histogram: h}": "sli.le: is required",
        "{kind: prometheus, histogram: h, le: 0}": "sli.le: must be a bucket bound > 0",
        "{kind: prometheus, histogram: h_bucket, le: 1}": "sli.histogram: name the histogram without its suffix",
        "{kind: prometheus, histogram: 'h{job=api}', le: 1}": "sli.histogram: invalid label matcher",
        "{kind: prometheus, histogram: h, le: 1, op: lt}": "sli.op: goes with threshold_query",
        "{kind: prometheus, histogram: h, le: 1, total_query: t}": "sli.histogram: give one shape only (got histogram with total_query)",
        "{kind: prometheus, threshold_query: x, histogram: h, op: lt, value: 1}": "sli.threshold_query: give one shape only (got threshold_query with histogram)",
        "{kind: prometheus, error_query: e, total_query: t, le: 2}": "sli.le: goes with threshold_query (op, value) or histogram (le)",
    }
    for i, (sli, want) in enumerate(cases.items()):
        text = f"slos:\n  - name: s\n    service: api\n    objective: 99\n    sli: {sli}\n"
        errors = [str(e) for e in check_files([_write(tmp_path, text, f"{i}.yaml")]).errors]
        assert any(want in e for e in errors), (sli, errors)


def test_what_is_not_read_says_why(tmp_path: Path) -> None:
    assert (unsupported_reason(PrometheusSli(error_ratio_query="q")) or "").startswith(
        "error_ratio_query (a raw ratio SLI) gives a ratio per minute without the number of events behind it")
    assert "good_ratio_query" in (unsupported_reason(PrometheusSli(good_ratio_query="q")) or "")
    assert unsupported_reason(PrometheusSli(threshold_query="q", op="lte", value=1, source_type="Datadog")) == (
        "its data source is Datadog: aisre reads SLIs only from a Prometheus-compatible query API (prometheus_url)")
    assert "needs op" in (unsupported_reason(PrometheusSli(threshold_query="q", value=1)) or "")
    assert unsupported_reason(PrometheusSli(threshold_query="q", op="gt", value=1, source_type="Prometheus")) is None
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    try:
        engine = SloEngine(store, prometheus=True)
        engine.apply("t", load_specs([_write(tmp_path, SPECS)]))
        docs = {d["name"]: d for d in engine.statuses("t")}
        assert docs["api-raw"]["status"] == "unsupported"
        assert docs["api-raw"]["reason"].startswith("error_ratio_query (a raw ratio SLI)")
        assert {docs[n]["status"] for n in ("gpu-pool-gpu", "api-latency", "api-events")} == {"no_data"}
        # A refused read shows on the SLO until the next pass reads it.
        engine.set_source_errors("t", {"api-latency": "le 2 is not a bucket bound of h_bucket; its bounds: 1, +Inf"})
        doc = engine.status("t", "api-latency")
        assert "reading its SLI from Prometheus failed: le 2 is not a bucket bound of h_bucket; its bounds: 1, +Inf" in doc["warnings"]
        engine.set_source_errors("t", {})
        assert not any("Prometheus" in w for w in engine.status("t", "api-latency").get("warnings", []))
        # Without prometheus_url, the reason says so.
        off = SloEngine(store)
        off.apply("t", load_specs([_write(tmp_path, SPECS)]))
        assert "prometheus_url" in {d["name"]: d for d in off.statuses("t")}["gpu-pool-gpu"]["reason"]
    finally:
        store.close()


def test_openslo_threshold_metric_of_a_prometheus_source_is_read(tmp_path: Path) -> None:
    example = (REFS / "openslo/spec_repo_examples/occurrences-slo.yaml").read_text()
    (spec,) = load_specs([_write(tmp_path, example, "any.yaml")])
    assert spec.sli == PrometheusSli(threshold_query="Any", op="lt", value=500, source_type="Any")
    assert sli_rule(spec, prometheus=True) is None  # "type: Any" is no Prometheus
    prom = example.replace("type: Any", "type: Prometheus").replace(
        "query: Any", "query: 'histogram_quantile(0.99, sum by (le) (rate(search_seconds_bucket[1m])))'")
    (spec,) = load_specs([_write(tmp_path, prom, "prom.yaml")])
    assert spec.sli.shape == "threshold" and sli_rule(spec, prometheus=True) is not None


def test_threshold_ops_and_bucket_labels() -> None:
    assert [threshold_met(90, op, 90) for op in ("lt", "lte", "gt", "gte")] == [False, True, False, True]
    assert [threshold_met(91, op, 90) for op in ("lt", "lte", "gt", "gte")] == [False, False, True, True]
    with pytest.raises(ValueError):
        threshold_met(1, "<", 2)
    # The bound's text as exported: Go clients write 2, Python clients 2.0; both when targets differ.
    assert bucket_label(["0.5", "1", "2", "+Inf"], 2.0, "h_bucket") == ("=", "2")
    assert bucket_label(["0.5", "2.0", "+Inf"], 2, "h_bucket") == ("=", "2.0")
    assert bucket_label(["2", "2.0", "+Inf"], 2, "h_bucket") == ("=~", "2|2\\.0")
    assert bucket_label(["0.1", "+Inf"], float("inf"), "h_bucket") == ("=", "+Inf")
    with pytest.raises(PermanentError, match=r"^le 1\.5 is not a bucket bound of h_bucket\{a=\"b\"\}; its bounds: 1, 2, \+Inf$"):
        bucket_label(["1", "2", "+Inf"], 1.5, 'h_bucket{a="b"}')


def test_selectors_render_as_promql_and_read_back() -> None:
    matchers = (("job", "=", 'a"b\\c'), ("code", "!~", "5.."), ("le", "=~", "2|2\\.0"))
    text = format_selector("h_bucket", matchers)
    assert text == 'h_bucket{job="a\\"b\\\\c",code!~"5..",le=~"2|2\\\\.0"}'
    assert parse_selector(text).matchers == matchers
    assert format_selector("up", ()) == "up"


def test_histogram_sli_is_not_exported_to_rules(tmp_path: Path) -> None:
    latency = load_specs([_write(tmp_path, SPECS)])[1]
    with pytest.raises(ExportError, match="histogram SLI's bucket label"):
        sli_error_query(latency, latency.window.duration)
