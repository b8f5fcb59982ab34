"""row_problems: the check the store contract applies to every backend's rows."""

from __future__ import annotations

from aisre.core.rows import AlertEpisode, JourneySummary, row_problems


def _summary(**over: object) -> dict[str, object]:
    row: dict[str, object] = {"journey": "ask", "runs": 3, "failures": 1, "p50_ms": 12.5, "p95_ms": 40.0,
                              "tokens_per_run": 900.0, "llm_calls_per_run": 2.0, "retries": 0, "cost_usd": 0.01,
                              "last_seen_ns": 1}
    row.update(over)
    return row


def test_a_conforming_row_has_no_problems() -> None:
    assert row_problems(_summary(), JourneySummary) == []
    assert row_problems(_summary(p50_ms=None, cost_usd=1), JourneySummary) == []  # optional, and int for float


def test_missing_extra_and_mistyped_fields_are_named() -> None:
    row = _summary(runs="3", extra=1)
    del row["failures"]
    assert row_problems(row, JourneySummary) == [
        "missing field 'failures'", "undeclared field 'extra'", "runs='3' is not <class 'int'>"]
    assert row_problems(_summary(runs=True), JourneySummary) == ["runs=True is not <class 'int'>"]


def test_optional_fields_still_have_to_be_present() -> None:
    episode = {"id": 1, "tenant": "t", "slo": "s", "journey": None, "severity": "page", "state": "firing",
               "pending_since_ns": 1, "started_ns": 2, "ended_ns": None, "peak_burn": 14, "updated_ns": 2,
               "summary": "burning"}
    assert row_problems(episode, AlertEpisode) == []
    del episode["ended_ns"]
    assert row_problems(episode, AlertEpisode) == ["missing field 'ended_ns'"]
