"""``aisre slo``: validate spec files offline; list, status and apply against a server."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aisre.core.timefmt import span_text
from aisre.present.cli.client import get_json, put_text
from aisre.present.cli.common import (
    FormatOption,
    UrlOption,
    WideOption,
    call,
    emit_json,
    listing,
    show,
)

console = Console()
err = Console(stderr=True)


def build_slo_cli() -> typer.Typer:
    """The ``slo`` sub-command group."""
    app = typer.Typer(help="SLOs: validate specs, list and inspect budgets, apply specs to a server.", no_args_is_help=True)

    @app.callback()
    def slo() -> None:
        """SLOs: validate specs (aisre, OpenSLO, Sloth), list budgets, show one SLO, apply specs."""

    @app.command("validate")
    def validate_cmd(
        paths: list[Path] = typer.Argument(..., help="Spec files or folders of .yaml/.yml files"),
        journey: list[str] = typer.Option([], "--journey", help="Known journey; unknown ones are errors (repeatable)"),
        score: list[str] = typer.Option([], "--score", help="Known score name; unknown ones are errors (repeatable)"),
    ) -> None:
        """Check spec files; print each error as file:line: field: message and exit 1 if any (warnings, e.g. objective 0.995 meaning 0.995 %, do not fail)."""
        from aisre.evaluate.specs import check_files

        result = check_files(paths, known_journeys=journey or None, known_scores=score or None)
        for e in result.errors:
            err.print(f"[red]{escape(str(e))}[/]", soft_wrap=True)
        for w in result.warnings:
            err.print(f"[yellow]warning: {escape(str(w))}[/]", soft_wrap=True)
        for path in result.files:
            if result.errors_in(path):
                continue
            specs = result.specs_in(path)
            names = ", ".join(s.id for s in specs)
            count = f"{len(specs)} SLO{'s' if len(specs) != 1 else ''}"
            console.print(f"[green]ok:[/] {escape(str(path))} — {count}" + (f" ({escape(names)})" if names else ""),
                          soft_wrap=True)
        if result.errors:
            raise typer.Exit(1)

    @app.command("list")
    def list_cmd(url: str = UrlOption, fmt: str = FormatOption, wide: bool = WideOption) -> None:
        """Every SLO with status, SLI, budget left and the fastest burn."""
        data = call(lambda: get_json(url, "/api/slos"))
        if fmt == "json":
            emit_json(data)
            return
        table = listing("SLO", "journey", "objective", "window", "status", "SLI", "budget left", "data", "burn 1h", "tier",
                        "owner", wide=wide, extra=(3, 7, 9, 10))
        for s in data["items"]:
            budget = s.get("error_budget") or {}
            status = s.get("status", "-")
            table.add_row(
                s["name"], s.get("journey") or "-", f"{s['objective']:g} %", s["window"],
                f"[{_STYLE.get(status, '')}]{status}[/]" if _STYLE.get(status) else status,
                _pct(s.get("sli")), _pct(budget.get("remaining_ratio")), _observed(s.get("data") or {}, s["window"]),
                f"{(s.get('burn_rates') or {}).get('1h', 0):.2f}x" if s.get("burn_rates") else "-",
                str(s.get("tier") if s.get("tier") is not None else "-"), s.get("owner") or "-",
            )
        show(console, table, wide)

    @app.command("status")
    def status_cmd(name: str = typer.Argument(..., help="SLO name"), url: str = UrlOption, fmt: str = FormatOption) -> None:
        """One SLO: budget, burn rate per window, alert pairs."""
        doc = call(lambda: get_json(url, f"/api/slos/{name}", {"points": 30}))
        if fmt == "json":
            emit_json(doc)
            return
        console.print(f"[bold]{escape(doc['name'])}[/]  journey {doc.get('journey')}  objective {doc['objective']:g} % over {doc['window']}  status [bold]{doc.get('status')}[/]")
        if doc.get("status") == "unsupported":
            console.print(doc.get("reason", ""))
            return
        budget = doc["error_budget"]
        tte = budget.get("time_to_exhaustion_s")
        console.print(
            f"SLI {_pct(doc.get('sli'))} ({doc['good']:,} good of {doc['total']:,});  budget left {_pct(budget['remaining_ratio'])} "
            f"({budget['spent_events']:,} of {budget['total_events']:,.1f} bad events spent)"
            + (f";  exhausted in {tte / 3600:.1f} h at the 1h burn rate" if tte else "")
        )
        data = doc.get("data") or {}
        if data.get("note"):
            console.print(f"data: {escape(data['note'])}")
        rates = Table("window", *doc["burn_rates"].keys())
        rates.add_row("burn rate", *(f"{v:.2f}x" for v in doc["burn_rates"].values()))
        console.print(rates)
        alerts = Table("alert", "severity", "factor", "short window", "burn", "long window", "burn", "long: bad/events", "firing")
        for a in doc["alerts"]:
            firing = "[red]FIRING[/]" if a["firing"] else ("held: too few events" if a.get("held") else "no")
            alerts.add_row(a["name"], a["severity"], f"{a['factor']:.4g}", a["short_window"], f"{a['short_burn']:.2f}",
                           a["long_window"], f"{a['long_burn']:.2f}",
                           f"{a.get('long_bad_events', 0):,}/{a.get('long_events', 0):,} (min {a.get('min_bad_events', 0)}/{a.get('min_events', 0)})",
                           firing)
        console.print(alerts)

    @app.command("apply")
    def apply_cmd(paths: list[Path] = typer.Argument(..., help="Spec files or folders"), url: str = UrlOption) -> None:
        """Replace a running server's SLOs with these specs (checked here first, then by the server)."""
        from aisre.evaluate.specs import check_files

        result = check_files(paths)
        if result.errors:
            for e in result.errors:
                err.print(f"[red]{escape(str(e))}[/]", soft_wrap=True)
            raise typer.Exit(1)
        for w in result.warnings:
            err.print(f"[yellow]warning: {escape(str(w))}[/]", soft_wrap=True)
        files = [p for p in result.files]
        text = "\n---\n".join(p.read_text() for p in files)
        data = call(lambda: put_text(url, "/api/slos", text, "application/yaml"))
        console.print(f"[green]applied {len(data['applied'])} SLOs:[/] {escape(', '.join(data['applied']))}")

    return app


_STYLE = {"page": "bold red", "ticket": "yellow", "exhausted": "red", "ok": "green", "no_data": "dim",
          "insufficient_data": "dim"}


def _observed(data: dict, window: str) -> str:
    """How much of the window the figures stand on: "all of 28d" or "8 min of 28d"."""
    if not data or data.get("first_event") is None:
        return "-"
    if data.get("complete"):
        return f"all of {window}"
    return f"{span_text(data['observed_s'])} of {window}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.3f} %"
