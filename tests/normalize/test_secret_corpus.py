"""Recall per secret kind on a public rule set, false positives on ordinary text, and the
property that makes the RE2 candidate set safe: it never misses what a detector finds."""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisre.normalize.detect import Redactor, exact_patterns, looks_random
from tests.normalize import secret_corpus as corpus
from tests.normalize.test_redaction import redacts_within

R = Redactor("US")

# Floors per kind: every kind the README names is found at least this often. The
# generated gitleaks samples include the rules' whole ranges (short legacy Slack tokens).
FLOOR = defaultdict(lambda: 0.98, {"Slack token": 0.97, "high-entropy token": 0.95})
# Secret findings allowed per MB of ordinary text (prose, code, ids that are not secrets).
MAX_SECRET_FP_PER_MB = 2.0


def test_recall_per_kind_on_the_corpus() -> None:
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sample in corpus.positives():
        redacted, _ = R.redact(sample.text)
        found[sample.kind][0] += not corpus.leaked(sample, redacted)
        found[sample.kind][1] += 1
    print("\n" + "\n".join(f"{kind:38s} {hit:4d}/{n:<4d} {hit / n:7.1%}" for kind, (hit, n) in sorted(found.items())))
    # Every gitleaks rule vendored, and every kind aisre adds, is measured.
    assert set(corpus.GITLEAKS_KINDS.values()) <= set(found)
    assert {"AWS access key id, no digit", "password=, letters only", "Bearer, letters only",
            "card split by thin space", "card split by no-break space", "high-entropy token"} <= set(found)
    low = {kind: hit / n for kind, (hit, n) in found.items() if hit / n < FLOOR[kind]}
    assert not low, low


def test_false_positives_on_ordinary_text() -> None:
    texts = corpus.ordinary_texts()
    size = sum(len(t.encode()) for _, t in texts)
    kinds: Counter[tuple[str, str]] = Counter()
    for source, text in texts:
        redacted, _ = R.redact(text)
        for kind in re.findall(r"\[REDACTED:(\w+)\]", redacted):
            kinds[(source, kind)] += 1
    print(f"\n{size / 1e6:.2f} MB of ordinary text:", dict(kinds))
    assert size > 1_000_000
    secrets = sum(n for (_, kind), n in kinds.items() if kind == "SECRET")
    assert secrets / (size / 1e6) <= MAX_SECRET_FP_PER_MB
    # Ids that are not secrets are left whole: UUIDs, hashes, trace ids, dates, order numbers.
    assert not any(source == "generated ids" for source, _ in kinds)
    assert sum(n for (_, kind), n in kinds.items() if kind in {"CARD", "IBAN"}) == 0


def test_every_exact_match_contains_its_candidate() -> None:
    # The RE2 set may skip a detector only when its candidate is absent; this checks, on
    # every corpus text, that no exact pattern matches where its candidate was not seen.
    texts = [s.text for s in corpus.positives(per_rule=10)] + [t for _, t in corpus.ordinary_texts()][:200]
    for text in texts:
        seen = R.candidates(text)
        for name, pattern in exact_patterns():
            if pattern.search(text):
                assert name in seen, (name, text[:200])


_alphabet = st.sampled_from([*list("aAkKsSxXyYeE019_-+/=:.@ \n\\\"'"), "\xa0", "\u2009", "\u202f", "–", "٤", "AKIA", "sk-", "ey", "Bearer ", "password=", "-----BEGIN ", "Q~", "\\u00a0"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_alphabet, max_size=60).map("".join))
def test_candidates_are_implied_by_exact_matches(text: str) -> None:
    seen = R.candidates(text)
    for name, pattern in exact_patterns():
        if pattern.search(text):
            assert name in seen, (name, text)


@pytest.mark.parametrize(
    "text",
    [
        "note AKIAFJPKMNPNFPZCJIAB and password=hunterhunter end",
        "api_key=abcdefghij and Bearer abcdefghijklmnopqrstuvwxyz",
        "token: qwertyuiopasdf",
        "sk-abcdefghijklmnopqrstuvwxyzABCDEFGH",
        "card 4111\u00a01111\u00a01111\u00a01111",
        "card 4111\u20091111\u20091111\u20091111",
        "card 4111\u202f1111\u202f1111\u202f1111",
        "card 4111\u20131111\u20131111\u20131111",
    ],
)
def test_the_issue_examples_are_found_without_digits_at_signs_or_colons(text: str) -> None:
    redacted, count = R.redact(text)
    assert count >= 1 and "hunterhunter" not in redacted and "AKIAF" not in redacted
    assert not re.search(r"\d{4}\D{1,3}\d{4}", redacted)


def test_json_escaped_separators_and_pem_blocks_keep_json_valid() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
    document = json.dumps({"private_key": pem, "card": "4111\u20091111\u20091111\u20091111", "note": "-----BEGIN RSA PRIVATE KEY----- cut"})
    redacted, count = R.redact(document)
    assert count == 3
    assert json.loads(redacted) == {"private_key": "[REDACTED:SECRET]\n", "card": "[REDACTED:CARD]", "note": "[REDACTED:SECRET]"}


@pytest.mark.parametrize(
    "token",
    [
        "550e8400-e29b-41d4-a716-446655440000",  # UUID
        "3f786850e387550fdab836ed7e6dc881de23001b",  # SHA-1
        "4bf92f3577b34da6a3ce929d0e0e4736",  # trace id
        "ThisIsAVeryLongCamelCaseIdentifier2",
        "org/pipermail/python-bugs-list/2001-January/003752",
        "MAX_RETRY_COUNT_FOR_UPSTREAM_V2",
        "a" * 300,
    ],
)
def test_high_entropy_detector_leaves_ids_that_are_not_secrets(token: str) -> None:
    assert not looks_random(token)


def test_high_entropy_detector_finds_random_keys() -> None:
    rng = random.Random(3)
    alphabet = string.ascii_letters + string.digits
    keys = ["".join(rng.choice(alphabet) for _ in range(rng.randint(24, 64))) for _ in range(500)]
    mixed = [k for k in keys if any(c.isdigit() for c in k) and any(c.isupper() for c in k) and any(c.islower() for c in k)]
    assert sum(map(looks_random, mixed)) / len(mixed) >= 0.97


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN PRIVATE KEY-----" * 20_000,
        "password=" * 20_000,
        "ey" + "a" * 20 + ".ey" + "\\/" * 20_000,
        "4111\u2009" * 20_000,
        "\\u00a01" * 20_000,
        "aB3" * 40_000,
        "xoxb-" * 20_000,
        "1Q~" * 20_000,
    ],
)
def test_new_patterns_finish_quickly(text: str) -> None:
    redacts_within(text, 5)


def test_the_set_sees_a_secret_after_a_long_adversarial_text_and_longer_texts_skip_it() -> None:
    from aisre.normalize.detect import SET_MAX_CHARS

    rng = random.Random(5)
    alphabet = string.ascii_letters + string.digits + " -:.@/+_=\u2009\u00a0٤\\\"'~Q"
    for _ in range(5):
        text = "".join(rng.choice(alphabet) for _ in range(SET_MAX_CHARS - 100)) + " AKIAFJPKMNPNFPZCJIAB end"
        assert "prefix" in R.candidates(text)
    # Past the cap every detector runs: RE2 giving up on a text must never mean "clean".
    redacted, _ = R.redact("x" * (SET_MAX_CHARS + 10) + " AKIAFJPKMNPNFPZCJIAB")
    assert "AKIAF" not in redacted
