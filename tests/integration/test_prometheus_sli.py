"""A ratio, a threshold and a histogram SLI over OTLP metrics, and the same SLIs over PromQL
against a real Prometheus (started here on loopback, with the same data backfilled by
promtool), give the same SLO minutes, the same budget and the same alert intervals in replay."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aisre.core.errors import PermanentError
from aisre.core.series import MetricPoint, series_id
from aisre.evaluate.prometheus import sync_prometheus
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import load_specs
from aisre.receive.prometheus import PrometheusClient
from aisre.store.duckdb import DuckDBStore
from aisre.store.factory import open_store
from tests.conftest import free_port, wait_for
from tests.store.conftest import STORE_URLS

pytestmark = pytest.mark.skipif(not shutil.which("prometheus") or not shutil.which("promtool"),
                                reason="needs the prometheus and promtool binaries (Debian prometheus)")

MIN = 60 * 10**9
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
MINUTES = 8 * 60
BURST = range(5 * 60, 6 * 60)
OFFSETS_S = (10, 25, 40, 55)  # four samples a minute, none on a minute boundary

SPECS = """
slos:
  - name: otlp
    service: api
    objective: 99
    window: 30d
    sli: {kind: ratio, bad: 'requests{code=~"5.."}', total: requests}
  - name: prom
    service: api
    objective: 99
    window: 30d
    sli:
      kind: prometheus
      error_query: 'sum(increase(requests_total{code=~"5.."}[1m]))'
      total_query: 'sum(increase(requests_total[1m]))'
"""


THRESHOLD_SPECS = """
slos:
  - name: otlp-gpu
    service: gpu
    objective: 99
    window: 30d
    sli: {kind: threshold, metric: gpu_util, max: 90, aggregate: avg}
  - name: prom-gpu
    service: gpu
    objective: 99
    window: 30d
    sli: {kind: prometheus, threshold_query: 'avg_over_time(gpu_util[1m])', op: lte, value: 90}
  - name: otlp-latency
    service: api
    objective: 99
    window: 30d
    sli: {kind: histogram, metric: latency_seconds, le: 2}
  - name: prom-latency
    service: api
    objective: 99
    window: 30d
    sli: {kind: prometheus, histogram: latency_seconds, le: 2}
  - name: prom-between
    service: api
    objective: 99
    window: 30d
    sli: {kind: prometheus, histogram: latency_seconds, le: 1.5}
"""
HOT = range(60, 90)  # GPU 1 runs hot
BOUNDS = (0.5, 1.0, 2.0)


def gpu_samples(minute: int) -> dict[str, tuple[float, ...]]:
    """The four samples of each GPU's utilisation in a minute: GPU 0 averages 94 in the
    burst (bad: over 90) and 50 otherwise; GPU 1 averages 91 while hot, 80 otherwise."""
    return {"0": (85, 95, 100, 96) if minute in BURST else (40, 50, 60, 50),
            "1": (88, 92, 92, 92) if minute in HOT else (70, 80, 90, 80)}


def latency_sample(minute: int) -> tuple[int, int, int, int]:
    """Observations each sample adds per bucket (<=0.5, <=1, <=2, above): 24 of 25 under 2 s,
    15 of 25 in the burst (the ratio SLI's truth again)."""
    return (15, 0, 0, 10) if minute in BURST else (20, 0, 4, 1)


def per_sample(minute: int) -> dict[str, int]:
    """Requests each sample adds, by status code (four samples a minute)."""
    return {"200": 15, "503": 10} if minute in BURST else {"200": 24, "503": 1}


def samples(t0: int = T0) -> list[tuple[str, int, float]]:
    """(code, time_ns, cumulative value) of both series, from ``t0``."""
    out, totals = [], {"200": 0.0, "503": 0.0}
    for minute in range(MINUTES):
        for offset in OFFSETS_S:
            at = t0 + minute * MIN + offset * 10**9
            for code, step in per_sample(minute).items():
                totals[code] += step
                out.append((code, at, totals[code]))
    return out


def gauge_lines(t0: int, extra: str = "") -> list[str]:
    """OpenMetrics samples of gpu_util from ``t0``."""
    out = []
    for minute in range(MINUTES):
        for i, offset in enumerate(OFFSETS_S):
            at = (t0 + minute * MIN + offset * 10**9) / 1e9
            out += [f'gpu_util{{gpu="{gpu}"{extra}}} {values[i]} {at:.3f}' for gpu, values in gpu_samples(minute).items()]
    return out


def histogram_samples(t0: int = T0) -> list[tuple[int, tuple[float, float, float, float], float]]:
    """(time_ns, cumulative per-bucket counts, cumulative sum) of latency_seconds from ``t0``."""
    out, counts, total = [], [0.0, 0.0, 0.0, 0.0], 0.0
    for minute in range(MINUTES):
        for offset in OFFSETS_S:
            counts = [c + n for c, n in zip(counts, latency_sample(minute), strict=True)]
            total += 10.0
            out.append((t0 + minute * MIN + offset * 10**9, (counts[0], counts[1], counts[2], counts[3]), total))
    return out


def histogram_lines(t0: int, extra: str = "") -> list[str]:
    """OpenMetrics samples of the classic histogram latency_seconds (le written as Python
    clients write it: 0.5, 1.0, 2.0, +Inf), from ``t0``."""
    out = []
    for at, counts, total in histogram_samples(t0):
        s = f"{at / 1e9:.3f}"
        below = 0.0
        for bound, n in zip(("0.5", "1.0", "2.0", "+Inf"), counts, strict=True):
            below += n
            out.append(f'latency_seconds_bucket{{le="{bound}"{extra}}} {below} {s}')
        labels = f"{{{extra.lstrip(',')}}}" if extra else ""
        out += [f"latency_seconds_count{labels} {below} {s}", f"latency_seconds_sum{labels} {total} {s}"]
    return out


# For the live server: data ending at the last whole minute, so its start-up read covers it.
RECENT = (time.time_ns() // MIN - MINUTES - 2) * MIN


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("prometheus")
    data = tmp_path / "openmetrics.txt"
    lines = ["# HELP requests Requests.", "# TYPE requests counter"]
    lines += [f'requests_total{{code="{code}"}} {value} {at / 1e9:.3f}' for code, at, value in samples()]
    lines += [f'requests_total{{code="{code}",at="recent"}} {value} {at / 1e9:.3f}' for code, at, value in samples(RECENT)]
    lines += ["# HELP gpu_util GPU utilisation, percent.", "# TYPE gpu_util gauge"]
    lines += gauge_lines(T0) + gauge_lines(RECENT, ',at="recent"')
    lines += ["# HELP latency_seconds Request latency.", "# TYPE latency_seconds histogram"]
    lines += histogram_lines(T0) + histogram_lines(RECENT, ',at="recent"')
    data.write_text("\n".join(lines) + "\n# EOF\n")
    tsdb = tmp_path / "tsdb"
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(data), str(tsdb)],
                   check=True, capture_output=True, timeout=300)
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {}\nscrape_configs: []\n")
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "prometheus.log").read_text()[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_metric_sli_over_otlp_and_over_prometheus_agree(prometheus: str, tmp_path: Path) -> None:
    spec_file = tmp_path / "slos.yaml"
    spec_file.write_text(SPECS)
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    client = PrometheusClient(prometheus)
    try:
        engine = SloEngine(store, prometheus=True)
        engine.apply("t", load_specs([spec_file]))
        points = []
        for code, at, value in samples():
            labels = f'{{"code":"{code}"}}'
            points.append(MetricPoint(series_id("requests", labels), "requests", labels, "sum", "cumulative", "1",
                                      T0, at, value, 0.0, (), ()))
        store.submit_metrics("t", points).result(120)
        store.flush_rollups()
        written = sync_prometheus(engine.specs("t"), client, store, "t", T0, T0 + MINUTES * MIN)
        assert written == {"api-prom": MINUTES}

        arrays = store.slo_minute_arrays("t", T0 - MIN, T0 + (MINUTES + 1) * MIN)
        otlp = [a.tolist() for a in arrays["api-otlp"]]
        prom = [a.tolist() for a in arrays["api-prom"]]
        # The truth, minute by minute, on both paths.
        truth_total = [100] * MINUTES
        truth_good = [60 if m in BURST else 96 for m in range(MINUTES)]
        assert otlp == [[T0 + m * MIN for m in range(MINUTES)], truth_good, truth_total]
        assert prom == otlp

        now = T0 + MINUTES * MIN
        a, b = engine.status("t", "api-otlp", now_ns=now), engine.status("t", "api-prom", now_ns=now)
        assert (a["good"], a["total"]) == (b["good"], b["total"]) == (sum(truth_good), sum(truth_total))
        assert a["error_budget"] == b["error_budget"]
        assert a["burn_rates"] == b["burn_rates"]
        replay_a = engine.replay("t", "api-otlp", T0, now)
        assert replay_a and replay_a == engine.replay("t", "api-prom", T0, now)
        assert any(r["severity"] == "page" for r in replay_a)
    finally:
        client.close()
        store.close()


def _agree(store: Any, engine: SloEngine, otlp: str, prom: str, truth_good: list[int], truth_total: list[int]) -> None:
    """Both SLOs hold the true minutes, and give the same budget, burn rates and replay."""
    arrays = store.slo_minute_arrays("t", T0 - MIN, T0 + (MINUTES + 1) * MIN)
    a_rows = [a.tolist() for a in arrays[otlp]]
    assert a_rows == [[T0 + m * MIN for m in range(MINUTES)], truth_good, truth_total]
    assert [a.tolist() for a in arrays[prom]] == a_rows
    now = T0 + MINUTES * MIN
    a, b = engine.status("t", otlp, now_ns=now), engine.status("t", prom, now_ns=now)
    assert (a["good"], a["total"]) == (b["good"], b["total"]) == (sum(truth_good), sum(truth_total))
    assert a["error_budget"] == b["error_budget"]
    assert a["burn_rates"] == b["burn_rates"]
    replay_a = engine.replay("t", otlp, T0, now)
    assert replay_a and replay_a == engine.replay("t", prom, T0, now)
    assert any(r["severity"] == "page" for r in replay_a)


@pytest.mark.parametrize("url", STORE_URLS, ids=lambda url: url.split(":", 1)[0])
def test_threshold_and_histogram_slis_over_otlp_and_over_prometheus_agree(prometheus: str, tmp_path: Path, url: str) -> None:
    """On each store backend: the OTLP side is that store's metric minutes and SLI counting."""
    spec_file = tmp_path / "slos.yaml"
    spec_file.write_text(THRESHOLD_SPECS)
    store = open_store(url.format(dir=tmp_path, name=re.sub(r"\W", "_", tmp_path.name)), retention_days=0)
    client = PrometheusClient(prometheus)
    try:
        engine = SloEngine(store, prometheus=True)
        engine.apply("t", load_specs([spec_file]))
        points = []
        for minute in range(MINUTES):
            for i, offset in enumerate(OFFSETS_S):
                at = T0 + minute * MIN + offset * 10**9
                for gpu, values in gpu_samples(minute).items():
                    labels = f'{{"gpu":"{gpu}"}}'
                    points.append(MetricPoint(series_id("gpu_util", labels), "gpu_util", labels, "gauge", "delta", "1",
                                              0, at, float(values[i]), 0.0, (), ()))
        for at, counts, total in histogram_samples():
            points.append(MetricPoint(series_id("latency_seconds", "{}"), "latency_seconds", "{}", "histogram",
                                      "cumulative", "s", T0, at, sum(counts), total, BOUNDS, counts))
        store.submit_metrics("t", points).result(120)
        store.flush_rollups()
        errors: dict[str, str] = {}
        written = sync_prometheus(engine.specs("t"), client, store, "t", T0, T0 + MINUTES * MIN, errors)
        assert written == {"gpu-prom-gpu": MINUTES, "api-prom-latency": MINUTES}
        # le 1.5 lies between two bucket bounds: refused, naming the bounds Prometheus holds.
        assert errors == {"api-prom-between": "le 1.5 is not a bucket bound of latency_seconds_bucket; "
                                              "its bounds: 0.5, 1, 2, +Inf"}
        with pytest.raises(PermanentError, match=r"le 1\.5 is not a bucket bound"):
            sync_prometheus(engine.specs("t"), client, store, "t", T0, T0 + MINUTES * MIN)

        # Threshold: two GPUs, two events a minute; bad while GPU 0 bursts or GPU 1 runs hot.
        _agree(store, engine, "gpu-otlp-gpu", "gpu-prom-gpu",
               [2 - (m in BURST) - (m in HOT) for m in range(MINUTES)], [2] * MINUTES)
        # Histogram: observations under 2 s of all observations.
        _agree(store, engine, "api-otlp-latency", "api-prom-latency",
               [60 if m in BURST else 96 for m in range(MINUTES)], [100] * MINUTES)
    finally:
        client.close()
        store.close()


def test_server_reads_prometheus_slis(prometheus: str, server_factory, tmp_path: Path) -> None:
    """A server with prometheus_url set reads the SLI at start and evaluates it like any SLO."""
    slos = tmp_path / "live.yaml"
    slos.write_text(
        "slos:\n  - name: live\n    service: api\n    objective: 99\n    window: 30d\n    sli:\n"
        "      kind: prometheus\n"
        "      error_query: 'sum(increase(requests_total{at=\"recent\",code=~\"5..\"}[1m]))'\n"
        "      total_query: 'sum(increase(requests_total{at=\"recent\"}[1m]))'\n"
        "  - name: gpu\n    service: api\n    objective: 99\n    window: 30d\n"
        "    sli: {kind: prometheus, threshold_query: 'avg_over_time(gpu_util{at=\"recent\"}[1m])', op: lte, value: 90}\n"
        "  - name: slow\n    service: api\n    objective: 99\n    window: 30d\n"
        "    sli: {kind: prometheus, histogram: 'latency_seconds{at=\"recent\"}', le: 1.5}\n"
        "  - name: raw\n    service: api\n    objective: 99\n    window: 30d\n"
        "    sli: {kind: prometheus, error_ratio_query: 'sum(rate(requests_total{code=~\"5..\"}[5m])) / sum(rate(requests_total[5m]))'}\n"
    )
    server = server_factory(tmp_path / "live.duckdb", "--setting", f"slos={slos}",
                            "--setting", f"prometheus_url={prometheus}")
    truth_good = sum(60 if m in BURST else 96 for m in range(MINUTES))

    def counted() -> dict | None:
        doc = httpx.get(f"{server.url}/api/slos/api-live", timeout=30).json()
        return doc if doc.get("total") == MINUTES * 100 else None

    doc = wait_for(counted, 120, "the Prometheus SLI to be read")
    assert doc["status"] != "unsupported"
    assert doc["good"] == truth_good
    def read_gpu() -> dict | None:
        doc = httpx.get(f"{server.url}/api/slos/api-gpu", timeout=30).json()
        return doc if doc.get("total") == 2 * MINUTES else None

    gpu = wait_for(read_gpu, 120, "the threshold SLI to be read")
    assert gpu["good"] == sum(2 - (m in BURST) - (m in HOT) for m in range(MINUTES))
    # A histogram bound that is no bucket bound, and a raw ratio, say why they are not counted.
    refused = ('reading its SLI from Prometheus failed: le 1.5 is not a bucket bound of latency_seconds_bucket{at="recent"}; '
               "its bounds: 0.5, 1, 2, +Inf")
    wait_for(lambda: refused in httpx.get(f"{server.url}/api/slos/api-slow", timeout=30).json().get("warnings", []),
             120, "the histogram SLI to be refused")
    raw = httpx.get(f"{server.url}/api/slos/api-raw", timeout=30).json()
    assert raw["status"] == "unsupported" and raw["reason"].startswith("error_ratio_query (a raw ratio SLI) gives a ratio")
