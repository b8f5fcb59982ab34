"""Metric series values that cross seams: a data point as decoded from OTLP, and the
label selectors metric SLIs use. Values only, no I/O."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import NamedTuple

MetricKind = str  # "sum" (monotonic counter) | "gauge" | "histogram"
Temporality = str  # "cumulative" | "delta"


class MetricPoint(NamedTuple):
    """One OTLP data point, keyed by its series (metric name + canonical label set)."""

    series_id: int
    metric: str
    labels: str  # canonical JSON object, keys sorted
    kind: MetricKind
    temporality: Temporality
    unit: str
    start_ns: int
    time_ns: int
    value: float  # sums and gauges; a histogram's count
    sum: float  # histograms
    bounds: tuple[float, ...]  # histograms: explicit upper bounds (the last bucket is +Inf)
    buckets: tuple[float, ...]  # histograms: counts, len(bounds) + 1


def series_id(metric: str, labels: str) -> int:
    """Stable signed 64-bit id of a series (the same in every process and every run)."""
    digest = hashlib.blake2b(f"{metric}\x00{labels}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


MATCH_OPS = ("=", "!=", "=~", "!~")


@dataclass(frozen=True)
class MetricSelector:
    """A metric name and label matchers, as in PromQL: ``name{label="v",other=~"re.*"}``."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...] = ()

    def matches(self, metric: str, labels: dict[str, str]) -> bool:
        """Whether a series of ``metric`` with ``labels`` is selected (a missing label is "")."""
        if metric != self.metric:
            return False
        for name, op, value in self.matchers:
            have = labels.get(name, "")
            if op == "=" and have != value:
                return False
            if op == "!=" and have == value:
                return False
            if op == "=~" and not re.fullmatch(value, have):
                return False
            if op == "!~" and re.fullmatch(value, have):
                return False
        return True

    def __str__(self) -> str:
        inner = ",".join(f'{n}{op}"{v}"' for n, op, v in self.matchers)
        return f"{self.metric}{{{inner}}}" if inner else self.metric


def format_selector(metric: str, matchers: tuple[tuple[str, str, str], ...] | list[tuple[str, str, str]]) -> str:
    """``metric{label="v",...}`` with values escaped as PromQL strings (what parse_selector
    reads back): a Prometheus query's selector, or one series' exact selector."""
    inner = ",".join(
        f'{name}{op}"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        for name, op, value in matchers
    )
    return f"{metric}{{{inner}}}" if inner else metric


_NAME = r"[A-Za-z_:][A-Za-z0-9_.:/-]*"
_SELECTOR = re.compile(rf"^\s*({_NAME})\s*(?:\{{(.*)\}})?\s*$", re.S)
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_selector(text: str) -> MetricSelector:
    """Parse ``name{label="v",...}``; ValueError saying what is wrong."""
    m = _SELECTOR.match(text)
    if not m:
        raise ValueError(f"invalid metric selector {text!r}: expected name or name{{label=\"value\",...}}")
    name, body = m.group(1), (m.group(2) or "").strip()
    matchers: list[tuple[str, str, str]] = []
    pos = 0
    while pos < len(body):
        found = _MATCHER.match(body, pos)
        if not found or found.end() == pos:
            raise ValueError(f"invalid label matcher in {text!r} at {body[pos:]!r}: expected label=\"value\" "
                             "(operators =, !=, =~, !~)")
        label, op, value = found.group(1), found.group(2), found.group(3).replace('\\"', '"').replace("\\\\", "\\")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r} in {text!r}: {exc}") from None
        matchers.append((label, op, value))
        pos = found.end()
    return MetricSelector(name, tuple(matchers))
