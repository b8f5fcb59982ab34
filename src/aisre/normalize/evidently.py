"""An Evidently report's headline numbers as platform scores of one subject.

The report is the JSON of Evidently's ``Report.as_dict()`` / ``Report.json()`` (the Report
API of Evidently 0.4–0.6, ``evidently.legacy`` since 0.7): a ``metrics`` list whose items
carry the metric's class name in ``metric`` and its result in ``result``, and, from
``json()``, the report's ``timestamp``. The fields read are those of the metrics' result
classes in Evidently's API reference (DatasetDriftMetricResults, DataDriftTableResults,
ColumnDriftMetricResults, DatasetMissingValuesMetricResult). Score names (docs/metrics.md):

| metric | scores |
|---|---|
| DatasetDriftMetric | drift.share_of_drifted_columns, drift.number_of_drifted_columns, drift.dataset_drift (0/1) |
| DataDriftTable | the same, and per column drift.column.<name>.score and drift.column.<name>.detected (0/1) |
| ColumnDriftMetric | drift.column.<name>.score, drift.column.<name>.detected (0/1) |
| DatasetMissingValuesMetric | quality.share_of_missing_values, quality.number_of_missing_values, quality.share_of_rows_with_missing_values (of the current data) |

Other metrics are listed as skipped, not refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aisre.core.errors import PermanentError
from aisre.core.timefmt import rfc3339

# Python's str(datetime), which Evidently writes (no zone: read as UTC), or RFC 3339.
_NAIVE = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _dataset_drift(result: dict[str, Any]) -> dict[str, float | None]:
    return {
        "drift.share_of_drifted_columns": _number(result.get("share_of_drifted_columns")),
        "drift.number_of_drifted_columns": _number(result.get("number_of_drifted_columns")),
        "drift.dataset_drift": _number(result.get("dataset_drift")),
    }


def _column_drift(result: dict[str, Any], name: Any = None) -> dict[str, float | None]:
    column = result.get("column_name", name)
    if not isinstance(column, str) or not column:
        return {}
    return {
        f"drift.column.{column}.score": _number(result.get("drift_score")),
        f"drift.column.{column}.detected": _number(result.get("drift_detected")),
    }


def _drift_table(result: dict[str, Any]) -> dict[str, float | None]:
    out = _dataset_drift(result)
    columns = result.get("drift_by_columns")
    if isinstance(columns, dict):
        for name, column in columns.items():
            if isinstance(column, dict):
                out.update(_column_drift(column, name))
    return out


def _missing_values(result: dict[str, Any]) -> dict[str, float | None]:
    current = result.get("current")
    if not isinstance(current, dict):
        return {}
    return {
        "quality.share_of_missing_values": _number(current.get("share_of_missing_values")),
        "quality.number_of_missing_values": _number(current.get("number_of_missing_values")),
        "quality.share_of_rows_with_missing_values": _number(current.get("share_of_rows_with_missing_values")),
    }


READERS: dict[str, Callable[[dict[str, Any]], dict[str, float | None]]] = {
    "DatasetDriftMetric": _dataset_drift,
    "DataDriftTable": _drift_table,
    "ColumnDriftMetric": _column_drift,
    "DatasetMissingValuesMetric": _missing_values,
}


def report_time(report: dict[str, Any], now_ns: int) -> int:
    """The report's ``timestamp`` in Unix ns (a zone-less one is UTC); ``now_ns`` without one."""
    stamp = report.get("timestamp")
    if stamp is None:
        return now_ns
    if not isinstance(stamp, str):
        raise PermanentError("timestamp must be a time such as 2026-11-23T09:00:00Z or 2026-11-23 09:00:00")
    text = stamp.strip()
    if _NAIVE.match(text):
        text += "+00:00"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PermanentError(f"timestamp must be a time such as 2026-11-23T09:00:00Z; got {stamp!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    when = int(parsed.timestamp()) * 10**9 + parsed.microsecond * 1000
    if not 0 <= when < 2**63 - 1:
        raise PermanentError(f"timestamp must be between 1970 and 2262; got {stamp!r}")
    return when


def evidently_scores(
    report: Any, subject: str, now_ns: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(score items for POST /api/scores, skipped metrics as {index, metric, reason}, the
    report's time); a body that is not a report raises. A name given twice (DataDriftPreset
    holds both DatasetDriftMetric and DataDriftTable) is posted once, as first found."""
    if not isinstance(report, dict) or not isinstance(report.get("metrics"), list):
        raise PermanentError('expected an Evidently report: {"metrics": [{"metric": ..., "result": {...}}, ...]}')
    when = report_time(report, now_ns)
    stamp = rfc3339(when)
    values: dict[str, float | None] = {}
    skipped: list[dict[str, Any]] = []
    for index, item in enumerate(report["metrics"]):
        metric = item.get("metric") if isinstance(item, dict) else None
        result = item.get("result") if isinstance(item, dict) else None
        if not isinstance(metric, str) or not isinstance(result, dict):
            skipped.append({"index": index, "metric": metric if isinstance(metric, str) else None,
                            "reason": "not a metric result: expected {metric, result}"})
            continue
        reader = READERS.get(metric)
        if reader is None:
            skipped.append({"index": index, "metric": metric,
                            "reason": f"not read: aisre reads {', '.join(sorted(READERS))}"})
            continue
        found = {k: v for k, v in reader(result).items() if v is not None}
        if not found:
            skipped.append({"index": index, "metric": metric, "reason": "its result holds none of the fields read"})
        for name, value in found.items():
            values.setdefault(name, value)
    items = [{"subject": subject, "name": name, "value": value, "time": stamp, "source": "heuristic",
              "comment": "Evidently report"} for name, value in values.items()]
    return items, skipped, when
