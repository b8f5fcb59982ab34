"""Run populations: what the release gate asks a store for (one side of a comparison) and
what comes back, per-run measurements as arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

# Selector keys that are columns of the run table; anything else is looked up as a span or
# resource attribute of the run's spans (e.g. a canary flag).
SELECTOR_COLUMNS: dict[str, str] = {
    "service.version": "service_version",
    "version": "service_version",
    "deployment.environment": "environment",
    "deployment.environment.name": "environment",
    "environment": "environment",
    "prompt.version": "prompt_version",
    "aisre.prompt.version": "prompt_version",
    "prompt.name": "prompt_name",
    "aisre.prompt.name": "prompt_name",
    "service": "root_service",
    "service.name": "root_service",
    "model": "models",
    "gen_ai.request.model": "models",
    "gen_ai.response.model": "models",
}


@dataclass(frozen=True)
class RunSelector:
    """Runs whose ``key`` is ``value``: a run column when the key names one, else an attribute."""

    key: str
    value: str

    @property
    def column(self) -> str | None:
        return SELECTOR_COLUMNS.get(self.key)

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


@dataclass(frozen=True)
class PopulationQuery:
    """One side of a comparison: completed runs of a journey, selected, within a time range."""

    tenant: str
    journey: str
    selectors: tuple[RunSelector, ...]
    since_ns: int
    until_ns: int
    limit: int = 50_000


@dataclass(frozen=True)
class Population:
    """Per-run measurements of one side, in start order, plus each score's per-run mean."""

    trace_ids: list[str]
    start_ns: NDArray[np.int64]
    failed: NDArray[np.float64]
    duration_ms: NDArray[np.float64]
    cost_usd: NDArray[np.float64]
    tokens: NDArray[np.float64]
    scores: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return len(self.trace_ids)
