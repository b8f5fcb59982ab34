"""The steady metric commit (store/duckdb/metric_steady.py: numpy against the series kept in
memory) on what the SQL commit gives for the same requests: exporter-like streams where most
requests are the next point of known series, with the cases it must hand to SQL mixed in
(new series, a series twice in a request, histogram bounds that move) and those it handles
itself (resets, a new start time, retried and overtaken points, delta and gauge points)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import duckdb
import pytest

from aisre.core.schema import MINUTE_NS
from aisre.core.series import MetricPoint, series_id
from aisre.normalize.metrics import points_table
from aisre.store.duckdb import DuckDBStore
from aisre.store.duckdb.metrics import MetricTables, folded_minutes
from tests.metrics_otlp import T0
from tests.store.metrics_reference import Reference

S = 10**9
MIGRATIONS = Path(__file__).parents[2] / "src/aisre/store/duckdb/migrations"
SERIES_STATE = ("SELECT s.series_id, kind, first_ns, start_ns, last_ns, last_value, last_sum, last_bounds, "
                "last_buckets FROM metric_series s LEFT JOIN metric_series_buckets b USING (tenant, series_id) "
                "ORDER BY s.series_id")


def _tables(steady: bool) -> tuple[duckdb.DuckDBPyConnection, MetricTables]:
    conn = duckdb.connect()
    for sql in sorted(MIGRATIONS.glob("003*.sql")):
        conn.execute(sql.read_text())
    tables = MetricTables(conn, 40)
    tables.steady = steady
    return conn, tables


class Exporter:
    """Series that move on like an SDK's: counters and histograms grow, gauges wander."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.series: list[dict[str, Any]] = []
        self.sent: list[list[MetricPoint]] = []
        for i in range(12):
            self.add(i)

    def add(self, i: int) -> None:
        kind = ("sum", "histogram", "gauge", "sum", "histogram")[i % 5]
        temporality = "delta" if kind == "gauge" or i % 7 == 3 else "cumulative"
        labels = f'{{"i":"{i}"}}'
        self.series.append({"sid": series_id("m", labels), "labels": labels, "kind": kind, "temporality": temporality,
                            "value": 0.0, "sum": 0.0, "bounds": (0.1, 0.5, 1.0), "buckets": [0.0] * 4,
                            "start": T0 - MINUTE_NS})

    def request(self, at: int) -> list[MetricPoint]:
        rng = self.rng
        if rng.random() < 0.08 and self.sent:
            return list(rng.choice(self.sent))  # a retried export
        if rng.random() < 0.1:
            self.add(len(self.series))  # a new pod's series
        points = []
        for s in self.series:
            if rng.random() < 0.15:
                continue  # not in this export
            for repeat in range(2 if rng.random() < 0.01 else 1):  # now and then twice in one request
                points.append(self._point(s, at + repeat * S))
        rng.shuffle(points)
        self.sent.append(points)
        return points

    def _point(self, s: dict[str, Any], at: int) -> MetricPoint:
        rng = self.rng
        delta = s["temporality"] == "delta"
        if not delta and rng.random() < 0.04:  # the process restarted
            s["value"], s["sum"], s["buckets"] = 0.0, 0.0, [0.0] * (len(s["bounds"]) + 1)
            s["start"] = at - S if rng.random() < 0.5 else s["start"]
        if s["kind"] == "histogram" and rng.random() < 0.03:  # the bucket layout changed
            s["bounds"] = (0.1, 0.25, 0.5, 1.0) if len(s["bounds"]) == 3 else (0.1, 0.5, 1.0)
            s["buckets"] = [0.0] * (len(s["bounds"]) + 1)
            s["value"], s["sum"], s["start"] = 0.0, 0.0, at - S
        if s["kind"] == "gauge":
            value, total, bounds, buckets = float(rng.randrange(0, 100)), 0.0, (), ()
        elif s["kind"] == "sum":
            step = float(rng.randrange(0, 30))
            s["value"] = step if delta else s["value"] + step
            value, total, bounds, buckets = s["value"], 0.0, (), ()
        else:
            gained = [float(rng.randrange(0, 5)) for _ in s["buckets"]]
            s["buckets"] = gained if delta else [a + b for a, b in zip(s["buckets"], gained, strict=True)]
            s["sum"] = sum(gained) * 0.3 if delta else s["sum"] + sum(gained) * 0.3
            value, total, bounds, buckets = float(sum(s["buckets"])), s["sum"], s["bounds"], tuple(s["buckets"])
        return MetricPoint(s["sid"], "m", s["labels"], s["kind"], s["temporality"], "s", s["start"], at, value, total,
                           bounds, buckets)


def _rows(conn: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return sorted(conn.execute("SELECT series_id, minute_ns, value, points, min, max, last, last_ns, sum, bounds, "
                               "buckets FROM metric_minutes").fetchall(), key=repr)


@pytest.mark.parametrize("seed", range(8))
def test_steady_commits_give_what_the_sql_commit_gives(seed: int) -> None:
    rng = random.Random(seed)
    exporter = Exporter(rng)
    (steady_conn, steady), (sql_conn, sql) = _tables(True), _tables(False)
    reference = Reference(40)
    for step in range(40):
        points = exporter.request(T0 + step * 20 * S)
        got = steady.commit("t", points_table(points))
        want = sql.commit("t", points_table(points))
        accepted, over, _ = reference.commit(points)
        assert (got.accepted, got.over_limit, got.minutes) == (want.accepted, want.over_limit, want.minutes)
        assert (got.accepted, got.over_limit) == (accepted, over)
        assert _rows(steady_conn) == _rows(sql_conn)
        assert steady_conn.execute(SERIES_STATE).fetchall() == sql_conn.execute(SERIES_STATE).fetchall()
    # Most requests took the steady path, and the cases it hands over happened too.
    assert 15 <= steady.steady_requests < 40


@pytest.mark.parametrize("seed", range(5))
def test_requests_committed_together_fold_to_the_same_minutes(seed: int) -> None:
    # Several requests queued for the writer: the steady ones lead, the rest go to SQL.
    rng = random.Random(100 + seed)
    exporter = Exporter(rng)
    (steady_conn, steady), (sql_conn, sql) = _tables(True), _tables(False)
    step = 0
    for _ in range(12):
        batch = []
        for _ in range(rng.randint(1, 4)):
            batch.append(points_table(exporter.request(T0 + step * 20 * S)))
            step += 1
        got = steady.commit_many("t", batch)
        want = sql.commit_many("t", batch)
        assert [(r.accepted, r.over_limit, r.minutes) for r in got] == [(r.accepted, r.over_limit, r.minutes) for r in want]
    ids = [int(r[0]) for r in sql_conn.execute("SELECT series_id FROM metric_series").fetchall()]

    def folded(conn: duckdb.DuckDBPyConnection) -> dict[tuple[int, int], tuple[Any, ...]]:
        return {(sid, minute): (pytest.approx(a.value), a.points, a.min, a.max, None if a.sum is None else pytest.approx(a.sum),
                                a.bounds, a.buckets)
                for sid, minute, a in folded_minutes(conn, "t", ids, 0, 2**62)}

    assert folded(steady_conn) == folded(sql_conn)
    assert steady_conn.execute(SERIES_STATE).fetchall() == sql_conn.execute(SERIES_STATE).fetchall()
    assert steady.steady_requests > 0


def test_kept_points_survive_a_restart_of_the_steady_path(tmp_path: Path) -> None:
    # The series in memory are read back from the store after a reopen: the next point
    # adds only what it gained since the last one committed before.
    labels = '{"i":"1"}'
    sid = series_id("req", labels)

    def point(at: int, value: float) -> MetricPoint:
        return MetricPoint(sid, "req", labels, "sum", "cumulative", "1", T0 - MINUTE_NS, at, value, 0.0, (), ())

    store = DuckDBStore(str(tmp_path / "s.duckdb"), rollup_interval_ms=0)
    for i, value in enumerate([10.0, 25.0, 40.0]):
        store.submit_metrics("t", [point(T0 + i * MINUTE_NS, value)]).result(30)
    store.close()
    store = DuckDBStore(str(tmp_path / "s.duckdb"), rollup_interval_ms=0)
    try:
        store.submit_metrics("t", [point(T0 + 3 * MINUTE_NS, 47.0)]).result(30)
        assert store._metric_tables.steady_requests == 1
        rows = store.metric_minutes("t", [sid], T0, T0 + 4 * MINUTE_NS)
        assert {r["minute_ns"]: r["value"] for r in rows} == {
            T0: 10.0, T0 + MINUTE_NS: 15.0, T0 + 2 * MINUTE_NS: 15.0, T0 + 3 * MINUTE_NS: 7.0}
    finally:
        store.close()


def test_a_store_from_before_the_bucket_table_keeps_its_histograms(tmp_path: Path) -> None:
    # Migration 0033 moves a histogram's kept bucket counts out of metric_series: a store
    # written before it (rebuilt here in the old layout) goes on from the same counts.
    labels = '{"i":"h"}'
    sid = series_id("lat", labels)

    def point(at: int, buckets: tuple[float, ...]) -> MetricPoint:
        return MetricPoint(sid, "lat", labels, "histogram", "cumulative", "s", T0 - MINUTE_NS, at, sum(buckets), 1.0,
                           (0.5, 1.0), buckets)

    path = str(tmp_path / "old.duckdb")
    store = DuckDBStore(path, rollup_interval_ms=0)
    store.submit_metrics("t", [point(T0, (4.0, 2.0, 1.0))]).result(30)
    store.close()
    conn = duckdb.connect(path)
    conn.execute("ALTER TABLE metric_series ADD COLUMN last_buckets DOUBLE[]")
    conn.execute("UPDATE metric_series s SET last_buckets = b.last_buckets FROM metric_series_buckets b "
                 "WHERE b.series_id = s.series_id")
    conn.execute("DROP TABLE metric_series_buckets")
    conn.execute("DELETE FROM schema_migrations WHERE version = 33")
    conn.close()
    store = DuckDBStore(path, rollup_interval_ms=0)
    try:
        store.submit_metrics("t", [point(T0 + MINUTE_NS, (6.0, 2.0, 4.0))]).result(30)
        rows = {r["minute_ns"]: r for r in store.metric_minutes("t", [sid], T0, T0 + 2 * MINUTE_NS)}
        assert rows[T0 + MINUTE_NS]["buckets"] == [2.0, 0.0, 3.0]
        assert rows[T0 + MINUTE_NS]["value"] == 5.0
    finally:
        store.close()


def test_a_fault_in_the_steady_fold_falls_back_to_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast path is an optimisation: if it raises, the requests are committed in SQL and
    # nothing is lost or counted twice; the next request reloads the series and goes on.
    import aisre.store.duckdb.metrics as metrics_module

    conn, tables = _tables(True)
    labels = '{"i":"1"}'
    sid = series_id("req", labels)

    def point(at: int, value: float) -> MetricPoint:
        return MetricPoint(sid, "req", labels, "sum", "cumulative", "1", T0 - MINUTE_NS, at, value, 0.0, (), ())

    tables.commit("t", points_table([point(T0, 10.0)]))
    real = metrics_module.fold_steady

    def broken(*args: Any) -> int:
        raise RuntimeError("injected")

    monkeypatch.setattr(metrics_module, "fold_steady", broken)
    assert tables.commit("t", points_table([point(T0 + MINUTE_NS, 25.0)])).accepted == 1
    monkeypatch.setattr(metrics_module, "fold_steady", real)
    assert tables.commit("t", points_table([point(T0 + 2 * MINUTE_NS, 27.0)])).accepted == 1
    assert tables.steady_requests == 1
    values = {m: v for m, v in conn.execute("SELECT minute_ns, sum(value) FROM metric_minutes GROUP BY 1").fetchall()}
    assert values == {T0: 10.0, T0 + MINUTE_NS: 15.0, T0 + 2 * MINUTE_NS: 2.0}
