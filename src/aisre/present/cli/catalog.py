"""``aisre catalog``: the service catalog a running server discovered from the traces, merged with
its catalog file; a table for people, JSON, or Backstage ``catalog-info.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from aisre.present.cli.common import DEFAULT_URL, fail

KIND_LABEL = {"model": "model", "vector_store": "vector store", "tool": "tool", "database": "database",
              "http": "HTTP", "service": "service"}


def render(doc: dict[str, Any]) -> str:
    """Per service (at most 80 columns): ownership, journeys, then each dependency with calls,
    error rate and p95 latency."""
    period = f"{doc.get('since') or 'the beginning'} to {doc.get('until') or 'now'}"
    lines = [f"aisre catalog: {len(doc['services'])} services, {len(doc['journeys'])} journeys, {period}"]
    for s in doc["services"]:
        tier = f"tier {s['tier']}" if s["tier"] is not None else "no tier"
        state = "" if s["seen"] else "  (declared, no spans in the period)"
        lines += ["", f"{s['name']}  owner {s['owner'] or '-'}, {tier}, {s['spans']:,} spans{state}"]
        if s["journeys"]:
            lines.append(f"  journeys: {', '.join(s['journeys'])}")
        lines.append(f"  runbook: {s['runbook'] or '-'}   on-call: {s['on_call'] or '-'}")
        for d in s["dependencies"]:
            name = f"{d['provider']}/{d['name']}" if d["provider"] else d["name"]
            rate = "-" if d["error_rate"] is None else f"{d['error_rate'] * 100:.1f}%"
            lines.append(f"  {KIND_LABEL[d['kind']]:<12} {name[:34]:<34} {d['calls']:>8,} calls {rate:>6} err "
                         f"p95 {d['p95_ms']:,.0f} ms"[:80])
    return "\n".join(line[:80] for line in lines)


def register_catalog(app: typer.Typer) -> None:
    """Add ``aisre catalog`` to the CLI."""

    @app.command("catalog")
    def catalog_cmd(
        since: str = typer.Option("7d", "--since", help="Period start: RFC 3339, look-back (7d) or 'all'"),
        until: str = typer.Option("", "--until", help="Period end (default now)"),
        fmt: str = typer.Option("table", "--format", help="table, json or backstage (catalog-info.yaml entities)"),
        output: Path = typer.Option(None, "--output", "-o", help="Write the json or backstage output to this file"),
        check: Path = typer.Option(None, "--check", help="Only validate a catalog file (errors with file:line); exit 2 if it has errors"),
        server: str = typer.Option(DEFAULT_URL, "--url", "--server", envvar="AISRE_URL", help="Base URL of a running aisre server"),
    ) -> None:
        """Service catalog from the traces: services, journeys, models, vector stores, tools and HTTP dependencies with calls, errors, latency."""
        from aisre.core.errors import AisreError

        if check is not None:
            from aisre.act.catalog import load_catalog_file

            try:
                found = load_catalog_file(check)
            except AisreError as exc:
                fail(exc.message, code=2)
                raise
            typer.echo(f"{check}: {len(found.services)} services declared")
            return
        if fmt not in ("table", "json", "backstage"):
            fail(f"--format must be table, json or backstage; got {fmt!r}", code=2)
        from aisre.present.cli.client import get_json, get_text

        params = {"since": since, "until": until}
        try:
            if fmt == "backstage":
                text = get_text(server, "/api/catalog", {**{k: v for k, v in params.items() if v}, "format": "backstage"}, timeout=300)
            else:
                doc = get_json(server, "/api/catalog", params, timeout=300)
        except AisreError as exc:
            fail(exc.message)
            raise
        if fmt == "json":
            import orjson

            text = orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
        elif fmt == "table":
            text = render(doc) + "\n"
        if output is not None:
            output.write_text(text)
        else:
            typer.echo(text, nl=False)
