"""``aisre policy``: validate, test and check policies offline; apply, list and read decisions
and violations against a server.

``check`` and ``test`` exit 0 when clean, 1 on violations or failed cases, 2 when they could
not run (bad files), with one ``error:`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from aisre.present.cli.client import get_json, put_text
from aisre.present.cli.common import (
    FormatOption,
    UrlOption,
    WideOption,
    call,
    emit_json,
    fail,
    listing,
    show,
)

console = Console()
err = Console(stderr=True)


def _load(paths: list[Path]) -> Any:
    """Policies from files, or every error as file:line: field: message and exit 2."""
    from aisre.evaluate.policy.spec import check_policy_files

    result = check_policy_files(paths)
    for e in result.errors:
        err.print(f"[red]{escape(str(e))}[/]", soft_wrap=True)
    if result.errors:
        raise typer.Exit(2)
    return result


def build_policy_cli() -> typer.Typer:
    """The ``policy`` sub-command group."""
    app = typer.Typer(help="Agent policies: validate, test, check traces, apply; decisions and violations.",
                      no_args_is_help=True)

    @app.callback()
    def policy() -> None:
        """Agent policies: validate, test and check offline; apply, list, decisions and violations on a server."""

    @app.command("validate")
    def validate_cmd(paths: list[Path] = typer.Argument(..., help="Policy files or folders of .yaml/.yml files")) -> None:
        """Check policy files; print each error as file:line: field: message and exit 1 if any."""
        from aisre.evaluate.policy.spec import check_policy_files

        result = check_policy_files(paths)
        for e in result.errors:
            err.print(f"[red]{escape(str(e))}[/]", soft_wrap=True)
        for p in result.policies:
            console.print(f"[green]ok:[/] {escape(p.file)} — {escape(p.name)} {p.version} ({len(p.rules)} rules)",
                          soft_wrap=True)
        if result.errors:
            raise typer.Exit(1)

    @app.command("apply")
    def apply_cmd(paths: list[Path] = typer.Argument(..., help="Policy files or folders (together: the whole set)"),
                  url: str = UrlOption) -> None:
        """Replace a running server's policy set with these files (checked here first, then by the server)."""
        result = _load(paths)
        text = "\n---\n".join(p.read_text() for p in result.files)
        data = call(lambda: put_text(url, "/api/policies", text, "application/yaml"))
        names = ", ".join(f"{p['name']} {p['version']}" for p in data["policies"])
        verb = "applied" if data["changed"] else "unchanged"
        console.print(f"[green]{verb}[/] set {data['bundle']}: {escape(names)}", soft_wrap=True)

    @app.command("list")
    def list_cmd(url: str = UrlOption, fmt: str = FormatOption, wide: bool = WideOption) -> None:
        """The policies in force with their rules and versions, and when the set was applied."""
        data = call(lambda: get_json(url, "/api/policies"))
        if fmt == "json":
            emit_json(data)
            return
        if data["bundle"] is None:
            console.print("no policies applied")
            return
        console.print(f"set {data['bundle']} applied {data['applied_at']}", soft_wrap=True)
        table = listing("policy", "version", "scope", "rules", wide=wide, flex=(3,))
        for p in data["policies"]:
            scope = "; ".join(f"{k}: {', '.join(v)}" for k, v in p["scope"].items() if v) or "all"
            rules = ", ".join(f"{r['name']} ({r['kind']}{', warn' if r['effect'] == 'warn' else ''})" for r in p["rules"])
            table.add_row(p["name"], p["version"], scope, rules)
        show(console, table, wide)

    @app.command("decisions")
    def decisions_cmd(
        journey: str = typer.Option("", "--journey"), rule: str = typer.Option("", "--rule"),
        result: str = typer.Option("", "--result", help="allow or deny"),
        since: str = typer.Option("", "--since", help="RFC 3339 time or look-back such as 24h"),
        limit: int = typer.Option(100, "--limit"), url: str = UrlOption, fmt: str = FormatOption, wide: bool = WideOption,
    ) -> None:
        """Decision records, newest first (admin key): result, rules, reasons, trace."""
        params = {"journey": journey, "rule": rule, "result": result, "since": since, "limit": limit}
        data = call(lambda: get_json(url, "/api/policy/decisions", params))
        if fmt == "json":
            emit_json(data)
            return
        table = listing("time", "result", "journey", "rules", "reason", "trace", "id", wide=wide, flex=(4,), extra=(6,))
        for r in data["items"]:
            reason = r["reasons"][0]["message"] if r["reasons"] else "-"
            table.add_row(r["at"], r["result"], r.get("journey") or "-", ", ".join(r["rules"]) or "-", reason,
                          (r.get("trace_id") or "-")[: None if wide else 8], r["id"])
        show(console, table, wide)

    @app.command("violations")
    def violations_cmd(
        journey: str = typer.Option("", "--journey"), rule: str = typer.Option("", "--rule"),
        trace: str = typer.Option("", "--trace", help="One trace id"),
        since: str = typer.Option("", "--since"), limit: int = typer.Option(100, "--limit"),
        url: str = UrlOption, fmt: str = FormatOption, wide: bool = WideOption,
    ) -> None:
        """Violations found over committed runs, newest run first."""
        params = {"journey": journey, "rule": rule, "trace_id": trace, "since": since, "limit": limit}
        data = call(lambda: get_json(url, "/api/policy/violations", params))
        if fmt == "json":
            emit_json(data)
            return
        table = listing("run start", "journey", "rule", "count", "message", "trace", wide=wide, flex=(4,))
        for v in data["items"]:
            table.add_row(v["run_start"], v.get("journey") or "-", v["rule"], f"{v['count']:g}", v["message"],
                          v["trace_id"][: None if wide else 8])
        show(console, table, wide)

    @app.command("test")
    def test_cmd(
        tests: list[Path] = typer.Argument(..., help="Test files: cases of input → expected decision"),
        policy_paths: list[Path] = typer.Option(..., "--policy", "-p", help="Policy files or folders (repeatable)"),
    ) -> None:
        """Run policy unit tests; exit 0 all pass, 1 some fail, 2 bad files."""
        from aisre.core.errors import AisreError
        from aisre.evaluate.policy.offline import run_cases

        policies = _load(policy_paths).policies
        try:
            results = run_cases(policies, tests)
        except AisreError as exc:
            fail(exc.message, code=2)
            raise
        for r in results:
            if r.passed:
                console.print(f"[green]PASS[/] {escape(r.name)}", soft_wrap=True)
            else:
                why = "; ".join(r.messages) or "no rule fired"
                console.print(f"[red]FAIL[/] {escape(r.name)} (line {r.line}): expected {escape(r.expected)}, "
                              f"got {escape(r.got)}: {escape(why)}", soft_wrap=True)
        failed = sum(not r.passed for r in results)
        console.print(f"{len(results) - failed} passed, {failed} failed")
        raise typer.Exit(1 if failed else 0)

    @app.command("check")
    def check_cmd(
        otlp: Path = typer.Option(..., "--otlp", help="Captured OTLP bodies: a file or a directory of .pb / .json (gzip too)"),
        policy_paths: list[Path] = typer.Option(..., "--policy", "-p", help="Policy files or folders (repeatable)"),
        fail_on: str = typer.Option("deny", "--fail-on", help="deny (deny rules only), warn (any rule) or none"),
        fmt: str = FormatOption,
    ) -> None:
        """Judge captured traces offline; exit 0 clean, 1 violations at --fail-on, 2 could not check."""
        from aisre.core.errors import AisreError
        from aisre.evaluate.policy.offline import check_otlp

        if fail_on not in ("deny", "warn", "none"):
            fail(f"--fail-on must be deny, warn or none; got {fail_on!r}", code=2)
        policies = _load(policy_paths).policies
        try:
            doc = check_otlp(policies, otlp)
        except AisreError as exc:
            fail(exc.message, code=2)
            raise
        failing = [v for v in doc["violations"] if fail_on == "warn" or (fail_on == "deny" and v["effect"] == "deny")]
        if fmt == "json":
            emit_json(doc)
        else:
            verdict = f"FAIL: {len(failing)} violation{'s' if len(failing) != 1 else ''}" if failing else "PASS"
            console.print(f"aisre policy check: {doc['runs']} runs in {doc['files']} files; {verdict}", soft_wrap=True)
            for v in doc["violations"]:
                console.print(f"  {v['effect']:<4} {v['policy']}/{v['rule']} ×{v['count']:g}: {escape(v['message'])}",
                              soft_wrap=True)
                console.print(f"       trace {v['trace_id']} span {v['span_id']}", soft_wrap=True)
            if doc["undetermined"]:
                console.print(f"  undetermined (arguments redacted in the capture): {', '.join(doc['undetermined'])}",
                              soft_wrap=True)
        raise typer.Exit(1 if failing else 0)

    return app
