"""``aisre check`` offline over OTLP files, and ``GET /api/check`` / ``aisre check --server`` on a
live server fed the same capture over OTLP: the same findings, counts and exit codes."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.present.cli.main import build_cli
from tests.conftest import DATA, ServerProcess, aisre_up_refused, wait_for

runner = CliRunner()
cli = build_cli(run_server)
CHECK = DATA / "captures" / "check"
NO_MODELS = CHECK / "no-models" / "raw"
COMPLETE = CHECK / "complete" / "raw"
SERVICE = "support-bot-logfire"
REQUIRED = """
required:
  - attributes: [gen_ai.request.model, gen_ai.provider.name]
  - spans: root
    attributes: [aisre.prompt.version, user.id, service.version]
"""


def _by_journey(doc: dict, id: str) -> dict[str | None, int]:
    return {f["journey"]: f["count"] for f in doc["findings"] if f["id"] == id}


def _check(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli, ["check", *args])
    return result.exit_code, result.output


def _assert_no_models_truth(doc: dict) -> None:
    # Logfire's 9 journeys: ask ×5, summarise ×3 (streamed, their models dropped), index ×1.
    assert (doc["spans"], doc["runs"]) == (21, 9)
    assert _by_journey(doc, "model.missing") == {"summarise": 3}
    assert _by_journey(doc, "prompt.version.missing") == {"ask": 5, "summarise": 3, "index": 1}
    assert _by_journey(doc, "error.type.missing") == {"ask": 1}
    model = next(f for f in doc["findings"] if f["id"] == "model.missing")
    assert model["level"] == "violation" and model["service"] == SERVICE and model["signal"] == "span"
    assert model["attribute"] == "gen_ai.request.model"
    # Weaver's live-check names for the same facts.
    assert (model["signal_type"], model["signal_name"], model["context"]["attribute_key"]) == (
        "span", model["exemplar"]["name"], "gen_ai.request.model")
    assert model["exemplar"]["name"].startswith("Chat Completion") and len(model["exemplar"]["span_id"]) == 16
    # 9 calls × 5 checks + 9 roots × 3 checks = 72 checked; 3 models, 9 prompts, 1 error.type missing.
    assert doc["coverage"] == {SERVICE: round((72 - 13) / 72, 4)}


def test_otlp_capture_without_models_and_prompt_versions_fails(tmp_path: Path) -> None:
    code, out = _check("--otlp", str(NO_MODELS), "--format", "json")
    assert code == 1, out
    _assert_no_models_truth(json.loads(out))
    assert _check("--otlp", str(NO_MODELS), "--fail-on", "none")[0] == 0
    # The report for people: per service, each finding with its count and an exemplar, in 80 columns.
    code, text = _check("--otlp", str(NO_MODELS))
    assert code == 1
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith("FAIL: 3 findings at violation level or worse") for line in lines)
    assert "support-bot-logfire  coverage 81.9 %" in lines
    at = lines.index("  violation         3  model.missing (gen_ai.request.model)")
    assert lines[at + 2] == "    journeys: summarise 3"
    assert lines[at + 3].startswith("    e.g. span ") and " of trace " in lines[at + 3]
    assert "    journeys: ask 5, summarise 3, index 1" in lines
    # A required-attributes file turns the missing prompt versions into violations of their own.
    required = tmp_path / "required.yaml"
    required.write_text(REQUIRED)
    code, out = _check("--otlp", str(NO_MODELS), "--required", str(required), "--format", "json")
    assert code == 1
    doc = json.loads(out)
    missing = {(f["attribute"], f["journey"]): f["count"] for f in doc["findings"] if f["id"] == "required.missing"}
    assert missing == {
        ("gen_ai.request.model", "summarise"): 3,
        ("aisre.prompt.version", "ask"): 5, ("aisre.prompt.version", "summarise"): 3, ("aisre.prompt.version", "index"): 1,
        ("user.id", "ask"): 5, ("user.id", "summarise"): 3, ("user.id", "index"): 1,
    }


def test_complete_capture_exits_zero() -> None:
    code, out = _check("--otlp", str(COMPLETE), "--format", "json", "--fail-on", "improvement")
    assert code == 0, out
    doc = json.loads(out)
    assert (doc["spans"], doc["runs"], doc["findings"]) == (21, 9, [])
    assert doc["coverage"] == {SERVICE: 1.0}
    code, text = _check("--otlp", str(COMPLETE), "--fail-on", "improvement")
    assert code == 0 and "PASS: nothing at improvement level or worse" in text and "  no findings" in text
    assert _check("--otlp", str(COMPLETE), "--fail-on", "information")[0] == 0


def test_complete_capture_passes_a_required_file(tmp_path: Path) -> None:
    required = tmp_path / "required.yaml"
    required.write_text(REQUIRED)
    code, out = _check("--otlp", str(COMPLETE), "--required", str(required), "--fail-on", "improvement")
    assert code == 0, out


def _otlp_json(request: ExportTraceServiceRequest) -> str:
    """OTLP/JSON: protobuf JSON with trace and span ids as hex, not base64."""
    doc = json.loads(MessageToJson(request))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(doc)


def test_single_files_gzip_and_otlp_json(tmp_path: Path) -> None:
    request = ExportTraceServiceRequest.FromString((NO_MODELS / "v1_traces_0000.pb").read_bytes())
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(_otlp_json(request).encode()))
    (tmp_path / "ignored.txt").write_text("not OTLP")
    code, out = _check("--otlp", str(tmp_path), "--format", "json")
    assert code == 1
    assert json.loads(out)["files"] == 1
    _assert_no_models_truth(json.loads(out))
    # JSON lines, one request a line, as the Collector's file exporter writes them (here split in two by trace).
    lines = tmp_path / "lines"
    lines.mkdir()
    doc = json.loads(_otlp_json(request))
    traces = sorted({span["traceId"] for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]})
    halves = [dict(doc, resourceSpans=[
        dict(rs, scopeSpans=[dict(ss, spans=[sp for sp in ss["spans"] if (sp["traceId"] in traces[:4]) == first])
                             for ss in rs["scopeSpans"]]) for rs in doc["resourceSpans"]]) for first in (True, False)]
    (lines / "traces.json").write_text("".join(json.dumps(h) + "\n" for h in halves))
    code, out = _check("--otlp", str(lines / "traces.json"), "--format", "json")
    assert code == 1
    _assert_no_models_truth(json.loads(out))
    single = tmp_path / "one.pb.gz"
    single.write_bytes(gzip.compress((NO_MODELS / "v1_traces_0000.pb").read_bytes()))
    code, out = _check("--otlp", str(single), "--format", "json")
    assert code == 1
    _assert_no_models_truth(json.loads(out))


def test_bad_input_exits_two_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.pb").write_bytes(b"\x0a\xff\xff\xff")
    code, out = _check("--otlp", str(tmp_path))
    assert code == 2 and out.count("\n") == 1 and out.startswith("error: ") and "broken.pb" in out
    # Every span refused (OTLP/JSON with base64 ids, as protobuf's own JSON writes them): nothing was checked.
    (tmp_path / "broken.pb").unlink()
    (tmp_path / "proto.json").write_text(MessageToJson(ExportTraceServiceRequest.FromString((NO_MODELS / "v1_traces_0000.pb").read_bytes())))
    code, out = _check("--otlp", str(tmp_path))
    assert code == 2 and "every span was refused (21)" in out and "proto.json" in out
    code, out = _check("--otlp", str(tmp_path / "absent"))
    assert code == 2 and "no such file or directory" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = _check("--otlp", str(empty))
    assert code == 2 and "no OTLP files to check" in out
    (empty / "bad.jsonl").write_text('{"resourceSpans": []}\nnot json\n')
    code, out = _check("--otlp", str(empty))
    assert code == 2 and "bad.jsonl, request 2: not an OTLP trace export (json)" in out
    required = tmp_path / "required.yaml"
    required.write_text("required: [{attributes: [x], level: fatal}]")
    code, out = _check("--otlp", str(COMPLETE), "--required", str(required))
    assert code == 2 and "'level' must be one of" in out
    code, out = _check("--otlp", str(COMPLETE), "--fail-on", "fatal")
    assert code == 2 and "--fail-on must be violation, improvement, information or none" in out
    code, out = _check("--server", "http://127.0.0.1:1", "--since", "all")
    assert code == 2 and "cannot reach aisre" in out


def _post(server: ServerProcess, directory: Path) -> None:
    for path in sorted(directory.glob("*.pb")):
        httpx.post(server.url + "/v1/traces", content=path.read_bytes(),
                   headers={"Content-Type": "application/x-protobuf"}).raise_for_status()


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1000 / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _span_times(directory: Path) -> list[int]:
    request = ExportTraceServiceRequest.FromString((directory / "v1_traces_0000.pb").read_bytes())
    return sorted(s.start_time_unix_nano for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans)


def test_live_check_over_what_the_server_received(server: ServerProcess) -> None:
    _post(server, NO_MODELS)
    api = server.url + "/api/check"
    doc = wait_for(lambda: (d := httpx.get(api, params={"since": "all"}).json())["spans"] == 21 and d, 20, "21 spans")
    _assert_no_models_truth(doc)
    assert (doc["sampled"], doc["spans_seen"], doc["sample_limit"]) == (21, 21, 50_000)
    # The same findings offline and live.
    offline = json.loads(_check("--otlp", str(NO_MODELS), "--format", "json")[1])
    assert [(f["id"], f["journey"], f["count"]) for f in doc["findings"]] == \
        [(f["id"], f["journey"], f["count"]) for f in offline["findings"]]
    # A period: RFC 3339 bounds around the capture; the default is the last hour.
    times = _span_times(NO_MODELS)
    inside = httpx.get(api, params={"since": iso(times[0]), "until": iso(times[-1] + 1000)}).json()
    assert inside["spans_seen"] == 21
    before = httpx.get(api, params={"until": iso(times[0]), "since": "all"}).json()
    assert (before["spans_seen"], before["findings"], before["coverage"]) == (0, [], {})
    default = httpx.get(api).json()
    assert default["since"] is not None and default["until"] is None
    # One journey, one service.
    summarise = httpx.get(api, params={"since": "all", "journey": "summarise"}).json()
    assert (summarise["runs"], summarise["spans_seen"]) == (3, 9)  # roots, calls, Logfire's log records
    assert {f["journey"] for f in summarise["findings"]} == {"summarise"}
    assert httpx.get(api, params={"since": "all", "service": "nobody"}).json()["spans_seen"] == 0
    # A bounded sample: the newest whole traces up to the limit, and the counts say so.
    small = httpx.get(api, params={"since": "all", "limit": 5}).json()
    assert small["spans_seen"] == 21 and 0 < small["sampled"] <= 5 and small["sampled"] == small["spans"]
    bad = httpx.get(api, params={"since": "yesterday"})
    assert bad.status_code == 400 and "since must be" in bad.json()["error"]
    assert "/api/check" in httpx.get(server.url + "/openapi.json").json()["paths"]
    # The CLI against the server prints the API's result as --otlp does, and gates the same way.
    code, out = _check("--server", server.url, "--since", "all", "--format", "json")
    assert code == 1
    assert json.loads(out)["findings"] == doc["findings"]
    code, text = _check("--server", server.url, "--since", "all")
    assert code == 1 and "  violation         3  model.missing (gen_ai.request.model)" in text
    assert "(21 of 21 spans in the period)" in text and max(len(line) for line in text.splitlines()) <= 80


def test_live_check_of_a_complete_capture_and_server_requirements(server_factory, tmp_path: Path) -> None:
    required = tmp_path / "required.yaml"
    required.write_text("required:\n  - spans: root\n    attributes: [deployment.region]\n")
    server = server_factory(tmp_path / "req.duckdb", "--setting", f"check_required={required}")
    _post(server, COMPLETE)
    doc = wait_for(lambda: (d := httpx.get(server.url + "/api/check", params={"since": "all"}).json())["spans"] == 21 and d,
                   20, "21 spans")
    assert {(f["id"], f["attribute"], f["level"]) for f in doc["findings"]} == {("required.missing", "deployment.region", "violation")}
    assert _by_journey(doc, "required.missing") == {"ask": 5, "summarise": 3, "index": 1}
    code, _ = _check("--server", server.url, "--since", "all")
    assert code == 1


def test_a_bad_required_file_stops_the_server_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "required.yaml"
    bad.write_text("required:\n  - attributes: [user.id]\n    spans: everything\n")
    out = aisre_up_refused(tmp_path, "--setting", f"check_required={bad}")
    assert "required entry 1: 'spans' must be one of model_calls, root, all; got 'everything'" in out
