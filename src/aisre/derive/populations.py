"""Populations of journey runs picked by attribute, for comparing a baseline with a candidate.

A selector is ``key=value`` (several joined by ``,`` must all hold): ``service.version=1.5.0``,
``model=gpt-4o-mini``, ``prompt.version=v4``, ``environment=prod``, or any span/resource attribute
such as a canary flag ``aisre.canary=true``.
"""

from __future__ import annotations

import re

from aisre.core.errors import PermanentError
from aisre.core.population import SELECTOR_COLUMNS, Population, PopulationQuery, RunSelector
from aisre.store.protocol import GateStore

_KEY = re.compile(r"^[A-Za-z0-9_.\-/]+$")


def parse_selector(text: str, what: str = "selector") -> tuple[RunSelector, ...]:
    """``k=v[,k2=v2]`` into selectors; a malformed one is a clear 400 naming ``what``."""
    if not text or not text.strip():
        raise PermanentError(f"{what} is required, as key=value (e.g. service.version=1.5.0)")
    out: list[RunSelector] = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise PermanentError(f"{what} {part.strip()!r} must be key=value (e.g. service.version=1.5.0)")
        if not _KEY.match(key):
            raise PermanentError(f"{what} key {key!r} may only hold letters, digits and . _ - /")
        out.append(RunSelector(key, value))
    return tuple(out)


def selector_text(selectors: tuple[RunSelector, ...]) -> str:
    """The canonical text of a selector list."""
    return ",".join(str(s) for s in selectors)


def population(
    store: GateStore, tenant: str, journey: str, selectors: tuple[RunSelector, ...], since_ns: int, until_ns: int
) -> Population:
    """The completed runs of ``journey`` in [since, until) that every selector matches."""
    if not journey:
        raise PermanentError("journey is required")
    return store.gate_population(PopulationQuery(tenant, journey, selectors, since_ns, until_ns))


__all__ = ["SELECTOR_COLUMNS", "parse_selector", "population", "selector_text"]
