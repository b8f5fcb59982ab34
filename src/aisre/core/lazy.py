"""Heavy libraries imported on first use, not at start-up."""

from __future__ import annotations

from types import ModuleType


def scipy_stats() -> ModuleType:
    """``scipy.stats``: importing it costs about 0.4 s, which every `aisre up` and CLI call
    paid at start whether or not it judged a gate or fitted a trend."""
    from scipy import stats

    return stats
