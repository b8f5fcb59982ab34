"""``aisre gameday``: drills that score detection. ``run DRILL`` drives a fault into the demo
service against a running server (an accelerated clock: the fault's simulated minutes pass in a
few real seconds) and scores it; ``start`` / ``stop`` bracket a fault a team injects into its own
service and score it at ``stop``. Every drill's start and stop are recorded on the server (changes
of kind ``gameday``), so a drill started on one machine can be stopped from another, and the
review report lists it; ``list`` shows them with their scores.

Exit codes: 0 the fault was detected (a page and an incident, and triage named the expected layer;
for agent drills, the policy engine flagged the runs); 1 not; 2 the drill could not run.
"""

from __future__ import annotations

import time
from typing import Any

import typer

from aisre.present.cli.common import DEFAULT_URL, fail

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
    if doc.get("detect") == "policy" or doc.get("policy_violations"):
        lines.insert(6, f"  policy violations: {doc['policy_violations']} on {doc['violating_runs']} runs, first after "
                        f"{secs(doc['time_to_first_violation_s'])}")
    lines.append(f"  result: {'PASSED' if doc.get('passed') else 'FAILED'}"
                 + (f" (game day #{doc['drill_id']}{', running' if doc.get('running') else ''})" if doc.get("drill_id") else ""))
    for a in doc["should_not_have_fired"][:5]:
        lines.append(f"    {a['severity']} {a['slo']} ({a['journey']}) at {a['started'][:19]}")
    return "\n".join(line[:80] for line in lines)


def _passed(doc: dict[str, Any]) -> bool:
    return bool(doc.get("passed"))


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
        drill_name: str = typer.Argument(..., metavar="DRILL", help="Demo drill: provider-outage, latency-spike, rate-limit-storm, "
                                         "retrieval-empty, runaway-agent, retry-storm, model-fallback, bad-prompt-rollout, …"),
        journey: str = typer.Option("", "--journey", help="The journey to score (default: the one the drill hits)"),
        minutes: float = typer.Option(15.0, "--minutes", help="Simulated minutes of fault, ending now"),
        seconds: float = typer.Option(8.0, "--seconds", help="Real seconds the drill drives traffic"),
        rate: float = typer.Option(20.0, "--rate", help="Journeys per real second"),
        wait: float = typer.Option(60.0, "--wait", help="Seconds to wait for the incident and its triage"),
        seed: int = typer.Option(7, "--seed"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        url: str = UrlOpt,
    ) -> None:
        """Drive a demo fault into the server (accelerated clock), then score detection; exit 0 detected and named."""
        from aisre.act.gameday import DRILLS
        from aisre.core.errors import AisreError
        from aisre.core.timefmt import rfc3339
        from aisre.demo import runner
        from aisre.demo.scenarios import SCENARIOS
        from aisre.demo.telemetry import SimClock
        from aisre.present.cli.client import send_json

        drill = DRILLS.get(drill_name)
        scenario = drill.scenario if drill else drill_name
        if scenario not in SCENARIOS:
            fail(f"unknown drill {drill_name!r}; drills: {', '.join(DRILLS)} (or any demo scenario: {', '.join(SCENARIOS)})", code=2)
        journey = journey or (drill.journey if drill else "ask")
        start = time.time_ns() - int(minutes * 60e9)
        try:
            started = send_json(url, "POST", "/api/gameday/start",
                                {"journey": journey, "scenario": drill_name, "at": rfc3339(start), "who": "aisre gameday run"})
            try:
                runner.run(url.rstrip("/") + "/v1/traces", rate_per_s=rate, duration_s=seconds, scenario=scenario,
                           time_scale=0.05, seed=seed, export_delay_ms=200,
                           clock=SimClock(minutes * 60 / seconds, start_ns=start))
            finally:
                end = time.time_ns()
                send_json(url, "POST", "/api/gameday/stop", {"id": started["id"], "at": rfc3339(end)})
        except ValueError as exc:
            fail(str(exc), code=2)
        except AisreError as exc:
            fail(exc.message, code=2)
        params = {"journey": journey, "start": rfc3339(start), "end": rfc3339(end), "scenario": drill_name}
        deadline = time.monotonic() + wait
        doc: dict[str, Any] = {}
        try:
            while True:
                doc = _score(url, params)
                if _settled(doc) or time.monotonic() > deadline:
                    break
                time.sleep(1)
        except AisreError as exc:
            fail(exc.message, code=2)
        _emit({**doc, "drill_id": started["id"]}, fmt)

    @app.command("start")
    def start_cmd(
        journey: str = typer.Option(..., "--journey", help="The journey your fault targets"),
        expect: str = typer.Option("", "--expect", help="The layer triage should name: model provider, retrieval, data, tool calls, service code"),
        who: str = typer.Option("", "--who", help="Who runs the drill"),
        url: str = UrlOpt,
    ) -> None:
        """Record on the server the start of a fault you inject now."""
        from aisre.core.errors import AisreError
        from aisre.present.cli.client import send_json

        try:
            drill = send_json(url, "POST", "/api/gameday/start", {"journey": journey, "expect": expect or None, "who": who or None})
        except AisreError as exc:
            fail(exc.message, code=2)
            raise
        typer.echo(f"game day #{drill['id']} started on {journey}; inject the fault, then `aisre gameday stop` (from any machine)")

    @app.command("stop")
    def stop_cmd(
        journey: str = typer.Option("", "--journey", help="The journey whose drill ends (needed when several run)"),
        drill_id: int = typer.Option(0, "--id", help="The drill's id (from start or list)"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        url: str = UrlOpt,
    ) -> None:
        """Record on the server the end of your fault and score the drill."""
        from aisre.core.errors import AisreError, NotFound
        from aisre.present.cli.client import send_json

        body: dict[str, Any] = {"journey": journey or None, "id": drill_id or None}
        try:
            doc = send_json(url, "POST", "/api/gameday/stop", {k: v for k, v in body.items() if v is not None})
        except NotFound as exc:
            fail(f"{exc.message}", code=2)
            raise
        except AisreError as exc:
            fail(exc.message, code=2)
            raise
        _emit(doc, fmt)

    @app.command("list")
    def list_cmd(
        since: str = typer.Option("90d", "--since", help="RFC 3339 or a duration such as 30d"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        url: str = UrlOpt,
    ) -> None:
        """Game days recorded on the server, with their scores."""
        from aisre.core.errors import AisreError
        from aisre.present.cli.client import get_json

        try:
            doc = get_json(url, "/api/gameday", {"since": since}, timeout=120)
        except AisreError as exc:
            fail(exc.message, code=2)
            raise
        if fmt == "json":
            from aisre.present.cli.common import emit_json

            emit_json(doc)
            return
        if not doc["drills"]:
            typer.echo("no game days recorded")
        for d in doc["drills"]:
            state = "running" if d.get("running") else ("PASSED" if d["passed"] else "FAILED")
            page = d["time_to_first_page_s"]
            line = (f"#{d['drill_id']:<4} {d['start'][:16]}  {d['journey']:<14} {(d['scenario'] or 'own fault'):<20} "
                    f"{state:<8} page {'—' if page is None else f'{page / 60:.0f}m'}")
            typer.echo(line[:80])

    return app


def _settled(doc: dict[str, Any]) -> bool:
    """Whether a demo drill's score can be read now (detection and triage are in)."""
    if doc.get("detect") == "policy":
        return bool(doc["policy_violations"])
    return bool(doc["named_layer"] and doc["time_to_first_page_s"] is not None)


def _emit(doc: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        from aisre.present.cli.common import emit_json

        emit_json(doc)
    else:
        typer.echo(render(doc))
    raise typer.Exit(0 if _passed(doc) else 1)
