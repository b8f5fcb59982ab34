"""Headless Chromium for the browser tests: Debian's binary, never a downloaded one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SHOTS = REPO / "test-results"

if os.environ.get("AISRE_REQUIRE_BROWSER") == "1":
    from playwright import sync_api  # required: a missing Playwright is a failure
else:
    sync_api = pytest.importorskip("playwright.sync_api")
