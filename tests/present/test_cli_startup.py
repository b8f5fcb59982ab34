"""`aisre --help` and API commands stay fast by not importing the server (bench/cli.py times
them; this checks the cause without depending on machine speed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("scipy", "numpy", "duckdb", "uvicorn", "starlette", "grpc", "pyarrow", "prometheus_client",
         "opentelemetry", "openai", "aisre.store", "aisre.evaluate", "aisre.act", "aisre.derive")

PROBE = """
import json, sys
sys.argv = ["aisre", *json.loads(sys.argv[1])]
try:
    from aisre.app import main
    main()
except SystemExit:
    pass
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""


def _modules_after(*args: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, timeout=60)
    line = next(line for line in result.stdout.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("args", [("--help",), ("journeys", "--help"), ("gate", "--help"), ("check", "--help"), ("up", "--help"), ("demo", "--help")])
def test_help_imports_no_server_parts(args: tuple[str, ...]) -> None:
    modules = _modules_after(*args)
    assert "typer" in modules  # the probe really ran the CLI
    assert _heavy(modules) == []


def test_an_api_command_imports_only_the_http_client() -> None:
    modules = _modules_after("journeys", "list", "--url", "http://127.0.0.1:9")  # refused: nothing listens
    assert "httpx" in modules
    assert _heavy(modules) == []
