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
# A ClickHouse server runs the same suite when this names it, e.g.
# clickhouse://default:@localhost:8123/aisre_test (a fresh database per module is made from it).
if os.environ.get("AISRE_TEST_CLICKHOUSE_URL"):
    STORE_URLS += (os.environ["AISRE_TEST_CLICKHOUSE_URL"].rstrip("/") + "_{name}",)

# What a backend does not implement yet: per backend, the tests (module, or module::test)
# skipped on it and why. The suite stays one parametrized suite; an entry goes away when
# the backend gains the feature, and never hides a wrong answer.
NOT_YET: dict[str, dict[str, str]] = {
    "chdb": {
        "test_contract_control.py": "the control plane is not yet on ClickHouse; PostgreSQL will hold it (issue 17)",
    },
}
NOT_YET["clickhouse"] = NOT_YET["chdb"]  # the same store on a server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip, on each backend, the tests NOT_YET lists for it."""
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

    def close(self) -> None:
        self.store.close()

    def reopen(self) -> None:
        """Close the store and open the same URL again (a server restart)."""
        self.store.close()
        fresh = open_test_store(self.url)
        self.store, self.cost = fresh.store, fresh.cost


def open_test_store(url: str) -> OpenedStore:
    """Open the store ``url`` names with the contract's settings: the fixed clock, and raw
    spans kept for ever (the captures' dates must not age out during a run)."""
    store = open_store(url, retention_days=0, clock=lambda: NOW_NS)
    return OpenedStore(url, store, store.cost, reference=url.startswith("duckdb:"))


@pytest.fixture(scope="module", params=STORE_URLS, ids=lambda url: url.split(":", 1)[0])
def contract_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenedStore]:
    """One store per backend and test module, closed after it."""
    folder = tmp_path_factory.mktemp("contract")
    opened = open_test_store(request.param.format(dir=folder, name=re.sub(r"\W", "_", folder.name)))
    try:
        yield opened
    finally:
        opened.close()
