"""``aisre gate``: the release verdict for a CI step, with the evidence printed as a table.

The verdict it decides on is recorded (history and audit log), as a release pipeline expects:
that needs an ingest or admin key in AISRE_KEY; ``--no-record`` only judges (a read key is enough).

Exit codes: 0 pass, 1 fail, 2 marginal, 3 insufficient data (and 1 for usage or connection errors,
which print ``error:`` first).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aisre.core.display import money
from aisre.present.cli.client import get_json, request
from aisre.present.cli.common import FormatOption, UrlOption, call, emit_json, fail

console = Console()
err = Console(stderr=True)

_VERDICT_STYLE = {"pass": "bold green", "marginal": "bold yellow", "fail": "bold red", "insufficient_data": "bold blue"}
_CLASS_STYLE = {"Pass": "green", "High": "red", "Low": "red", "NodataFailMetric": "red", "Nodata": "dim", "Error": "red",
                "InsufficientData": "blue"}
_WORDS = {"pass": "PASS", "marginal": "MARGINAL", "fail": "FAIL", "insufficient_data": "INSUFFICIENT DATA"}
_TESTS = {"fisher": "Fisher", "mann-whitney": "Mann-Whitney"}


def post_gate(url: str, params: dict[str, Any], config_text: str, config_name: str) -> Any:
    """POST /api/gate with a gate file as the body."""
    return request(
        "POST", url, "/api/gate", params={**params, "config_name": config_name}, content=config_text.encode(),
        headers={"Content-Type": "application/yaml"}, timeout=120,
    ).json()


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "USD":
        return money(value, missing="-")
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "tokens":
        return f"{value:,.0f}"
    if unit == "failure rate":
        return f"{value:.2%}"
    return f"{value:.3f}"


def _side_value(m: dict[str, Any], side: str) -> str:
    """A side's mean, or its rate and counts for a proportion metric."""
    rates = m.get("rates")
    if rates:
        r = rates[side]
        return f"{r['rate']:.2%} ({r['count']}/{r['runs']})" if r["rate"] is not None else "-"
    return _fmt(m[side]["mean"], m["unit"])


def _evidence(m: dict[str, Any]) -> str:
    """The shift interval (rank test), the counts (rates), or the runs short of the minimum."""
    counts = m.get("counts") or {}
    if m["classification"] == "InsufficientData":
        return f"n {counts.get('baseline')}/{counts.get('candidate')}, needs {counts.get('needed')}"
    ci = m["interval"]
    return f"[{ci['lower']:.4g}, {ci['upper']:.4g}]" if ci else "-"


def _better(m: dict[str, Any]) -> str:
    better = m.get("better") or "either"
    return better + (" (assumed)" if m.get("direction_from") == "assumed" else "")


def print_evidence(doc: dict[str, Any]) -> None:
    """The verdict, the per-metric evidence table, the groups and the policy step."""
    b, c = doc["baseline"], doc["candidate"]
    console.print(
        f"journey [bold]{escape(doc['journey'])}[/]: baseline [cyan]{escape(b['selector'])}[/] ({b['runs']} runs) "
        f"vs candidate [magenta]{escape(c['selector'])}[/] ({c['runs']} runs), {doc['window']['since']} .. {doc['window']['until']}",
        soft_wrap=True,
    )
    if doc["metrics"]:
        table = Table(title="evidence (rates: Fisher's exact per run; others: Mann-Whitney U; confidence "
                      f"{doc['judge']['confidence']:g}, tolerance {doc['judge']['tolerance']:g})")
        for col in ("metric", "group", "better", "test", "baseline", "candidate", "baseline p95",
                    "candidate p95", "ratio", "shift CI / runs", "p", "result"):
            table.add_column(col, justify="left" if col in ("metric", "group", "better", "test", "result") else "right")
        for m in doc["metrics"]:
            unit = m["unit"]
            cls = m["classification"] + (" critical" if m["critical"] else "") + (" (muted)" if m["muted"] else "")
            style = "dim" if m["muted"] else _CLASS_STYLE.get(m["classification"], "")
            rates = m.get("rates")
            table.add_row(
                escape(m["name"]), m["group"], _better(m), _TESTS.get(m.get("test") or "", "-"),
                _side_value(m, "baseline"), _side_value(m, "candidate"),
                "-" if rates else _fmt(m["baseline"]["p95"], unit), "-" if rates else _fmt(m["candidate"]["p95"], unit),
                f"{m['deviation']:.2f}x" if m["deviation"] is not None else "-",
                _evidence(m),
                f"{m['p_value']:.3g}" if m["p_value"] is not None else "-",
                f"[{style}]{cls}[/]" if style else cls,
            )
        console.print(table)
        if doc["groups"]:
            groups = ", ".join(f"{g['name']} {g['score']:.0f}" + (" (no data)" if g["no_data"] else "") for g in doc["groups"])
            console.print(f"groups: {groups}")
    policy = doc["policy"]
    if "summary" in policy:  # verdicts recorded before the policy was described lack it
        console.print(f"error-budget policy: {escape(policy['summary'])}", soft_wrap=True)
    for f in policy["findings"]:
        mark = {"blocked": "[red]blocks[/]", "waived": "[yellow]waived[/]", "ok": "[green]ok[/]"}.get(f["outcome"], "[dim]no data[/]")
        console.print(f"policy {escape(f['rule'])}: {mark} {escape(f['message'])}", soft_wrap=True)
    style = _VERDICT_STYLE.get(doc["verdict"], "bold")
    if doc["score"] is not None:
        score = f"score {doc['score']:g} (pass ≥ {doc['thresholds']['pass']:g}, marginal ≥ {doc['thresholds']['marginal']:g})"
    elif doc.get("score_range"):
        score = f"no score yet (between {doc['score_range']['low']:g} and {doc['score_range']['high']:g})"
    else:
        score = "no score"
    console.print(f"[{style}]{_WORDS.get(doc['verdict'], doc['verdict'])}[/]  {score}")
    for reason in doc["reasons"]:
        console.print(f"  - {escape(reason)}", soft_wrap=True)
    for note in doc.get("notes", []):
        console.print(f"  [dim]note:[/] {escape(note)}", soft_wrap=True)


def register_gate(app: typer.Typer) -> None:
    """Add ``aisre gate`` to the CLI."""

    @app.command("gate")
    def gate(
        journey: str = typer.Option(..., "--journey", help="Journey whose runs are compared"),
        baseline: str = typer.Option(..., "--baseline", help="Baseline runs, key=value[,key=value] (e.g. service.version=1.4)"),
        candidate: str = typer.Option(..., "--candidate", help="Candidate runs, key=value[,key=value] (e.g. service.version=1.5)"),
        config: Path = typer.Option(None, "--config", help="Gate file (judge, metrics, policy); default: the server's"),
        wait: str = typer.Option("", "--wait", help="Poll until both sides have enough runs or this long has passed (e.g. 30m)"),
        poll: float = typer.Option(15.0, "--poll", help="Seconds between polls with --wait"),
        fix: bool = typer.Option(False, "--fix", help="The release is a fix: policy rules that allow fixes let it through"),
        since: str = typer.Option("", "--since", help="Compare runs started after this (RFC 3339 or e.g. -2h); default: the gate window"),
        record: bool = typer.Option(True, "--record/--no-record", help="Keep the verdict in the history and audit log (needs an ingest or admin key); --no-record only judges"),
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """Judge a candidate against a baseline; exit 0 pass, 1 fail, 2 marginal, 3 insufficient data."""
        # Imported here: the gate's statistics load scipy, which every other command can skip.
        from aisre.core.slo import parse_duration
        from aisre.derive.populations import parse_selector
        from aisre.evaluate.gate.config import load_gate_config

        call(lambda: (parse_selector(baseline, "--baseline"), parse_selector(candidate, "--candidate")))
        config_text = ""
        if config is not None:
            # Checked here first, so errors name the local file and line.
            call(lambda: load_gate_config(config))
            config_text = config.read_text()
        deadline_s = 0.0
        if wait:
            try:
                deadline_s = parse_duration(wait).total_seconds()
            except ValueError as exc:
                fail(f"--wait: {exc}")
        params: dict[str, Any] = {"journey": journey, "baseline": baseline, "candidate": candidate,
                                  "fix": "true" if fix else None, "since": since or None}

        def ask(keep: bool) -> Any:
            p = {**params, "record": "true" if keep and record else "false"}
            if config_text:
                return call(lambda: post_gate(url, p, config_text, str(config)))
            return call(lambda: get_json(url, "/api/gate", p, timeout=120))

        doc = ask(keep=not deadline_s)
        if deadline_s:
            doc = _wait(ask, doc, deadline_s, poll)
        if fmt == "json":
            emit_json(doc)
        else:
            print_evidence(doc)
        raise typer.Exit(int(doc["exit_code"]))


def _wait(ask: Any, doc: dict[str, Any], deadline_s: float, poll: float) -> dict[str, Any]:
    """Poll while the verdict is "insufficient data", showing runs gathered against the minimum."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

    end = time.monotonic() + deadline_s
    need = max(int(doc["min_runs"]), 1)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[runs]}"),
                  TimeRemainingColumn(), console=err, transient=True) as progress:
        tasks = {
            side: progress.add_task(f"{side} runs", total=need, completed=min(doc[side]["runs"], need), runs=f"{doc[side]['runs']}/{need}")
            for side in ("baseline", "candidate")
        }
        while doc["verdict"] == "insufficient_data" and time.monotonic() < end:
            time.sleep(max(0.0, min(poll, end - time.monotonic())))
            doc = ask(keep=False)
            for side, task in tasks.items():
                progress.update(task, completed=min(doc[side]["runs"], need), runs=f"{doc[side]['runs']}/{need}")
    # The decision that counts is recorded (unless --no-record).
    return dict(ask(keep=True))
