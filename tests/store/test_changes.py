"""The SLO-count change journal: what a cached reader must re-read, and when it must reload."""

from __future__ import annotations

from aisre.store.changes import MinuteJournal


def test_changes_after_a_generation_are_reported_per_tenant() -> None:
    journal = MinuteJournal()
    start = journal.generation
    journal.record("a", {60, 120})
    journal.record("b", {180})
    middle = journal.generation
    journal.record("a", {240})
    assert journal.since("a", start) == (3, {60, 120, 240})
    assert journal.since("a", middle) == (3, {240})
    assert journal.since("b", middle) == (3, set())
    assert journal.since("b", start) == (3, {180})


def test_a_rules_change_asks_for_a_full_reload_of_that_tenant_only() -> None:
    journal = MinuteJournal()
    journal.record("a", {60})
    journal.record("a", None)
    journal.record("b", {120})
    assert journal.since("a", 0) == (3, None)
    assert journal.since("b", 0) == (3, {120})
    assert journal.since("a", 2) == (3, set())


def test_readers_older_than_the_kept_records_must_reload() -> None:
    journal = MinuteJournal(max_minutes=4)
    journal.record("a", {1, 2, 3})
    journal.record("a", {4, 5})  # drops the first record: 5 minutes kept > 4
    assert journal.since("a", 0) == (2, None)
    assert journal.since("a", 1) == (2, {4, 5})
