"""SQL every backend shares: normalize/semantics.py's conditions rendered as SQL.

Backends differ only in how a NULL is treated: DuckDB's comparisons with NULL are simply
not true where they are used, ClickHouse needs an explicit ``ifNull``. Each passes its
``coalesce`` (identity for DuckDB).
"""

from __future__ import annotations

from collections.abc import Callable

from aisre.normalize.semantics import Condition

Coalesce = Callable[[str, str], str]


def _as_is(expr: str, default: str) -> str:
    return expr


def condition_sql(c: Condition, field: Callable[[str], str], coalesce: Coalesce = _as_is) -> str:
    """One condition as SQL; ``field`` renders a field name, ``coalesce(expr, default)`` a NULL guard."""
    name = field(c.field)
    if c.op == "is_true":
        return coalesce(name, "false")
    if c.op == "is_false":
        return f"NOT {coalesce(name, 'false')}"
    if c.op == "is_null":
        return f"{name} IS NULL"
    if c.op == "not_error":
        return f"{coalesce(name, repr(''))} != 'error'"
    if c.op == "is_error":
        return f"{coalesce(name, repr(''))} = 'error'"
    value = repr(float(c.value)) if isinstance(c.value, float) else str(int(c.value or 0))
    # As SQL's NULL comparisons: a missing value meets no bound.
    return coalesce(f"{name} {'=' if c.op == '==' else c.op} {value}", "false")
