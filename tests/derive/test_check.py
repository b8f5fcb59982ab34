"""The telemetry checker over real captures and crafted OTLP files: findings, counts, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aisre.core.errors import PermanentError
from aisre.derive.check import check_otlp_files, otlp_files, parse_requirements

DATA = Path(__file__).parents[1] / "data"
AI_SDK = DATA / "captures" / "ai-sdk"
OPENLLMETRY = DATA / "fixtures" / "otlp" / "openllmetry"


def _counts(report, id: str) -> dict[str | None, int]:
    return {f.journey: f.count for f in report.findings if f.id == id}


def test_capture_without_prompt_versions_fails_the_requirement_with_counts() -> None:
    truth = json.loads((AI_SDK / "truth.json").read_text())["driver"]
    calls = truth["model_calls"] + truth["embed_calls"]
    # Nothing here is a violation by default: the AI SDK sends model, provider and usage.
    assert check_otlp_files(otlp_files(AI_SDK / "raw")).exit_code() == 0
    required = parse_requirements(yaml.safe_load("""
required:
  - service: support-bot-.*
    attributes: [aisre.prompt.version]
"""), "req.yaml")
    report = check_otlp_files(otlp_files(AI_SDK / "raw"), required)
    assert report.exit_code() == 1
    missing = _counts(report, "required.missing")
    assert missing == {"ask": 19, "summarise": 3, "index": 2}
    assert sum(missing.values()) == calls
    assert sum(_counts(report, "prompt.version.missing").values()) == calls
    assert _counts(report, "error.type.missing") == {"ask": 1}  # the failed call: only an exception event
    assert (report.runs, report.spans) == (sum(truth["journeys"].values()), 61)
    finding = next(f for f in report.findings if f.id == "required.missing")
    assert finding.level == "violation" and finding.exemplar["name"].startswith("ai.")


def _span(span_id: int, parent: int | None, **attrs: object) -> Span:
    return Span(
        trace_id=bytes.fromhex("5b8efff798038103d269b633813fc60c"), span_id=span_id.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"", name="chat" if parent else "POST /ask",
        start_time_unix_nano=1_790_000_000_000_000_000, end_time_unix_nano=1_790_000_001_000_000_000,
        attributes=[KeyValue(key=k, value=AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=str(v)))
                    for k, v in attrs.items()],
    )


def test_calls_without_models_are_violations(tmp_path: Path) -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="bot")))
    spans = rs.scope_spans.add().spans
    spans.append(_span(1, None, **{"aisre.journey": "ask"}))
    for n in (2, 3, 4):
        spans.append(_span(n, 1, **{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                    "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}))
    spans.append(_span(5, 1, **{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10}))
    (tmp_path / "traces.pb").write_bytes(request.SerializeToString())
    report = check_otlp_files(otlp_files(tmp_path))
    assert report.exit_code() == 1
    by_id = {f.id: f for f in report.findings}
    assert by_id["model.missing"].count == 3 and by_id["model.missing"].level == "violation"
    assert by_id["model.missing"].exemplar["span_id"] == "0000000000000002"
    assert by_id["service.version.missing"].count == 1
    assert by_id["service.version.missing"].signal == "resource"
    # 4 calls × 5 checks + 1 root × 3 checks = 23 checked; failed: 3 models, 4 prompts, 1 version, 1 environment.
    assert report.coverage == {"bot": round((23 - 9) / 23, 4)}
    doc = report.document()
    assert doc["findings"][0]["level"] == "violation" and set(doc["findings"][0]) >= {
        "id", "level", "signal", "attribute", "message", "count", "exemplar"}


def test_complete_capture_passes() -> None:
    required = parse_requirements(yaml.safe_load("""
required:
  - journey: ask
    spans: root
    attributes: [aisre.prompt.version, user.id, service.version]
  - attributes: [gen_ai.response.id]
    level: improvement
"""), "req.yaml")
    report = check_otlp_files(otlp_files(OPENLLMETRY / "raw"), required)
    assert report.exit_code() == 0
    assert not [f for f in report.findings if f.level == "violation"]
    # triage-agent runs carry no prompt version: an improvement, which CI can choose to gate on.
    assert _counts(report, "prompt.version.missing") == {"triage-agent": 10}
    assert report.exit_code("improvement") == 1


@pytest.mark.parametrize(("doc", "error"), [
    ("required: {a: 1}", "top-level 'required:' list"),
    ("required: [{attributes: []}]", "non-empty list"),
    ("required: [{attributes: [x], spans: some}]", "'spans' must be one of"),
    ("required: [{attributes: [x], level: fatal}]", "'level' must be one of"),
    ("required: [{attributes: [x], service: '('}]", "not a regular expression"),
])
def test_requirement_mistakes_are_named(doc: str, error: str) -> None:
    with pytest.raises(PermanentError, match=error):
        parse_requirements(yaml.safe_load(doc), "req.yaml")


def test_strands_capture_reports_the_missing_provider_and_sees_event_content() -> None:
    """Strands names itself in gen_ai.system: every model call lacks a provider (a violation,
    exit 1); its prompts are GenAI message events, which count as captured content."""
    strands = DATA / "captures" / "strands"
    truth = json.loads((strands / "truth.json").read_text())["driver"]
    report = check_otlp_files(otlp_files(strands / "raw"))
    assert report.exit_code() == 1
    assert _counts(report, "provider.missing") == {"ask": truth["model_calls"] - 1, "summarise": 1}
    assert _counts(report, "content.not_captured") == {}
    # Mastra's calls carry their completion as gen_ai.output.messages: content, no violation.
    mastra = check_otlp_files(otlp_files(DATA / "captures" / "mastra" / "raw"))
    assert mastra.exit_code() == 0 and _counts(mastra, "content.not_captured") == {}


def test_agent_framework_captures_report_what_their_instrumentation_loses() -> None:
    """LangGraph under OpenInference or OpenLLMetry sends everything the checker needs but a
    prompt version (and, under OpenInference, an error type): exit 0, its content seen; the Agents SDK on the Responses API loses the
    failed call's model (truth.json's lost_by_instrumentation): one violation, exit 1."""
    langgraph = check_otlp_files(otlp_files(DATA / "captures" / "langgraph" / "raw"))
    assert langgraph.exit_code() == 0
    assert _counts(langgraph, "content.not_captured") == {} and _counts(langgraph, "model.missing") == {}
    assert _counts(langgraph, "error.type.missing") == {"ask": 1}
    # Under OpenLLMetry the framework spans name "langgraph" as provider: not a provider, and
    # the calls name theirs, so nothing is missing.
    openllmetry = check_otlp_files(otlp_files(DATA / "captures" / "langgraph-openllmetry" / "raw"))
    assert openllmetry.exit_code() == 0 and _counts(openllmetry, "provider.missing") == {}
    responses = DATA / "captures" / "openai-agents-responses"
    assert "model" in json.loads((responses / "truth.json").read_text())["lost_by_instrumentation"]["failed_call"]
    report = check_otlp_files(otlp_files(responses / "raw"))
    assert report.exit_code() == 1
    assert _counts(report, "model.missing") == {"ask": 1}
    assert [f.exemplar["name"] for f in report.findings if f.id == "model.missing"] == ["response"]
