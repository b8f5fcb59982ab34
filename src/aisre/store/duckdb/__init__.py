"""DuckDB: the embedded default store."""

from aisre.store.duckdb.control import has_active_keys
from aisre.store.duckdb.store import DuckDBStore

__all__ = ["DuckDBStore", "has_active_keys"]
