"""Tenant scoping, enforced once for every backend.

A request runs bound to its key's tenant (core/auth.py ``bind_caller``). The guard wraps a
backend (and its ``incidents`` and ``cost`` parts) and checks every call against that
binding before the backend sees it: a ``tenant`` argument, a query or row carrying a
tenant, or Arrow rows with a tenant column must all name the caller's tenant; a ``tenant``
left as None ("every tenant") becomes the caller's own. Outside requests (the evaluator,
the writer, benchmarks) nothing is bound and every call passes unchanged. Backends
therefore never check tenants themselves.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aisre.core.auth import Forbidden, caller_tenant
from aisre.store.protocol import OPEN_TO_EVERY_CALLER, PROCESS_WIDE

# Parts of a backend reached as attributes, guarded like the backend itself.
GUARDED_PARTS = ("incidents", "cost")


def _refuse(caller: str, tenant: object) -> Forbidden:
    return Forbidden(f"this key belongs to tenant {caller!r}; it cannot read tenant {tenant!r}")


def _tenants_of(value: Any) -> list[Any]:
    """Every tenant ``value`` names: a query's, a row's, each row's of a list, each Arrow row's."""
    if isinstance(value, pa.Table):
        if "tenant" not in value.column_names or value.num_rows == 0:
            return []
        return pc.unique(value.column("tenant")).to_pylist()
    if isinstance(value, dict):
        return [value["tenant"]] if "tenant" in value else []
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tenants_of(item)]
    tenant = getattr(value, "tenant", None)
    return [tenant] if isinstance(tenant, str) else []


def _guarded(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        signature = None
    takes_tenant = signature is not None and "tenant" in signature.parameters
    process_wide = name in PROCESS_WIDE

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        caller = caller_tenant()
        if caller is None:
            return method(*args, **kwargs)
        if process_wide:
            raise Forbidden(f"{name} acts for every tenant; a key of tenant {caller!r} cannot call it")
        if signature is None:
            raise Forbidden(f"{name} cannot be checked for tenant {caller!r}")
        bound = signature.bind(*args, **kwargs)
        named: list[Any] = []
        if takes_tenant:
            if bound.arguments.get("tenant") is None:
                bound.arguments["tenant"] = caller
            named.append(bound.arguments["tenant"])
        for key, value in bound.arguments.items():
            if key != "tenant":
                named.extend(_tenants_of(value))
        if not takes_tenant and not named:
            raise Forbidden(f"{name} names no tenant; a key of tenant {caller!r} cannot call it")
        for tenant in named:
            if tenant != caller:
                raise _refuse(caller, tenant)
        return method(*bound.args, **bound.kwargs)

    return call


class TenantGuard:
    """A backend (or one of its parts) whose every call is checked against the caller's tenant."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name in GUARDED_PARTS:
            part = TenantGuard(value)
            object.__setattr__(self, name, part)
            return part
        if name.startswith("_") or name in OPEN_TO_EVERY_CALLER or not callable(value) or isinstance(value, type):
            # Unwrapped: ``prepare`` must stay a module-level function the decoders can pickle.
            return value
        wrapped = _guarded(name, value)
        # Cached on the instance: later look-ups skip __getattr__ and the signature work.
        object.__setattr__(self, name, wrapped)
        return wrapped

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)

    def __repr__(self) -> str:
        return f"TenantGuard({self._inner!r})"
