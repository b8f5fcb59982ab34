"""The price catalog: USD per 1M tokens per model, versioned by effective date (DESIGN §5)."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from aisre.core.errors import PermanentError
from aisre.core.textfile import utf8_text

_MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    """List price of one model, USD per 1M tokens."""

    provider: str
    model: str
    input: float
    output: float
    cached_input: float
    # Tokens written to the provider's cache (Anthropic charges 1.25x input); None: input price.
    cache_write_input: float | None = None

    def cost(
        self, input_tokens: int | None, output_tokens: int | None, cached_input_tokens: int | None,
        cache_write_input_tokens: int | None = None,
    ) -> float:
        """USD for one call; cached and cache-write input tokens are part of the input count,
        priced at their own rates (OTel: gen_ai.usage.input_tokens includes both)."""
        total_in = input_tokens or 0
        cached = min(cached_input_tokens or 0, total_in)
        written = min(cache_write_input_tokens or 0, total_in - cached)
        write_price = self.input if self.cache_write_input is None else self.cache_write_input
        return (
            (total_in - cached - written) * self.input + cached * self.cached_input + written * write_price
            + (output_tokens or 0) * self.output
        ) / _MILLION


@dataclass(frozen=True)
class PriceVersion:
    id: str
    effective_ns: int
    prices: dict[str, Price]  # by model name
    by_provider: dict[tuple[str, str], Price] = field(default_factory=dict)


class PriceCatalog:
    """Looks up the price in force for a model at a time; unknown models get None."""

    def __init__(self, versions: list[PriceVersion]) -> None:
        if not versions:
            raise PermanentError("a price catalog needs at least one version")
        self.versions = sorted(versions, key=lambda v: v.effective_ns)
        self._cache: dict[tuple[str, str | None, str], Price | None] = {}

    def version_at(self, time_ns: int) -> PriceVersion:
        """The newest version in force at ``time_ns`` (the oldest one before any)."""
        chosen = self.versions[0]
        for version in self.versions:
            if version.effective_ns <= time_ns:
                chosen = version
        return chosen

    def lookup(self, provider: str | None, model: str | None, time_ns: int) -> tuple[Price | None, str]:
        """(price or None when unpriced, version id) for a call made at ``time_ns``."""
        version = self.version_at(time_ns)
        if not model:
            return None, version.id
        key = (version.id, provider, model)
        if key not in self._cache:
            self._cache[key] = _match(version, provider, model)
        return self._cache[key], version.id

    def breakpoints(self) -> list[int]:
        """Times at which the price of some model may change."""
        return [v.effective_ns for v in self.versions]


def _candidates(model: str) -> list[str]:
    name = model.strip().lower()
    out = [name]
    # Vendor-qualified ids: "anthropic.claude-3-5-sonnet-…" (Bedrock), "models/gemini-…".
    for sep in ("/", "."):
        if sep in name:
            tail = name.rsplit(sep, 1)[1] if sep == "/" else name.split(sep, 1)[1]
            if tail and tail not in out:
                out.append(tail)
    return out


def _match(version: PriceVersion, provider: str | None, model: str) -> Price | None:
    for name in _candidates(model):
        exact = version.prices.get(name)
        if exact is not None:
            return exact
        best: Price | None = None
        for listed, price in version.prices.items():
            if name.startswith(listed) and name[len(listed) : len(listed) + 1] in ("-", "@", ":") and (best is None or len(listed) > len(best.model)):
                best = price
        if best is not None:
            return best
    return None


def parse_catalog(document: Any, source: str) -> PriceCatalog:
    """Build a catalog from its YAML document; mistakes name the version and model."""
    if not isinstance(document, dict) or not isinstance(document.get("versions"), list):
        raise PermanentError(f"{source}: expected a top-level 'versions:' list")
    versions = []
    for entry in document["versions"]:
        if not isinstance(entry, dict) or "id" not in entry or "effective" not in entry:
            raise PermanentError(f"{source}: each version needs 'id', 'effective' and 'models'")
        vid = str(entry["id"])
        effective = entry["effective"]
        if isinstance(effective, str):
            effective = dt.date.fromisoformat(effective)
        if not isinstance(effective, dt.date):
            raise PermanentError(f"{source}: version {vid}: 'effective' must be a date (YYYY-MM-DD)")
        moment = dt.datetime(effective.year, effective.month, effective.day, tzinfo=dt.UTC)
        prices: dict[str, Price] = {}
        for provider, models in (entry.get("models") or {}).items():
            for model, p in (models or {}).items():
                prices[str(model).lower()] = _price(str(provider), str(model), p, f"{source}: version {vid}: {provider}/{model}")
        versions.append(PriceVersion(vid, int(moment.timestamp()) * 10**9, prices))
    return PriceCatalog(versions)


def _price(provider: str, model: str, p: Any, where: str) -> Price:
    if not isinstance(p, dict) or "input" not in p or "output" not in p:
        raise PermanentError(f"{where}: needs 'input' and 'output' prices per 1M tokens")
    try:
        values = {k: float(p[k]) for k in ("input", "output")}
        values["cached_input"] = float(p["cached_input"] if "cached_input" in p else p["input"])
        values["cache_write_input"] = float(p["cache_write_input"] if "cache_write_input" in p else p["input"])
    except (TypeError, ValueError):
        raise PermanentError(f"{where}: prices must be numbers") from None
    if any(v < 0 for v in values.values()):
        raise PermanentError(f"{where}: prices must not be negative")
    return Price(provider, model.lower(), values["input"], values["output"], values["cached_input"],
                 values["cache_write_input"])


def load_catalog(path: str | Path) -> PriceCatalog:
    """Read a catalog file."""
    try:
        return parse_catalog(yaml.safe_load(utf8_text(Path(path).read_bytes(), str(path))), str(path))
    except OSError as exc:
        raise PermanentError(f"cannot read price catalog {path}: {exc.strerror}") from None


@functools.cache
def default_catalog() -> PriceCatalog:
    """The catalog shipped with aisre (loaded on first use, once per process)."""
    text = resources.files("aisre.normalize.prices").joinpath("catalog.yaml").read_text()
    return parse_catalog(yaml.safe_load(text), "catalog.yaml")


@dataclass(frozen=True)
class PriceOverride:
    """A tenant's own price for one model (e.g. a negotiated discount), from ``effective_ns`` on."""

    model: str
    input: float
    output: float
    cached_input: float
    effective_ns: int
    provider: str = ""

    @property
    def version_id(self) -> str:
        moment = dt.datetime.fromtimestamp(self.effective_ns // 10**9, tz=dt.UTC)
        return f"override:{self.model}@{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def parse_override(data: Any, effective_ns: int) -> PriceOverride:
    """An override from plain data ({model, input, output, cached_input?, provider?}); errors name the field."""
    if not isinstance(data, dict):
        raise PermanentError("a price override must be an object with 'model', 'input' and 'output'")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise PermanentError("a price override needs a 'model' name")
    price = _price(str(data.get("provider") or ""), model.strip(), data, f"price override for {model!r}")
    return PriceOverride(price.model, price.input, price.output, price.cached_input, effective_ns, price.provider)


class TenantCatalog(PriceCatalog):
    """A catalog with one tenant's overrides on top: an override in force for a model wins
    over the catalog, and the call records the override's id as its price version."""

    def __init__(self, base: PriceCatalog, overrides: list[PriceOverride]) -> None:
        super().__init__(base.versions)
        self.overrides = sorted(overrides, key=lambda o: o.effective_ns)
        self._override_cache: dict[tuple[str | None, str, int], tuple[Price, str] | None] = {}

    def lookup(self, provider: str | None, model: str | None, time_ns: int) -> tuple[Price | None, str]:
        in_force = [o for o in self.overrides if o.effective_ns <= time_ns]
        if model and in_force:
            key = (provider, model, len(in_force))
            if key not in self._override_cache:
                self._override_cache[key] = _override_match(in_force, provider, model)
            found = self._override_cache[key]
            if found is not None:
                return found
        return super().lookup(provider, model, time_ns)

    def breakpoints(self) -> list[int]:
        return sorted({*super().breakpoints(), *(o.effective_ns for o in self.overrides)})


def _override_match(in_force: list[PriceOverride], provider: str | None, model: str) -> tuple[Price, str] | None:
    # The newest override per model name wins; then the catalog's matching rules apply.
    latest: dict[str, PriceOverride] = {}
    for o in in_force:
        latest[o.model] = o
    version = PriceVersion(
        "overrides", 0,
        {name: Price(o.provider, o.model, o.input, o.output, o.cached_input) for name, o in latest.items()},
    )
    price = _match(version, provider, model)
    if price is None:
        return None
    return price, latest[price.model].version_id


def price_segments(
    catalog: PriceCatalog, provider: str, model: str, since_ns: int, until_ns: int
) -> list[tuple[int, int, Price | None, str | None]]:
    """(from, to, price or None, version or None) pieces covering [since, until) for one model."""
    points = [since_ns, *(b for b in catalog.breakpoints() if since_ns < b < until_ns), until_ns]
    out = []
    for start, end in itertools.pairwise(points):
        price, version = catalog.lookup(provider or None, model or None, start)
        out.append((start, end, price, version if price is not None else None))
    return out
