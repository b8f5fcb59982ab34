"""aisre's own Prometheus metrics, on a registry the app owns (no import-time globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class IngestMetrics:
    """Counters every receiver updates, so /metrics tells what was taken and refused."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "aisre_ingest_requests",
            "OTLP export requests by transport, encoding and answer",
            ["transport", "encoding", "code"],
            registry=registry,
        )
        self.spans = Counter(
            "aisre_ingest_spans",
            "Spans by result: accepted (committed), duplicate (delivered again within dedup_window_s, acknowledged, not stored) or rejected (partial success)",
            ["result"],
            registry=registry,
        )
        self.metric_points = Counter(
            "aisre_ingest_metric_points",
            "OTLP metric data points by result: accepted (folded into minute series) or rejected (partial success)",
            ["result"],
            registry=registry,
        )
        self.refused = Counter(
            "aisre_ingest_refused_requests",
            "Requests refused with 429/503 (or gRPC RESOURCE_EXHAUSTED/UNAVAILABLE) by reason",
            ["reason"],
            registry=registry,
        )
        # Per tenant, because the content policy (keep, redact, drop) is set per tenant.
        self.content = Counter(
            "aisre_ingest_content_values",
            "Values in committed spans that ingest changed: PII redacted (content_capture=redact), "
            "content attributes dropped (content_capture=drop), values truncated (max_attribute_chars)",
            ["tenant", "action"],
            registry=registry,
        )
        self.latency = Histogram(
            "aisre_ingest_request_seconds",
            "Time from receiving an export request to its durable answer",
            ["transport"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )

    def count_content(self, tenant: str, redacted: int, dropped: int, truncated: int) -> None:
        for action, n in (("redacted", redacted), ("dropped", dropped), ("truncated", truncated)):
            if n:
                self.content.labels(tenant, action).inc(n)
