"""An Alertmanager alert storm against a real server: how long one webhook of N alerts takes,
and how the incident API answers meanwhile.

Run:  .venv/bin/python bench/alertmanager.py [--alerts 20000] [--journeys 5]

Starts ``aisre up`` on a fresh file (``--setting alertmanager_max_alerts=N`` so the storm is
accepted), posts one version-4 webhook of N firing alerts spread over ``--journeys`` journeys
(so N alerts join that many incidents), polls ``GET /api/incidents`` every 100 ms while it
runs, then posts the same webhook again (Alertmanager repeats firing alerts every
repeat_interval) and times that too.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook(alerts: int, journeys: int) -> bytes:
    """One Alertmanager webhook body of ``alerts`` firing alerts."""
    items = [{
        "status": "firing",
        "labels": {"alertname": f"HighErrorRate{i % 20}", "journey": f"j{i % journeys}", "instance": f"pod-{i}",
                   "severity": "critical" if i % 50 == 0 else "warning"},
        "annotations": {"summary": f"errors high on pod-{i}"},
        "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": f"{i:016x}",
    } for i in range(alerts)]
    return orjson.dumps({"version": "4", "groupKey": "{}:{alertname=\"storm\"}", "status": "firing",
                         "receiver": "aisre", "alerts": items})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--journeys", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="aisre-am-"))
    port = _port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", "from aisre.app import main; main()", "up", "--port", str(port), "--grpc-port", "0",
         "--db", str(folder / "am.duckdb"), "--setting", f"alertmanager_max_alerts={args.alerts}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                sys.exit("server did not start")
            time.sleep(0.1)
        body = webhook(args.alerts, args.journeys)
        for attempt in ("first", "repeat"):
            latencies: list[float] = []
            done = threading.Event()

            def poll(done: threading.Event = done, latencies: list[float] = latencies) -> None:
                with httpx.Client(timeout=600) as client:
                    while not done.is_set():
                        started = time.perf_counter()
                        client.get(url + "/api/incidents").raise_for_status()
                        latencies.append(time.perf_counter() - started)
                        done.wait(0.1)

            poller = threading.Thread(target=poll)
            poller.start()
            started = time.perf_counter()
            response = httpx.post(url + "/api/alertmanager", content=body,
                                  headers={"Content-Type": "application/json"}, timeout=3600)
            took = time.perf_counter() - started
            done.set()
            poller.join()
            response.raise_for_status()
            shown = (f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
                     if latencies else "none finished")
            print(f"{attempt}: {args.alerts} alerts -> {len(response.json()['incidents'])} incidents touched "
                  f"in {took:.2f} s; GET /api/incidents meanwhile: {len(latencies)} answers, {shown}")
        print(f"incidents: {len(httpx.get(url + '/api/incidents').json()['items'])}")
        too_many = httpx.post(url + "/api/alertmanager", content=webhook(args.alerts + 1, args.journeys),
                              headers={"Content-Type": "application/json"}, timeout=600)
        print(f"{args.alerts + 1} alerts: HTTP {too_many.status_code} {too_many.json().get('error', '')[:120]}")
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
