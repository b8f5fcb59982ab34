"""Build OTLP ExportMetricsServiceRequests with known values (tests)."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

MIN = 60 * 10**9
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
CUMULATIVE, DELTA = 2, 1


def _attrs(labels: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in labels.items()]


def request(metrics: list[m.Metric], service: str = "svc") -> ExportMetricsServiceRequest:
    """One resource (service.name=service) holding ``metrics``."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(_attrs({"service.name": service, "process.pid": "123"}))
    rm.scope_metrics.add().metrics.extend(metrics)
    return req


def counter(name: str, points: list[tuple[int, float, dict[str, str]]], temporality: int = CUMULATIVE,
            start_ns: int = T0 - MIN) -> m.Metric:
    """A monotonic sum; points are (time_ns, value, labels)."""
    metric = m.Metric(name=name, unit="1")
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = temporality
    for at, value, labels in points:
        p = metric.sum.data_points.add(start_time_unix_nano=start_ns, time_unix_nano=at, as_double=value)
        p.attributes.extend(_attrs(labels))
    return metric


def gauge(name: str, points: list[tuple[int, float, dict[str, str]]]) -> m.Metric:
    metric = m.Metric(name=name, unit="1")
    for at, value, labels in points:
        p = metric.gauge.data_points.add(time_unix_nano=at, as_double=value)
        p.attributes.extend(_attrs(labels))
    return metric


def histogram(name: str, bounds: list[float], points: list[tuple[int, list[int], dict[str, str]]],
              temporality: int = CUMULATIVE, start_ns: int = T0 - MIN) -> m.Metric:
    """An explicit-bucket histogram; points are (time_ns, bucket counts, labels)."""
    metric = m.Metric(name=name, unit="s")
    metric.histogram.aggregation_temporality = temporality
    for at, counts, labels in points:
        p = metric.histogram.data_points.add(start_time_unix_nano=start_ns, time_unix_nano=at,
                                             count=sum(counts), sum=0.0)
        p.explicit_bounds.extend(bounds)
        p.bucket_counts.extend(counts)
        p.attributes.extend(_attrs(labels))
    return metric


def body(req: ExportMetricsServiceRequest) -> bytes:
    return req.SerializeToString()


def minutes_of(store: Any, tenant: str, metric: str) -> dict[tuple[str, int], dict[str, Any]]:
    """{(labels JSON, minute index from T0): minute row} of one metric."""
    series = {s["series_id"]: s["labels"] for s in store.metric_series(tenant, metric)}
    rows = store.metric_minutes(tenant, list(series), T0 - 10 * MIN, T0 + 10_000 * MIN)
    return {(series[r["series_id"]], (r["minute_ns"] - T0) // MIN): r for r in rows}
