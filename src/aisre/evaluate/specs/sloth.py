"""Sloth specs: ``version: prometheus/v1`` files and ``PrometheusServiceLevel`` CRs.

```yaml
version: "prometheus/v1"
service: "myservice"
labels: {owner: myteam}
slos:
  - name: "requests-availability"
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
      # or raw: {error_ratio_query: ...}
    alerting:
      name: MyServiceHighErrorRate
      page_alert: {labels: {severity: critical}}
      ticket_alert: {disable: true}
```
Sloth's period is a command-line flag, not part of the spec: the caller's default window
applies (30d unless told otherwise). Both snake_case and camelCase keys are read, as Sloth's
own example files mix them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aisre.core.slo import Alerting, AlertSpec, PrometheusSli, SloSpec, SloWindow, SpecSource
from aisre.evaluate._yaml import View

VERSION = "prometheus/v1"
K8S_API_VERSION = "sloth.slok.dev/v1"
K8S_KIND = "PrometheusServiceLevel"


def is_sloth(doc: dict[Any, Any]) -> bool:
    """Whether a document is a Sloth spec (any ``prometheus/*`` version, or a Sloth CR)."""
    version = doc.get("version")
    return (isinstance(version, str) and version.startswith("prometheus/")) or (
        doc.get("apiVersion") == K8S_API_VERSION
    )


def load_sloth(doc: View, default_window: timedelta) -> list[SloSpec]:
    """Map one Sloth document to SLOs; errors go to ``doc.errors``."""
    if "apiVersion" in doc.data:
        kind = doc.data.get("kind")
        if kind == "AlertWindows":  # a windows file among specs: not an SLO, skip it
            return []
        if kind != K8S_KIND:
            doc.error("kind", f"must be {K8S_KIND} or AlertWindows for {K8S_API_VERSION} (got {kind!r})")
            return []
        spec = doc.mapping("spec", required=True)
        return _service(spec, default_window) if spec else []
    version = doc.data.get("version")
    if version != VERSION:
        doc.error("version", f"unsupported Sloth spec version {version!r}; supported: {VERSION}")
        return []
    return _service(doc, default_window)


def _service(doc: View, default_window: timedelta) -> list[SloSpec]:
    service = doc.text("service", required=True)
    labels = doc.labels("labels")
    out: list[SloSpec] = []
    for item, path, line in doc.items("slos", required=True):
        slo = doc.as_view(item, path, line, "an SLO mapping")
        if slo is not None and service is not None:
            spec = _slo(slo, service, labels, default_window)
            if spec is not None:
                out.append(spec)
    return out


def _slo(v: View, service: str, labels: dict[str, str], window: timedelta) -> SloSpec | None:
    start = len(v.errors)
    fields = {k: v.where(k) for k in v.data}
    name = v.text("name", required=True)
    objective = v.number("objective", required=True)
    sli = _sli(v, fields)
    alerting = _alerting(v, fields)
    if len(v.errors) > start or name is None or objective is None or sli is None:
        return None
    fields["service"] = (v.path.rsplit(".", 1)[0] + ".service" if "." in v.path else "service",
                         v.line)
    return SloSpec(
        name=name, service=service, objective=objective, sli=sli,
        window=SloWindow.rolling_window(window), description=v.text("description") or "",
        labels={**labels, **v.labels("labels")}, alerting=alerting, format="sloth",
        source=SpecSource(v.file, v.line, v.path, fields),
    )


def _sli(v: View, fields: dict[str, tuple[str, int]]) -> PrometheusSli | None:
    s = v.mapping("sli", required=True)
    if s is None:
        return None
    given = [k for k in ("events", "raw", "plugin") if s.has(k)]
    if len(given) != 1:
        s.error("events", "give exactly one of events, raw or plugin"
                + (f" (got {', '.join(given)})" if given else ""))
        return None
    if given[0] == "plugin":
        s.error("plugin", "Sloth SLI plugins are not supported by aisre; use events or raw")
        return None
    q = s.mapping(given[0])
    if q is None:
        return None
    if given[0] == "raw":
        key = q.pick("error_ratio_query", "errorRatioQuery")
        fields["sli.error_ratio_query"] = q.where(key)
        ratio = q.text(key, required=True)
        return PrometheusSli(error_ratio_query=ratio) if ratio is not None else None
    ek, tk = q.pick("error_query", "errorQuery"), q.pick("total_query", "totalQuery")
    fields["sli.error_query"], fields["sli.total_query"] = q.where(ek), q.where(tk)
    err_q, total_q = q.text(ek, required=True), q.text(tk, required=True)
    if err_q is None or total_q is None:
        return None
    return PrometheusSli(error_query=err_q, total_query=total_q)


def _severity(a: View, *keys: str) -> AlertSpec:
    s = a.mapping(a.pick(*keys))
    if s is None:
        return AlertSpec()
    return AlertSpec(not s.boolean("disable", False), s.labels("labels"), s.labels("annotations"))


def _alerting(v: View, fields: dict[str, tuple[str, int]]) -> Alerting:
    a = v.mapping("alerting")
    if a is None:
        return Alerting()
    fields.update({f"alerting.{k}": a.where(k) for k in a.data})
    fields.setdefault("alerting.name", (a.child_path("name"), a.line))
    return Alerting(
        name=a.text("name"), labels=a.labels("labels"), annotations=a.labels("annotations"),
        page=_severity(a, "page_alert", "pageAlert"),
        ticket=_severity(a, "ticket_alert", "ticketAlert"),
    )
