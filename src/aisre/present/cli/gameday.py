"""``aisre gameday``: drills that score detection. ``run SCENARIO`` drives a fault into the demo
service against a running server (an accelerated clock: the fault's simulated minutes pass in a
few real seconds) and scores it; ``start`` / ``stop`` bracket a fault a team injects into its own
service and score it at ``stop``.

Exit codes: 0 the fault was detected (a page) and triage named the expected layer; 1 not; 2 the
drill could not run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from aisre.present.cli.common import DEFAULT_URL, fail

STATE = Path(".aisre-gameday.json")
UrlOpt = typer.Option(DEFAULT_URL, "--url", "--server", envvar="AISRE_URL", help="Base URL of a running aisre server")


def render(doc: dict[str, Any]) -> str:
    """The drill's score for people, at most 80 columns."""
    def secs(v: float | None) -> str:
        return "—" if v is None else f"{v / 60:.1f} min" if v >= 60 else f"{v:.0f} s"

    window = doc["page_window_s"]
    lines = [f"aisre gameday: {doc.get('scenario') or 'injected fault'} on {doc['journey']}",
             f"  fault {doc['start'][:19]} to {doc['end'][:19]}",
             f"  first alert after {secs(doc['time_to_first_alert_s'])}, first page after {secs(doc['time_to_first_page_s'])}"
             + (f" (page window {secs(window)}: {'within' if doc['detected_within_page_window'] else 'MISSED'})" if window else ""),
             f"  incident: {'#' + str(doc['incident_id']) + ' after ' + secs(doc['time_to_incident_s']) if doc['incident_opened'] else 'NONE opened'}",
             f"  triage named: {doc['named_layer'] or '—'}"
             + ("" if doc["expected_layer"] is None else f" (expected {doc['expected_layer']}: {'yes' if doc['cause_named'] else 'NO'})"),
             f"  mitigated after: {secs(doc['time_to_mitigate_s'])}",
             f"  fired elsewhere: {len(doc['should_not_have_fired'])}"]
    for a in doc["should_not_have_fired"][:5]:
        lines.append(f"    {a['severity']} {a['slo']} ({a['journey']}) at {a['started'][:19]}")
    return "\n".join(line[:80] for line in lines)


def _passed(doc: dict[str, Any]) -> bool:
    return bool(doc["time_to_first_page_s"] is not None and doc["incident_opened"] and doc["cause_named"] is not False)


def _score(url: str, params: dict[str, Any]) -> dict[str, Any]:
    from aisre.present.cli.client import get_json

    result: dict[str, Any] = get_json(url, "/api/gameday/score", params, timeout=120)
    return result


def build_gameday_cli() -> typer.Typer:
    """The ``aisre gameday`` commands."""
    app = typer.Typer(help="Game days: inject a fault (demo) or bracket your own, then score detection, triage and mitigation.",
                      no_args_is_help=True)

    @app.command("run")
    def run_cmd(
        scenario: str = typer.Argument(..., help="Demo fault: provider-outage, retry-storm, model-fallback, bad-prompt-rollout, …"),
        journey: str = typer.Option("ask", "--journey", help="The journey the fault should hit"),
        minutes: float = typer.Option(15.0, "--minutes", help="Simulated minutes of fault, ending now"),
        seconds: float = typer.Option(8.0, "--seconds", help="Real seconds the drill drives traffic"),
        rate: float = typer.Option(20.0, "--rate", help="Journeys per real second"),
        wait: float = typer.Option(60.0, "--wait", help="Seconds to wait for the incident and its triage"),
        seed: int = typer.Option(7, "--seed"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        url: str = UrlOpt,
    ) -> None:
        """Drive a demo fault into the server (accelerated clock), then score detection; exit 0 detected and named."""
        from aisre.core.errors import AisreError
        from aisre.core.timefmt import rfc3339
        from aisre.demo import runner
        from aisre.demo.telemetry import SimClock

        start = time.time_ns() - int(minutes * 60e9)
        try:
            runner.run(url.rstrip("/") + "/v1/traces", rate_per_s=rate, duration_s=seconds, scenario=scenario,
                       time_scale=0.05, seed=seed, export_delay_ms=200,
                       clock=SimClock(minutes * 60 / seconds, start_ns=start))
        except ValueError as exc:
            fail(str(exc), code=2)
        end = time.time_ns()
        params = {"journey": journey, "start": rfc3339(start), "end": rfc3339(end), "scenario": scenario}
        deadline = time.monotonic() + wait
        doc: dict[str, Any] = {}
        try:
            while True:
                doc = _score(url, params)
                if (doc["named_layer"] and doc["time_to_first_page_s"] is not None) or time.monotonic() > deadline:
                    break
                time.sleep(1)
        except AisreError as exc:
            fail(exc.message, code=2)
        _emit(doc, fmt)

    @app.command("start")
    def start_cmd(
        journey: str = typer.Option(..., "--journey", help="The journey your fault targets"),
        expect: str = typer.Option("", "--expect", help="The layer triage should name: model provider, retrieval, tool calls, service code"),
        state: Path = typer.Option(STATE, "--state", help="Where the drill's start is kept until stop"),
    ) -> None:
        """Mark the start of a fault you inject now."""
        state.write_text(json.dumps({"journey": journey, "expect": expect, "start_ns": time.time_ns()}))
        typer.echo(f"game day started on {journey}; inject the fault, then `aisre gameday stop`")

    @app.command("stop")
    def stop_cmd(
        state: Path = typer.Option(STATE, "--state"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        url: str = UrlOpt,
    ) -> None:
        """Mark the end of your fault and score the drill."""
        from aisre.core.errors import AisreError
        from aisre.core.timefmt import rfc3339

        try:
            drill = json.loads(state.read_text())
        except (OSError, ValueError):
            fail(f"no game day started ({state} missing): run `aisre gameday start` first", code=2)
            raise
        params = {"journey": drill["journey"], "start": rfc3339(drill["start_ns"]), "end": rfc3339(time.time_ns()),
                  "expect": drill.get("expect") or ""}
        try:
            doc = _score(url, params)
        except AisreError as exc:
            fail(exc.message, code=2)
            raise
        state.unlink(missing_ok=True)
        _emit(doc, fmt)

    return app


def _emit(doc: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        from aisre.present.cli.common import emit_json

        emit_json(doc)
    else:
        typer.echo(render(doc))
    raise typer.Exit(0 if _passed(doc) else 1)
