"""``aisre cost``: attribution, spike explanations, prices and reprice, budgets, headroom."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aisre.core.display import money
from aisre.present.cli.client import get_json, send_json
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


def _usd(x: Any) -> str:
    return money(x, missing="-")


def _pct(x: Any) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _span(seconds: float) -> str:
    """3725 → '1h 02m', 2400 → '40m', 200000 → '2d 7h'."""
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    return f"{days}d {hours}h" if days else f"{hours}h {mins:02d}m" if hours else f"{mins}m"


def build_cost_cli() -> typer.Typer:
    """The ``cost`` sub-command group."""
    app = typer.Typer(help="Cost: spend by journey/model/prompt, spike explanations, prices, budgets.", no_args_is_help=True)

    @app.callback()
    def cost() -> None:
        """Cost: attribution, spike explanations, prices and reprice, budgets, rate-limit headroom."""

    @app.command("breakdown")
    def breakdown_cmd(
        by: str = typer.Option("journey", "--by", help="journey, model, provider, prompt_version, service_version (comma list)"),
        since: str = typer.Option("7d", "--since", help="RFC 3339 or look-back (7d)"),
        until: str = typer.Option("", "--until"),
        bucket: str = typer.Option("", "--bucket", help="time bucket, e.g. 1h or 1d"),
        journey: str = typer.Option("", "--journey"),
        model: str = typer.Option("", "--model"),
        url: str = UrlOption,
        fmt: str = FormatOption,
        wide: bool = WideOption,
    ) -> None:
        """Cost and tokens by group, with cost per 1K runs, retry and failed-run shares, cache hit rate."""
        data = call(lambda: get_json(url, "/api/cost/breakdown", {
            "by": by, "since": since, "until": until, "bucket": bucket, "journey": journey, "model": model}))
        if fmt == "json":
            emit_json(data)
            return
        keys = (["bucket"] if data.get("bucket_s") else []) + data["by"]
        table = listing(*keys, "cost", "per 1K runs", "calls", "input tok", "output tok", "cache hit", "retry share",
                        "failed-run share", wide=wide, extra=tuple(len(keys) + i for i in (4, 5, 7)))
        for g in data["groups"]:
            table.add_row(*(escape(str(g.get(k) or "-")) for k in keys), _usd(g["cost_usd"]), _usd(g["cost_per_1k_runs_usd"]),
                          str(g["calls"]), f"{g['input_tokens']:,}", f"{g['output_tokens']:,}", _pct(g["cache_hit_rate"]),
                          _pct(g["retry_cost_share"]), _pct(g["failed_run_cost_share"]))
        show(console, table, wide)
        t = data["total"]
        console.print(f"total {_usd(t['cost_usd'])} over {t['runs']:,} runs ({_usd(t['cost_per_1k_runs_usd'])} per 1K runs); "
                      f"retries {_pct(t['retry_cost_share'])}, failed runs {_pct(t['failed_run_cost_share'])} of spend")
        for u in data["unpriced"]:
            console.print(f"[yellow]unpriced:[/] {escape(u['provider'])}/{escape(u['model'])}: {u['calls']} calls, "
                          f"{u['tokens']:,} tokens costed at $0 (add a price: aisre cost price-set)")

    @app.command("explain")
    def explain_cmd(
        journey: str = typer.Option(..., "--journey"),
        baseline: str = typer.Option(..., "--baseline", help="FROM..TO (RFC 3339)"),
        current: str = typer.Option(..., "--current", help="FROM..TO (RFC 3339)"),
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """Why the journey's cost changed: causes with shares of the delta, evidence, exemplar traces
        (or, with too few runs in either window, the counts and no cause)."""
        data = call(lambda: get_json(url, "/api/cost/explain", {"journey": journey, "baseline": baseline, "current": current}))
        if fmt == "json":
            emit_json(data)
            return
        b, c = data["baseline"], data["current"]
        if data.get("status") == "insufficient_data":
            # Counts only: no delta split and no cause, so nothing reads as an explanation.
            m = data["minimums"]
            console.print(f"[bold]{escape(journey)}[/]: [yellow]not enough data to explain a change[/] (no cause named)")
            table = Table("window", "from", "to", "runs", "billed model calls", "spend")
            for label, w in (("baseline", b), ("current", c)):
                table.add_row(label, w["from"], w["to"], str(w["runs"]), str(w["billed_calls"]), _usd(w["cost_usd"]))
            table.add_row("minimum", "", "", str(m["runs"]), str(m["billed_calls"]), "")
            console.print(table)
            for line in data["shortfalls"]:
                console.print(f"- {escape(line)}")
            console.print("Widen the windows or wait for more runs.")
            return
        pct = "" if data["delta_pct"] is None else f", {data['delta_pct'] * 100:+.0f}%"
        console.print(f"[bold]{escape(journey)}[/]: {_usd(b['cost_usd'])} → {_usd(c['cost_usd'])} "
                      f"(delta {_usd(data['delta_usd'])}{pct}); runs {b['runs']} → {c['runs']}")
        table = Table("cause", "share", "delta", "evidence", "exemplar traces")
        for cause in data["causes"]:
            table.add_row(cause["cause"], _pct(cause["share"]), _usd(cause["delta_usd"]), escape(cause["evidence"]["summary"]),
                          "\n".join(cause["exemplar_trace_ids"][:3]))
        console.print(table)
        for held in data.get("not_named") or []:
            console.print(f"[yellow]not named:[/] {held['cause']} ({_usd(held['delta_usd'])}): {escape(held['reason'])}")

    @app.command("prices")
    def prices_cmd(url: str = UrlOption, fmt: str = FormatOption, wide: bool = WideOption) -> None:
        """The catalog version in force, listed models, this tenant's overrides and unpriced models."""
        data = call(lambda: get_json(url, "/api/cost/prices"))
        unpriced = call(lambda: get_json(url, "/api/cost/unpriced"))["unpriced"]
        if fmt == "json":
            emit_json({**data, "unpriced": unpriced})
            return
        table = listing("provider", "model", "input /1M", "output /1M", "cached input /1M", title=f"catalog {data['version']}",
                        wide=wide)
        for m in data["models"]:
            table.add_row(m["provider"], m["model"], f"{m['input']:g}", f"{m['output']:g}", f"{m['cached_input']:g}")
        show(console, table, wide)
        for o in data["overrides"]:
            console.print(f"override {escape(o['model'])}: in {o['input']:g} out {o['output']:g} cached {o['cached_input']:g} from {o['effective']}")
        for u in unpriced:
            console.print(f"[yellow]unpriced:[/] {escape(u['model'])}: {u['calls']} calls, {u['tokens']:,} tokens")

    @app.command("price-set")
    def price_set_cmd(
        model: str = typer.Argument(...),
        input_price: float = typer.Option(..., "--input", help="USD per 1M input tokens"),
        output_price: float = typer.Option(..., "--output", help="USD per 1M output tokens"),
        cached: float = typer.Option(None, "--cached-input", help="USD per 1M cached input tokens (default: --input)"),
        effective: str = typer.Option("", "--effective", help="RFC 3339; default now"),
        url: str = UrlOption,
    ) -> None:
        """Set this tenant's price for a model; run `aisre cost reprice` to apply it to stored spans."""
        body: dict[str, Any] = {"model": model, "input": input_price, "output": output_price}
        if cached is not None:
            body["cached_input"] = cached
        if effective:
            body["effective"] = effective
        data = call(lambda: send_json(url, "PUT", "/api/cost/prices", body))
        console.print(f"price {escape(data['model'])} set ({data['version']}); reprice to apply it to stored spans")

    @app.command("price-rm")
    def price_rm_cmd(model: str = typer.Argument(...), url: str = UrlOption) -> None:
        """Remove this tenant's overrides of a model."""
        call(lambda: send_json(url, "DELETE", f"/api/cost/prices/{model}"))
        console.print(f"override of {escape(model)} removed")

    @app.command("reprice")
    def reprice_cmd(
        since: str = typer.Option(..., "--since", help="RFC 3339 or look-back (30d)"),
        until: str = typer.Option("", "--until"),
        url: str = UrlOption,
        fmt: str = FormatOption,
    ) -> None:
        """Recompute stored model calls' costs with the prices in force at each call's time (after price-set or a new catalog)."""
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        body = {"since": since, **({"until": until} if until else {})}
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                      transient=True, disable=fmt == "json") as progress:
            progress.add_task("repricing stored model calls…")
            data = call(lambda: send_json(url, "POST", "/api/cost/reprice", body))
        if fmt == "json":
            emit_json(data)
            return
        console.print(f"repriced {data['spans']:,} model calls in {data['runs']:,} runs: "
                      f"{_usd(data['cost_before_usd'])} → {_usd(data['cost_after_usd'])}")
        for model in data["unpriced_models"]:
            console.print(f"[yellow]unpriced:[/] {escape(model)} (costed at $0)")

    @app.command("budget")
    def budget_cmd(url: str = UrlOption, fmt: str = FormatOption, wide: bool = WideOption) -> None:
        """Budgets: spend so far, forecast at period end, projected exhaustion, alert level."""
        data = call(lambda: get_json(url, "/api/cost/budgets"))
        if fmt == "json":
            emit_json(data)
            return
        table = listing("budget", "journey", "period", "amount", "spent", "forecast", "model (history)", "exhausts", "alert",
                        wide=wide, flex=(6,), extra=(2, 6))
        for b in data["budgets"]:
            basis = b.get("forecast_basis") or {}
            history = f" ({_span(basis['observed_s'])})" if basis.get("buckets") else ""
            table.add_row(escape(b["name"]), escape(b["journey"] or "(tenant)"), b["period"], _usd(b["amount_usd"]),
                          f"{_usd(b['spent_usd'])} ({_pct(b['spent_share'])})",
                          f"{_usd(b['forecast_usd'])} ({_pct(b['forecast_share'])})", f"{b['forecast_model']}{history}",
                          b["projected_exhaustion"] or "-", "-" if b["alert"] is None else f"≥ {_pct(b['alert'])}")
        show(console, table, wide)

    @app.command("budget-set")
    def budget_set_cmd(
        name: str = typer.Argument(...),
        amount: float = typer.Option(..., "--amount", help="USD per period"),
        period: str = typer.Option("month", "--period", help="week or month"),
        journey: str = typer.Option("", "--journey", help="default: the whole tenant"),
        threshold: list[float] = typer.Option([0.8, 1.0], "--threshold", help="alert at this forecast share (repeatable)"),
        url: str = UrlOption,
    ) -> None:
        """Create or replace a budget."""
        data = call(lambda: send_json(url, "PUT", "/api/cost/budgets", {
            "name": name, "amount_usd": amount, "period": period, "journey": journey, "thresholds": list(threshold)}))
        console.print(f"budget {escape(name)}: spent {_usd(data['spent_usd'])}, forecast {_usd(data['forecast_usd'])} "
                      f"of {_usd(data['amount_usd'])}")

    @app.command("headroom")
    def headroom_cmd(
        since: str = typer.Option("1d", "--since"),
        url: str = UrlOption,
        fmt: str = FormatOption,
        wide: bool = WideOption,
    ) -> None:
        """Peak requests and tokens per minute per model against the configured provider limits."""
        data = call(lambda: get_json(url, "/api/cost/headroom", {"since": since}))
        if fmt == "json":
            emit_json(data)
            return
        table = listing("model", "peak req/min", "limit", "peak tok/min", "limit", "headroom", "warning", wide=wide, flex=(6,))
        for m in data["models"]:
            heads = [h for h in (m.get("requests_headroom"), m.get("tokens_headroom")) if h is not None]
            table.add_row(escape(m["model"]), str(m["peak_requests_per_min"]), str(m.get("requests_per_min_limit") or "-"),
                          f"{m['peak_tokens_per_min']:,}", str(m.get("tokens_per_min_limit") or "-"),
                          _pct(min(heads)) if heads else "-", escape(m.get("warning") or ""))
        show(console, table, wide)

    @app.command("limit-set")
    def limit_set_cmd(
        model: str = typer.Argument(...),
        rpm: float = typer.Option(None, "--rpm", help="requests per minute"),
        tpm: float = typer.Option(None, "--tpm", help="tokens per minute"),
        warn_at: float = typer.Option(0.8, "--warn-at", help="warn when the peak minute reaches this share"),
        url: str = UrlOption,
    ) -> None:
        """Set a provider rate limit for a model."""
        if rpm is None and tpm is None:
            fail("give --rpm and/or --tpm")
        call(lambda: send_json(url, "PUT", "/api/cost/rate-limits",
                               {"model": model, "requests_per_min": rpm, "tokens_per_min": tpm, "warn_at": warn_at}))
        console.print(f"limit for {escape(model)} set")

    return app
