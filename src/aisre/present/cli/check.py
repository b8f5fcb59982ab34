"""``aisre check``: the telemetry checker for a CI step, offline over OTLP files or against a server.

Exit codes: 0 no finding at the ``--fail-on`` level or worse, 1 some, 2 the check could not run
(bad input, unreadable file, unreachable server), with one ``error:`` line.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import typer

from aisre.present.cli.common import DEFAULT_URL, FormatOption, emit_json, fail

WIDTH = 80
LEVELS = ("violation", "improvement", "information")


def _wrap(text: str, indent: str, first: str | None = None) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent if first is None else first,
                         subsequent_indent=indent, break_on_hyphens=False) or [indent.rstrip()]


def render(doc: dict[str, Any], fail_on: str, source: str) -> str:
    """The report for people, at most 80 columns: a verdict, then per service its coverage and
    each kind of finding once (level, total count, id, attribute, message, count per journey,
    an exemplar span)."""
    findings = doc["findings"]
    totals = {level: sum(f["count"] for f in findings if f["level"] == level) for level in LEVELS}
    worst = LEVELS.index(fail_on) if fail_on in LEVELS else -1
    failing = sum(n for level, n in totals.items() if LEVELS.index(level) <= worst)
    lines = _wrap(f"aisre check: {source}", "  ", "")
    checked = f"{doc['spans']:,} spans, {doc['runs']:,} runs checked"
    if "spans_seen" in doc:
        checked += f" ({doc['sampled']:,} of {doc['spans_seen']:,} spans in the period)"
    lines += _wrap(checked, "  ", "")
    if doc.get("rejected"):
        lines += _wrap(f"{doc['rejected']:,} spans refused as ingest would refuse them, e.g. {doc['reasons'][0]}", "  ", "")
    if failing:
        verdict = f"FAIL: {failing:,} finding{'s' if failing != 1 else ''} at {fail_on} level or worse"
    elif fail_on == "none":
        verdict = "PASS: --fail-on none"
    else:
        verdict = f"PASS: nothing at {fail_on} level or worse"
    lines += _wrap(verdict + " (" + ", ".join(f"{level} {n:,}" for level, n in totals.items()) + ")", "  ", "")
    services = sorted(set(doc["coverage"]) | {f["service"] for f in findings})
    if not services:
        lines += ["", "no spans to check"]
    for service in services:
        cover = doc["coverage"].get(service)
        lines += ["", *_wrap(f"{service}  coverage {f'{cover * 100:.1f} %' if cover is not None else '-'}", "  ", "")]
        kinds: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for f in findings:
            if f["service"] == service:
                kinds.setdefault((f["level"], f["id"], f["attribute"]), []).append(f)
        if not kinds:
            lines.append("  no findings")
        for (level, id, attribute), group in kinds.items():
            total = sum(f["count"] for f in group)
            lines += _wrap(f"{level:<11} {total:>7,}  {id} ({attribute})", " " * 4, "  ")
            lines += _wrap(group[0]["message"], " " * 4)
            named = [f for f in sorted(group, key=lambda f: -f["count"]) if f.get("journey")]
            if named:
                lines += _wrap("journeys: " + ", ".join(f"{f['journey']} {f['count']:,}" for f in named), " " * 6, " " * 4)
            ex = group[0].get("exemplar") or {}
            if ex.get("span_id"):
                lines += _wrap(f"e.g. span {ex['span_id']} of trace {ex['trace_id']}", " " * 4)
    return "\n".join(lines)


def _offline(path: Path, required: Path | None) -> dict[str, Any]:
    # Imported here: decoding and normalizing load pyarrow and protobuf, which --help skips.
    from aisre.derive.check import check_otlp_files, load_requirements, otlp_files

    requirements = load_requirements(required) if required is not None else []
    files = otlp_files(path)
    return {"source": str(path), "files": len(files), **check_otlp_files(files, requirements).document()}


def register_check(app: typer.Typer) -> None:
    """Add ``aisre check`` to the CLI."""

    @app.command("check")
    def check(
        otlp: Path = typer.Option(None, "--otlp", help="OTLP request bodies to check offline: a file or a directory of .pb / .json (gzip too)"),
        required: Path = typer.Option(None, "--required", help="Required-attributes YAML (docs/check.md); with --otlp"),
        fail_on: str = typer.Option("violation", "--fail-on", help="Exit 1 on findings at this level or worse: violation, improvement, information, or none (always 0)"),
        server: str = typer.Option(DEFAULT_URL, "--server", "--url", envvar="AISRE_URL", help="Without --otlp: the server whose received spans are checked"),
        since: str = typer.Option("1h", "--since", help="Without --otlp: period start (RFC 3339, look-back such as 1h, 7d, or 'all')"),
        until: str = typer.Option("", "--until", help="Without --otlp: period end (RFC 3339 or look-back; default now)"),
        service: str = typer.Option("", "--service", help="Without --otlp: only this service"),
        journey: str = typer.Option("", "--journey", help="Without --otlp: only runs of this journey"),
        fmt: str = FormatOption,
    ) -> None:
        """Check telemetry for what aisre and the team need; exit 0 clean, 1 findings at --fail-on or worse, 2 could not check."""
        from aisre.core.errors import AisreError

        if fail_on not in (*LEVELS, "none"):
            fail(f"--fail-on must be violation, improvement, information or none; got {fail_on!r}", code=2)
        if fmt not in ("table", "json"):
            fail(f"--format must be table or json; got {fmt!r}", code=2)
        try:
            if otlp is not None:
                doc = _offline(otlp, required)
                source = f"{doc['files']} OTLP file{'s' if doc['files'] != 1 else ''} in {otlp}" if otlp.is_dir() else str(otlp)
            else:
                if required is not None:
                    fail("--required applies to --otlp; a server applies its own file (setting check_required)", code=2)
                from aisre.present.cli.client import get_json

                params = {"since": since, "until": until, "service": service, "journey": journey}
                doc = get_json(server, "/api/check", params, timeout=300)
                period = f"{doc.get('since') or 'the beginning'} to {doc.get('until') or 'now'}"
                source = f"{server.rstrip('/')} from {period}"
        except AisreError as exc:
            fail(exc.message, code=2)
            raise  # unreachable: fail exits
        if fmt == "json":
            emit_json(doc)
        else:
            typer.echo(render(doc, fail_on, source))
        # Not derive.check's fails(): a check against a server need not load pyarrow.
        failing = fail_on != "none" and any(LEVELS.index(f["level"]) <= LEVELS.index(fail_on) for f in doc["findings"])
        raise typer.Exit(1 if failing else 0)
