"""OpenSLO: ``openslo/v1`` (SLO, SLI, AlertPolicy, AlertCondition, AlertNotificationTarget;
DataSource and Service accepted and skipped) and ``openslo/v1alpha`` SLOs as Sloth reads them.

```yaml
apiVersion: openslo/v1
kind: SLO
metadata: {name: web-availability}
spec:
  service: web
  indicatorRef: web-successful-requests    # or an inline `indicator: {metadata, spec}`
  timeWindow: [{duration: 28d, isRolling: true}]
  budgetingMethod: Occurrences             # Timeslices | RatioTimeslices
  objectives: [{target: 0.995}]
  alertPolicies: [{alertPolicyRef: page-fast-burn}]
```
References (``indicatorRef``, ``alertPolicyRef``, ``conditionRef``, ``targetRef``) resolve
across every document and file loaded together, as the go-sdk's reference inliner does, with
its error messages. Each objective becomes one SLO (named ``<name>-<index>`` when there are
several). OpenSLO SLOs get no default page/ticket alerts; their alert policies are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aisre.core.errors import PermanentError
from aisre.core.slo import (
    Alerting,
    AlertPolicyRef,
    AlertSpec,
    Budgeting,
    BurnRateCondition,
    PrometheusSli,
    SloSpec,
    SloWindow,
    SpecError,
    SpecSource,
)
from aisre.evaluate._yaml import LineDict, LineList, View

V1 = "openslo/v1"
V1ALPHA = "openslo/v1alpha"
V1_KINDS = ("SLO", "SLI", "AlertPolicy", "AlertCondition", "AlertNotificationTarget",
            "DataSource", "Service")
BUDGETING = {"Occurrences": "occurrences", "Timeslices": "timeslices",
             "RatioTimeslices": "ratio_timeslices"}
OPS = ("lte", "gte", "lt", "gt")
_CALENDAR = {timedelta(weeks=1): "week", timedelta(days=30): "month",
             timedelta(days=90): "quarter", timedelta(days=365): "year"}
_NO_ALERTS = Alerting(page=AlertSpec(enabled=False), ticket=AlertSpec(enabled=False))


def is_openslo(doc: dict[Any, Any]) -> bool:
    """Whether a document is an OpenSLO object."""
    version = doc.get("apiVersion")
    return isinstance(version, str) and version.startswith("openslo/")


class OpenSloRefError(PermanentError):
    """A reference that does not resolve, worded as the go-sdk's inliner words it."""


# ---------------------------------------------------------------------------- reference inlining


class _Missing(Exception):
    def __init__(self, kind: str, name: str, path: str, line: int) -> None:
        super().__init__(name)
        self.kind, self.name, self.path, self.line = kind, name, path, line


Registry = dict[tuple[str, str], dict[str, Any]]


def _copy(src: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = LineDict(src) if isinstance(src, LineDict) else dict(src)
    if isinstance(src, LineDict) and isinstance(out, LineDict):
        out.line, out.key_lines = src.line, dict(src.key_lines)
    out.update(changes)
    return out


def _embed(kind: str | None, obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = LineDict()
    if isinstance(obj, LineDict) and isinstance(out, LineDict):
        out.line = obj.line
    if kind:
        out["kind"] = kind
    out["metadata"] = obj.get("metadata")
    out["spec"] = obj.get("spec")
    return out


def _like(items: list[Any]) -> list[Any]:
    """An empty list that keeps the source list's line numbers (items are replaced one for one)."""
    out = LineList()
    if isinstance(items, LineList):
        out.line, out.item_lines = items.line, list(items.item_lines)
    return out


def _ref_line(item: Any, key: str) -> int:
    return item.key_lines.get(key, item.line) if isinstance(item, LineDict) else 0


def _resolve_list(
    spec: dict[str, Any], key: str, ref_key: str, kind: str, reg: Registry,
    prefix: str, used: set[tuple[str, str]],
) -> list[Any] | None:
    items = spec.get(key)
    if not isinstance(items, list):
        return None
    out = _like(items)
    for i, item in enumerate(items):
        if isinstance(item, dict) and ref_key in item:
            name = str(item[ref_key])
            target = reg.get((kind, name))
            if target is None:
                raise _Missing(kind, name, f"{prefix}spec.{key}[{i}].{ref_key}", _ref_line(item, ref_key))
            used.add((kind, name))
            out.append(_embed(kind, target))
        else:
            out.append(item)
    return out


def _resolve_policy(obj: dict[str, Any], reg: Registry, prefix: str,
                    used: set[tuple[str, str]]) -> dict[str, Any]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return obj
    changes: dict[str, Any] = {}
    for key, ref_key, kind in (("conditions", "conditionRef", "AlertCondition"),
                               ("notificationTargets", "targetRef", "AlertNotificationTarget")):
        resolved = _resolve_list(spec, key, ref_key, kind, reg, prefix, used)
        if resolved is not None:
            changes[key] = resolved
    return _copy(obj, spec=_copy(spec, **changes))


def _resolve_slo(obj: dict[str, Any], reg: Registry, used: set[tuple[str, str]]) -> dict[str, Any]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return obj
    spec = _copy(spec)
    if "indicatorRef" in spec:
        name = str(spec["indicatorRef"])
        sli = reg.get(("SLI", name))
        if sli is None:
            raise _Missing("SLI", name, "spec.indicatorRef", _ref_line(spec, "indicatorRef"))
        used.add(("SLI", name))
        del spec["indicatorRef"]
        spec["indicator"] = _embed(None, sli)
    policies = spec.get("alertPolicies")
    if isinstance(policies, list):
        out = _like(policies)
        for i, item in enumerate(policies):
            if isinstance(item, dict) and "alertPolicyRef" in item:
                name = str(item["alertPolicyRef"])
                target = reg.get(("AlertPolicy", name))
                if target is None:
                    raise _Missing("AlertPolicy", name, f"spec.alertPolicies[{i}].alertPolicyRef",
                                   _ref_line(item, "alertPolicyRef"))
                used.add(("AlertPolicy", name))
                item = _embed("AlertPolicy", target)
            out.append(_resolve_policy(item, reg, f"spec.alertPolicies[{i}].", used)
                       if isinstance(item, dict) else item)
        spec["alertPolicies"] = out
    return _copy(obj, spec=spec)


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name")) if isinstance(meta, dict) else ""


def _registry(objects: list[dict[str, Any]]) -> Registry:
    return {(str(o.get("kind")), _name(o)): o for o in objects
            if o.get("apiVersion") == V1 and o.get("kind") in V1_KINDS}


def _missing_message(obj: dict[str, Any], exc: _Missing) -> str:
    return (f"failed to inline v1.{obj.get('kind')} '{_name(obj)}': v1.{exc.kind} '{exc.name}' "
            f"referenced at '{exc.path}' does not exist")


def inline(objects: list[dict[str, Any]], remove_referenced: bool = False) -> list[dict[str, Any]]:
    """Replace references in SLOs and AlertPolicies by the objects, like go-sdk's ReferenceInliner.

    With ``remove_referenced`` the objects that were inlined are dropped from the result.
    Raises OpenSloRefError when a reference does not resolve.
    """
    reg = _registry(objects)
    used: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for obj in objects:
        try:
            if obj.get("apiVersion") == V1 and obj.get("kind") == "SLO":
                obj = _resolve_slo(obj, reg, used)
            elif obj.get("apiVersion") == V1 and obj.get("kind") == "AlertPolicy":
                obj = _resolve_policy(obj, reg, "", used)
        except _Missing as exc:
            raise OpenSloRefError(_missing_message(obj, exc)) from None
        out.append(obj)
    if remove_referenced:
        out = [o for o in out if (str(o.get("kind")), _name(o)) not in used]
    return out


# ---------------------------------------------------------------------------- loading


@dataclass
class OpenSloObject:
    """One OpenSLO object as read, with where it came from."""

    data: LineDict
    file: str
    path: str


def collect(doc: Any, file: str, errors: list[SpecError]) -> list[OpenSloObject]:
    """The OpenSLO objects of one YAML document (a single object or a list of them)."""
    if isinstance(doc, LineDict):
        return [OpenSloObject(doc, file, "")]
    out = []
    for i, item in enumerate(doc):
        line = doc.item_lines[i]
        if isinstance(item, LineDict) and is_openslo(item):
            out.append(OpenSloObject(item, file, f"[{i}]"))
        else:
            errors.append(SpecError(file, line, f"[{i}]", "expected an OpenSLO object (apiVersion: openslo/v1)"))
    return out


def load_openslo(
    objects: list[OpenSloObject], default_window: timedelta, errors: list[SpecError]
) -> list[SloSpec]:
    """Map OpenSLO objects (from any number of files) to SLOs, resolving references among them."""
    reg = _registry([o.data for o in objects])
    origin = {(str(o.data.get("kind")), _name(o.data)): o for o in objects}
    out: list[SloSpec] = []
    for o in objects:
        v = View(o.data, o.path, o.file, errors)
        version, kind = o.data.get("apiVersion"), o.data.get("kind")
        if version == V1ALPHA:
            if kind == "SLO":
                out.extend(_v1alpha_slo(v, default_window))
            continue  # Sloth reads only v1alpha SLOs; other v1alpha kinds are skipped
        if version != V1:
            v.error("apiVersion", f"unsupported OpenSLO version {version!r}; supported: {V1}, {V1ALPHA}")
            continue
        if kind not in V1_KINDS:
            v.error("kind", f"unknown OpenSLO kind {kind!r}; allowed: {', '.join(V1_KINDS)}")
            continue
        if kind != "SLO":
            continue  # SLIs and policies are used through references; the rest does not apply
        try:
            resolved = _resolve_slo(o.data, reg, set())
        except _Missing as exc:
            path = f"{o.path}.{exc.path}" if o.path else exc.path
            errors.append(SpecError(o.file, exc.line or o.data.line, path, _missing_message(o.data, exc)))
            continue
        spec = resolved.get("spec")
        sli_origin = None
        if isinstance(spec, dict) and "indicatorRef" in o.data.get("spec", {}):
            sli_origin = origin.get(("SLI", str(o.data["spec"]["indicatorRef"])))
        assert isinstance(resolved, LineDict)
        out.extend(_v1_slo(View(resolved, o.path, o.file, errors), sli_origin, default_window))
    return out


def _labels(meta: View | None) -> dict[str, str]:
    if meta is None or not isinstance(meta.data.get("labels"), dict):
        return {}
    # OpenSLO label values may be lists of strings.
    return {str(k): ",".join(map(str, v)) if isinstance(v, list) else str(v)
            for k, v in meta.data["labels"].items()}


def _v1_slo(v: View, sli_origin: OpenSloObject | None, default_window: timedelta) -> list[SloSpec]:
    start = len(v.errors)
    meta = v.mapping("metadata", required=True)
    spec = v.mapping("spec", required=True)
    if meta is None or spec is None:
        return []
    name = meta.text("name", required=True)
    service = spec.text("service", required=True)
    sli_view = _indicator(spec, sli_origin)
    window = _v1_window(spec, default_window)
    method_raw = spec.text("budgetingMethod", required=True)
    method = BUDGETING.get(method_raw or "")
    if method_raw is not None and method is None:
        spec.error("budgetingMethod", f"must be one of {', '.join(BUDGETING)} (got {method_raw!r})")
    policies = _policies(spec)
    objectives = [(spec.as_view(item, p, line), p, line) for item, p, line in spec.items("objectives", required=True)]
    if not objectives and spec.has("objectives"):
        spec.error("objectives", "must have at least one objective")
    if len(v.errors) > start or name is None or service is None or window is None or method is None:
        return []
    out: list[SloSpec] = []
    for i, (obj, _, _) in enumerate(objectives):
        if obj is None:
            continue
        slo = _objective(obj, sli_view, method, len(v.errors))
        if slo is None:
            continue
        objective, sli, budgeting, fields = slo
        out.append(SloSpec(
            name=name if len(objectives) == 1 else f"{name}-{i}", service=service,
            objective=objective, sli=sli, window=window, budgeting=budgeting,
            description=spec.text("description") or meta.text("displayName") or "",
            labels=_labels(meta), alerting=Alerting(page=_NO_ALERTS.page, ticket=_NO_ALERTS.ticket,
                                                    policies=tuple(policies)),
            format="openslo", source=SpecSource(v.file, v.line, v.path, fields),
        ))
    return out


def _indicator(spec: View, sli_origin: OpenSloObject | None) -> View | None:
    ind = spec.mapping("indicator")
    if ind is None:
        if not spec.has("indicator"):
            spec.error("indicator", "is required (an inline indicator or an indicatorRef); "
                       "composite SLOs with an indicator per objective are not supported")
        return None
    if sli_origin is not None:  # errors in a referenced SLI point at the SLI's own file
        ind = View(ind.data, f"{sli_origin.path}" if sli_origin.path else "", sli_origin.file, spec.errors)
    return ind.mapping("spec", required=True)


def _v1_window(spec: View, default_window: timedelta) -> SloWindow | None:
    items = list(spec.items("timeWindow", required=True))
    if len(items) != 1:
        if items:
            spec.error("timeWindow", f"must have exactly one item (got {len(items)})")
        return None
    w = spec.as_view(*items[0])
    if w is None:
        return None
    duration = w.duration("duration", required=True)
    rolling = w.boolean("isRolling", True)
    if duration is None:
        return None
    if rolling:
        return SloWindow.rolling_window(duration)
    cal = w.mapping("calendar")
    if cal is None:
        w.error("calendar", "is required when isRolling is false (startTime and timeZone)")
        return None
    start = cal.text("startTime", required=True)
    tz = cal.text("timeZone", required=True)
    if start is None or tz is None:
        return None
    return SloWindow(duration=duration, rolling=False, calendar=_CALENDAR.get(duration),  # type: ignore[arg-type]
                     start=start, timezone=tz)


def _metric(m: View | None) -> tuple[str | None, str]:
    """The query text and source type of a ``{metricSource: {type, spec}}`` mapping."""
    if m is None:
        return None, ""
    src = m.mapping("metricSource", required=True)
    if src is None:
        return None, ""
    body = src.data.get("spec")
    if not isinstance(body, dict) or not body:
        src.error("spec", "is required (the data source's query fields)")
        return None, ""
    query = body.get("query")
    # Non-query sources (AppDynamics metricPath…) keep their fields as text.
    text = str(query) if query is not None else "; ".join(f"{k}={v}" for k, v in body.items())
    return text, str(src.data.get("type") or "")


def _sli(s: View, op: str | None, value: float | None) -> PrometheusSli | None:
    ratio, thr = s.mapping("ratioMetric"), s.mapping("thresholdMetric")
    if (ratio is None) == (thr is None):
        s.error("ratioMetric", "give exactly one of ratioMetric or thresholdMetric")
        return None
    if thr is not None:
        query, src = _metric(thr)
        return PrometheusSli(threshold_query=query, op=op, value=value, source_type=src) if query else None
    assert ratio is not None
    counter = ratio.data.get("counter") if isinstance(ratio.data.get("counter"), bool) else None
    if ratio.has("raw"):
        raw_type = ratio.text("rawType", required=True)
        if raw_type not in (None, "success", "failure"):
            ratio.error("rawType", f"must be success or failure (got {raw_type!r})")
            return None
        query, src = _metric(ratio.mapping("raw"))
        if query is None or raw_type is None:
            return None
        if raw_type == "success":
            return PrometheusSli(good_ratio_query=query, source_type=src, counter=counter)
        return PrometheusSli(error_ratio_query=query, source_type=src, counter=counter)
    if ratio.has("good") == ratio.has("bad"):
        ratio.error("good", "give exactly one of good or bad, with total (or rawType with raw)")
        return None
    total, src = _metric(ratio.mapping("total", required=True))
    if ratio.has("good"):
        good, _ = _metric(ratio.mapping("good"))
        if good is None or total is None:
            return None
        return PrometheusSli(good_query=good, total_query=total, source_type=src, counter=counter)
    bad, _ = _metric(ratio.mapping("bad"))
    if bad is None or total is None:
        return None
    return PrometheusSli(error_query=bad, total_query=total, source_type=src, counter=counter)


def _objective(
    o: View, sli_view: View | None, method: str, start: int
) -> tuple[float, PrometheusSli, Budgeting, dict[str, tuple[str, int]]] | None:
    fields: dict[str, tuple[str, int]] = {}
    if o.has("indicator") or o.has("indicatorRef"):
        o.error("indicator", "composite SLOs (an indicator per objective) are not supported")
        return None
    if o.has("target") == o.has("targetPercent"):
        o.error("target", "give exactly one of target (0..1) or targetPercent (0..100)")
        return None
    if o.has("target"):
        target = o.number("target")
        objective = target * 100 if target is not None else None
        fields["objective"] = o.where("target")
    else:
        objective = o.number("targetPercent")
        fields["objective"] = o.where("targetPercent")
    op = o.text("op")
    if op is not None and op not in OPS:
        o.error("op", f"must be one of {', '.join(OPS)} (got {op!r})")
    value = o.number("value")
    is_threshold = sli_view is not None and sli_view.has("thresholdMetric")
    if is_threshold and (op is None or value is None):
        o.error("op" if op is None else "value", "op and value are required for a thresholdMetric SLI")
    slice_target = o.number("timeSliceTarget")
    slice_window = o.duration("timeSliceWindow")
    fields["budgeting.slice"] = o.where("timeSliceWindow")
    fields["budgeting.slice_objective"] = o.where("timeSliceTarget")
    sli = _sli(sli_view, op, value) if sli_view is not None else None
    if len(o.errors) > start or objective is None or sli is None:
        return None
    budgeting = Budgeting(method, slice_window,  # type: ignore[arg-type]
                          slice_target * 100 if slice_target is not None else None)
    return objective, sli, budgeting, fields


def _policies(spec: View) -> list[AlertPolicyRef]:
    out: list[AlertPolicyRef] = []
    for item, path, line in spec.items("alertPolicies"):
        p = spec.as_view(item, path, line)
        if p is None:
            continue
        meta, body = p.mapping("metadata", required=True), p.mapping("spec", required=True)
        if meta is None or body is None:
            continue
        conditions: list[BurnRateCondition] = []
        for c_item, c_path, c_line in body.items("conditions", required=True):
            c = body.as_view(c_item, c_path, c_line)
            cond = _condition(c) if c is not None else None
            if cond is not None:
                conditions.append(cond)
        targets = [str(t["metadata"].get("name")) for t, _, _ in body.items("notificationTargets")
                   if isinstance(t, dict) and isinstance(t.get("metadata"), dict)]
        out.append(AlertPolicyRef(
            name=meta.text("name", required=True) or "", conditions=tuple(conditions),
            targets=tuple(targets), alert_when_breaching=body.boolean("alertWhenBreaching", False),
            alert_when_resolved=body.boolean("alertWhenResolved", False),
            alert_when_no_data=body.boolean("alertWhenNoData", False),
        ))
    return out


def _condition(c: View) -> BurnRateCondition | None:
    meta, body = c.mapping("metadata", required=True), c.mapping("spec", required=True)
    if meta is None or body is None:
        return None
    cond = body.mapping("condition", required=True)
    severity = body.text("severity", required=True)
    if cond is None:
        return None
    kind = cond.text("kind") or "burnrate"
    if kind != "burnrate":
        cond.error("kind", f"must be burnrate (got {kind!r})")
    op = cond.text("op", required=True)
    if op is not None and op not in OPS:
        cond.error("op", f"must be one of {', '.join(OPS)} (got {op!r})")
    threshold = cond.number("threshold", required=True)
    lookback = cond.duration("lookbackWindow", required=True)
    after = cond.text("alertAfter")
    alert_after = timedelta(0)
    if after is not None and after not in ("0", "0m", "0s"):
        alert_after = cond.duration("alertAfter") or timedelta(0)
    if op is None or threshold is None or lookback is None or severity is None or kind != "burnrate":
        return None
    return BurnRateCondition(meta.text("name") or "", severity, op, threshold, lookback, alert_after)


def _v1alpha_slo(v: View, default_window: timedelta) -> list[SloSpec]:
    """Sloth's reading: ratioMetrics good/total, at most one window in days, id per objective."""
    start = len(v.errors)
    meta, spec = v.mapping("metadata", required=True), v.mapping("spec", required=True)
    if meta is None or spec is None:
        return []
    name = meta.text("name", required=True)
    service = spec.text("service", required=True)
    period = default_window
    windows = list(spec.items("timeWindows"))
    if len(windows) > 1:
        spec.error("timeWindows", f"at most one time window is supported (got {len(windows)})")
    elif windows:
        w = spec.as_view(*windows[0])
        if w is not None:
            unit, count = w.text("unit"), w.integer("count")
            if unit != "Day":
                w.error("unit", f"only Day is supported (got {unit!r})")
            elif count is None or count <= 0:
                w.error("count", "must be a whole number of days > 0")
            else:
                period = timedelta(days=count)
    out: list[SloSpec] = []
    for i, (item, path, line) in enumerate(spec.items("objectives", required=True)):
        o = spec.as_view(item, path, line)
        if o is None:
            continue
        target = o.number("target", required=True)
        rm = o.mapping("ratioMetrics", required=True)
        good = rm.mapping("good", required=True) if rm else None
        total = rm.mapping("total", required=True) if rm else None
        gq = good.text("query", required=True) if good else None
        tq = total.text("query", required=True) if total else None
        if len(v.errors) > start or target is None or gq is None or tq is None or not name or not service:
            continue
        out.append(SloSpec(
            name=f"{name}-{i}", service=service, objective=target * 100,
            sli=PrometheusSli(good_query=gq, total_query=tq), window=SloWindow.rolling_window(period),
            description=spec.text("description") or "", alerting=_NO_ALERTS, format="openslo",
            source=SpecSource(v.file, v.line, v.path, {"objective": o.where("target")}),
        ))
    return out
