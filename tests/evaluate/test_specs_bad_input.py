"""What the fuzzer found in the spec loaders and SLO replay: each now a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisre.core.errors import PermanentError
from aisre.evaluate.slo import SloEngine
from aisre.evaluate.specs import check_files, specs_from_text
from aisre.store.duckdb import DuckDBStore


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{[1]: 2}", "a mapping key must be text or a number"),
        ("? [a]\n: 1\n", "a mapping key must be text or a number"),
        ("slos:\n  - name: a\n    journey: b\n    objective: 99\n    window: 99999999999999999999d\n", "is too long"),
        ("slos:\n  - {name: a, journey: b, objective: 99, window: 2500000d, sli: {kind: outcome}}\n", "must be at most 366 days"),
        ("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: a}\nspec:\n  timeWindow: [{duration: 9999999999999999999999w, isRolling: true}]\n", "too long"),
        ("slos:\n  - name: a\n\x00\x01", "not valid YAML"),
    ],
)
def test_loader_reports_instead_of_raising(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    result = check_files([path])
    assert any(message in e.message for e in result.errors), [e.message for e in result.errors]


def test_replay_period_is_bounded(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "x.duckdb"))
    try:
        engine = SloEngine(store)
        engine.apply("t", specs_from_text("slos:\n - {name: a, journey: b, objective: 99, window: 28d, sli: {kind: outcome}}\n"))
        with pytest.raises(PermanentError, match="replay covers at most 400 days"):
            engine.replay("t", "a", 0, None)
        with pytest.raises(PermanentError, match="since before until"):
            engine.replay("t", "a", 2 * 10**18, 10**18)
        assert engine.replay("t", "a", None, None) == []
    finally:
        store.close()
