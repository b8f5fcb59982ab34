"""With API keys, a browser is sent to the login form, signs in with a read key and sees
its own tenant only; a wrong key is refused on the form."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.present.cli.main import build_cli
from tests.otlp_factory import journey_request
from tests.present.browser import SHOTS, sync_api

pytestmark = pytest.mark.browser


def test_login_with_a_read_key(page: sync_api.Page, server_factory: Any, tmp_path: Path) -> None:
    db = tmp_path / "auth.duckdb"
    cli = build_cli(run_server)
    keys = {}
    for role in ("read", "ingest"):
        result = CliRunner().invoke(cli, ["keys", "create", "--db", str(db), "--tenant", "shop", "--role", role,
                                          "--format", "json"])
        assert result.exit_code == 0, result.output
        keys[role] = json.loads(result.output)["key"]
    server = server_factory(db)
    request, _ = journey_request(3, journey="checkout")
    httpx.post(server.url + "/v1/traces", content=request.SerializeToString(), headers={
        "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {keys['ingest']}"}).raise_for_status()

    expect = sync_api.expect
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login")
    page.fill("input[name=key]", "aisre_wrong")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("unknown or revoked API key")

    page.fill("input[name=key]", keys["read"])
    page.click("button[type=submit]")
    expect(page).to_have_url(server.url + "/")
    expect(page.locator("header .meta")).to_contain_text("tenant shop")
    expect(page.get_by_role("link", name="checkout")).to_be_visible()
    # The session cookie: out of scripts' reach, not sent on cross-site POSTs, and (plain HTTP
    # on loopback) not Secure, or the browser would drop it.
    cookie = next(c for c in page.context.cookies() if c["name"] == "aisre_key")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    page.screenshot(path=str(SHOTS / "login-journeys.png"), full_page=True)
