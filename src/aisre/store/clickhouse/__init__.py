"""ClickHouse: the scale-out store (a server via clickhouse-connect, or chdb in-process)."""

from aisre.store.clickhouse.store import ClickHouseStore

__all__ = ["ClickHouseStore"]
