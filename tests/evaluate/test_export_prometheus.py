"""Prometheus rules export: names, metric names, alert switches, formatting and the CLI."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aisre.core.slo import PrometheusSli, SloSpec
from aisre.evaluate.export import (
    BAD_EVENTS_METRIC,
    EVENTS_METRIC,
    FIRST_EVENT_METRIC,
    ExportError,
    prometheus_rules,
    promtool_tests,
)
from aisre.evaluate.export.prometheus import go_float, prom_duration, promtool_test_path
from aisre.evaluate.specs import load_specs

NATIVE = """
slos:
  - name: ask-success
    journey: ask
    objective: 99.5
    window: 28d
    sli: {kind: outcome, latency_ms: 4000}
    tier: 0
    owner: search-team
    runbook: https://runbooks.example/ask
  - name: ask-cost
    journey: ask
    objective: 99
    sli: {kind: cost, max_usd: 0.02}
    diagnostic: true
    alerting: {ticket: {enabled: false}}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "slos.yaml"
    path.write_text(NATIVE)
    return path


def _groups(spec_file: Path) -> dict[str, dict]:
    return {g["name"]: g for g in prometheus_rules(load_specs([spec_file]))["groups"]}


@pytest.mark.parametrize(("days", "text"), [(30, "30d"), (28, "4w"), (7, "1w"), (1, "1d"),
                                            (365, "1y"), (90, "90d")])
def test_prom_duration_names_windows_like_prometheus(days: int, text: str) -> None:
    assert prom_duration(timedelta(days=days)) == text
    assert prom_duration(timedelta(minutes=90)) == "1h30m"


def test_go_float_prints_like_sloth() -> None:
    assert [go_float(x) for x in (6.0, 14.4, 5.6000000000000005, (100 - 99.9) / 100)] == [
        "6", "14.4", "5.6000000000000005", "0.0009999999999999432"]


def test_native_slis_read_aisre_counters(spec_file: Path) -> None:
    sli = _groups(spec_file)["aisre-slo-sli-recordings-ask-success"]["rules"]
    assert [r["record"] for r in sli] == [f"slo:sli_error:ratio_rate{w}" for w in
                                         ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "4w")]
    assert sli[0]["expr"] == (
        f'(sum(rate({BAD_EVENTS_METRIC}{{slo="ask-success"}}[5m])))\n/\n'
        f'(sum(rate({EVENTS_METRIC}{{slo="ask-success"}}[5m])))\n')
    assert sli[0]["labels"] == {"aisre_id": "ask-success", "aisre_journey": "ask",
                                "aisre_service": "ask", "aisre_slo": "ask-success",
                                "aisre_window": "5m", "owner": "search-team", "tier": "0"}
    assert "sum_over_time(slo:sli_error:ratio_rate5m{" in sli[-1]["expr"]
    assert "/ ignoring (aisre_window)" in sli[-1]["expr"]


def test_alerts_use_sloth_expression_and_28d_factors(spec_file: Path) -> None:
    page, ticket = _groups(spec_file)["aisre-slo-alerts-ask-success"]["rules"]
    assert page["alert"] == ticket["alert"] == "AskSuccessErrorBudgetBurn"
    # Sloth's expression, each window's ratio scaled by its observed share, plus the guard.
    sel = '{aisre_id="ask-success", aisre_service="ask", aisre_slo="ask-success"}'
    assert page["expr"].startswith(
        f'(\n    max(slo:sli_error:ratio_rate5m{sel} * scalar(clamp_max(aisre:slo_observed:seconds{sel} / 300, 1))'
        ' > (13.44 * 0.005)) without (aisre_window)\n    and\n')
    assert 'sum(increase(aisre_slo_bad_events_total{slo="ask-success"}[1h])) >= 3' in page["expr"]
    assert 'sum(increase(aisre_slo_events_total{slo="ask-success"}[3d])) >= 10' in ticket["expr"]
    assert "(5.6000000000000005 * 0.005)" in page["expr"]
    assert "(0.9333333333333333 * 0.005)" in ticket["expr"]
    assert page["labels"]["severity"] == "page" and ticket["labels"]["severity"] == "ticket"
    assert page["annotations"]["runbook_url"] == "https://runbooks.example/ask"
    assert page["annotations"]["title"].startswith("(page) {{$labels.aisre_service}}")


def test_diagnostic_slo_never_pages_and_disabled_ticket_is_left_out(spec_file: Path) -> None:
    (rule,) = _groups(spec_file)["aisre-slo-alerts-ask-cost"]["rules"]
    assert rule["labels"]["aisre_severity"] == "page"  # the fast window pair...
    assert rule["labels"]["severity"] == "ticket"      # ...alerting as a ticket


def test_meta_recordings(spec_file: Path) -> None:
    meta = {r["record"]: r for r in _groups(spec_file)["aisre-slo-meta-recordings-ask-success"]["rules"]}
    assert meta["slo:objective:ratio"]["expr"] == "vector(0.995)"
    assert meta["slo:error_budget:ratio"]["expr"] == "vector(1-0.995)"
    assert meta["slo:time_period:days"]["expr"] == "vector(28)"
    assert meta["aisre_slo_info"]["labels"]["aisre_spec"] == "aisre/v1"
    assert "slo:sli_error:ratio_rate4w{" in meta["slo:period_burn_rate:ratio"]["expr"]


def test_no_alert_group_when_both_alerts_are_disabled(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(NATIVE.replace("    runbook: https://runbooks.example/ask\n",
                                   "    alerting: {page: {enabled: false}, ticket: {enabled: false}}\n"))
    names = [g["name"] for g in prometheus_rules(load_specs([path]))["groups"]]
    assert "aisre-slo-alerts-ask-success" not in names
    assert "aisre-slo-sli-recordings-ask-success" in names


def test_non_prometheus_sli_cannot_be_exported() -> None:
    spec = SloSpec(name="x", service="s", objective=99, format="openslo",
                   sli=PrometheusSli(good_query="q", total_query="t", source_type="datadog"))
    with pytest.raises(ExportError, match="datadog"):
        prometheus_rules([spec])


def test_promtool_test_file_drives_the_page_alert(spec_file: Path) -> None:
    doc = promtool_tests(load_specs([spec_file]), "rules.yaml")
    (test,) = doc["tests"]
    assert doc["rule_files"] == ["rules.yaml"]
    series = {s["series"].split("{")[0] for s in test["input_series"]}
    assert series == {EVENTS_METRIC, BAD_EVENTS_METRIC, FIRST_EVENT_METRIC}
    checks = test["alert_rule_test"]
    assert checks[0]["exp_alerts"] == []  # healthy before the outage
    severities = [[a["exp_labels"]["aisre_severity"] for a in c["exp_alerts"]] for c in checks]
    assert "page" not in severities[-2] and "page" in severities[-1]


def test_tests_path() -> None:
    assert promtool_test_path(Path("out/rules.yaml")) == Path("out/rules.test.yaml")
    assert promtool_test_path(Path("rules")) == Path("rules.test.yaml")


def test_cli_writes_rules_and_tests(spec_file: Path, tmp_path: Path) -> None:
    from aisre.present.cli.main import build_cli

    runner = CliRunner()
    app = build_cli(lambda *a, **k: None)
    out = tmp_path / "rules.yaml"
    result = runner.invoke(app, ["export", "prometheus-rules", str(spec_file), "-o", str(out),
                                 "--with-tests"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text())["groups"]
    assert (tmp_path / "rules.test.yaml").exists()
    stdout = runner.invoke(app, ["export", "prometheus-rules", str(spec_file)])
    assert stdout.exit_code == 0 and "aisre-slo-alerts-ask-success" in stdout.stdout


def test_cli_exits_1_on_invalid_specs(tmp_path: Path) -> None:
    from aisre.present.cli.main import build_cli

    bad = tmp_path / "bad.yaml"
    bad.write_text("slos:\n  - name: x\n    journey: j\n    objective: 100\n    sli: {kind: outcome}\n")
    result = CliRunner().invoke(build_cli(lambda *a, **k: None),
                                ["export", "prometheus-rules", str(bad)])
    assert result.exit_code == 1
    assert "objective" in result.output
