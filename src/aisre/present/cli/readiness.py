"""``aisre readiness JOURNEY``: the launch-readiness checklist of a journey for a CI step.

Exit codes: 0 every required item passes, 1 some required item fails, 2 the check could not
run (bad template, unreachable server), with one ``error:`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from aisre.present.cli.common import DEFAULT_URL, fail


def render(doc: dict[str, Any]) -> str:
    """The checklist for people, at most 80 columns: a verdict, then each item with how to fix it."""
    verdict = "READY" if doc["ready"] else f"NOT READY: {len(doc['failed_required'])} required item(s) fail"
    lines = [f"aisre readiness: {doc['journey']}  {verdict} ({doc['passed']}/{doc['total']} items pass)"]
    for item in doc["items"]:
        mark = "PASS" if item["passed"] else ("FAIL" if item["required"] else "WARN")
        value = "no value" if item["value"] is None else f"{item['value']:g}" if isinstance(item["value"], float) else str(item["value"])
        lines.append(f"  {mark}  {item['id']:<16} {item['title']}"[:80])
        if not item["passed"]:
            lines.append(f"        {item['fact']} is {value}, needs {item['op']} {item['expected']:g}"[:80])
            if item["fix"]:
                lines.append(f"        fix: {item['fix']}"[:80])
    return "\n".join(lines)


def register_readiness(app: typer.Typer) -> None:
    """Add ``aisre readiness`` to the CLI."""

    @app.command("readiness")
    def readiness(
        journey: str = typer.Argument(..., help="The journey to check"),
        template: Path = typer.Option(None, "--template", help="Checklist template YAML (items added, built-ins disabled); default: the server's"),
        fmt: str = typer.Option("table", "--format", help="table (for people) or json (for machines)"),
        server: str = typer.Option(DEFAULT_URL, "--url", "--server", envvar="AISRE_URL", help="Base URL of a running aisre server"),
    ) -> None:
        """Launch-readiness checklist from facts; exit 0 ready, 1 a required item fails, 2 could not check."""
        from urllib.parse import quote

        from aisre.core.errors import AisreError
        from aisre.present.cli.client import get_json, request

        if fmt not in ("table", "json"):
            fail(f"--format must be table or json; got {fmt!r}", code=2)
        path = f"/api/readiness/{quote(journey, safe='')}"
        try:
            if template is not None:
                try:
                    text = template.read_bytes()
                except OSError as exc:
                    fail(f"cannot read {template}: {exc.strerror}", code=2)
                    raise
                doc = request("POST", server, path, status_in_error=False, content=text,
                              params={"template_name": str(template)}, headers={"Content-Type": "application/yaml"},
                              timeout=300).json()
            else:
                doc = get_json(server, path, timeout=300)
        except AisreError as exc:
            fail(exc.message, code=2)
            raise
        if fmt == "json":
            from aisre.present.cli.common import emit_json

            emit_json(doc)
        else:
            typer.echo(render(doc))
        raise typer.Exit(0 if doc["ready"] else 1)
