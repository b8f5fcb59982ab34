"""The shared JSON body parser: bounded nesting and clear messages, the same for every route."""

from __future__ import annotations

import math

import pytest

from aisre.core.errors import PermanentError
from aisre.core.jsonbody import MAX_DEPTH, parse_json


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)])
def test_deep_nesting_is_a_clear_400_not_a_recursion_error(raw: bytes) -> None:
    with pytest.raises(PermanentError, match=f"nested more than {MAX_DEPTH} levels deep"):
        parse_json(raw)
    with pytest.raises(PermanentError, match="nested more than"):
        parse_json(raw, allow_nonfinite=True)


def test_nesting_up_to_the_limit_parses() -> None:
    doc = parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    depth = 0
    while isinstance(doc, list) and doc:
        doc, depth = doc[0], depth + 1
    assert depth == MAX_DEPTH - 1


def test_nan_and_infinity_only_where_the_caller_allows_them() -> None:
    with pytest.raises(PermanentError, match="NaN is not a JSON number"):
        parse_json(b'{"value": NaN}')
    with pytest.raises(PermanentError, match="Infinity is not a JSON number"):
        parse_json(b'[-Infinity]')
    assert math.isnan(parse_json(b'{"value": NaN}', allow_nonfinite=True)["value"])
    # Deeply nested and non-finite together: still the nesting message, never RecursionError.
    with pytest.raises(PermanentError, match="nested more than"):
        parse_json(b"[" * 5000 + b"NaN" + b"]" * 5000, allow_nonfinite=True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff{}", "can't decode byte 0xff in position 0"),
        (b'{"a": ', "Expecting value: line 1 column 7"),
        (b"", "Expecting value"),
    ],
)
def test_malformed_bodies_say_what_and_where(raw: bytes, message: str) -> None:
    with pytest.raises(PermanentError, match="malformed JSON") as info:
        parse_json(raw)
    assert message in info.value.message


def test_values_read_as_the_standard_library_reads_them() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert parse_json("12345678901234567890123") == pytest.approx(1.2345678901234568e22)
