"""Change events sent through the REST API or CLI: checked and turned into a change row."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aisre.core.errors import PermanentError
from aisre.core.timefmt import parse_time

CHANGE_KINDS = ("deploy", "model", "prompt", "config", "flag", "loadtest", "gameday")
_TEXT_LIMIT = 2000


def _text(doc: dict[str, Any], name: str, required: bool = False, limit: int = 256) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        if required:
            raise PermanentError(f"{name} is required")
        return None
    if not isinstance(value, str) and not (isinstance(value, int | float) and not isinstance(value, bool)):
        raise PermanentError(f"{name} must be a string; got {type(value).__name__}")
    text = str(value).strip()
    if len(text) > limit:
        raise PermanentError(f"{name} must be at most {limit} characters; got {len(text)}")
    return text


def _names(doc: dict[str, Any], name: str) -> list[str]:
    value = doc.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise PermanentError(f"{name} must be a list of non-empty strings")
    return sorted({v.strip() for v in value})


def parse_change(doc: Any, tenant: str, now_ns: int) -> dict[str, Any]:
    """A change row from a request body; PermanentError names the field that is wrong."""
    if not isinstance(doc, dict):
        raise PermanentError("a change must be a JSON object")
    known = {"kind", "summary", "what", "who", "at", "services", "journeys", "version", "previous",
             "prompt_name", "link", "metadata"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise PermanentError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kind = _text(doc, "kind", required=True)
    if kind not in CHANGE_KINDS:
        raise PermanentError(f"kind must be one of {', '.join(CHANGE_KINDS)}; got {kind!r}")
    version = _text(doc, "version")
    summary = _text(doc, "summary", limit=_TEXT_LIMIT) or _text(doc, "what", limit=_TEXT_LIMIT)
    if summary is None:
        if version is None:
            raise PermanentError("summary (what changed) is required unless version is given")
        summary = f"{kind} {version}"
    at = doc.get("at")
    if at is None:
        at_ns = now_ns
    elif isinstance(at, str):
        at_ns = parse_time(at, now_ns, "at")
    else:
        raise PermanentError("at must be an RFC 3339 time such as 2026-11-23T09:00:00Z")
    link = _text(doc, "link", limit=_TEXT_LIMIT)
    if link is not None and urlsplit(link).scheme not in ("http", "https"):
        raise PermanentError(f"link must be an http(s) URL; got {link!r}")
    metadata = doc.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise PermanentError("metadata must be a JSON object")
    return {
        "tenant": tenant, "kind": kind, "summary": summary, "who": _text(doc, "who"), "at_ns": at_ns,
        "services": _names(doc, "services"), "journeys": _names(doc, "journeys"), "version": version,
        "previous": _text(doc, "previous"), "prompt_name": _text(doc, "prompt_name"), "link": link,
        "metadata": metadata, "source": "api", "observed_ns": None, "created_ns": now_ns,
    }
