"""Golden files of the store contract: plain JSON documents of what a store answered.

Regenerate them on the reference backend (DuckDB) with::

    AISRE_REGENERATE_GOLDEN=1 PYTHONPATH=$PWD/src python -m pytest tests/store/test_contract.py -q -p no:cacheprovider

then review ``git diff tests/store/golden``: a change there is a change of the contract.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
REGENERATE = os.environ.get("AISRE_REGENERATE_GOLDEN") == "1"
# Floats are written with 12 significant digits: summation order may move the last bits.
DIGITS = 12
REL, ABS = 1e-9, 1e-12


def plain(value: Any) -> Any:
    """``value`` as JSON types: tuples and arrays become lists, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return plain(value.item())
    return value


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{DIGITS}g}")
    return value


def render(doc: Any) -> str:
    """The golden file's text for ``doc``: sorted keys, one-space indent, rounded floats."""
    return json.dumps(_rounded(plain(doc)), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def load(name: str) -> Any:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def write(name: str, doc: Any) -> None:
    GOLDEN.mkdir(exist_ok=True)
    (GOLDEN / f"{name}.json").write_text(render(doc))


def close_to(got: Any, want: Any, where: str = "$") -> list[str]:
    """Where ``got`` differs from ``want``: floats within 1e-9 relative (1e-12 absolute),
    everything else exactly. Empty when they agree."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{where}: {got!r} is not an object"]
        out = [f"{where}: keys {sorted(set(got) ^ set(want))} differ"] if set(got) != set(want) else []
        for key in sorted(set(got) & set(want)):
            out += close_to(got[key], want[key], f"{where}.{key}")
        return out
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{where}: {len(got) if isinstance(got, list) else got!r} items, want {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True)) for d in close_to(g, w, f"{where}[{i}]")]
    if isinstance(want, float) or isinstance(got, float):
        ok = (isinstance(got, (int, float)) and not isinstance(got, bool) and isinstance(want, (int, float))
              and math.isclose(got, want, rel_tol=REL, abs_tol=ABS))
        return [] if ok else [f"{where}: {got!r} != {want!r}"]
    return [] if got == want and type(got) is type(want) else [f"{where}: {got!r} != {want!r}"]


def check(name: str, doc: Any, reference: bool) -> None:
    """Compare ``doc`` with golden ``name`` (writing it first when regenerating on the reference)."""
    if REGENERATE and reference:
        write(name, doc)
    path = GOLDEN / f"{name}.json"
    assert path.exists(), f"no golden {path}; regenerate (see tests/store/contract/golden.py)"
    diffs = close_to(json.loads(json.dumps(plain(doc))), load(name))
    assert not diffs, f"{name}: {len(diffs)} differences, first: " + "; ".join(diffs[:10])
