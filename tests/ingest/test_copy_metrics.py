"""``aisre store copy`` moves metric series (with their kept points), metric minutes and
platform scores as stored, DuckDB → ClickHouse (chdb) and back: known counters with a reset,
gauges, histograms and platform scores; after the copy the same metric SLO counts and series
listing on the target, the next OTLP point continues from the kept point, and an interrupted
copy that sends pages again resumes without doubling anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.core.auth import Forbidden, acting_for
from aisre.core.pipeline import EncodedExport
from aisre.core.rows import MetricMinuteRow, MetricSeriesRow, PlatformScoreRow, row_problems
from aisre.core.timefmt import rfc3339
from aisre.derive.metric_series import SeriesQuery, list_series
from aisre.evaluate.slo import sli_rule
from aisre.evaluate.specs import load_specs
from aisre.ingest.copy import CopyReport, CopyState, copy_metrics, verify_metrics
from aisre.ingest.metrics import decode_metrics
from aisre.normalize.scores import parse_score_batch
from aisre.present.cli.main import build_cli
from aisre.store.factory import open_store
from tests.metrics_otlp import MIN, T0, counter, gauge, histogram, minutes_of, request
from tests.store.test_metrics import SPECS as METRIC_SPECS

pytest.importorskip("chdb")

NOW = T0 + 60 * MIN
S = 10**9
# The metric SLOs of tests/store/test_metrics.py, and a drift SLO over a platform score.
SPECS = METRIC_SPECS + """  - name: churn-drift
    service: ml
    objective: 95
    sli: {kind: score, subject: 'model:churn-v3', score: drift.share, max: 0.3}
"""
# Cumulative req{code=200}: 96, 136, then a reset to 20, then 50: increases 96, 40, 20, 30.
OK = [96.0, 136.0, 20.0, 50.0]
BAD = [4.0, 14.0]  # req{code=503}: 4, then 10
LAT = [[1, 2, 3, 4], [2, 4, 6, 8]]  # lat (bounds 1, 2, 5): 10 observations a minute, 3 under 2 s
GPU = [[(1, 0.5, "0"), (2, 0.7, "0"), (3, 0.95, "1")], [(0, 0.9, "0")]]
SCORES = [("model:churn-v3", "drift.share", T0 + 5 * S, 0.1), ("model:churn-v3", "drift.share", T0 + MIN + 10 * S, 0.2),
          ("model:churn-v3", "drift.share", T0 + MIN + 40 * S, 0.5), ("dataset:orders", "quality.missing", T0 + 3 * MIN, 0.05)]


def _open(url: str, **options: Any) -> Any:
    return open_store(url, retention_days=0, clock=lambda: NOW, **options)


def _send(store: Any, tenant: str, *metrics: Any, service: str = "api") -> None:
    batch = decode_metrics(EncodedExport(request(list(metrics), service=service).SerializeToString(), "protobuf"), 1 << 20)
    assert store.submit_metrics(tenant, batch.points).result(60).over_limit == 0


def _fill(store: Any) -> None:
    """Tenant ``t``: the series above, sent a minute at a time (several rows per DuckDB minute);
    tenant ``u``: one gauge and one platform score."""
    for i, value in enumerate(OK):
        _send(store, "t", counter("req", [(T0 + i * MIN + 30 * S, value, {"code": "200"})]))
        if i < len(BAD):
            _send(store, "t", counter("req", [(T0 + i * MIN + 30 * S, BAD[i], {"code": "503"})]),
                  histogram("lat", [1.0, 2.0, 5.0], [(T0 + i * MIN + 5, LAT[i], {})]))
            _send(store, "t", gauge("gpu.util", [(T0 + i * MIN + n, v, {"gpu": g}) for n, v, g in GPU[i]]), service="pool")
    # Two days apart: pages are looked for in a window of minutes, which must widen to reach the second.
    _send(store, "u", gauge("temp", [(T0 + 7 * MIN, 40.0, {}), (T0 + 2887 * MIN, 41.0, {})]), service="other")
    for tenant, scores in (("t", SCORES), ("u", SCORES[:1])):
        items = [{"subject": s, "name": n, "time": rfc3339(at), "value": v} for s, n, at, v in scores]
        store.add_platform_scores(parse_score_batch(items, tenant, NOW).platform)


def _slo_rows(store: Any, tmp_path: Path) -> dict[str, list[tuple[int, int, int]]]:
    spec_file = tmp_path / "slos.yaml"
    spec_file.write_text(SPECS)
    store.set_sli_rules("t", [r for s in load_specs([spec_file]) if (r := sli_rule(s)) is not None])
    store.flush_rollups()
    got = store.slo_minute_arrays("t", 0, 2**62)
    return {slo: [((m - T0) // MIN, g, t) for m, g, t in zip(*(a.tolist() for a in arrays), strict=True) if t]
            for slo, arrays in got.items()}


DIRECTIONS = [("duckdb:///{d}/src.duckdb", "chdb:///{d}/dst"), ("chdb:///{d}/src", "duckdb:///{d}/dst.duckdb")]


@pytest.mark.parametrize(("src_url", "dst_url"), DIRECTIONS, ids=["duckdb-to-chdb", "chdb-to-duckdb"])
def test_metrics_and_platform_scores_copy_whole_and_continue(src_url: str, dst_url: str, tmp_path: Path) -> None:
    # The target allows 6 series per tenant: t's 5 and the one it holds already.
    source, target = _open(src_url.format(d=tmp_path)), _open(dst_url.format(d=tmp_path), max_metric_series=6)
    try:
        _fill(source)
        # The target already holds another series of tenant t (its writer knows t's series).
        _send(target, "t", gauge("queue.depth", [(T0 + 9 * MIN, 3.0, {})]), service="worker")
        for row in source.export_metric_series("t", None, 100):
            assert row_problems(dict(row), MetricSeriesRow) == []
        everything = {t: source.export_metric_minutes(t, None, 100).rows for t in ("t", "u")}
        for row in everything["t"]:
            assert row_problems(dict(row), MetricMinuteRow) == []
        assert [(len(rows), sum(r["points"] for r in rows)) for rows in everything.values()] == [(11, 12), (2, 2)]
        for tenant, limit in (("t", 1), ("t", 2), ("t", 4), ("u", 1)):  # pages of any size cover each row once
            pages, after = [], None
            while (page := source.export_metric_minutes(tenant, after, limit)).rows:
                assert len(page.rows) <= limit
                pages += page.rows
                after = page.after
            key = lambda r: (r["series_id"], r["minute_ns"])  # noqa: E731
            assert sorted(pages, key=key) == sorted(everything[tenant], key=key)
        for row in source.export_platform_scores("t", None, 100):
            assert row_problems(dict(row), PlatformScoreRow) == []

        state = CopyState(tmp_path / "state.json")
        first = copy_metrics(source, target, state, page_rows=3, max_pages=4)
        assert not first[-1].done and (first[0].series, first[0].minutes, first[0].new) == (5, 6, 11)
        assert json.loads(state.path.read_text())["metrics:minutes:t"] == state.after["metrics:minutes:t"]
        # A crash after pages were stored but before their marks were saved: they come again.
        state.after.pop("metrics:minutes:t")
        state.after.pop("metrics:series:t")
        resumed = copy_metrics(source, target, state, page_rows=3)
        assert [(c.tenant, c.done) for c in resumed] == [("t", True), ("u", True)]
        assert (resumed[0].series, resumed[0].minutes, resumed[0].scores) == (5, 11, 4)
        assert resumed[0].new == 11 - 6  # the series and minutes sent again added nothing
        report = verify_metrics(source, target, CopyReport(), ["t", "u"])
        # Only the series the target held already differs.
        assert {(m.tenant, m.figure) for m in report.mismatches} == {
            ("t", "metric series"), ("t", "queue.depth minute value"), ("t", "queue.depth minute points")}
        figures = target.metric_copy_totals("t")
        assert figures["req minute value"] == sum([96, 40, 20, 30]) + sum([4, 10])
        assert figures["req minute points"] == 6
        assert figures["lat minute value"] == 20 and figures["gpu.util minute points"] == 4
        assert figures["metric series"] == 5 + 1  # and the target's own
        assert (figures["platform scores"], figures["platform score sum"]) == (4, pytest.approx(0.85))
        assert target.metric_copy_totals("u") == source.metric_copy_totals("u")

        # The same series listing (the target's own series aside) and the same minutes.
        listed = [i for i in list_series(target, SeriesQuery("t"))["items"] if i["metric"] != "queue.depth"]
        assert listed == list_series(source, SeriesQuery("t"))["items"]
        for metric in ("req", "gpu.util", "lat"):
            assert minutes_of(target, "t", metric) == minutes_of(source, "t", metric)
        assert target.platform_scores("t") == source.platform_scores("t")

        # The same metric and platform score SLO counts, as known.
        ours, theirs = _slo_rows(source, tmp_path), _slo_rows(target, tmp_path)
        assert theirs == ours
        assert ours["api-errors"] == [(0, 96, 100), (1, 40, 50), (2, 20, 20), (3, 30, 30)]
        assert ours["api-latency"] == [(0, 3, 10), (1, 3, 10)]
        assert ours["pool-gpu"] == [(0, 1, 2), (1, 0, 1)]
        assert ours["ml-churn-drift"] == [(0, 1, 1), (1, 1, 2)]

        # The next points continue from the kept ones on both sides: +7 requests, +10 observations.
        for store in (source, target):
            _send(store, "t", counter("req", [(T0 + 4 * MIN + 30 * S, 57.0, {"code": "200"})]),
                  histogram("lat", [1.0, 2.0, 5.0], [(T0 + 2 * MIN + 5, [3, 6, 9, 12], {})]))
        for store in (source, target):
            req = minutes_of(store, "t", "req")
            assert req[('{"code":"200","service.name":"api"}', 4)]["value"] == 7.0
            lat = minutes_of(store, "t", "lat")[('{"service.name":"api"}', 2)]
            assert (lat["value"], lat["buckets"]) == (10.0, [1.0, 2.0, 3.0, 4.0])
        # The target counts the copied series against its limit (not what it knew before the copy).
        batch = decode_metrics(EncodedExport(request([gauge("new", [(T0 + 5 * MIN, 1.0, {})])]).SerializeToString(),
                                             "protobuf"), 1 << 20)
        assert target.submit_metrics("t", batch.points).result(60).over_limit == 1
    finally:
        target.close()
        source.close()


def test_the_cli_copies_metrics_with_the_traces_and_checks_them(tmp_path: Path) -> None:
    store = _open(f"duckdb://{tmp_path}/src.duckdb")
    try:
        _fill(store)
    finally:
        store.close()
    args = ["store", "copy", "--from", f"duckdb://{tmp_path}/src.duckdb", "--to", f"chdb://{tmp_path}/dst", "--format", "json"]
    result = CliRunner().invoke(build_cli(run_server), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["verified"] is True
    assert doc["copied_metrics"] == {"t": {"series": 5, "minutes": 11, "platform_scores": 4},
                                     "u": {"series": 1, "minutes": 2, "platform_scores": 1}}
    assert doc["tenants"]["t"]["req minute points"] == 6 and doc["tenants"]["u"]["platform scores"] == 1
    skipped = CliRunner().invoke(build_cli(run_server), [*args[:5], f"chdb://{tmp_path}/other", "--skip-metrics",
                                                         "--format", "json"])
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(skipped.output)["copied_metrics"] == {}


def test_a_split_store_takes_the_copy_and_the_guard_keeps_tenants_apart(tmp_path: Path, postgres_server: Any,
                                                                         request: pytest.FixtureRequest) -> None:
    control = postgres_server.create_database(request.node.name)
    source = _open(f"duckdb://{tmp_path}/src.duckdb")
    target = open_store(f"chdb://{tmp_path}/dst", retention_days=0, clock=lambda: NOW, control=control)
    try:
        _fill(source)
        copied = copy_metrics(source, target, CopyState(tmp_path / "state.json"))
        assert [(c.tenant, c.series, c.minutes, c.scores) for c in copied] == [("t", 5, 11, 4), ("u", 1, 2, 1)]
        assert verify_metrics(source, target, CopyReport()).mismatches == []
        assert target.platform_scores("u") == source.platform_scores("u")
        # Reading back and writing are a tenant's own; listing every tenant is the process's.
        with acting_for("u"):
            assert [r["metric"] for r in target.export_metric_series("u", None, 10)] == ["temp"]
            for call in (lambda: target.export_metric_minutes("t", None, 10), lambda: target.import_metric_series("t", []),
                         lambda: target.metric_copy_totals("t")):
                with pytest.raises(Forbidden, match="cannot read tenant 't'"):
                    call()
            with pytest.raises(Forbidden, match="acts for every tenant"):
                target.metric_tenants()
    finally:
        target.close()
        source.close()
