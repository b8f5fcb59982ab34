"""aisre's own SLO format (DESIGN §4): a ``slos:`` list of journey SLOs.

```yaml
version: aisre/v1            # optional
windows: ./windows-7d.yaml   # optional: burn-rate policy for every SLO in the file
slos:
  - name: ask-success
    journey: ask
    objective: 99.5          # percent, > 0 and < 100
    window: 28d              # rolling; or {calendar: month, timezone: Europe/Paris}
    budgeting: occurrences   # or {method: timeslices, slice: 1m, slice_objective: 95}
    sli: {kind: outcome, latency_ms: 4000}
    tier: 0
    owner: search-team
    runbook: https://runbooks.example/ask
    alerting:
      name: AskSuccessBurn
      labels: {team: search}
      page: {labels: {severity: critical}}
      ticket: {enabled: false}
      windows: ./windows-28d.yaml   # per-SLO override (Sloth AlertWindows format)
      min_events: 10         # a pair fires only with this many events in its long window
      min_bad_events: 3      # ...and this many bad ones (docs/alerting.md)
  - name: ask-cost
    journey: ask
    objective: 99
    sli: {kind: cost, max_usd: 0.02}     # cost, score and step SLIs default to diagnostic
  # Metric SLIs over OTLP metrics (docs/metrics.md); service instead of journey for platform SLOs
  - name: inference-errors
    service: vllm
    objective: 99.9
    sli: {kind: ratio, bad: 'http.server.requests{status=~"5.."}', total: http.server.requests}
  - name: gpu-headroom
    service: gpu-pool
    objective: 95
    sli: {kind: threshold, metric: 'gpu.utilization{pool="a100"}', max: 0.9, aggregate: avg}
  - name: model-latency
    journey: ask
    objective: 99
    sli: {kind: histogram, metric: 'gen_ai.client.operation.duration{gen_ai.request.model="m"}', le: 2}
  # ML-platform SLIs (docs/metrics.md): data freshness, pipeline success, batch deadlines
  - name: features-fresh
    service: feast
    objective: 99
    sli: {kind: freshness, metric: 'feature_view.last_update_timestamp{view="user"}', max_age: 2h}
  - name: orders-fresh                # from dataset-update spans (POST /api/events)
    service: feast
    objective: 99
    sli: {kind: freshness, dataset: customer_orders, max_age: 30m}
  - name: nightly-succeeds
    service: airflow
    objective: 95
    sli: {kind: pipeline, pipeline: nightly-features}
  - name: nightly-on-time
    service: airflow
    objective: 90
    sli: {kind: deadline, pipeline: nightly-features, at: 6h, every: 1d}   # daily 06:00 UTC
  # Drift and data quality from posted platform scores (an Evidently report, docs/metrics.md):
  # each score posted for the subject is one event, good within [min, max]
  - name: churn-drift
    service: ml-models
    objective: 95
    sli: {kind: score, subject: 'model:churn-v3', score: drift.share_of_drifted_columns, max: 0.3}
  # Prometheus-sourced SLIs, read with prometheus_url set (docs/metrics.md)
  - name: api-errors
    service: api
    objective: 99.9
    sli: {kind: prometheus, error_query: 'sum(increase(http_requests_total{code=~"5.."}[1m]))',
          total_query: 'sum(increase(http_requests_total[1m]))'}
  - name: gpu-busy
    service: gpu-pool
    objective: 95
    sli: {kind: prometheus, threshold_query: 'avg_over_time(DCGM_FI_DEV_GPU_UTIL[1m])', op: lte, value: 90}
  - name: api-latency
    service: api
    objective: 99
    sli: {kind: prometheus, histogram: 'http_request_duration_seconds{job="api"}', le: 2}
  # A journey SLO may name the platform SLOs (by id: <service>-<name>) it depends on; the
  # status then says which of them burn when the journey burns. Unknown ids and cycles are errors.
  - name: triage-success
    journey: triage-agent
    objective: 99
    sli: {kind: outcome}
    depends_on: [gpu-pool-gpu-headroom, vllm-inference-errors]
```
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from aisre.core.scores import subject_problem
from aisre.core.series import parse_selector
from aisre.core.slo import (
    BUDGETING_METHODS,
    CALENDAR_UNITS,
    DURATION_HELP,
    GAUGE_AGGREGATES,
    JOB_SLI_KINDS,
    METRIC_SLI_KINDS,
    SLI_KINDS,
    THRESHOLD_OPS,
    USER_OUTCOME_KINDS,
    AlertGuard,
    Alerting,
    AlertSpec,
    Budgeting,
    CostSli,
    DeadlineSli,
    FreshnessSli,
    HistogramSli,
    LatencySli,
    OutcomeSli,
    PipelineSli,
    PrometheusSli,
    RatioSli,
    ScoreSli,
    Sli,
    SloSpec,
    SloWindow,
    SpecError,
    SpecSource,
    StepSli,
    ThresholdSli,
    parse_duration,
)
from aisre.evaluate._yaml import View
from aisre.evaluate.specs.validation import objective_problem

VERSION = "aisre/v1"
TOP_KEYS = ("version", "windows", "slos")
SLO_KEYS = (
    "name", "journey", "service", "objective", "window", "budgeting", "sli", "tier", "owner",
    "runbook", "description", "labels", "diagnostic", "alerting", "depends_on",
)
SLI_KEYS: dict[str, tuple[str, ...]] = {
    "outcome": ("kind", "latency_ms"),
    "latency": ("kind", "latency_ms"),
    "cost": ("kind", "max_usd"),
    "score": ("kind", "score", "min", "max", "subject"),
    "step": ("kind", "operation", "latency_ms"),
    "prometheus": ("kind", "error_query", "good_query", "total_query", "error_ratio_query",
                   "threshold_query", "op", "value", "histogram", "le"),
    "ratio": ("kind", "good", "bad", "total"),
    "threshold": ("kind", "metric", "min", "max", "aggregate"),
    "histogram": ("kind", "metric", "le"),
    "freshness": ("kind", "metric", "dataset", "max_age"),
    "pipeline": ("kind", "pipeline"),
    "deadline": ("kind", "pipeline", "at", "every"),
}
ALERTING_KEYS = ("name", "labels", "annotations", "page", "ticket", "windows", "min_events", "min_bad_events")
SEVERITY_KEYS = ("enabled", "labels", "annotations")
WINDOW_HELP = f"a rolling duration ({DURATION_HELP}) or {{calendar: week|month|quarter|year, timezone: UTC}}"


def is_native(doc: dict[Any, Any]) -> bool:
    """Whether a YAML document is in aisre's format."""
    return "slos" in doc and doc.get("version") in (None, VERSION) and "service" not in doc


def load_native(doc: View, default_window: timedelta) -> list[SloSpec]:
    """Map one native document to SLOs; errors go to ``doc.errors``."""
    doc.check_keys(TOP_KEYS)
    version = doc.data.get("version")
    if version is not None and version != VERSION:
        doc.error("version", f"must be {VERSION} (got {version!r})")
    windows_file = doc.text("windows")
    out: list[SloSpec] = []
    for item, path, line in doc.items("slos", required=True):
        slo = doc.as_view(item, path, line, "an SLO mapping")
        if slo is not None:
            spec = _slo(slo, default_window, windows_file)
            if spec is not None:
                out.append(spec)
    return out


def _slo(v: View, default_window: timedelta, windows_file: str | None) -> SloSpec | None:
    start = len(v.errors)
    v.check_keys(SLO_KEYS)
    fields: dict[str, tuple[str, int]] = {k: v.where(k) for k in v.data}
    name = v.text("name", required=True)
    objective = v.number("objective", required=True)
    journey = v.text("journey")
    service = v.text("service")
    sli, sli_fields = _sli(v)
    fields.update(sli_fields)
    platform = sli is not None and (sli.kind == "prometheus" or sli.kind in METRIC_SLI_KINDS or sli.kind in JOB_SLI_KINDS)
    # A score SLI over a subject (a model's drift, a dataset's quality) is a platform SLO too.
    subject = isinstance(sli, ScoreSli) and sli.subject is not None
    if subject and journey is not None:
        v.error("journey", "a score SLI over a subject (sli.subject) is a platform SLO: give service, not journey")
    elif sli is not None and journey is None and not ((platform or subject) and service):
        kind = "score SLI over a subject" if subject else f"{sli.kind} SLI"
        v.error("journey", "is required" + (f" (or service, for a {kind})" if platform or subject else ""))
    window = _window(v, default_window)
    budgeting = _budgeting(v, fields)
    alerting = _alerting(v, windows_file, fields)
    tier = v.integer("tier")
    depends_on = _depends_on(v, fields)
    diagnostic = v.boolean("diagnostic", sli is not None and sli.kind not in USER_OUTCOME_KINDS and not subject)
    if len(v.errors) > start or name is None or objective is None or sli is None or window is None:
        # The SLO is not built, so validate() never sees it: report its range error here, or
        # an objective of 199 would go unnoticed next to a missing sli.
        problem = objective_problem(objective) if objective is not None else None
        if problem:
            v.error("objective", problem)
        return None
    return SloSpec(
        name=name, objective=objective, sli=sli, window=window, journey=journey, service=service,
        budgeting=budgeting, tier=tier, owner=v.text("owner"), runbook=v.text("runbook"),
        description=v.text("description") or "", labels=v.labels("labels"),
        diagnostic=diagnostic, alerting=alerting, format="aisre",
        source=SpecSource(v.file, v.line, v.path, fields), depends_on=depends_on,
    )


def _depends_on(v: View, fields: dict[str, tuple[str, int]]) -> tuple[str, ...]:
    """The SLO ids listed under ``depends_on``; each item's place is kept for validation."""
    out: list[str] = []
    for i, (item, path, line) in enumerate(v.items("depends_on")):
        if not isinstance(item, str) or not item.strip():
            v.errors.append(SpecError(v.file, line, path, f"must be an SLO id (got {item!r})"))
            continue
        fields[f"depends_on[{i}]"] = (path, line)
        out.append(item.strip())
    return tuple(out)


def _sli(v: View) -> tuple[Sli | None, dict[str, tuple[str, int]]]:
    raw = v.data.get("sli")
    if isinstance(raw, str):  # shorthand: `sli: outcome`
        raw_kind, s = raw, None
    else:
        s = v.mapping("sli", required=True)
        if s is None:
            return None, {}
        raw_kind = s.text("kind", required=True) or ""
    where = s or v
    key = "kind" if s else "sli"
    if raw_kind not in SLI_KINDS:
        if raw_kind:
            where.error(key, f"unknown SLI kind {raw_kind!r}; allowed: {', '.join(SLI_KINDS)}")
        return None, {}
    if s is None:
        if raw_kind != "outcome":
            v.error("sli", f"the {raw_kind} SLI needs parameters, e.g. {{kind: {raw_kind}, ...}}")
            return None, {}
        return OutcomeSli(), {}
    s.check_keys(SLI_KEYS[raw_kind])
    fields = {f"sli.{k}": s.where(k) for k in s.data}
    start = len(s.errors)
    sli: Sli | None = None
    if raw_kind == "outcome":
        sli = OutcomeSli(latency_ms=s.number("latency_ms"))
    elif raw_kind == "latency":
        ms = s.number("latency_ms", required=True)
        sli = LatencySli(ms) if ms is not None else None
    elif raw_kind == "cost":
        usd = s.number("max_usd", required=True)
        sli = CostSli(usd) if usd is not None else None
    elif raw_kind == "score":
        score = s.text("score", required=True)
        sli = ScoreSli(score, s.number("min"), s.number("max"), _subject(s)) if score else None
    elif raw_kind == "step":
        op = s.text("operation", required=True)
        sli = StepSli(op, s.number("latency_ms")) if op else None
    elif raw_kind == "ratio":
        sli = _ratio(s)
    elif raw_kind == "threshold":
        sli = _threshold(s)
    elif raw_kind == "histogram":
        metric = _selector(s, "metric", required=True)
        le = s.number("le", required=True)
        if le is not None and not le > 0:
            s.error("le", f"must be a bucket bound > 0 in the metric's unit (got {le:g})")
        sli = HistogramSli(metric, le) if metric is not None and le is not None else None
    elif raw_kind == "freshness":
        sli = _freshness(s)
    elif raw_kind == "pipeline":
        name = s.text("pipeline", required=True)
        sli = PipelineSli(name) if name else None
    elif raw_kind == "deadline":
        sli = _deadline(s)
    else:
        sli = _prometheus(s)
    return (sli if len(s.errors) == start else None), fields


def _subject(s: View) -> str | None:
    """A score SLI's subject (``model:churn-v3``), as platform scores name it."""
    text = s.text("subject")
    if text is None:
        return None
    problem = subject_problem(text)
    if problem:
        s.error("subject", problem)
        return None
    return text


def _freshness(s: View) -> FreshnessSli | None:
    # Exactly one source: a timestamp gauge (metric) or dataset-update spans (dataset).
    if s.has("metric") == s.has("dataset"):
        s.error("dataset" if s.has("dataset") else "metric",
                "give exactly one of metric (a timestamp gauge) or dataset (update spans, e.g. from POST /api/events)")
        _span(s, "max_age", required=True)
        return None
    max_age = _span(s, "max_age", required=True)
    if s.has("dataset"):
        dataset = (s.text("dataset") or "").strip()
        if not dataset:
            s.error("dataset", "must be a dataset or feature view name")
            return None
        return FreshnessSli(None, max_age, dataset=dataset) if max_age is not None else None
    metric = _selector(s, "metric", required=True)
    return FreshnessSli(metric, max_age) if metric is not None and max_age is not None else None


def _selector(s: View, key: str, required: bool = False) -> str | None:
    text = s.text(key, required=required)
    if text is None:
        return None
    try:
        parse_selector(text)
    except ValueError as exc:
        s.error(key, str(exc))
        return None
    return text


def _span(s: View, key: str, required: bool = False) -> timedelta | None:
    raw = s.data.get(key)
    if raw is None:
        if required:
            s.error(key, f"is required ({DURATION_HELP})")
        return None
    text = str(raw).strip()
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if clock and key == "at":  # a time of day, 06:00
        return timedelta(hours=int(clock.group(1)), minutes=int(clock.group(2)))
    if key == "at" and re.fullmatch(r"0+[smhd]?", text):  # midnight
        return timedelta(0)
    try:
        value = parse_duration(text)
    except ValueError as exc:
        s.error(key, str(exc))
        return None
    return value


def _deadline(s: View) -> DeadlineSli | None:
    name = s.text("pipeline", required=True)
    at = _span(s, "at", required=True)
    every = _span(s, "every") or timedelta(days=1)
    if at is not None and not timedelta(0) <= at < every:
        s.error("at", f"must be within the period (0 to {every}), e.g. 6h for daily 06:00 UTC")
        return None
    return DeadlineSli(name, at, every) if name and at is not None else None


def _ratio(s: View) -> RatioSli | None:
    if s.has("good") == s.has("bad"):
        s.error("good", "give exactly one of good or bad (a counter selector), with total")
        return None
    good, bad, total = _selector(s, "good"), _selector(s, "bad"), _selector(s, "total", required=True)
    if good is None and bad is None:
        s.error("good", "give exactly one of good or bad (a counter selector), with total")
        return None
    return RatioSli(total, good, bad) if total is not None and (good or bad) else None


def _threshold(s: View) -> ThresholdSli | None:
    metric = _selector(s, "metric", required=True)
    lo, hi = s.number("min"), s.number("max")
    aggregate = s.text("aggregate") or "avg"
    if lo is None and hi is None:
        s.error("kind", "a threshold SLI needs min, max or both (the gauge's good range)")
        return None
    if lo is not None and hi is not None and lo > hi:
        s.error("min", f"must be <= max (got {lo:g} > {hi:g})")
        return None
    if aggregate not in GAUGE_AGGREGATES:
        s.error("aggregate", f"must be one of {', '.join(GAUGE_AGGREGATES)} (got {aggregate!r})")
        return None
    return ThresholdSli(metric, lo, hi, aggregate) if metric is not None else None


_PROM_SHAPES = ("error_query + total_query, good_query + total_query, threshold_query + op + value, "
                "histogram + le, or error_ratio_query")


def _prometheus(s: View) -> PrometheusSli | None:
    err_q, total_q, ratio_q = s.text("error_query"), s.text("total_query"), s.text("error_ratio_query")
    good_q = s.text("good_query")
    threshold_q, histogram = s.text("threshold_query"), s.text("histogram")
    if threshold_q is not None or histogram is not None:
        key = "threshold_query" if threshold_q is not None else "histogram"
        others = [k for k in ("error_query", "good_query", "total_query", "error_ratio_query", "threshold_query",
                              "histogram") if k != key and s.has(k)]
        if others:
            s.error(key, f"give one shape only (got {key} with {', '.join(others)}): {_PROM_SHAPES}")
            return None
        if threshold_q is not None:
            return _prometheus_threshold(s, threshold_q)
        return _prometheus_histogram(s, histogram or "")
    for key in ("op", "value", "le"):
        if s.has(key):
            s.error(key, "goes with threshold_query (op, value) or histogram (le)")
            return None
    if good_q is not None:
        if err_q is not None or ratio_q is not None or total_q is None:
            s.error("good_query", "give good_query with total_query (and no error_query or error_ratio_query)")
            return None
        return PrometheusSli(good_query=good_q, total_query=total_q)
    if ratio_q is not None and (err_q or total_q):
        s.error("error_ratio_query", "use either error_ratio_query or error_query + total_query")
        return None
    if ratio_q is not None:
        return PrometheusSli(error_ratio_query=ratio_q)
    if err_q is None or total_q is None:
        s.error("error_query" if err_q is None else "total_query",
                "is required: give error_query + total_query, or error_ratio_query")
        return None
    return PrometheusSli(error_query=err_q, total_query=total_q)


def _prometheus_threshold(s: View, query: str) -> PrometheusSli | None:
    op, value = s.text("op", required=True), s.number("value", required=True)
    if op is not None and op not in THRESHOLD_OPS:
        s.error("op", f"must be one of {', '.join(THRESHOLD_OPS)} (good when the value <op> value; got {op!r})")
        return None
    if s.has("le"):
        s.error("le", "goes with histogram, not threshold_query")
        return None
    return PrometheusSli(threshold_query=query, op=op, value=value) if op is not None and value is not None else None


def _prometheus_histogram(s: View, selector: str) -> PrometheusSli | None:
    for key in ("op", "value"):
        if s.has(key):
            s.error(key, "goes with threshold_query, not histogram")
            return None
    if _selector(s, "histogram") is None:
        return None
    name = parse_selector(selector).metric
    if name.endswith(("_bucket", "_count", "_sum")):
        s.error("histogram", f"name the histogram without its suffix (got {name!r}): aisre reads "
                f"{name.rsplit('_', 1)[0]}_bucket and _count")
        return None
    le = s.number("le", required=True)
    if le is not None and not le > 0:
        s.error("le", f"must be a bucket bound > 0 in the metric's unit (got {le:g})")
        return None
    return PrometheusSli(histogram=selector, le=le) if le is not None else None


def _window(v: View, default: timedelta) -> SloWindow | None:
    raw = v.data.get("window")
    if raw is None:
        return SloWindow.rolling_window(default)
    if isinstance(raw, str):
        words = raw.split()
        if len(words) == 2 and words[0] == "calendar" and words[1] in CALENDAR_UNITS:
            return SloWindow.calendar_window(words[1])  # type: ignore[arg-type]
        try:
            return SloWindow.rolling_window(parse_duration(raw))
        except ValueError as exc:
            v.error("window", f"{exc}; a window is {WINDOW_HELP}")
            return None
    w = v.mapping("window")
    if w is None:
        return None
    w.check_keys(("rolling", "calendar", "timezone"))
    if w.has("rolling") == w.has("calendar"):
        v.error("window", f"give exactly one of rolling or calendar; a window is {WINDOW_HELP}")
        return None
    if w.has("rolling"):
        d = w.duration("rolling")
        return SloWindow.rolling_window(d) if d else None
    unit = w.text("calendar")
    if unit not in CALENDAR_UNITS:
        w.error("calendar", f"must be one of {', '.join(CALENDAR_UNITS)} (got {unit!r})")
        return None
    return SloWindow.calendar_window(unit, w.text("timezone") or "UTC")  # type: ignore[arg-type]


def _budgeting(v: View, fields: dict[str, tuple[str, int]]) -> Budgeting:
    raw = v.data.get("budgeting")
    if raw is None:
        return Budgeting()
    if isinstance(raw, str):
        if raw not in BUDGETING_METHODS:
            v.error("budgeting", f"must be one of {', '.join(BUDGETING_METHODS)} (got {raw!r})")
            return Budgeting()
        return Budgeting(method=raw)  # type: ignore[arg-type]
    b = v.mapping("budgeting")
    if b is None:
        return Budgeting()
    b.check_keys(("method", "slice", "slice_objective"))
    fields.update({f"budgeting.{k}": b.where(k) for k in b.data})
    method = b.text("method", required=True) or "occurrences"
    if method not in BUDGETING_METHODS:
        b.error("method", f"must be one of {', '.join(BUDGETING_METHODS)} (got {method!r})")
        return Budgeting()
    return Budgeting(method, b.duration("slice"), b.number("slice_objective"))  # type: ignore[arg-type]


def _severity(a: View, key: str) -> AlertSpec:
    raw = a.data.get(key)
    if isinstance(raw, bool):  # shorthand: `ticket: false`
        return AlertSpec(enabled=raw)
    s = a.mapping(key)
    if s is None:
        return AlertSpec()
    s.check_keys(SEVERITY_KEYS)
    return AlertSpec(s.boolean("enabled", True), s.labels("labels"), s.labels("annotations"))


def _alerting(v: View, windows_file: str | None, fields: dict[str, tuple[str, int]]) -> Alerting:
    a = v.mapping("alerting")
    if a is None:
        return Alerting(windows_file=windows_file)
    a.check_keys(ALERTING_KEYS)
    fields.update({f"alerting.{k}": a.where(k) for k in a.data})
    return Alerting(
        name=a.text("name"), labels=a.labels("labels"), annotations=a.labels("annotations"),
        page=_severity(a, "page"), ticket=_severity(a, "ticket"),
        windows_file=a.text("windows") or windows_file,
        guard=AlertGuard(_count(a, "min_events"), _count(a, "min_bad_events")),
    )


def _count(a: View, key: str) -> int | None:
    value = a.integer(key)
    if value is not None and value < 0:
        a.error(key, f"must be 0 or more (got {value})")
        return None
    return value
