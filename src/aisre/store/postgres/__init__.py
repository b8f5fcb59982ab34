"""The control plane on PostgreSQL (psycopg 3, imported only when such a store is opened)."""

from aisre.store.postgres.store import PostgresControl

__all__ = ["PostgresControl"]
