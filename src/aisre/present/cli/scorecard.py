"""``aisre scorecard``: reliability scorecards per journey, service or team from a running server,
as a table for people, JSON, or the flat facts export catalog tools ingest.

Exit codes: 0 shown; 1 the server could not answer (one ``error:`` line); 2 a bad flag or rules file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from aisre.core.timefmt import span_text
from aisre.present.cli.common import DEFAULT_URL, fail

SCOPES = ("journey", "service", "team")


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _secs(value: float | None) -> str:
    return "-" if value is None else span_text(value) if value >= 60 else f"{value:.0f} s"


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def spark(values: list[Any]) -> str:
    """A text sparkline of a trend (· where a period has no value)."""
    bars = "▁▂▃▄▅▆▇█"
    nums = [float(v) for v in values if v is not None]
    if not nums:
        return ""
    lo, hi = min(nums), max(nums)
    return "".join("·" if v is None else bars[0 if hi == lo else round((float(v) - lo) / (hi - lo) * 7)] for v in values)


def render(doc: dict[str, Any]) -> str:
    """The scorecards for people, at most 80 columns: one block per entity."""
    p = doc["period"]
    lines = [f"aisre scorecards: {doc['scope']}s, {p['kind']} {p['label']} "
             f"({p['start'][:10]} to {p['end'][:10]}); levels {' < '.join(doc['levels'])}"]
    if not doc["scorecards"]:
        lines += ["", f"no {doc['scope']}s: they come from the SLO specs (journey, service, owner) and recorded changes"]
    for card in doc["scorecards"]:
        f, trend = card["facts"], card["trend"]
        level = (card["level"] or "none").upper()
        lines += ["", f"{card['name']}  [{level}]" + (f"  journeys: {', '.join(card['journeys'])}" if card["scope"] != "journey" else "")]
        for s in card["slos"]:
            lines.append(f"  SLO {s['slo']:<24} {_pct(s['attainment'], 2):>8} of {s['objective']}%  "
                         f"budget left {_pct(s['budget_remaining'])}{'' if s['met'] is not False else '  MISSED'}")
        lines.append(f"  alerts {f['alerts']}, pages {f['pages']}; incidents {f['incidents']} "
                     f"(sev1 {f['sev1']}, sev2 {f['sev2']}, sev3 {f['sev3']}, sev4 {f['sev4']})  {spark(trend['incidents'])}")
        lines.append(f"  MTTD {_secs(f['mttd_s'])}, MTTA {_secs(f['mtta_s'])}, MTTR {_secs(f['mttr_s'])}")
        lines.append(f"  changes {f['changes']}, failed {f['failed_changes']} (change failure rate "
                     f"{_pct(f['change_failure_rate'])}); deploys {f['deployments']} ({f['deployments_per_day']:.2f}/day)")
        change = f.get("cost_per_1k_change")
        lines.append(f"  cost per 1K successful runs {_money(f['cost_per_1k_successful_usd'])}"
                     f"{'' if change is None else f' ({change:+.1%} on the previous period)'}  "
                     f"{spark(trend['cost_per_1k_successful_usd'])}")
        oldest = f["oldest_action_item_age_s"]
        lines.append(f"  open action items {f['open_action_items']}" + (f", oldest {span_text(oldest)}" if oldest else ""))
        if f.get("policy_runs_judged") is not None:
            lines.append(f"  policy: {f['policy_violating_runs']} of {f['policy_runs_judged']} judged runs violate "
                         f"({_pct(f['policy_violation_rate'])}); guardrail trips {f['guardrail_trips']}")
        if f.get("telemetry_runs") is not None:
            lines.append(f"  telemetry: coverage {_pct(f['telemetry_coverage_min'])} (lowest service), "
                         f"{f['telemetry_violations']} violations in {f['telemetry_runs']} runs checked")
        failing = [r for r in card["rules"] if not r["passed"]]
        for r in failing[:6]:
            value = r["value"]
            shown = "no value" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"  needs {r['level']}: {r['name']} ({r['fact']} {r['op']} {r['threshold']:g}; is {shown})")
        if len(failing) > 6:
            lines.append(f"  ... and {len(failing) - 6} more rules not met")
    return "\n".join(line[:80] if len(line) > 80 else line for line in lines)


def register_scorecard(app: typer.Typer) -> None:
    """Add ``aisre scorecard`` to the CLI."""

    @app.command("scorecard")
    def scorecard(
        name: str = typer.Argument("", help="Only this journey, service or team"),
        period: str = typer.Option("month", "--period", help="week, month, quarter (the current one) or a label: 2026-11, 2026-W47, 2026-Q4"),
        scope: str = typer.Option("journey", "--scope", help="journey, service or team (SLO owners)"),
        trend: int = typer.Option(6, "--trend", help="Periods in each trend, ending with this one"),
        fmt: str = typer.Option("table", "--format", help="table (for people), json (the scorecards) or facts (flat records for Backstage, Port, Cortex)"),
        export: Path = typer.Option(None, "--export", help="Also write the facts export (JSON) to this file"),
        check_rules: Path = typer.Option(None, "--check-rules", help="Only validate a scorecard rules file (every error with file:line); exit 2 if it has errors"),
        server: str = typer.Option(DEFAULT_URL, "--url", "--server", envvar="AISRE_URL", help="Base URL of a running aisre server"),
    ) -> None:
        """Reliability scorecards: SLOs, alerts, incidents, DORA change metrics, cost and action items, with a level from rules."""
        from aisre.core.errors import AisreError

        if check_rules is not None:
            from aisre.act.scorecards import load_rules

            try:
                rules = load_rules(check_rules)
            except AisreError as exc:
                fail(exc.message, code=2)
                raise
            typer.echo(f"{check_rules}: {len(rules.rules)} rules over levels {', '.join(rules.levels)}")
            return
        if scope not in SCOPES:
            fail(f"--scope must be journey, service or team; got {scope!r}", code=2)
        if fmt not in ("table", "json", "facts"):
            fail(f"--format must be table, json or facts; got {fmt!r}", code=2)
        from aisre.present.cli.client import get_json
        from aisre.present.cli.common import emit_json

        params = {"period": period, "scope": scope, "name": name, "trend": trend}
        try:
            doc = get_json(server, "/api/scorecards", params, timeout=300)
            facts = get_json(server, "/api/scorecards/facts", params, timeout=300) if export or fmt == "facts" else None
        except AisreError as exc:
            fail(exc.message)
            raise
        if export is not None:
            import orjson

            export.write_bytes(orjson.dumps(facts, option=orjson.OPT_INDENT_2) + b"\n")
        if fmt == "json":
            emit_json(doc)
        elif fmt == "facts":
            emit_json(facts)
        else:
            typer.echo(render(doc))
