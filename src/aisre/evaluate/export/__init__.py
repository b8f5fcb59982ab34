"""Exports of SLO specs to other systems' formats (Prometheus rules first)."""

from __future__ import annotations

from aisre.evaluate.export.prometheus import (
    BAD_EVENTS_METRIC,
    EVENTS_METRIC,
    FIRST_EVENT_METRIC,
    ExportError,
    prometheus_rules,
    promtool_tests,
    render_rules,
    render_tests,
    write_rules,
)

__all__ = [
    "BAD_EVENTS_METRIC",
    "EVENTS_METRIC",
    "FIRST_EVENT_METRIC",
    "ExportError",
    "prometheus_rules",
    "promtool_tests",
    "render_rules",
    "render_tests",
    "write_rules",
]
