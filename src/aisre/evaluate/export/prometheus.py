"""SLO specs → Prometheus recording and alerting rules, shaped exactly like Sloth's output.

Per SLO three groups, as ``sloth generate`` writes them but with aisre's prefix:

* ``aisre-slo-sli-recordings-<id>``: ``slo:sli_error:ratio_rate<w>`` for every alert window
  and the SLO period (the period one averages the page-quick short window, Sloth's
  "optimized" form);
* ``aisre-slo-meta-recordings-<id>``: objective, error budget, period, burn rates, remaining
  budget and ``aisre_slo_info``;
* ``aisre-slo-alerts-<id>``: the page and ticket multi-window multi-burn-rate alerts (left out
  when both are disabled, as Sloth does).

Imported SLIs (Sloth, OpenSLO) keep their own PromQL and Sloth's alert expression exactly.
aisre's journey SLIs read the counters the server's ``/metrics`` exposes
(:data:`EVENTS_METRIC`, :data:`BAD_EVENTS_METRIC`, :data:`FIRST_EVENT_METRIC`), and their
alerts carry the same data guard the evaluator applies (docs/alerting.md): each window's
error ratio is scaled by the share of the window observed since the SLO's first event, and
a pair needs the guard's minimum of events and bad events in its long window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from aisre import __version__
from aisre.core.errors import PermanentError
from aisre.core.slo import AlertSpec, AlertWindow, AlertWindows, PrometheusSli, SloSpec
from aisre.evaluate.windows import windows_for

EVENTS_METRIC = "aisre_slo_events_total"
BAD_EVENTS_METRIC = "aisre_slo_bad_events_total"
FIRST_EVENT_METRIC = "aisre_slo_first_event_timestamp_seconds"
OBSERVED_RECORD = "aisre:slo_observed:seconds"

PREFIX = "aisre"
ID_LABEL, SERVICE_LABEL, SLO_LABEL = "aisre_id", "aisre_service", "aisre_slo"
WINDOW_LABEL, SEVERITY_LABEL, JOURNEY_LABEL = "aisre_window", "aisre_severity", "aisre_journey"
INFO_METRIC = "aisre_slo_info"
MODE = "cli-export-prom"
SLI_RECORD = "slo:sli_error:ratio_rate{window}"
SPEC_VERSIONS = {"aisre": "aisre/v1", "sloth": "prometheus/v1", "openslo": "openslo"}
DEFAULT_SHORT = timedelta(minutes=5)  # Sloth's page-quick short window when there are no alerts

_WINDOW_VAR = re.compile(r"\{\{\s*\.window\s*\}\}")
_LABEL_REF = re.compile(r"\{\{\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class ExportError(PermanentError):
    """An SLO that cannot be written as Prometheus rules (e.g. a Datadog SLI)."""


# ---------------------------------------------------------------------------- formatting


def prom_duration(value: timedelta) -> str:
    """Render a duration as Prometheus does (``5m``, ``1d``, ``4w``, ``30d``): Sloth's window names."""
    ms = int(value / timedelta(milliseconds=1))
    if ms == 0:
        return "0s"
    out = ""
    day = 86_400_000
    # Years and weeks only when exact, like Prometheus's model.Duration.String.
    for unit, size, exact in (("y", 365 * day, True), ("w", 7 * day, True), ("d", day, False),
                              ("h", 3_600_000, False), ("m", 60_000, False),
                              ("s", 1000, False), ("ms", 1, False)):
        if exact and ms % size:
            continue
        n, ms = divmod(ms, size)
        if n:
            out += f"{n}{unit}"
    return out


def go_float(value: float) -> str:
    """Format a float the way Go's ``%v`` does in Sloth's rules (shortest repr, no ``.0``)."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _sloth_budget(spec: SloSpec) -> float:
    # Sloth computes (100 - objective) / 100; the float differs from 1 - objective/100.
    return (100 - spec.objective) / 100


# ---------------------------------------------------------------------------- SLI queries


def sli_error_query(spec: SloSpec, window: timedelta) -> str:
    """The error-ratio PromQL of an SLO over one window (Sloth's template for imported SLIs)."""
    w = prom_duration(window)
    sli = spec.sli
    if isinstance(sli, PrometheusSli):
        if sli.source_type.lower() != "prometheus":
            raise ExportError(f"SLO {spec.id}: a {sli.source_type} SLI cannot be exported to "
                              "Prometheus rules")

        def sub(q: str | None) -> str:
            return _WINDOW_VAR.sub(w, q or "")

        shape = sli.shape
        if shape == "events":
            return f"({sub(sli.error_query)})\n/\n({sub(sli.total_query)})\n"
        if shape == "raw":
            return f"({sub(sli.error_ratio_query)})"
        if shape == "good_total":
            return ("(\n  1 - (\n    (\n      " + sub(sli.good_query) + "\n    )\n    /\n    (\n"
                    "      " + sub(sli.total_query) + "\n    )\n  )\n)")
        if shape == "raw_good":
            return f"(1 - ({sub(sli.good_ratio_query)}))"
        if shape == "histogram":
            # The le label's text ("2" or "2.0") is known only to the server holding the buckets.
            raise ExportError(f"SLO {spec.id}: a histogram SLI's bucket label is read from Prometheus at "
                              "run time; it cannot be exported to rules offline")
        raise ExportError(f"SLO {spec.id}: a threshold SLI has no error ratio; it cannot be "
                          "exported to Prometheus rules")
    sel = _selector({"slo": spec.id}, spaced=False)
    return (f"(sum(rate({BAD_EVENTS_METRIC}{sel}[{w}])))\n/\n"
            f"(sum(rate({EVENTS_METRIC}{sel}[{w}])))\n")


def _selector(labels: Mapping[str, str], *, spaced: bool = True) -> str:
    sep = ", " if spaced else ","
    return "{" + sep.join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---------------------------------------------------------------------------- rules


def alert_windows(spec: SloSpec) -> AlertWindows | None:
    """The burn-rate policy for an SLO: the one the loader attached, else the period's default."""
    if spec.alerting.windows is not None:
        return spec.alerting.windows
    return windows_for(spec.window.duration)


def sli_windows(spec: SloSpec) -> list[timedelta]:
    """Every window with an SLI recording: the alert windows and the SLO period, sorted."""
    windows = alert_windows(spec)
    found = {spec.window.duration}
    if windows is None:
        found.add(DEFAULT_SHORT)
    else:
        for pair in windows.pairs().values():
            found.update((pair.short, pair.long))
    return sorted(found)


def _service(spec: SloSpec) -> str:
    return spec.service or spec.journey or PREFIX


def _ids(spec: SloSpec) -> dict[str, str]:
    return {ID_LABEL: spec.id, SERVICE_LABEL: _service(spec), SLO_LABEL: spec.name}


def _base_labels(spec: SloSpec) -> dict[str, str]:
    labels = {k: str(v) for k, v in spec.labels.items()}
    if spec.format == "aisre":
        extras = {"owner": spec.owner, "tier": None if spec.tier is None else str(spec.tier),
                  JOURNEY_LABEL: spec.journey}
        for k, v in extras.items():
            if v is not None:
                labels.setdefault(k, v)
    labels.update(_ids(spec))
    return labels


def _sorted(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: labels[k] for k in sorted(labels)}


def _sli_group(spec: SloSpec) -> dict[str, Any]:
    base = _base_labels(spec)
    windows = alert_windows(spec)
    short = windows.page_quick.short if windows else DEFAULT_SHORT
    sel = _selector(_ids(spec))
    period = spec.window.duration
    rules = []
    for window in sli_windows(spec):
        if window == period:
            # Sloth's optimized period SLI: the mean of the short-window ratio samples.
            src = SLI_RECORD.format(window=prom_duration(short)) + sel
            p = prom_duration(period)
            expr = (f"sum_over_time({src}[{p}])\n/ ignoring ({WINDOW_LABEL})\n"
                    f"count_over_time({src}[{p}])\n")
        else:
            expr = sli_error_query(spec, window)
        rules.append({"record": SLI_RECORD.format(window=prom_duration(window)), "expr": expr,
                      "labels": _sorted({**base, WINDOW_LABEL: prom_duration(window)})})
    return {"name": f"{PREFIX}-slo-sli-recordings-{spec.id}", "rules": rules}


def guarded(spec: SloSpec) -> bool:
    """Whether the SLO's alerts carry aisre's data guard: SLIs aisre counts itself do;
    imported Prometheus SLIs keep Sloth's expression exactly."""
    return not isinstance(spec.sli, PrometheusSli)


def _meta_group(spec: SloSpec, version: str) -> dict[str, Any]:
    labels = _sorted(_base_labels(spec))
    sel = _selector(_ids(spec))
    objective = go_float(spec.objective / 100)
    period = spec.window.duration
    windows = alert_windows(spec)
    short = prom_duration(windows.page_quick.short if windows else DEFAULT_SHORT)
    on = f"/ on({ID_LABEL}, {SLO_LABEL}, {SERVICE_LABEL}) group_left\n"
    budget = f"slo:error_budget:ratio{sel}\n"
    info = {**labels, "aisre_mode": MODE, "aisre_objective": go_float(spec.objective),
            "aisre_spec": SPEC_VERSIONS.get(spec.format, spec.format), "aisre_version": version}
    rules: list[tuple[str, str, dict[str, str]]] = [
        ("slo:objective:ratio", f"vector({objective})", labels),
        ("slo:error_budget:ratio", f"vector(1-{objective})", labels),
        ("slo:time_period:days", f"vector({go_float(period / timedelta(days=1))})", labels),
        ("slo:current_burn_rate:ratio",
         f"{SLI_RECORD.format(window=short)}{sel}\n{on}{budget}", labels),
        ("slo:period_burn_rate:ratio",
         f"{SLI_RECORD.format(window=prom_duration(period))}{sel}\n{on}{budget}", labels),
        ("slo:period_error_budget_remaining:ratio", f"1 - slo:period_burn_rate:ratio{sel}",
         labels),
        (INFO_METRIC, "vector(1)", _sorted(info)),
    ]
    if guarded(spec):
        counter = _selector({"slo": spec.id}, spaced=False)
        rules.append((OBSERVED_RECORD, f"time() - max({FIRST_EVENT_METRIC}{counter})", labels))
    return {"name": f"{PREFIX}-slo-meta-recordings-{spec.id}",
            "rules": [{"record": r, "expr": e, "labels": lb} for r, e, lb in rules]}


def alert_expr(spec: SloSpec, quick: AlertWindow, slow: AlertWindow, windows: AlertWindows) -> str:
    """Sloth's multi-window multi-burn-rate expression for one severity (two window pairs)."""
    sel = _selector(_ids(spec))
    budget = go_float(_sloth_budget(spec))
    guard = guarded(spec)

    def cond(window: timedelta, factor: float) -> str:
        record = SLI_RECORD.format(window=prom_duration(window)) + sel
        if guard:
            # The unobserved part of a young window counts as healthy traffic.
            seconds = go_float(window.total_seconds())
            record += f" * scalar(clamp_max({OBSERVED_RECORD}{sel} / {seconds}, 1))"
        return (f"    max({record} > ({go_float(factor)} * {budget})) "
                f"without ({WINDOW_LABEL})\n")

    def minimums(window: timedelta) -> str:
        min_events, min_bad = spec.alert_guard
        counter = _selector({"slo": spec.id}, spaced=False)
        w = prom_duration(window)
        return (f"    and on()\n    sum(increase({EVENTS_METRIC}{counter}[{w}])) >= {min_events}\n"
                f"    and on()\n    sum(increase({BAD_EVENTS_METRIC}{counter}[{w}])) >= {min_bad}\n")

    parts = []
    for pair in (quick, slow):
        factor = windows.burn_factor(pair, spec.window.duration)
        extra = minimums(pair.long) if guard and any(spec.alert_guard) else ""
        parts.append(f"(\n{cond(pair.short, factor)}    and\n{cond(pair.long, factor)}{extra})\n")
    return "or\n".join(parts)


def alert_name(spec: SloSpec) -> str:
    """The alert's name: the spec's own, else the SLO id in CamelCase plus ``ErrorBudgetBurn``."""
    if spec.alerting.name:
        return spec.alerting.name
    words = re.split(r"[^A-Za-z0-9]+", spec.id)
    name = "".join(w[:1].upper() + w[1:] for w in words if w) + "ErrorBudgetBurn"
    return name if name[0].isalpha() else f"Slo{name}"


def _alert_rule(spec: SloSpec, severity: str, sev: AlertSpec, windows: AlertWindows) -> dict[str, Any]:
    quick, slow = ((windows.page_quick, windows.page_slow) if severity == "page"
                   else (windows.ticket_quick, windows.ticket_slow))
    # aisre_id (already on every series) keeps promtool from flagging two SLOs' alerts of the
    # same name and labels as duplicates, as happens for Sloth's multi-service example.
    labels: dict[str, str] = {**spec.alerting.labels, **sev.labels, SEVERITY_LABEL: severity,
                              ID_LABEL: spec.id}
    who = f"{{{{$labels.{SERVICE_LABEL}}}}} {{{{$labels.{SLO_LABEL}}}}}"
    annotations: dict[str, str] = {
        "summary": f"{who} SLO error budget burn rate is over expected.",
        "title": f"({severity}) {who} SLO error budget burn rate is too fast.",
    }
    if spec.format == "aisre":
        # Diagnostic SLOs alert, but never page (DESIGN §4).
        labels.setdefault("severity", "ticket" if spec.diagnostic else severity)
        if spec.runbook:
            annotations["runbook_url"] = spec.runbook
        if spec.description:
            annotations["description"] = spec.description
    annotations.update({**spec.alerting.annotations, **sev.annotations})
    return {"alert": alert_name(spec), "expr": alert_expr(spec, quick, slow, windows),
            "labels": _sorted(labels), "annotations": _sorted(annotations)}


def _alert_group(spec: SloSpec) -> dict[str, Any] | None:
    windows = alert_windows(spec)
    if windows is None:
        return None
    rules = [_alert_rule(spec, name, sev, windows)
             for name, sev in (("page", spec.alerting.page), ("ticket", spec.alerting.ticket))
             if sev.enabled]
    if not rules:
        return None
    return {"name": f"{PREFIX}-slo-alerts-{spec.id}", "rules": rules}


def prometheus_rules(specs: Iterable[SloSpec], *, version: str = __version__) -> dict[str, Any]:
    """The rule file (``{"groups": [...]}``) for the SLOs: SLI, meta and alert groups per SLO."""
    groups: list[dict[str, Any]] = []
    for spec in specs:
        groups.append(_sli_group(spec))
        groups.append(_meta_group(spec, version))
        alerts = _alert_group(spec)
        if alerts is not None:
            groups.append(alerts)
    return {"groups": groups}


# ---------------------------------------------------------------------------- YAML


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    """YAML with block scalars for multi-line PromQL and keys in the order given."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1_000_000,
                     allow_unicode=True, default_flow_style=False)


def render_rules(specs: Iterable[SloSpec], *, version: str = __version__) -> str:
    """The rule file as YAML text, with a generated-code header."""
    header = (f"# Code generated by aisre ({version}): aisre export prometheus-rules.\n"
              "# DO NOT EDIT.\n\n")
    return header + dump_yaml(prometheus_rules(specs, version=version))


# ---------------------------------------------------------------------------- promtool tests

_TOTAL_PER_MIN = 1000
_HEALTHY_MIN = 120
_OUTAGE_MIN = 240
_MARGIN = 0.3  # a condition counts as on/off only 30 % away from its threshold


def _window_ratio(bad_ratio: float, window: timedelta, minute: int, guard: bool) -> float:
    # Approximate error ratio over a window at `minute`, ignoring rate() extrapolation; with
    # the guard, scaled by the share of the window observed since the first event (time 0).
    w = window / timedelta(minutes=1)
    seen = min(w, minute)
    if not seen:
        return 0.0
    return bad_ratio * min(w, max(0, minute - _HEALTHY_MIN)) / (w if guard else seen)


def _severity_state(spec: SloSpec, windows: AlertWindows, severity: str, bad_ratio: float,
                    minute: int) -> bool | None:
    """True/False when clearly firing/quiet at ``minute``, None when too close to call."""
    budget = _sloth_budget(spec)
    pairs = ((windows.page_quick, windows.page_slow) if severity == "page"
             else (windows.ticket_quick, windows.ticket_slow))
    states: list[bool | None] = []
    for pair in pairs:
        thr = windows.burn_factor(pair, spec.window.duration) * budget
        ratios = [_window_ratio(bad_ratio, w, minute, guarded(spec)) for w in (pair.short, pair.long)]
        if all(r > thr * (1 + _MARGIN) for r in ratios):
            states.append(True)
        elif any(r < thr * (1 - _MARGIN) for r in ratios):
            states.append(False)
        else:
            states.append(None)
    if True in states:
        return True
    return None if None in states else False


def _expand(template: str, labels: Mapping[str, str]) -> str | None:
    out = _LABEL_REF.sub(lambda m: labels.get(m.group(1), ""), template)
    return None if "{{" in out else out


def _expected_alert(rule: dict[str, Any], series: Mapping[str, str]) -> dict[str, Any] | None:
    labels = {**series, **rule["labels"]}
    annotations = {k: _expand(v, labels) for k, v in rule["annotations"].items()}
    if any(v is None for v in annotations.values()):
        return None  # templates beyond $labels: cannot predict the text
    return {"exp_labels": _sorted(labels), "exp_annotations": annotations}


def _bad_per_minute(spec: SloSpec, windows: AlertWindows) -> int:
    # About three times the page-quick threshold, so both page windows clearly burn.
    quick = windows.burn_factor(windows.page_quick, spec.window.duration) * _sloth_budget(spec)
    return math.ceil(min(1.0, 3 * quick) * _TOTAL_PER_MIN)


def _alert_tests(spec: SloSpec) -> list[dict[str, Any]]:
    windows = alert_windows(spec)
    if windows is None or isinstance(spec.sli, PrometheusSli) or not spec.alerting.page.enabled:
        return []
    quick = windows.burn_factor(windows.page_quick, spec.window.duration) * _sloth_budget(spec)
    bad_ratio = _bad_per_minute(spec, windows) / _TOTAL_PER_MIN
    if bad_ratio <= quick * (1 + _MARGIN):
        return []  # objective so low that even 100 % errors cannot clearly page
    group = _alert_group(spec)
    rules = {r["labels"][SEVERITY_LABEL]: r for r in (group["rules"] if group else [])}
    series = _base_labels(spec)
    states = {m: {sev: _severity_state(spec, windows, sev, bad_ratio, m) for sev in rules}
              for m in range(_HEALTHY_MIN, _HEALTHY_MIN + _OUTAGE_MIN + 1)}
    clear = [m for m, s in states.items() if None not in s.values()]
    fire = next((m for m in clear if states[m]["page"]), None)
    if fire is None:
        return []
    quiet = [m for m in clear if m < fire and not states[m]["page"]]
    tests = []
    for minute in sorted({_HEALTHY_MIN, *quiet[-1:], fire}):
        expected = []
        for sev, rule in rules.items():
            if states[minute][sev]:
                alert = _expected_alert(rule, series)
                if alert is None:
                    return []
                expected.append(alert)
        tests.append({"eval_time": prom_duration(timedelta(minutes=minute)),
                      "alertname": alert_name(spec), "exp_alerts": expected})
    return tests


def promtool_tests(specs: Iterable[SloSpec], rules_file: str) -> dict[str, Any]:
    """A ``promtool test rules`` file for the rules of ``specs`` written to ``rules_file``.

    It feeds synthetic counters for the first journey SLO with a page alert: healthy for two
    hours, then about three times the page-quick burn threshold in errors, and expects no page
    before the long window catches up and a page (and any ticket) once both windows burn.
    Recording values (objective, error budget, period) are checked for every SLO.
    """
    specs = list(specs)
    end = _HEALTHY_MIN + _OUTAGE_MIN
    expr_tests = []
    for spec in specs:
        labels = _sorted(_base_labels(spec))
        sel = _selector(_ids(spec))
        for record, value in (("slo:objective:ratio", spec.objective / 100),
                              ("slo:error_budget:ratio", 1 - spec.objective / 100),
                              ("slo:time_period:days", spec.window.duration / timedelta(days=1))):
            expr_tests.append({"expr": f"{record}{sel}", "eval_time": "1m", "exp_samples": [
                {"labels": f"{record}{_selector(labels, spaced=False)}", "value": value}]})
    test: dict[str, Any] = {"interval": "1m", "input_series": []}
    target = next((s for s in specs if _alert_tests(s)), None)
    windows = alert_windows(target) if target is not None else None
    if target is not None and windows is not None:
        counter = {"slo": target.id, **({"journey": target.journey} if target.journey else {})}
        bad = _bad_per_minute(target, windows)
        test["input_series"] = [
            {"series": EVENTS_METRIC + _selector(counter, spaced=False),
             "values": f"0+{_TOTAL_PER_MIN}x{end}"},
            {"series": BAD_EVENTS_METRIC + _selector(counter, spaced=False),
             "values": f"0+0x{_HEALTHY_MIN} {bad}+{bad}x{end - _HEALTHY_MIN - 1}"},
            # The first event at time 0: every window is observed whole by the outage.
            {"series": FIRST_EVENT_METRIC + _selector(counter, spaced=False),
             "values": f"0x{end}"},
        ]
        test["alert_rule_test"] = _alert_tests(target)
    test["promql_expr_test"] = expr_tests
    return {"rule_files": [rules_file], "evaluation_interval": "1m", "tests": [test]}


def render_tests(specs: Iterable[SloSpec], rules_file: str) -> str:
    """The ``promtool test rules`` file as YAML text."""
    header = "# Code generated by aisre: promtool test rules for the exported SLO rules.\n\n"
    return header + dump_yaml(promtool_tests(specs, rules_file))


def promtool_test_path(out: Path) -> Path:
    """Where the test file for a rule file goes: ``rules.yaml`` → ``rules.test.yaml``."""
    if out.suffix in (".yaml", ".yml"):
        return out.with_name(f"{out.stem}.test{out.suffix}")
    return out.with_name(f"{out.name}.test.yaml")


def write_rules(specs: Iterable[SloSpec], out: Path, *, with_tests: bool = False,
                version: str = __version__) -> list[Path]:
    """Write the rule file (and, if asked, its promtool test file next to it); returns the paths."""
    specs = list(specs)
    out.write_text(render_rules(specs, version=version), encoding="utf-8")
    written = [out]
    if with_tests:
        path = promtool_test_path(out)
        path.write_text(render_tests(specs, out.name), encoding="utf-8")
        written.append(path)
    return written
