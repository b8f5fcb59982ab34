"""Fixtures of the UI tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.present.browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, sync_api


@pytest.fixture
def page() -> Iterator[sync_api.Page]:
    """A fresh page in headless Chromium; skipped (or failed in CI) without the browser."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found; install Debian's chromium package to run browser tests"
        if os.environ.get("AISRE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (AISRE_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    SHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1440, "height": 900})
        finally:
            browser.close()
