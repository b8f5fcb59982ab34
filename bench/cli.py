"""CLI start-up benchmark: how long `aisre --help` and a simple API command take, end to end.

Run:  /work/main/.venv/bin/python bench/cli.py [--runs 15] [--json out.json]

Each command runs as a fresh process (`python -c "from aisre.app import main; main()" ...`, what
the `aisre` console script does), so every figure includes interpreter start-up and imports.
The API commands run against a real `aisre up` on a free loopback port with the otel-genai
capture loaded, so `journeys list` has rows to print. The median of ``--runs`` runs is
printed against the targets (issue 16): `--help` under 0.3 s, a simple API command under
0.6 s. `python -X importtime` shows where the time goes when a figure is over target.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data" / "fixtures" / "otlp" / "otel-genai" / "raw"
AISRE = [sys.executable, "-c", "from aisre.app import main; main()"]
TARGET_HELP_S = 0.3
TARGET_API_S = 0.6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _time(args: list[str], runs: int) -> tuple[float, float, float]:
    """Median, min and max wall seconds of ``runs`` runs of ``aisre ARGS`` (one warm-up first)."""
    seconds = []
    for i in range(runs + 1):
        started = time.perf_counter()
        result = subprocess.run([*AISRE, *args], capture_output=True, text=True, timeout=60)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"aisre {' '.join(args)} failed ({result.returncode}): {result.stderr or result.stdout}")
        if i:  # the first run warms the OS file cache and the .pyc files
            seconds.append(elapsed)
    return statistics.median(seconds), min(seconds), max(seconds)


def _server(db: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*AISRE, "up", "--port", str(port), "--grpc-port", "0", "--db", str(db)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise SystemExit("the server did not become healthy")
    for path in sorted(FIXTURES.glob("*.pb")):
        httpx.post(url + "/v1/traces", content=path.read_bytes(),
                   headers={"Content-Type": "application/x-protobuf"}, timeout=30).raise_for_status()
    return proc, url


def main() -> None:
    """Time the commands and print them against their targets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15, help="Timed runs per command (median reported)")
    parser.add_argument("--json", type=Path, help="Also write the figures here")
    opts = parser.parse_args()
    env_url = os.environ.pop("AISRE_URL", None)  # the commands below name their server
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _server(Path(tmp) / "bench.duckdb")
        try:
            commands = [
                ("aisre --help", ["--help"], TARGET_HELP_S),
                ("aisre journeys --help", ["journeys", "--help"], TARGET_HELP_S),
                ("aisre journeys list", ["journeys", "list", "--url", url, "--since", "10000d"], TARGET_API_S),
                ("aisre journeys runs --format json", ["journeys", "runs", "--url", url, "--format", "json"], TARGET_API_S),
                ("aisre slo list", ["slo", "list", "--url", url], TARGET_API_S),
            ]
            for name, args, target in commands:
                median, low, high = _time(args, opts.runs)
                rows.append({"command": name, "median_s": round(median, 3), "min_s": round(low, 3),
                             "max_s": round(high, 3), "target_s": target, "ok": median < target})
        finally:
            proc.terminate()
            proc.wait(30)
    if env_url is not None:
        os.environ["AISRE_URL"] = env_url
    print(f"CLI start-up, median of {opts.runs} runs ({sys.executable}, {os.cpu_count()} cores)")
    print(f"{'command':<36} {'median':>8} {'min':>7} {'max':>7} {'target':>8}  verdict")
    for row in rows:
        verdict = "ok" if row["ok"] else "OVER TARGET"
        print(f"{row['command']:<36} {row['median_s']:>7.3f}s {row['min_s']:>6.3f}s {row['max_s']:>6.3f}s "
              f"{'< ' + str(row['target_s']) + 's':>8}  {verdict}")
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=2))
    if not all(row["ok"] for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
