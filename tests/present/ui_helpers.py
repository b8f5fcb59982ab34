"""Shared by the UI page and browser tests: loading captures and waiting for derived runs."""

from __future__ import annotations

import time

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import ServerProcess, capture_files

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def post_capture(server: ServerProcess, name: str) -> None:
    """POST every request body of one captured OTLP session."""
    for path in capture_files(name):
        body = path.read_bytes()
        httpx.post(server.url + "/v1/traces", content=body, headers=PROTOBUF).raise_for_status()


def post_request(server: ServerProcess, request: ExportTraceServiceRequest) -> None:
    """POST one OTLP request built with the protobuf classes."""
    response = httpx.post(
        server.url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF
    )
    response.raise_for_status()


def wait_for_runs(server: ServerProcess, expected: dict[str, int], timeout: float = 10.0) -> None:
    """Poll the API until each journey has at least the expected number of runs."""
    deadline = time.monotonic() + timeout
    runs: dict[str, int] = {}
    while time.monotonic() < deadline:
        items = httpx.get(server.url + "/api/journeys").json()["items"]
        runs = {item["journey"]: item["runs"] for item in items}
        if all(runs.get(name, 0) >= count for name, count in expected.items()):
            return
        time.sleep(0.1)
    raise AssertionError(f"runs never reached {expected}; last saw {runs}")
