"""The one JSON parser for request bodies: bounded nesting and a clear 400 for anything bad.

orjson parses first (fast, and it refuses nesting past 1,024 levels instead of recursing);
what it refuses for another reason is parsed again by the standard library, so NaN and
Infinity read where a caller allows them, and a body that is really malformed gets the
standard library's message with its position.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from aisre.core.errors import PermanentError

# orjson's own limit; the standard library would instead recurse until RecursionError.
MAX_DEPTH = 1024


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send null or a finite number")


def parse_json(raw: bytes | str, *, allow_nonfinite: bool = False) -> Any:
    """Parse a JSON request body; PermanentError (HTTP 400) says what is wrong."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("depth limit"):
            raise PermanentError(f"malformed JSON: nested more than {MAX_DEPTH} levels deep") from None
    try:
        return json.loads(raw, parse_constant=None if allow_nonfinite else _refuse_constant)
    except RecursionError:
        raise PermanentError(f"malformed JSON: nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PermanentError(f"malformed JSON: {exc}") from None
