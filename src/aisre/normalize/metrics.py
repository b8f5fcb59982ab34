"""OTLP metrics → data points keyed by series (metric name + canonical label set).

The label set of a series is the data point's attributes plus the resource's service
identity (``service.name``, ``service.namespace``, ``service.instance.id``): the rest of
the resource (process ids, SDK versions) would make every restart a new series without
telling series apart any better (the Collector's Prometheus exporter keeps the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from aisre.core.errors import PermanentError
from aisre.core.schema import MINUTE_NS
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


# The columns a decoded export crosses to the writer in (one row per data point). The writer
# turns cumulative points into increases, applies the series limit and sums minutes in SQL
# over this table (store/duckdb/metrics.py); ``seq`` keeps the request's order for ties.
METRIC_POINTS_SCHEMA = pa.schema([
    ("seq", pa.int64()),
    ("series_id", pa.int64()),
    ("metric", pa.string()),
    ("labels", pa.string()),
    ("kind", pa.string()),
    ("temporality", pa.string()),
    ("unit", pa.string()),
    ("start_ns", pa.int64()),
    ("time_ns", pa.int64()),
    ("minute_ns", pa.int64()),
    ("value", pa.float64()),
    ("sum", pa.float64()),
    ("bounds", pa.list_(pa.float64())),
    ("buckets", pa.list_(pa.float64())),
])


@dataclass
class MetricBatch:
    """The points of one export request (an Arrow table, ``METRIC_POINTS_SCHEMA``), and the
    data points refused (counted, explained)."""

    table: pa.Table = field(default_factory=METRIC_POINTS_SCHEMA.empty_table)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def points(self) -> list[MetricPoint]:
        """The points as ``MetricPoint`` values (tests, and sinks without the Arrow path)."""
        return points_of(self.table)

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


def points_table(points: Sequence[MetricPoint]) -> pa.Table:
    """``MetricPoint`` values as a ``METRIC_POINTS_SCHEMA`` table, in their order."""
    cols = _Columns()
    for p in points:
        cols.add(p.series_id, p.metric, p.labels, p.kind, p.temporality, p.unit, p.start_ns, p.time_ns,
                 p.value, p.sum, p.bounds, p.buckets)
    return cols.table()[0]


def points_of(table: pa.Table) -> list[MetricPoint]:
    """The rows of a ``METRIC_POINTS_SCHEMA`` table as ``MetricPoint`` values, in order."""
    c = table.to_pydict()
    return [
        MetricPoint(sid, metric, labels, kind, temporality, unit, start, at, value, total,
                    tuple(bounds or ()), tuple(buckets or ()))
        for sid, metric, labels, kind, temporality, unit, start, at, value, total, bounds, buckets in zip(
            c["series_id"], c["metric"], c["labels"], c["kind"], c["temporality"], c["unit"], c["start_ns"],
            c["time_ns"], c["value"], c["sum"], c["bounds"], c["buckets"], strict=True)
    ]


class _Columns:
    """Column lists of a points table, filled point by point (bounds and buckets flat, with offsets)."""

    def __init__(self) -> None:
        self.series_id: list[int] = []
        self.metric: list[str] = []
        self.labels: list[str] = []
        self.kind: list[str] = []
        self.temporality: list[str] = []
        self.unit: list[str] = []
        self.start: list[int] = []
        self.time: list[int] = []
        self.value: list[float] = []
        self.sum: list[float] = []
        self.bounds: list[float] = []
        self.bound_offsets: list[int] = [0]
        self.buckets: list[float] = []
        self.bucket_offsets: list[int] = [0]

    def add(self, sid: int, metric: str, labels: str, kind: str, temporality: str, unit: str, start: int, at: int,
            value: float, total: float, bounds: Sequence[float], buckets: Sequence[float]) -> None:
        self.series_id.append(sid)
        self.metric.append(metric)
        self.labels.append(labels)
        self.kind.append(kind)
        self.temporality.append(temporality)
        self.unit.append(unit)
        self.start.append(start)
        self.time.append(at)
        self.value.append(value)
        self.sum.append(total)
        self.bounds.extend(bounds)
        self.bound_offsets.append(len(self.bounds))
        self.buckets.extend(buckets)
        self.bucket_offsets.append(len(self.buckets))

    def add_scalars(self, metric: str, kind: str, temporality: str, unit: str,
                    rows: list[tuple[int, str, int, int, float]]) -> None:
        """Points of one gauge or sum: (series id, labels, start, time, value) each, added
        column by column (a call per point costs more than the point)."""
        n = len(rows)
        if not n:
            return
        sids, texts, starts, times, values = zip(*rows, strict=True)
        self.series_id.extend(sids)
        self.labels.extend(texts)
        self.start.extend(starts)
        self.time.extend(times)
        self.value.extend(values)
        self.metric.extend([metric] * n)
        self.kind.extend([kind] * n)
        self.temporality.extend([temporality] * n)
        self.unit.extend([unit] * n)
        self.sum.extend([0.0] * n)
        self.bound_offsets.extend([len(self.bounds)] * n)
        self.bucket_offsets.extend([len(self.buckets)] * n)

    def __len__(self) -> int:
        return len(self.series_id)

    def table(self) -> tuple[pa.Table, int]:
        """The table, and how many points were left out of it: those whose start or time does
        not fit a signed 64-bit count of nanoseconds (OTLP sends them unsigned)."""
        n = len(self.series_id)
        time_ns = np.array(self.time, dtype=np.uint64)
        start_ns = np.array(self.start, dtype=np.uint64)
        fits = (time_ns < 2**63) & (start_ns < 2**63)
        times = time_ns.astype(np.int64)
        table = pa.Table.from_arrays([
            pa.array(np.arange(n, dtype=np.int64)),
            pa.array(self.series_id, pa.int64()),
            pa.array(self.metric, pa.string()),
            pa.array(self.labels, pa.string()),
            pa.array(self.kind, pa.string()),
            pa.array(self.temporality, pa.string()),
            pa.array(self.unit, pa.string()),
            pa.array(start_ns.astype(np.int64)),
            pa.array(times),
            pa.array(times // MINUTE_NS * MINUTE_NS),
            pa.array(self.value, pa.float64()),
            pa.array(self.sum, pa.float64()),
            pa.ListArray.from_arrays(pa.array(self.bound_offsets, pa.int32()), pa.array(self.bounds, pa.float64())),
            pa.ListArray.from_arrays(pa.array(self.bucket_offsets, pa.int32()), pa.array(self.buckets, pa.float64())),
        ], schema=METRIC_POINTS_SCHEMA)
        if fits.all():
            return table, 0
        return table.filter(pa.array(fits)), int(n - fits.sum())


def _value(v: Any) -> str:
    text = v.string_value  # nearly every label: one read instead of asking which field is set
    if text:
        return str(text)
    which = v.WhichOneof("value")
    if which == "string_value":
        return str(v.string_value)
    if which is None:
        return ""
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


# (metric, resource labels, point attributes) → (series id, label text), kept per decoder
# process: exporters send the same series at every collection, and the canonical text and
# its hash cost more than the look-up. Cleared when full, so it stays bounded.
_SERIES_CACHE: dict[tuple[Any, ...], tuple[int, str]] = {}
_SERIES_CACHE_MAX = 200_000


def _series(name: str, base: dict[str, str], base_key: tuple[tuple[str, str], ...], attributes: Any) -> tuple[int, str]:
    """Series id and canonical label text of a data point."""
    pairs = [(kv.key, _value(kv.value)) for kv in attributes]
    key = (name, base_key, *pairs)
    found = _SERIES_CACHE.get(key)
    if found is not None:
        return found
    labels = dict(base)
    labels.update(pairs)
    text = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()
    found = (series_id(name, text), text)
    if len(_SERIES_CACHE) >= _SERIES_CACHE_MAX:
        _SERIES_CACHE.clear()
    _SERIES_CACHE[key] = found
    return found


def flatten_metrics(request: ExportMetricsServiceRequest, max_points: int = 1_000_000) -> MetricBatch:
    """Every usable data point of ``request`` as an Arrow table; unusable ones are counted
    and explained."""
    out = MetricBatch()
    cols = _Columns()
    add = cols.add
    for rm in request.resource_metrics:
        base = {kv.key: _value(kv.value) for kv in rm.resource.attributes if kv.key in RESOURCE_LABELS}
        base_key = tuple(base.items())
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
                    rows = []
                    for p in data:
                        v = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                        if v != v:  # NaN: no value (a staleness marker)
                            out.refuse(1, f"{name}: NaN value")
                            continue
                        sid, text = _series(name, base, base_key, p.attributes)
                        rows.append((sid, text, p.start_time_unix_nano, p.time_unix_nano, v))
                    cols.add_scalars(name, "gauge", "delta", unit, rows)
                elif which == "sum":
                    temporality = _TEMPORALITY.get(metric.sum.aggregation_temporality)
                    if temporality is None:
                        out.refuse(len(metric.sum.data_points), f"{name}: sum without aggregation temporality")
                        continue
                    rows = []
                    for p in metric.sum.data_points:
                        v = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                        if v != v or v < 0:
                            out.refuse(1, f"{name}: a monotonic sum must be a number ≥ 0")
                            continue
                        sid, text = _series(name, base, base_key, p.attributes)
                        rows.append((sid, text, p.start_time_unix_nano, p.time_unix_nano, v))
                    cols.add_scalars(name, "sum", temporality, unit, rows)
                elif which == "histogram":
                    temporality = _TEMPORALITY.get(metric.histogram.aggregation_temporality)
                    if temporality is None:
                        out.refuse(len(metric.histogram.data_points), f"{name}: histogram without aggregation temporality")
                        continue
                    for hp in metric.histogram.data_points:
                        bounds: Sequence[float] = hp.explicit_bounds
                        counts: Sequence[float] = hp.bucket_counts
                        if counts and len(counts) != len(bounds) + 1:
                            out.refuse(1, f"{name}: histogram with {len(counts)} bucket counts for {len(bounds)} bounds")
                            continue
                        if not counts:  # no buckets: count and sum only
                            bounds, counts = (), (float(hp.count),)
                        sid, text = _series(name, base, base_key, hp.attributes)
                        add(sid, name, text, "histogram", temporality, unit, hp.start_time_unix_nano,
                            hp.time_unix_nano, float(hp.count), hp.sum, bounds, counts)
                elif which == "exponential_histogram":
                    temporality = _TEMPORALITY.get(metric.exponential_histogram.aggregation_temporality)
                    if temporality is None:
                        out.refuse(len(metric.exponential_histogram.data_points),
                                   f"{name}: histogram without aggregation temporality")
                        continue
                    for ep in metric.exponential_histogram.data_points:
                        sid, text = _series(name, base, base_key, ep.attributes)
                        bounds, counts = exponential_buckets(ep)
                        add(sid, name, text, "histogram", temporality, unit, ep.start_time_unix_nano,
                            ep.time_unix_nano, float(ep.count), ep.sum, bounds, counts)
                else:
                    out.refuse(_count(metric, which), f"{name}: {which or 'empty'} metrics are not supported")
                if len(cols) > max_points:
                    raise PermanentError(f"request holds over {max_points} data points; send smaller batches")
    out.table, out_of_range = cols.table()
    if out_of_range:
        out.refuse(out_of_range, "a data point's time is past the year 2262 (not a signed 64-bit nanosecond count)")
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
