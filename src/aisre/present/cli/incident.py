"""``aisre incident`` and ``aisre change``: incidents and changes on a running server."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aisre.core.display import utc_text
from aisre.present.cli.client import get_json, get_text, send_json
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

_STATE_STYLE = {"open": "bold red", "acknowledged": "yellow", "mitigated": "cyan", "resolved": "green"}


def _me() -> str:
    try:
        return os.environ.get("AISRE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "cli"


ByOption = typer.Option("", "--by", help="Who does it (default: $AISRE_USER, else the login name)")


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _state(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def _show(doc: dict[str, Any]) -> None:
    console.print(f"[bold]#{doc['id']} {escape(doc['title'])}[/]  {_state(doc['state'])}  {doc['severity']}")
    console.print(
        f"journey {escape(doc.get('journey') or '-')}  SLO {escape(doc.get('slo') or '-')}  owner "
        f"{escape(doc.get('owner') or '-')}  tier {doc.get('tier') if doc.get('tier') is not None else '-'}  "
        f"runbook {escape(doc.get('runbook') or 'none')}  commander {escape(doc.get('commander') or '-')}"
    )
    if doc.get("summary"):
        console.print(f"worst alert: {escape(doc['summary'])}")
    console.print(
        f"impact {doc.get('impact_start') or '-'}  first alert {doc.get('first_alert') or '-'}  opened {doc['opened']}"
    )
    impact = doc.get("impact") or {}
    if impact.get("explanation"):
        console.print(f"impact start: {escape(impact['explanation'])}", soft_wrap=True)
    console.print(
        f"detect {_secs(doc.get('time_to_detect_s'))}  acknowledge {_secs(doc.get('time_to_acknowledge_s'))}  "
        f"restore {_secs(doc.get('time_to_restore_s'))}   {doc['url']}"
    )
    evidence = doc.get("evidence") or {}
    if evidence:
        console.print(f"failing runs point at: [bold]{escape(evidence.get('points_at') or 'no single layer')}[/] "
                      f"({evidence['bad_runs']} failing vs {evidence['good_runs']} good runs)")
        suspects = Table("suspect change", "when", "before impact", "failing runs", "good runs", "score",
                         title="Suspected changes (made before impact began)")
        for s in evidence.get("suspects", [])[:5]:
            suspects.add_row(escape(s["summary"]), utc_text(s["at"]), f"{s['minutes_before_impact']:.1f} min", f"{s['bad_share'] * 100:.0f} %",
                             f"{s['good_share'] * 100:.0f} %", f"{s['score']:.3f}")
        if evidence.get("suspects"):
            console.print(suspects)
        if evidence.get("changed_during"):
            during = Table("change", "when", "after impact", "failing runs", "good runs",
                           title="Changed during the incident (not suspects)")
            for c in evidence["changed_during"]:
                during.add_row(escape(c["summary"]), utc_text(c["at"]), f"{c['minutes_after_impact']:.1f} min",
                               f"{c['bad_share'] * 100:.0f} %", f"{c['good_share'] * 100:.0f} %")
            console.print(during)
        if evidence.get("exemplars"):
            console.print("exemplar traces: " + ", ".join(evidence["exemplars"]))
    timeline = Table("time", "kind", "who", "what", title="Timeline")
    for item in doc.get("timeline", []):
        timeline.add_row(utc_text(item["time"]), item["kind"], escape(item["actor"]), escape(item["message"]))
    console.print(timeline)
    if doc.get("action_items"):
        items = Table("#", "action item", "owner", "due", "status", title="Action items")
        for i in doc["action_items"]:
            items.add_row(str(i["id"]), escape(i["title"]), escape(i.get("owner") or "-"), i.get("due") or "-", i["status"])
        console.print(items)


def build_incident_cli() -> typer.Typer:
    """The ``incident`` sub-command group."""
    app = typer.Typer(help="Incidents: list, show, acknowledge, mitigate, resolve, note, postmortem.", no_args_is_help=True)

    @app.command("list")
    def list_cmd(
        state: str = typer.Option("", help="open, acknowledged, mitigated, resolved or active"),
        journey: str = typer.Option("", help="Only this journey"),
        since: str = typer.Option("", help="RFC 3339 time or look-back such as 7d"),
        url: str = UrlOption, fmt: str = FormatOption, wide: bool = WideOption,
    ) -> None:
        """Incidents, newest first."""
        data = call(lambda: get_json(url, "/api/incidents", {"state": state, "journey": journey, "since": since}))
        if fmt == "json":
            emit_json(data)
            return
        table = listing("#", "state", "sev", "title", "journey", "opened", "detect", "ack", "restore", "top suspect",
                        wide=wide, flex=(3, 9), extra=(6, 7, 9))
        for d in data["items"]:
            top = d.get("top_suspect") or {}
            table.add_row(str(d["id"]), _state(d["state"]), d["severity"], escape(d["title"][:60]),
                          escape(d.get("journey") or "-"), utc_text(d["opened"]), _secs(d.get("time_to_detect_s")),
                          _secs(d.get("time_to_acknowledge_s")), _secs(d.get("time_to_restore_s")),
                          escape(top.get("summary") or "-"))
        show(console, table, wide)

    @app.command("show")
    def show_cmd(incident_id: int = typer.Argument(..., help="Incident number"), url: str = UrlOption, fmt: str = FormatOption) -> None:
        """One incident: times, evidence, suspects, timeline, action items."""
        doc = call(lambda: get_json(url, f"/api/incidents/{incident_id}"))
        if fmt == "json":
            emit_json(doc)
            return
        _show(doc)

    def _move(action: str, incident_id: int, by: str, note: str, url: str) -> None:
        doc = call(lambda: send_json(url, "POST", f"/api/incidents/{incident_id}/{action}",
                                     {"by": by or _me(), "note": note or None}))
        console.print(f"#{doc['id']} is now {_state(doc['state'])}")

    @app.command("ack")
    def ack_cmd(incident_id: int = typer.Argument(...), by: str = ByOption,
                note: str = typer.Option("", help="Timeline note"), url: str = UrlOption) -> None:
        """Acknowledge an open incident."""
        _move("acknowledge", incident_id, by, note, url)

    @app.command("mitigate")
    def mitigate_cmd(incident_id: int = typer.Argument(...), by: str = ByOption,
                     note: str = typer.Option("", help="What stopped the impact"), url: str = UrlOption) -> None:
        """Mark an incident mitigated (impact stopped)."""
        _move("mitigate", incident_id, by, note, url)

    @app.command("resolve")
    def resolve_cmd(incident_id: int = typer.Argument(...), by: str = ByOption,
                    note: str = typer.Option("", help="Timeline note"), url: str = UrlOption) -> None:
        """Resolve an incident."""
        _move("resolve", incident_id, by, note, url)

    @app.command("note")
    def note_cmd(incident_id: int = typer.Argument(...), text: str = typer.Argument(...), by: str = ByOption,
                 url: str = UrlOption) -> None:
        """Add a note to the timeline."""
        call(lambda: send_json(url, "POST", f"/api/incidents/{incident_id}/notes", {"by": by or _me(), "text": text}))
        console.print("noted")

    @app.command("action")
    def action_cmd(incident_id: int = typer.Argument(...), title: str = typer.Argument(...),
                   owner: str = typer.Option("", help="Who owns it"), due: str = typer.Option("", help="Due date: a day such as 2026-12-20 (due at its end, UTC) or an RFC 3339 time; not in the past"),
                   by: str = ByOption, url: str = UrlOption) -> None:
        """Add a tracked action item."""
        item = call(lambda: send_json(url, "POST", f"/api/incidents/{incident_id}/action-items",
                                      {"by": by or _me(), "title": title, "owner": owner or None, "due": due or None}))
        console.print(f"action item {item['id']} added")

    @app.command("done")
    def done_cmd(item_id: int = typer.Argument(..., help="Action item number"), by: str = ByOption, url: str = UrlOption) -> None:
        """Mark an action item done."""
        call(lambda: send_json(url, "PATCH", f"/api/action-items/{item_id}", {"by": by or _me(), "status": "done"}))
        console.print(f"action item {item_id} done")

    @app.command("metrics")
    def metrics_cmd(since: str = typer.Option("30d", help="RFC 3339 time or look-back"), url: str = UrlOption,
                    fmt: str = FormatOption) -> None:
        """MTTD, MTTA, MTTR over incidents opened in the period."""
        data = call(lambda: get_json(url, "/api/incidents/metrics", {"since": since}))
        if fmt == "json":
            emit_json(data)
            return
        table = Table("incidents", "MTTD", "MTTA", "MTTR", "action items done")
        items = data["action_items"]
        rate = "-" if items["completion_rate"] is None else f"{items['completion_rate'] * 100:.0f} % of {items['total']}"
        table.add_row(str(data["incidents"]), _secs(data["mttd_s"]), _secs(data["mtta_s"]), _secs(data["mttr_s"]), rate)
        console.print(table)

    @app.command("postmortem")
    def postmortem_cmd(
        incident_id: int = typer.Argument(...),
        output: Path = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout"),
        html: bool = typer.Option(False, "--html", help="HTML instead of Markdown"),
        url: str = UrlOption,
    ) -> None:
        """Generate the postmortem (Markdown, or HTML with --html)."""
        params = {"format": "html" if html else "markdown"}
        text = call(lambda: get_text(url, f"/api/incidents/{incident_id}/postmortem", params))
        if output is not None:
            output.write_text(text)
            console.print(f"postmortem of #{incident_id} written to {output}")
        else:
            typer.echo(text, nl=False)

    return app


def build_change_cli() -> typer.Typer:
    """The ``change`` sub-command group."""
    app = typer.Typer(help="Changes: record deploys, model/prompt rollouts, config and flag changes; list them.",
                      no_args_is_help=True)

    @app.command("record")
    def record_cmd(
        kind: str = typer.Option(..., help="deploy, model, prompt, config, flag, loadtest or gameday"),
        summary: str = typer.Option("", help="What changed"),
        version: str = typer.Option("", help="The new service.version, model or prompt version"),
        previous: str = typer.Option("", help="What it replaced"),
        prompt_name: str = typer.Option("", "--prompt-name"),
        journey: list[str] = typer.Option([], "--journey", help="Affected journey (repeatable)"),
        service: list[str] = typer.Option([], "--service", help="Affected service (repeatable)"),
        link: str = typer.Option("", help="Link to the PR, deploy or ticket"),
        at: str = typer.Option("", help="When (RFC 3339; default now)"),
        meta: list[str] = typer.Option([], "--meta", help="KEY=VALUE metadata (repeatable)"),
        by: str = ByOption,
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """Record a change so incidents can name it as a suspect."""
        metadata: dict[str, str] = {}
        for item in meta:
            key, sep, value = item.partition("=")
            if not sep:
                fail(f"--meta takes KEY=VALUE; got {item!r}")
            metadata[key.strip()] = value.strip()
        body = {"kind": kind, "summary": summary or None, "version": version or None, "previous": previous or None,
                "prompt_name": prompt_name or None, "journeys": journey, "services": service, "link": link or None,
                "at": at or None, "metadata": metadata or None, "who": by or _me()}
        doc = call(lambda: send_json(url, "POST", "/api/changes", {k: v for k, v in body.items() if v is not None}))
        if fmt == "json":
            emit_json(doc)
            return
        console.print(f"change {doc['id']} recorded: {escape(doc['summary'])} at {doc['at']}")

    @app.command("list")
    def list_cmd(
        since: str = typer.Option("7d", help="RFC 3339 time or look-back"),
        journey: str = typer.Option("", help="Changes naming this journey (or none)"),
        kind: str = typer.Option(""),
        url: str = UrlOption, fmt: str = FormatOption, wide: bool = WideOption,
    ) -> None:
        """Recorded and detected changes, newest first."""
        data = call(lambda: get_json(url, "/api/changes", {"since": since, "journey": journey, "kind": kind}))
        if fmt == "json":
            emit_json(data)
            return
        table = listing("#", "at", "kind", "summary", "who", "journeys", "source", wide=wide, flex=(3,))
        for c in data["items"]:
            table.add_row(str(c["id"]), utc_text(c["at"]), c["kind"], escape(c["summary"]), escape(c.get("who") or "-"),
                          escape(", ".join(c["journeys"]) or "all"), c["source"])
        show(console, table, wide)
        if not data["items"]:
            console.print("no changes in the period")

    return app
