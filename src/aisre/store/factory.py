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
    if control_url(settings):
        check_control_url(control_url(settings))
    if location.backend in ("chdb", "clickhouse") and not control_url(settings):
        # ClickHouse holds the data plane; keys, alerts, incidents and cost live in PostgreSQL.
        raise BadStoreSetting(
            f"setting store: {location.backend} holds the data plane only; give the control plane "
            "(keys, alerts, incidents, budgets) with --control postgresql://user@host:5432/aisre"
        )
    if location.backend == "duckdb":
        from aisre.store.duckdb.store import check_memory_limit

        try:
            check_memory_limit(settings.db_memory_limit)
        except PermanentError as exc:
            raise BadStoreSetting(exc.message) from None
        _duckdb_options(settings)


CONTROL_BACKENDS = ("postgresql", "postgres")


def check_control_url(url: str) -> str:
    """A control-store URL (postgresql://user:pass@host:5432/db), or PermanentError."""
    scheme = url.strip().partition("://")[0].lower()
    if scheme not in CONTROL_BACKENDS:
        raise BadStoreSetting(
            f"setting control_store: {url!r} is not a PostgreSQL URL; give postgresql://user@host:5432/db "
            "(or leave it empty: the control plane then lives in the store itself)"
        )
    return url.strip()


def control_url(settings: Settings) -> str:
    """The control store a server uses ('' when the control plane lives in the store)."""
    return getattr(settings, "control_store", "") or ""


def open_control(url: str) -> Any:
    """The control plane on PostgreSQL (unguarded: the split store is guarded as a whole)."""
    url = check_control_url(url)
    try:
        from aisre.store.postgres import PostgresControl
    except ImportError as exc:
        raise StoreUnavailable(f"a PostgreSQL control store needs psycopg: pip install 'aisre[postgres]' ({exc})") from None
    try:
        return PostgresControl(url)
    except PermanentError:
        raise
    except Exception as exc:  # the server may be down or refuse us: one clear line
        raise StoreUnavailable(f"cannot open control store {_redacted(url)}: {exc}") from None


def _redacted(url: str) -> str:
    """``url`` without its password (it goes to logs and error messages)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def open_lease(settings: Settings | None = None, control: str | None = None, ttl_s: float | None = None) -> Any:
    """The evaluator lease: on PostgreSQL when a control store is set (several nodes share it),
    else the local one (this process is the only one)."""
    from aisre.store.lease import LocalLease

    url = control if control is not None else (control_url(settings) if settings is not None else "")
    if not url:
        return LocalLease()
    from aisre.store.postgres.lease import PostgresLease

    ttl = ttl_s if ttl_s is not None else float(getattr(settings, "lease_ttl_s", 15.0) or 15.0)
    return PostgresLease(check_control_url(url), ttl_s=ttl)


def open_store(url: str, settings: Settings | None = None, *, guarded: bool = True, control: str | None = None,
               **overrides: Any) -> Store:
    """Open the store ``url`` names, configured from ``settings`` (defaults when None) and
    ``overrides`` (backend options, e.g. rollup_interval_ms=0 for a one-off command). With
    ``control`` (or the ``control_store`` setting), a postgresql:// URL, the control plane
    lives there and the store ``url`` names keeps spans, runs and rollups (store/split.py)."""
    control = control if control is not None else (control_url(settings) if settings is not None else "")
    if control:
        from aisre.store.split import SplitStore

        control_store = open_control(control)
        try:
            data = open_store(url, settings, guarded=False, control="", **overrides)
        except BaseException:
            control_store.close()
            raise
        split = SplitStore(data, control_store)
        return cast(Store, TenantGuard(split)) if guarded else cast(Store, split)
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


def has_active_keys(url: str, control: str = "") -> bool:
    """Whether the store (or the control store, when given) holds a usable API key, read
    without opening it for writing (False if absent)."""
    if control:
        from aisre.store.postgres.store import has_active_keys as postgres_has_active_keys

        return postgres_has_active_keys(check_control_url(control))
    location = parse_store_url(url)
    if location.backend != "duckdb":
        return False  # API keys are not yet on ClickHouse (issue 17)
    from aisre.store.duckdb import has_active_keys as duckdb_has_active_keys

    return duckdb_has_active_keys(location.path)
