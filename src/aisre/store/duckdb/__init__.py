"""DuckDB: the embedded default store."""

from aisre.store.duckdb.store import DuckDBStore

__all__ = ["DuckDBStore"]
