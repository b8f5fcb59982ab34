"""The one place a backend is chosen: ``open_store(url)``.

A store is named by a URL: ``duckdb:///var/lib/aisre/aisre.duckdb`` (the embedded
default; a bare path means the same) or ``duckdb://:memory:``; ``chdb:///var/lib/aisre/ch``
(ClickHouse in-process, a folder) or ``clickhouse://user:pass@host:8123/db`` (a ClickHouse
server) for the scale-out store, which holds spans, runs and rollups only so far (issue 17). The ``store`` setting and
``aisre up --store`` give it; ``--db PATH`` is its short form. What comes back is wrapped
in the tenant guard, so no backend checks tenants itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from aisre.core.errors import PermanentError
from aisre.core.settings import Settings
from aisre.store.guard import TenantGuard
from aisre.store.protocol import Store
from aisre.store.retention import check_days, load_retention_file

BACKENDS = ("duckdb", "chdb", "clickhouse")


class BadStoreSetting(PermanentError):
    """A setting the backend cannot use (e.g. a memory size it cannot parse): the CLI exits 2."""


class StoreUnavailable(PermanentError):
    """The store cannot be opened (held by a running server, unreadable, …): one clear line."""


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store URL: the backend, and where its data lives."""

    backend: str
    path: str

    @property
    def local_file(self) -> str | None:
        """The file (chdb: folder) a local backend keeps its data in (None in memory, or on a
        server: a clickhouse:// location names a host and credentials, never a path)."""
        return None if self.path == ":memory:" or self.backend == "clickhouse" else self.path


def parse_store_url(url: str) -> StoreLocation:
    """``duckdb:///abs/path``, ``duckdb://rel/path``, ``duckdb://:memory:`` or a bare path (DuckDB)."""
    text = url.strip()
    if not text:
        raise PermanentError("setting store: give a store URL such as duckdb:///var/lib/aisre/aisre.duckdb")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return StoreLocation("duckdb", text)
    scheme = scheme.lower()
    if scheme not in BACKENDS:
        raise PermanentError(f"setting store: unknown backend {scheme!r} in {url!r}; choose from {', '.join(BACKENDS)}")
    if not rest:
        raise PermanentError(f"setting store: {url!r} names no file")
    # duckdb:///abs/path keeps its leading slash; duckdb://rel/path is relative.
    return StoreLocation(scheme, rest)


def store_url(settings: Settings) -> str:
    """The store a server uses: the ``store`` setting, else the DuckDB file of ``db``."""
    return settings.store or settings.db


def _duckdb_options(settings: Settings) -> dict[str, Any]:
    for name in ("retention_days", "rollup_retention_days"):
        check_days(getattr(settings, name), f"setting {name}")
    return {
        "max_queued_spans": settings.queue_max_spans,
        "max_commit_spans": settings.commit_max_spans,
        "max_wait_ms": settings.commit_max_wait_ms,
        "retry_after_s": settings.retry_after_s,
        "read_pool_size": settings.read_pool_size,
        "memory_limit": settings.db_memory_limit,
        "checkpoint_mb": settings.checkpoint_mb,
        "rollup_interval_ms": settings.rollup_interval_ms,
        "retention_days": settings.retention_days,
        "retention_overrides": load_retention_file(settings.retention_file) if settings.retention_file else None,
        "rollup_retention_days": settings.rollup_retention_days,
        "retention_interval_s": settings.retention_interval_s,
        "retention_step_traces": settings.retention_step_traces,
        "dedup_window_s": settings.dedup_window_s,
        "max_metric_series": settings.max_metric_series,
    }


def check_store_settings(url: str, settings: Settings) -> None:
    """Refuse settings the backend cannot use, naming the setting, before anything starts."""
    location = parse_store_url(url)
    if location.backend in ("chdb", "clickhouse"):
        # The server needs keys, alerts, incidents and cost at start: refuse now, clearly.
        raise BadStoreSetting(
            f"setting store: {location.backend} holds spans, runs, rollups and SLO counts only so far; "
            "the server also needs keys, alerts, incidents and cost, not yet on ClickHouse (issue 17): "
            "use a duckdb:// store for `aisre up`"
        )
    if location.backend == "duckdb":
        from aisre.store.duckdb.store import check_memory_limit

        try:
            check_memory_limit(settings.db_memory_limit)
        except PermanentError as exc:
            raise BadStoreSetting(exc.message) from None
        _duckdb_options(settings)


def open_store(url: str, settings: Settings | None = None, *, guarded: bool = True, **overrides: Any) -> Store:
    """Open the store ``url`` names, configured from ``settings`` (defaults when None) and
    ``overrides`` (backend options, e.g. rollup_interval_ms=0 for a one-off command)."""
    location = parse_store_url(url)
    options = _duckdb_options(settings) if settings is not None else {}
    options.update(overrides)
    if location.backend in ("chdb", "clickhouse"):
        return _open_clickhouse(location, options, guarded)
    import duckdb

    from aisre.store.duckdb import DuckDBStore

    try:
        backend = DuckDBStore(location.path, **options)
    except duckdb.IOException as exc:
        raise StoreUnavailable(f"cannot open {location.path}: {exc}") from None
    return cast(Store, TenantGuard(backend)) if guarded else cast(Store, backend)


def _clickhouse_client(location: StoreLocation) -> Any:
    """The client for a chdb folder or a clickhouse://user:pass@host:port/db server."""
    from aisre.store.clickhouse.client import ChdbClient, HttpClient

    if location.backend == "chdb":
        return ChdbClient(location.path)
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(f"clickhouse://{location.path}")
    return HttpClient(
        host=parts.hostname or "localhost", port=parts.port or 8123, username=unquote(parts.username or "default"),
        password=unquote(parts.password or ""), database=parts.path.strip("/") or "aisre",
    )


def _open_clickhouse(location: StoreLocation, options: dict[str, Any], guarded: bool) -> Store:
    try:
        client = _clickhouse_client(location)
    except ImportError as exc:
        raise StoreUnavailable(
            f"the {location.backend} store needs the clickhouse extra: pip install 'aisre[clickhouse]' ({exc})"
        ) from None
    except Exception as exc:  # chdb holds its folder; a server may be down: one clear line
        raise StoreUnavailable(f"cannot open {location.backend} store {location.path}: {exc}") from None
    from aisre.store.clickhouse import ClickHouseStore

    backend = ClickHouseStore(client, **options)
    return cast(Store, TenantGuard(backend)) if guarded else cast(Store, backend)


def has_active_keys(url: str) -> bool:
    """Whether the store holds a usable API key, read without opening it for writing (False if absent)."""
    location = parse_store_url(url)
    if location.backend != "duckdb":
        return False  # API keys are not yet on ClickHouse (issue 17)
    from aisre.store.duckdb import has_active_keys as duckdb_has_active_keys

    return duckdb_has_active_keys(location.path)
