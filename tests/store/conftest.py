"""The store under test, opened by URL: the one place the store tests name a backend.

``open_test_store`` is what the contract suite (tests/store/test_contract.py) runs against;
a new backend adds its URL to ``STORE_URLS`` and a branch here, and must then pass the
suite unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from aisre.store.factory import open_store
from aisre.store.protocol import Store
from tests.store.contract.data import NOW_NS

# ``{dir}`` becomes a fresh temporary folder per test module, ``{name}`` its name.
STORE_URLS: tuple[str, ...] = ("duckdb:///{dir}/contract.duckdb", "chdb:///{dir}/contract.chdb")
# The control-plane contract also runs on split stores (store/split.py): a ``+postgresql``
# backend is that span store with the control plane in a fresh database of the session's
# PostgreSQL (tests/postgres.py).
SPLIT = "+postgresql"
SPLIT_URLS: tuple[str, ...] = ("duckdb+postgresql:///{dir}/contract.duckdb", "chdb+postgresql:///{dir}/contract.chdb")
# A ClickHouse server runs the same suite when this names it, e.g.
# clickhouse://default:@localhost:8123/aisre_test (a fresh database per module is made from it).
if os.environ.get("AISRE_TEST_CLICKHOUSE_URL"):
    STORE_URLS += (os.environ["AISRE_TEST_CLICKHOUSE_URL"].rstrip("/") + "_{name}",)

# What a backend does not implement yet: per backend, the tests (module, or module::test)
# skipped on it and why. The suite stays one parametrized suite; an entry goes away when
# the backend gains the feature, and never hides a wrong answer.
NOT_YET: dict[str, dict[str, str]] = {
    "chdb": {
        "test_contract_control.py": "ClickHouse holds no control plane: PostgreSQL does, run as chdb+postgresql",
        "test_contract_policy.py": "ClickHouse holds no policy records: PostgreSQL does, run as chdb+postgresql",
    },
}
NOT_YET["clickhouse"] = NOT_YET["chdb"]  # the same store on a server
# ClickHouse spans with the control plane on PostgreSQL: every control-plane contract case
# runs (nothing the ClickHouse span store itself does not answer is left).
NOT_YET["chdb+postgresql"] = {}


# Split stores differ from their span store only in where the control plane lives: they run
# the control-plane contract; the data-plane modules would run the same span store twice.
SPLIT_MODULES = frozenset({"test_contract_control.py", "test_contract_policy.py"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run split stores on the control-plane contract only; skip, on each backend, the tests
    NOT_YET lists for it."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        url = callspec.params.get("contract_store") if callspec else None
        if isinstance(url, str) and SPLIT in url.split(":", 1)[0] and item.path.name not in SPLIT_MODULES:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    for item in items:
        callspec = getattr(item, "callspec", None)
        url = callspec.params.get("contract_store") if callspec else None
        if not isinstance(url, str):
            continue
        backend = url.split(":", 1)[0]
        module = item.path.name
        name = getattr(item, "originalname", item.name)
        reason = NOT_YET.get(backend, {}).get(f"{module}::{name}") or NOT_YET.get(backend, {}).get(module)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"{backend}: {reason}"))


@dataclass
class OpenedStore:
    """An opened store (through the factory, tenant guard included) and its cost port."""

    url: str
    store: Store
    # What evaluate/cost reads and writes (CostEngine's ``db``).
    cost: Any
    # The reference backend writes the goldens and must reproduce them byte for byte;
    # the others must match them value for value.
    reference: bool
    # What each request of each tenant stored, as the contract suite delivered it.
    stored: dict[str, list[int]] = field(default_factory=dict)
    # The control store's URL (postgresql://…) of a split store.
    control: str = ""

    def close(self) -> None:
        self.store.close()

    def reopen(self) -> None:
        """Close the store and open the same URL again (a server restart)."""
        self.store.close()
        fresh = open_test_store(self.url, self.control)
        self.store, self.cost = fresh.store, fresh.cost


def open_test_store(url: str, control: str = "") -> OpenedStore:
    """Open the store ``url`` names with the contract's settings: the fixed clock, and raw
    spans kept for ever (the captures' dates must not age out during a run). A
    ``duckdb+postgresql://`` or ``chdb+postgresql://`` URL opens that span store with the
    control store ``control``."""
    scheme, sep, rest = url.partition("://")
    span_url = f"{scheme.removesuffix(SPLIT)}{sep}{rest}"
    store = open_store(span_url, retention_days=0, clock=lambda: NOW_NS, control=control)
    return OpenedStore(url, store, store.cost, reference=url.startswith("duckdb:"), control=control)


@pytest.fixture(scope="module", params=STORE_URLS + SPLIT_URLS, ids=lambda url: url.split(":", 1)[0])
def contract_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenedStore]:
    """One store per backend and test module, closed after it."""
    folder = tmp_path_factory.mktemp("contract")
    url = request.param.format(dir=folder, name=re.sub(r"\W", "_", folder.name))
    control = ""
    if url.split(":", 1)[0].endswith(SPLIT):
        control = request.getfixturevalue("postgres_server").create_database(request.module.__name__.rsplit(".", 1)[-1])
    opened = open_test_store(url, control)
    try:
        yield opened
    finally:
        opened.close()
