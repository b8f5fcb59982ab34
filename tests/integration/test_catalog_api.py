"""``GET /api/catalog`` (JSON and Backstage YAML), ``aisre catalog`` and the Catalog page's data
against a real server fed the OpenLLMetry fixture and the Vercel AI SDK capture over OTLP, with a
catalog file; a bad catalog file stops the server at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.present.cli.main import build_cli
from tests.conftest import DATA, ServerProcess, aisre_up_refused, wait_for

runner = CliRunner()
cli = build_cli(run_server)
CATALOG = """services:
  - name: support-bot
    owner: search-team
    tier: 1
    runbook: https://runbooks.example/support-bot
    on_call: search-primary
"""


def post_folder(server: ServerProcess, folder: Path) -> None:
    for path in sorted((folder / "raw").glob("*.pb")):
        httpx.post(server.url + "/v1/traces", content=path.read_bytes(),
                   headers={"Content-Type": "application/x-protobuf"}).raise_for_status()


def start_fed(server_factory: Any, tmp_path: Path) -> ServerProcess:
    """A server with a catalog file, fed the OpenLLMetry fixture (support-bot) and the AI SDK capture (support-bot-node)."""
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    server = server_factory(None, "--setting", f"catalog_file={tmp_path / 'catalog.yaml'}")
    post_folder(server, DATA / "fixtures" / "otlp" / "openllmetry")
    post_folder(server, DATA / "captures" / "ai-sdk")
    wait_for(lambda: [s["spans"] for s in httpx.get(server.url + "/api/catalog", params={"since": "all"}).json()["services"]]
             == [144, 61], 20, "all spans in the catalog")
    return server


def test_catalog_api_cli_and_backstage(server_factory: Any, tmp_path: Path) -> None:
    server = start_fed(server_factory, tmp_path)
    doc = httpx.get(server.url + "/api/catalog", params={"since": "all"}).json()
    by = {s["name"]: s for s in doc["services"]}
    bot, node = by["support-bot"], by["support-bot-node"]
    assert (bot["owner"], bot["tier"], bot["on_call"], bot["declared"]) == ("search-team", 1, "search-primary", True)
    assert {(d["kind"], d["name"]): d["calls"] for d in bot["dependencies"]} == {
        ("model", "gpt-4o-mini"): 36, ("model", "text-embedding-3-small"): 20, ("model", "gpt-4.1"): 19,
        ("vector_store", "pgvector"): 20, ("tool", "lookup_order"): 24}
    assert {(d["kind"], d["name"]): d["calls"] for d in node["dependencies"]} == {
        ("model", "gpt-4o-mini"): 11, ("model", "text-embedding-3-small"): 10, ("model", "gpt-4.1"): 3,
        ("tool", "lookup_order"): 3}
    assert (node["owner"], node["declared"]) == (None, False)
    # The captures are older than the default 7 days.
    assert httpx.get(server.url + "/api/catalog").json()["services"][0]["seen"] is False

    backstage = httpx.get(server.url + "/api/catalog", params={"since": "all", "format": "backstage"})
    assert backstage.headers["content-type"].startswith("application/yaml")
    entities = list(yaml.safe_load_all(backstage.text))
    kinds = {(e["kind"], e["metadata"]["name"]) for e in entities}
    assert {("Component", "support-bot"), ("Component", "support-bot-node"), ("Resource", "pgvector"),
            ("Resource", "openai-gpt-4o-mini"), ("Group", "search-team"), ("System", "ask")} <= kinds
    bad = httpx.get(server.url + "/api/catalog", params={"format": "xml"})
    assert bad.status_code == 400 and "format must be" in bad.json()["error"]
    assert "/api/catalog" in httpx.get(server.url + "/openapi.json").json()["paths"]

    out = runner.invoke(cli, ["catalog", "--url", server.url, "--since", "all"])
    assert out.exit_code == 0, out.output
    assert "support-bot  owner search-team, tier 1, 144 spans" in out.output
    assert "vector store pgvector" in out.output and "20 calls" in out.output
    assert max(len(line) for line in out.output.splitlines()) <= 80
    target = tmp_path / "catalog-info.yaml"
    out = runner.invoke(cli, ["catalog", "--url", server.url, "--since", "all", "--format", "backstage", "-o", str(target)])
    assert out.exit_code == 0 and list(yaml.safe_load_all(target.read_text())) == entities

    page = httpx.get(server.url + "/catalog", params={"since": "all"})
    assert page.status_code == 200 and 'id="dependency-graph"' in page.text


def test_catalog_file_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  - name: a\n    tier: high\n")
    out = runner.invoke(cli, ["catalog", "--check", str(bad)])
    assert out.exit_code == 2 and f"{bad}:3: services[0].tier" in out.output.replace("\n", "")
    printed = aisre_up_refused(tmp_path, "--setting", f"catalog_file={bad}")
    assert "services[0].tier" in printed
