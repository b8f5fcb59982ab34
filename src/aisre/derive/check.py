"""Telemetry checker: which spans lack what aisre and the team need (issue 15, item 4).

Findings are shaped like OTel Weaver's live-check findings (`id`, `level` = violation |
improvement | information, `signal`, `attribute`, `message`, `count`, an exemplar span),
grouped per service and journey, with a coverage score per service: the share of the
checks' applicable spans (or runs) that passed. The checks run over normalized span rows,
so the same function serves a live server's spans and OTLP files checked offline in CI
(:func:`check_otlp_files`); a requirements file (YAML) adds attributes a team requires per
service and journey, at the level it chooses:

    required:
      - service: support-.*          # regular expression over service.name (whole); default all
        journey: ask                 # optional: only runs of this journey
        spans: model_calls           # model_calls | root | all (default model_calls)
        attributes: [aisre.prompt.version, user.id]
        level: violation             # default violation
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import yaml

from aisre.core.errors import AisreError, PermanentError
from aisre.core.model import SpanSampleQuery
from aisre.core.pipeline import Encoding
from aisre.core.schema import LLM_OPERATIONS
from aisre.core.textfile import utf8_text
from aisre.core.timefmt import rfc3339
from aisre.normalize import conventions as cv
from aisre.normalize.redaction import CONTENT_EVENTS, is_content_key
from aisre.normalize.spans import flatten
from aisre.receive.otlp_decode import decompress, parse_request
from aisre.store.protocol import SpanSampler

LEVELS = ("violation", "improvement", "information")
SPAN_SETS = ("model_calls", "root", "all")
# Attributes that older conventions used, and the name that replaced them.
DEPRECATED = {
    "gen_ai.system": "gen_ai.provider.name",
    "gen_ai.usage.prompt_tokens": "gen_ai.usage.input_tokens",
    "gen_ai.usage.completion_tokens": "gen_ai.usage.output_tokens",
    "gen_ai.prompt": "gen_ai.input.messages",
    "gen_ai.completion": "gen_ai.output.messages",
    "deployment.environment": "deployment.environment.name",
}
_CONTENT = ("gen_ai.input.messages", "gen_ai.output.messages", "ai.prompt.messages", "llm.input_messages.0.message.content",
            "gen_ai.prompt.0.content")


def _has_content(row: dict[str, Any], attrs: dict[str, Any]) -> bool:
    """Prompt or completion content on the span: a content attribute of any convention aisre
    reads, or a GenAI message event (Strands and other older-convention senders)."""
    if any(key in attrs for key in _CONTENT) or any(is_content_key(key) for key in attrs):
        return True
    events = row.get("events")
    if not events or events == "[]":
        return False
    return any(event.get("name") in CONTENT_EVENTS for event in orjson.loads(events))


@dataclass(frozen=True)
class Requirement:
    """Attributes a team requires on a set of spans of matching services and journeys."""

    attributes: tuple[str, ...]
    service: re.Pattern[str] | None = None
    journey: str | None = None
    spans: str = "model_calls"
    level: str = "violation"


@dataclass
class Finding:
    """One kind of gap in one service (and journey), with how often and one example."""

    id: str
    level: str
    signal: str
    attribute: str
    message: str
    service: str
    journey: str | None = None
    count: int = 0
    exemplar: dict[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The finding as the API and `--format json` show it."""
        return {
            "id": self.id, "level": self.level, "signal": self.signal, "attribute": self.attribute,
            "message": self.message, "service": self.service, "journey": self.journey, "count": self.count,
            "exemplar": self.exemplar,
            # Weaver's own names for the same facts, so tools reading live-check findings read these.
            "signal_type": self.signal, "signal_name": self.exemplar.get("name"),
            "context": {"attribute_key": self.attribute, "service.name": self.service, "journey": self.journey},
        }


@dataclass
class Report:
    """Findings, per-service coverage and what was checked."""

    findings: list[Finding]
    coverage: dict[str, float]
    spans: int
    runs: int
    # Spans that ingest would refuse (offline checks): how many, and why (the first few reasons).
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def exit_code(self, fail_on: str = "violation") -> int:
        """1 when any finding is at ``fail_on`` level or worse (for CI), else 0."""
        worst = LEVELS.index(fail_on)
        return 1 if any(LEVELS.index(f.level) <= worst for f in self.findings) else 0

    def document(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "spans": self.spans, "runs": self.runs, "rejected": self.rejected, "reasons": self.reasons,
            "coverage": self.coverage, "findings": [f.document() for f in self.findings],
        }


def parse_requirements(document: Any, source: str) -> list[Requirement]:
    """Requirements from their YAML document; mistakes name the entry."""
    if document is None:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("required", []), list):
        raise PermanentError(f"{source}: expected a top-level 'required:' list")
    out = []
    for n, entry in enumerate(document.get("required") or [], 1):
        where = f"{source}: required entry {n}"
        if not isinstance(entry, dict):
            raise PermanentError(f"{where}: expected a mapping with 'attributes'")
        attributes = entry.get("attributes")
        if not isinstance(attributes, list) or not attributes or not all(isinstance(a, str) for a in attributes):
            raise PermanentError(f"{where}: 'attributes' must be a non-empty list of attribute names")
        spans = entry.get("spans", "model_calls")
        if spans not in SPAN_SETS:
            raise PermanentError(f"{where}: 'spans' must be one of {', '.join(SPAN_SETS)}; got {spans!r}")
        level = entry.get("level", "violation")
        if level not in LEVELS:
            raise PermanentError(f"{where}: 'level' must be one of {', '.join(LEVELS)}; got {level!r}")
        service = entry.get("service")
        try:
            pattern = re.compile(str(service)) if service is not None else None
        except re.error as exc:
            raise PermanentError(f"{where}: 'service' is not a regular expression: {exc}") from None
        journey = entry.get("journey")
        out.append(Requirement(tuple(attributes), pattern, str(journey) if journey is not None else None, spans, level))
    return out


def load_requirements(path: str | Path) -> list[Requirement]:
    """Read a requirements file."""
    try:
        text = utf8_text(Path(path).read_bytes(), str(path))
    except OSError as exc:
        raise PermanentError(f"cannot read requirements {path}: {exc.strerror}") from None
    try:
        return parse_requirements(yaml.safe_load(text), str(path))
    except yaml.YAMLError as exc:
        raise PermanentError(f"{path}: not YAML: {exc}") from None


class _Tally:
    def __init__(self) -> None:
        self.findings: dict[tuple[str, str, str | None, str], Finding] = {}
        self.applicable: dict[str, int] = {}
        self.passed: dict[str, int] = {}
        self.ranks: dict[tuple[str, str, str | None, str], tuple[int, str]] = {}

    def check(self, service: str, ok: bool) -> None:
        self.applicable[service] = self.applicable.get(service, 0) + 1
        if ok:
            self.passed[service] = self.passed.get(service, 0) + 1

    def add(self, service: str, journey: str | None, id: str, level: str, signal: str, attribute: str,
            message: str, row: dict[str, Any]) -> None:
        key = (id, service, journey, attribute)
        finding = self.findings.get(key)
        exemplar = {"trace_id": row["trace_id"], "span_id": row["span_id"], "name": row["name"]}
        # The newest span is the exemplar (ties: the lowest span id), whatever order rows come
        # in: a file and a store give the same report, and the trace is the least likely expired.
        rank = (-row["start_ns"], row["span_id"])
        if finding is None:
            finding = self.findings[key] = Finding(id, level, signal, attribute, message, service, journey,
                                                   exemplar=exemplar)
            self.ranks[key] = rank
        elif rank < self.ranks[key]:
            finding.exemplar, self.ranks[key] = exemplar, rank
        finding.count += 1


def check_spans(
    spans: pa.Table | Sequence[dict[str, Any]],
    resources: dict[int, dict[str, Any]] | None = None,
    requirements: Iterable[Requirement] = (),
    journeys: dict[str, tuple[str | None, bool]] | None = None,
) -> Report:
    """Check normalized span rows (as `flatten` makes them); ``resources`` by resource_id.

    ``journeys`` (trace → journey, whether a span or a rule named it) is what a store
    resolved at ingest; without it the journey is read from the rows as ingest would."""
    rows = spans.to_pylist() if isinstance(spans, pa.Table) else list(spans)
    resources = resources or {}
    journeys = _journeys(rows) if journeys is None else journeys
    # A run's prompt version may sit on any of its spans (usually the root), as at ingest.
    prompted = {r["trace_id"] for r in rows if r["prompt_version"] is not None or r["prompt_name"] is not None}
    tally = _Tally()
    requirements = list(requirements)
    for row in rows:
        attrs = orjson.loads(row["attributes"]) if row["attributes"] else {}
        service = row["service"]
        journey = journeys.get(row["trace_id"], (None, False))[0]
        calls = row["operation"] in LLM_OPERATIONS and not attrs.get("aisre.duplicate_of")
        if calls:
            _check_call(tally, row, attrs, service, journey, row["trace_id"] in prompted)
        if row["is_root"]:
            _check_root(tally, row, service, journey, journeys.get(row["trace_id"], (None, False))[1],
                        resources.get(row["resource_id"], {}))
        for key, new in DEPRECATED.items():
            if key in attrs and new not in attrs:
                tally.add(service, journey, "attribute.deprecated", "improvement", "span", key,
                          f"'{key}' was renamed '{new}' in the OTel GenAI conventions: send the new name", row)
        for req in requirements:
            if req.service is not None and not req.service.fullmatch(service):
                continue
            if req.journey is not None and req.journey != journey:
                continue
            if (req.spans == "model_calls" and not calls) or (req.spans == "root" and not row["is_root"]):
                continue
            for attribute in req.attributes:
                ok = attrs.get(attribute) not in (None, "") or _resource_has(resources, row, attribute)
                tally.check(service, ok)
                if not ok:
                    tally.add(service, journey, "required.missing", req.level, "span", attribute,
                              f"required attribute '{attribute}' is missing", row)
    findings = sorted(tally.findings.values(), key=lambda f: (LEVELS.index(f.level), f.service, f.journey or "", f.id, f.attribute))
    coverage = {s: round(tally.passed.get(s, 0) / n, 4) for s, n in sorted(tally.applicable.items())}
    return Report(findings, coverage, len(rows), len({r["trace_id"] for r in rows if r["is_root"]}))


def _resource_has(resources: dict[int, dict[str, Any]], row: dict[str, Any], attribute: str) -> bool:
    return resources.get(row["resource_id"], {}).get(attribute) not in (None, "")


def _journeys(rows: list[dict[str, Any]]) -> dict[str, tuple[str | None, bool]]:
    """trace → (journey, whether a span named it) — else the root span's name, as at ingest."""
    named: dict[str, str] = {}
    roots: dict[str, str] = {}
    for row in rows:
        if row["journey"] is not None and (row["trace_id"] not in named or row["journey"] > named[row["trace_id"]]):
            named[row["trace_id"]] = row["journey"]
        if row["is_root"]:
            roots[row["trace_id"]] = row["name"]
    out: dict[str, tuple[str | None, bool]] = {t: (roots.get(t), False) for t in roots}
    out.update({t: (j, True) for t, j in named.items()})
    return out


def _check_call(
    tally: _Tally, row: dict[str, Any], attrs: dict[str, Any], service: str, journey: str | None, prompted: bool
) -> None:
    failed = row["status"] == "error"
    checks: list[tuple[bool, str, str, str, str]] = [
        (row["request_model"] is not None or row["response_model"] is not None, "model.missing", "violation",
         "gen_ai.request.model", "model call without a model: it cannot be priced or broken down by model"),
        (row["provider"] is not None, "provider.missing", "violation", "gen_ai.provider.name",
         "model call without a provider"),
        (failed or row["input_tokens"] is not None or row["output_tokens"] is not None, "usage.missing", "violation",
         "gen_ai.usage.input_tokens", "successful model call without token usage: its cost is unknown"),
        (prompted, "prompt.version.missing", "improvement", "aisre.prompt.version",
         "model call in a run without a prompt name or version: cost and quality cannot be split by prompt"),
        (not failed or attrs.get("error.type") not in (None, ""), "error.type.missing", "improvement", "error.type",
         "failed model call without error.type: retries and rate limits cannot be told apart"),
    ]
    for ok, id, level, attribute, message in checks:
        tally.check(service, ok)
        if not ok:
            tally.add(service, journey, id, level, "span", attribute, message, row)
    if row["operation"] != "embeddings" and not _has_content(row, attrs):
        tally.add(service, journey, "content.not_captured", "information", "span", "gen_ai.input.messages",
                  "model call without prompt or completion content (capture off, or not sent)", row)
    raw = attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")
    if isinstance(raw, str) and raw != row["provider"]:
        tally.add(service, journey, "provider.noncanonical", "information", "span", "gen_ai.provider.name",
                  f"provider '{raw}' is not an OTel registry name; read as '{row['provider']}'", row)


def _check_root(tally: _Tally, row: dict[str, Any], service: str, journey: str | None, named: bool,
                resource: dict[str, Any]) -> None:
    checks: list[tuple[bool, str, str, str, str, str]] = [
        (row["service_version"] is not None, "service.version.missing", "violation", "resource", "service.version",
         "no service.version: releases cannot be compared or gated"),
        (row["deployment_environment"] is not None, "environment.missing", "improvement", "resource",
         "deployment.environment.name", "no deployment.environment.name: prod and staging runs mix"),
        (named, "journey.unattributed", "improvement", "span", cv.JOURNEY[0],
         "run without aisre.journey: its journey is the root span's name"),
    ]
    for ok, id, level, signal, attribute, message in checks:
        tally.check(service, ok)
        if not ok:
            tally.add(service, journey, id, level, signal, attribute, message, row)
    if row["user_id"] is None and row["session_id"] is None:
        tally.add(service, journey, "user.missing", "information", "span", "user.id",
                  "run without user.id or session.id on its root: users affected cannot be counted", row)


def check_otlp_files(paths: Iterable[Path], requirements: Iterable[Requirement] = ()) -> Report:
    """Check OTLP/HTTP request bodies saved as files (.pb protobuf, .json OTLP/JSON or JSON lines, gzipped or not)."""
    tables: list[pa.Table] = []
    resources: dict[int, dict[str, Any]] = {}
    rejected, reasons = 0, list[str]()
    for path in paths:
        for request in _read_requests(path):
            try:
                batch = flatten(request, "check")
            except PermanentError as exc:
                raise PermanentError(f"{path}: {exc.message}") from None
            tables.append(batch.table)
            rejected += batch.rejected
            reasons += [f"{path.name}: {r}" for r in batch.reasons[: max(0, 5 - len(reasons))]]
            if batch.resources is not None:
                for rid, doc in zip(batch.resources.column("resource_id").to_pylist(),
                                    batch.resources.column("resource").to_pylist(), strict=True):
                    resources[rid] = orjson.loads(doc)
    if not tables:
        raise PermanentError("no OTLP files to check (.pb, .json or .jsonl, gzipped or not)")
    table = pa.concat_tables(tables)
    if rejected and not table.num_rows:
        raise PermanentError(f"every span was refused ({rejected}); first: {reasons[0]}")
    report = check_spans(table, resources, requirements)
    report.rejected, report.reasons = rejected, reasons
    return report


def otlp_spans(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every span in OTLP request files, normalized as ingest would (content kept as sent:
    an offline check judges it and stores nothing)."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        for request in _read_requests(path):
            try:
                batch = flatten(request, "check")
            except PermanentError as exc:
                raise PermanentError(f"{path}: {exc.message}") from None
            rows.extend(batch.table.to_pylist())
    return rows


_SUFFIXES = (".pb", ".json", ".jsonl", ".pb.gz", ".json.gz", ".jsonl.gz")
_GZIP_MAGIC = b"\x1f\x8b"
MAX_FILE_BYTES = 256 * 1024 * 1024  # inflated; past it a file is refused, not read into memory


def _read_requests(path: Path) -> list[Any]:
    """The OTLP bodies in a file: one protobuf or JSON body, or JSON lines (one body a line, as
    the OpenTelemetry Collector's file exporter writes them); format from the name, gzip from the bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PermanentError(f"cannot read {path}: {exc.strerror}") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            data = decompress(data, "gzip", MAX_FILE_BYTES)
        except AisreError as exc:
            raise PermanentError(f"{path}: {exc.message}") from None
    name = path.name.removesuffix(".gz")
    encoding: Encoding = "json" if name.endswith((".json", ".jsonl")) else "protobuf"
    lines = [line for line in data.splitlines() if line.strip()] if encoding == "json" else []
    if name.endswith(".jsonl") or (len(lines) > 1 and _one_document_a_line(lines)):
        bodies = [(f"{path}, request {n}", line) for n, line in enumerate(lines, 1)]
    else:
        bodies = [(str(path), data)]
    requests = []
    for where, body in bodies:
        try:
            requests.append(parse_request(body, encoding))
        except AisreError as exc:
            raise PermanentError(f"{where}: not an OTLP trace export ({encoding}): {exc.message}") from None
    return requests


def _one_document_a_line(lines: list[bytes]) -> bool:
    """Whether JSON text is JSON lines rather than one (pretty-printed) document."""
    try:
        orjson.loads(lines[0])
    except orjson.JSONDecodeError:
        return False
    return True


def otlp_files(path: Path) -> list[Path]:
    """The OTLP bodies at ``path``: the file itself, or those under a directory (recursively) in name order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise PermanentError(f"{path}: no such file or directory")
    return sorted(p for p in path.rglob("*") if p.name.endswith(_SUFFIXES) and p.is_file())


def check_store(store: SpanSampler, q: SpanSampleQuery, requirements: Iterable[Requirement] = ()) -> dict[str, Any]:
    """Check what a tenant's server received in a period: the report over a bounded sample of
    its newest whole traces, with how many spans were checked (``sampled``) of ``spans_seen``."""
    sample = store.span_sample(q)
    report = check_spans(sample.spans, sample.resources, requirements, journeys=sample.journeys)
    return {
        "since": rfc3339(q.since_ns), "until": rfc3339(q.until_ns), "service": q.service, "journey": q.journey,
        "sampled": len(sample.spans), "spans_seen": sample.spans_seen, "sample_limit": q.limit,
        **report.document(),
    }

