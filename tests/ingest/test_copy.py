"""``aisre store copy``: captures stored in DuckDB, copied into ClickHouse (chdb) a page at a
time, interrupted, resumed, with a page sent twice: the target ends with every span once
and the same runs, failures, model calls, tokens and cost per tenant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.ingest.copy import CopyState, copy_traces, totals, verify
from aisre.present.cli.main import build_cli
from aisre.store.factory import open_store
from aisre.store.protocol import SpanExport, Store
from tests.store.contract.data import BY_NAME, NOW_NS, ingest, span_count

pytest.importorskip("chdb")

LOADS = {"tenant-a": ("otel-genai", "openllmetry"), "tenant-b": ("langgraph", "ai-sdk")}


def _fill(url: str) -> dict[str, int]:
    """The captures of LOADS stored at ``url``; returns the spans sent per tenant."""
    store = open_store(url, retention_days=0, clock=lambda: NOW_NS)
    sent = {}
    try:
        for tenant, names in LOADS.items():
            bodies = [body for name in names for body in BY_NAME[name].bodies]
            for body in bodies:
                ingest(store, tenant, body)
            sent[tenant] = sum(span_count(b) for b in bodies)
        store.flush_rollups()
    finally:
        store.close()
    return sent


def _open(url: str) -> Store:
    return open_store(url, retention_days=0, clock=lambda: NOW_NS)


def test_an_interrupted_copy_resumes_and_a_page_sent_twice_counts_once(tmp_path: Path) -> None:
    sent = _fill(f"duckdb://{tmp_path}/src.duckdb")
    source, target = _open(f"duckdb://{tmp_path}/src.duckdb"), _open(f"chdb://{tmp_path}/dst")
    try:
        exporter: SpanExport = source  # type: ignore[assignment]
        state = CopyState(tmp_path / "state.json")
        first = copy_traces(exporter, target, state, page_traces=3, max_pages=2)
        assert [c.done for c in first] == [False] and first[0].traces == 6
        assert json.loads((tmp_path / "state.json").read_text())["tenant-a"] == state.after["tenant-a"]
        # A crash after a page committed but before the mark moved: that page comes again.
        state.after["tenant-a"] = exporter.export_traces("tenant-a", "", 3).last_trace_id or ""
        resumed = copy_traces(exporter, target, state, page_traces=3)
        assert all(c.done for c in resumed) and {c.tenant for c in resumed} == set(LOADS)
        report = verify(source, target, list(LOADS))
        assert report.mismatches == []
        for tenant, spans in sent.items():
            assert totals(target, tenant)["spans"] == spans  # every span once, the re-sent page too
            truth = [m for n in LOADS[tenant] for m in BY_NAME[n].truth["provider_truth_by_model"].values()]
            assert totals(target, tenant)["input_tokens"] == sum(m["input_tokens"] for m in truth)
            assert totals(target, tenant)["output_tokens"] == sum(m["output_tokens"] for m in truth)
        assert report.totals["tenant-a"]["runs"] > 0 and report.totals["tenant-b"]["call_cost_usd"] > 0
    finally:
        target.close()
        source.close()


def test_the_cli_copies_and_says_the_figures_agree(tmp_path: Path) -> None:
    _fill(f"duckdb://{tmp_path}/src.duckdb")
    result = CliRunner().invoke(build_cli(run_server), [
        "store", "copy", "--from", f"duckdb://{tmp_path}/src.duckdb", "--to", f"chdb://{tmp_path}/dst",
        "--page-traces", "5", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["verified"] is True and doc["mismatches"] == []
    assert set(doc["copied"]) == set(LOADS) and all(c["spans"] > 0 for c in doc["copied"].values())
    assert Path(doc["state_file"]) == tmp_path / "src.copy-state.json"
    # Run again: nothing left to copy, still verified.
    again = CliRunner().invoke(build_cli(run_server), [
        "store", "copy", "--from", f"duckdb://{tmp_path}/src.duckdb", "--to", f"chdb://{tmp_path}/dst", "--format", "json"])
    assert again.exit_code == 0, again.output
    assert all(c["spans"] == 0 for c in json.loads(again.output)["copied"].values())
