"""The reference data and captures in tests/data are unchanged copies of ../shared."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO

SHARED = REPO.parent / "shared"


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["fixtures", "refs"])
def test_copy_equals_the_shared_folder(name: str) -> None:
    copy = DATA / name
    assert copy.is_dir() and _files(copy), f"tests/data/{name} is missing"
    source = SHARED / name
    if not source.is_dir():
        pytest.skip(f"{source} is not beside this clone: nothing to compare with")
    assert _files(copy) == _files(source)
    different = [f for f in sorted(_files(copy)) if not filecmp.cmp(copy / f, source / f, shallow=False)]
    assert different == [], f"tests/data/{name} differs from ../shared/{name}: {different}"
