"""Alertmanager webhook payloads (version 4) as alerts aisre's incidents understand.

Alertmanager POSTs ``{version: "4", groupKey, status, receiver, groupLabels,
commonLabels, commonAnnotations, externalURL, alerts: [{status, labels, annotations,
startsAt, endsAt, generatorURL, fingerprint}]}``; each alert is checked on its own fields.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aisre.core.errors import PayloadTooLarge, PermanentError

# Labels that name the journey an alert is about, first found wins.
JOURNEY_LABELS = ("journey", "aisre_journey", "aisre.journey")
_FRACTION = re.compile(r"\.(\d+)")


@dataclass(frozen=True)
class ExternalAlert:
    """One alert from an Alertmanager notification."""

    key: str
    status: str  # firing | resolved
    name: str
    severity: str
    journey: str | None
    group_key: str
    starts_ns: int
    ends_ns: int | None
    summary: str
    runbook: str | None
    generator_url: str | None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def _time(value: Any, name: str) -> int | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise PermanentError(f"{name} must be an RFC 3339 time")
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PermanentError(f"{name} must be an RFC 3339 time; got {value!r}") from None
    if parsed.year <= 1:  # Alertmanager's zero time: not ended
        return None
    return int(parsed.timestamp()) * 10**9 + parsed.microsecond * 1000


def _strings(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PermanentError(f"{name} must be an object of string values")
    return dict(value)


def parse_alertmanager(doc: Any, max_alerts: int | None = None) -> list[ExternalAlert]:
    """The alerts of one webhook body; PermanentError says which field is wrong, and more
    than ``max_alerts`` alerts is PayloadTooLarge (413)."""
    if not isinstance(doc, dict):
        raise PermanentError("an Alertmanager webhook body must be a JSON object")
    version = doc.get("version")
    if version != "4":
        raise PermanentError(f"only Alertmanager webhook version \"4\" is understood; got {version!r}")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise PermanentError("alerts must be a list")
    if max_alerts is not None and len(alerts) > max_alerts:
        raise PayloadTooLarge(
            f"the webhook carries {len(alerts)} alerts; the limit is {max_alerts} (alertmanager_max_alerts): "
            "set max_alerts in Alertmanager's webhook_config"
        )
    common = _strings(doc.get("commonLabels"), "commonLabels")
    group_key = str(doc.get("groupKey") or "")
    out = []
    for index, item in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(item, dict):
            raise PermanentError(f"{where} must be an object")
        status = item.get("status")
        if status not in ("firing", "resolved"):
            raise PermanentError(f"{where}.status must be firing or resolved; got {status!r}")
        labels = {**common, **_strings(item.get("labels"), f"{where}.labels")}
        annotations = _strings(item.get("annotations"), f"{where}.annotations")
        starts = _time(item.get("startsAt"), f"{where}.startsAt")
        if starts is None:
            raise PermanentError(f"{where}.startsAt is required")
        fingerprint = item.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            # Alertmanager's fingerprint is a hash of the label set; do the same without one.
            fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
        journey = next((labels[k] for k in JOURNEY_LABELS if labels.get(k)), None)
        name = labels.get("alertname") or "alert"
        out.append(ExternalAlert(
            key=f"am:{fingerprint}",
            status=status,
            name=name,
            severity=(labels.get("severity") or "warning").lower(),
            journey=journey,
            group_key=f"journey:{journey}" if journey else f"am:{group_key or name}",
            starts_ns=starts,
            ends_ns=_time(item.get("endsAt"), f"{where}.endsAt") if status == "resolved" else None,
            summary=annotations.get("summary") or annotations.get("description") or name,
            runbook=annotations.get("runbook_url") or annotations.get("runbook"),
            generator_url=item.get("generatorURL") if isinstance(item.get("generatorURL"), str) else None,
            labels=labels,
            annotations=annotations,
        ))
    return out
