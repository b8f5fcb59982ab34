"""OTLP metrics → data points keyed by series (metric name + canonical label set).

The label set of a series is the data point's attributes plus the resource's service
identity (``service.name``, ``service.namespace``, ``service.instance.id``): the rest of
the resource (process ids, SDK versions) would make every restart a new series without
telling series apart any better (the Collector's Prometheus exporter keeps the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from aisre.core.series import MetricPoint, series_id

RESOURCE_LABELS = ("service.name", "service.namespace", "service.instance.id")

# Metrics aisre knows the meaning of (OTel GenAI client metrics and common inference servers):
# name → (what it measures, unit). /api/metrics/series marks them, the docs list them.
KNOWN_METRICS: dict[str, tuple[str, str]] = {
    "gen_ai.client.token.usage": ("tokens per model call, by gen_ai.token.type (input/output)", "{token}"),
    "gen_ai.client.operation.duration": ("duration of a GenAI client operation", "s"),
    "gen_ai.server.request.duration": ("time a GenAI server took per request", "s"),
    "gen_ai.server.time_to_first_token": ("time to first token on a GenAI server", "s"),
    "gen_ai.server.time_per_output_token": ("time per output token after the first", "s"),
    "vllm:e2e_request_latency_seconds": ("vLLM end-to-end request latency", "s"),
    "vllm:time_to_first_token_seconds": ("vLLM time to first token", "s"),
    "vllm:gpu_cache_usage_perc": ("vLLM KV-cache use (0-1)", "1"),
    "vllm:num_requests_waiting": ("vLLM requests queued", "{request}"),
    "vllm:num_requests_running": ("vLLM requests running", "{request}"),
    "DCGM_FI_DEV_GPU_UTIL": ("GPU utilisation (DCGM exporter, percent)", "%"),
    "DCGM_FI_DEV_FB_USED": ("GPU frame buffer used (DCGM exporter)", "MiBy"),
}

_TEMPORALITY = {1: "delta", 2: "cumulative"}
_MAX_REASONS = 5


@dataclass
class MetricBatch:
    """The points of one export request, and the data points refused (counted, explained)."""

    points: list[MetricPoint] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def refuse(self, count: int, reason: str) -> None:
        """Count ``count`` refused data points, keeping the first few reasons."""
        self.rejected += count
        if reason not in self.reasons and len(self.reasons) < _MAX_REASONS:
            self.reasons.append(reason)

    def message(self) -> str:
        """partial_success.error_message: why data points were refused ('' when none were)."""
        if not self.rejected:
            return ""
        return f"{self.rejected} data points rejected: " + "; ".join(self.reasons)


def _value(v: Any) -> str:
    which = v.WhichOneof("value")
    if which is None:
        return ""
    if which == "string_value":
        return str(v.string_value)
    if which == "bool_value":
        return "true" if v.bool_value else "false"
    if which == "int_value":
        return str(v.int_value)
    if which == "double_value":
        return repr(v.double_value)
    if which == "bytes_value":
        return v.bytes_value.hex()
    if which == "array_value":
        return orjson.dumps([_value(x) for x in v.array_value.values]).decode()
    return orjson.dumps({kv.key: _value(kv.value) for kv in v.kvlist_value.values}).decode()


def _labels(base: dict[str, str], attributes: Any) -> tuple[str, dict[str, str]]:
    labels = dict(base)
    for kv in attributes:
        labels[kv.key] = _value(kv.value)
    return orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode(), labels


def flatten_metrics(request: ExportMetricsServiceRequest, max_points: int = 1_000_000) -> MetricBatch:
    """Every usable data point of ``request``; unusable ones are counted and explained."""
    out = MetricBatch()
    points = out.points
    for rm in request.resource_metrics:
        base = {kv.key: _value(kv.value) for kv in rm.resource.attributes if kv.key in RESOURCE_LABELS}
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                name = metric.name
                which = metric.WhichOneof("data")
                if not name:
                    out.refuse(_count(metric, which), "a metric has no name")
                    continue
                unit = metric.unit
                if which == "gauge" or (which == "sum" and not metric.sum.is_monotonic):
                    # A non-monotonic sum (UpDownCounter) is a level, read as a gauge.
                    data = metric.gauge.data_points if which == "gauge" else metric.sum.data_points
                    for p in data:
                        v = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                        if v != v:  # NaN: no value (a staleness marker)
                            out.refuse(1, f"{name}: NaN value")
                            continue
                        text, _ = _labels(base, p.attributes)
                        points.append(MetricPoint(series_id(name, text), name, text, "gauge", "delta", unit,
                                                  int(p.start_time_unix_nano), int(p.time_unix_nano), v, 0.0, (), ()))
                elif which == "sum":
                    temporality = _TEMPORALITY.get(metric.sum.aggregation_temporality)
                    if temporality is None:
                        out.refuse(len(metric.sum.data_points), f"{name}: sum without aggregation temporality")
                        continue
                    for p in metric.sum.data_points:
                        v = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                        if v != v or v < 0:
                            out.refuse(1, f"{name}: a monotonic sum must be a number ≥ 0")
                            continue
                        text, _ = _labels(base, p.attributes)
                        points.append(MetricPoint(series_id(name, text), name, text, "sum", temporality, unit,
                                                  int(p.start_time_unix_nano), int(p.time_unix_nano), v, 0.0, (), ()))
                elif which == "histogram":
                    temporality = _TEMPORALITY.get(metric.histogram.aggregation_temporality)
                    if temporality is None:
                        out.refuse(len(metric.histogram.data_points), f"{name}: histogram without aggregation temporality")
                        continue
                    for hp in metric.histogram.data_points:
                        bounds = tuple(hp.explicit_bounds)
                        counts = tuple(float(c) for c in hp.bucket_counts)
                        if counts and len(counts) != len(bounds) + 1:
                            out.refuse(1, f"{name}: histogram with {len(counts)} bucket counts for {len(bounds)} bounds")
                            continue
                        if not counts:  # no buckets: count and sum only
                            bounds, counts = (), (float(hp.count),)
                        text, _ = _labels(base, hp.attributes)
                        points.append(MetricPoint(series_id(name, text), name, text, "histogram", temporality, unit,
                                                  int(hp.start_time_unix_nano), int(hp.time_unix_nano),
                                                  float(hp.count), float(hp.sum), bounds, counts))
                elif which == "exponential_histogram":
                    temporality = _TEMPORALITY.get(metric.exponential_histogram.aggregation_temporality)
                    if temporality is None:
                        out.refuse(len(metric.exponential_histogram.data_points),
                                   f"{name}: histogram without aggregation temporality")
                        continue
                    for ep in metric.exponential_histogram.data_points:
                        text, _ = _labels(base, ep.attributes)
                        bounds, counts = exponential_buckets(ep)
                        points.append(MetricPoint(series_id(name, text), name, text, "histogram", temporality, unit,
                                                  int(ep.start_time_unix_nano), int(ep.time_unix_nano),
                                                  float(ep.count), float(ep.sum), bounds, counts))
                else:
                    out.refuse(_count(metric, which), f"{name}: {which or 'empty'} metrics are not supported")
                if len(points) > max_points:
                    from aisre.core.errors import PermanentError

                    raise PermanentError(f"request holds over {max_points} data points; send smaller batches")
    return out


def exponential_buckets(ep: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """An exponential histogram point as explicit buckets: bounds 0 (the zero bucket, and
    negative values below it) then base^(offset+i+1) for each positive bucket."""
    base = 2.0 ** (2.0 ** -ep.scale)
    offset = ep.positive.offset
    positive = [float(c) for c in ep.positive.bucket_counts]
    negative = float(sum(ep.negative.bucket_counts))
    bounds = (0.0, *(base ** (offset + i + 1) for i in range(len(positive))))
    counts = (negative + float(ep.zero_count), *positive, 0.0)
    return bounds, counts


def _count(metric: Any, which: str | None) -> int:
    if which is None:
        return 1
    return max(1, len(getattr(metric, which).data_points))
