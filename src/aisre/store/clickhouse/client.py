"""Two ways to reach the same ClickHouse SQL: chdb in-process (a folder) and a server over
HTTP with clickhouse-connect. Both take ``{name:Type}`` query parameters and Arrow inserts,
and are imported only when a store is opened (chdb loads a large native library)."""

from __future__ import annotations

import threading
from typing import Any, Protocol

import pyarrow as pa

# Session settings every client runs with. prefer_column_name_to_alias: in `sum(cost) AS
# cost, sumIf(cost, failed)` the second `cost` is the column, as in every other SQL.
SESSION_SETTINGS: dict[str, Any] = {"prefer_column_name_to_alias": 1}


class Client(Protocol):
    def query(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table: ...

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None: ...

    def insert_arrow(self, table: str, data: pa.Table, settings: dict[str, Any] | None = None) -> None: ...

    def close(self) -> None: ...


def _settings_clause(settings: dict[str, Any] | None) -> str:
    if not settings:
        return ""
    parts = []
    for name, value in settings.items():
        text = str(value).replace("\\", "\\\\").replace("'", "\\'")
        parts.append(f"{name} = {value}" if isinstance(value, int) else f"{name} = '{text}'")
    return " SETTINGS " + ", ".join(parts)


def _param_text(value: Any) -> Any:
    """A parameter as chdb wants it: arrays in ClickHouse's own text form."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_element(v) for v in value) + "]"
    return value


def _element(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(int(value)) if isinstance(value, bool) else str(value)


class ChdbClient:
    """ClickHouse in this process, its data in ``path``. chdb allows one session at a time,
    so queries are serialized."""

    def __init__(self, path: str) -> None:
        from chdb import session

        self._session: Any = session.Session(path)
        self._lock = threading.Lock()
        for name, value in SESSION_SETTINGS.items():
            self._session.query(f"SET {name} = {value}", "CSV")

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        with self._lock:
            result = self._session.query(sql, "ArrowTable", params=self._params(params))
        return result if isinstance(result, pa.Table) else pa.table({})

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._session.query(sql, "CSV", params=self._params(params))

    @staticmethod
    def _params(params: dict[str, Any] | None) -> dict[str, Any]:
        return {k: _param_text(v) for k, v in (params or {}).items()}

    def insert_arrow(self, table: str, data: pa.Table, settings: dict[str, Any] | None = None) -> None:
        columns = ", ".join(data.column_names)
        sql = f"INSERT INTO {table} ({columns}){_settings_clause(settings)} SELECT {columns} FROM Python(data)"
        with self._lock:
            # chdb's Python() table function reads the local variable ``data`` by name.
            self._session.query(sql, "CSV")

    def close(self) -> None:
        """Close the session (idempotent: stores sharing this client may each close it)."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


class HttpClient:
    """A ClickHouse server, reached with clickhouse-connect."""

    def __init__(self, host: str, port: int, username: str, password: str, database: str, secure: bool = False) -> None:
        import clickhouse_connect

        admin = clickhouse_connect.get_client(host=host, port=port, username=username, password=password, secure=secure)
        admin.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        admin.close()
        self._client = clickhouse_connect.get_client(
            host=host, port=port, username=username, password=password, database=database, secure=secure,
            settings=SESSION_SETTINGS,
        )

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        return self._client.query_arrow(sql, parameters=params or {})

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._client.command(sql, parameters=params or {})

    def insert_arrow(self, table: str, data: pa.Table, settings: dict[str, Any] | None = None) -> None:
        self._client.insert_arrow(table, data, settings=settings or {})

    def close(self) -> None:
        self._client.close()
