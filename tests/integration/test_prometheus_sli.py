"""A ratio SLI over OTLP metrics and the same SLI over PromQL against a real Prometheus
(started here on loopback, with the same data backfilled by promtool) give the same SLO
minutes, the same budget and the same alert intervals in replay."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from aisre.core.series import MetricPoint, series_id
from aisre.evaluate.prometheus import sync_prometheus
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import load_specs
from aisre.receive.prometheus import PrometheusClient
from aisre.store.duckdb import DuckDBStore
from tests.conftest import free_port, wait_for

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


# For the live server: data ending at the last whole minute, so its start-up read covers it.
RECENT = (time.time_ns() // MIN - MINUTES - 2) * MIN


@pytest.fixture
def prometheus(tmp_path: Path):
    data = tmp_path / "openmetrics.txt"
    lines = ["# HELP requests Requests.", "# TYPE requests counter"]
    lines += [f'requests_total{{code="{code}"}} {value} {at / 1e9:.3f}' for code, at, value in samples()]
    lines += [f'requests_total{{code="{code}",at="recent"}} {value} {at / 1e9:.3f}' for code, at, value in samples(RECENT)]
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


def test_server_reads_prometheus_slis(prometheus: str, server_factory, tmp_path: Path) -> None:
    """A server with prometheus_url set reads the SLI at start and evaluates it like any SLO."""
    slos = tmp_path / "live.yaml"
    slos.write_text(
        "slos:\n  - name: live\n    service: api\n    objective: 99\n    window: 30d\n    sli:\n"
        "      kind: prometheus\n"
        "      error_query: 'sum(increase(requests_total{at=\"recent\",code=~\"5..\"}[1m]))'\n"
        "      total_query: 'sum(increase(requests_total{at=\"recent\"}[1m]))'\n"
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
