"""Rules for attributes outside content fields, like the OpenTelemetry Collector's
redaction and attributes processors: drop (deny, or not on an allow list), hash (salted
HMAC-SHA256, so per-user counts still work) or pattern-scan a key's value.

Keys are matched exactly or as shell-style globs (``user.*``, ``*.header.cookie``). The
defaults follow the OpenTelemetry semantic conventions for who a request was for and how
it was authenticated; span names, status messages, exception messages and stack traces,
and resource attributes are pattern-scanned as well.
"""

from __future__ import annotations

import fnmatch
import hmac
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from aisre.core.errors import PermanentError

Action = Literal["drop", "hash", "scan"]
HASH_PREFIX = "hmac:"

# OTel semconv: the end user (user.*, enduser.*, deprecated enduser.id), the caller's
# address (client.*, source.*, network.peer.*, old http.client_ip / net.peer.ip), sessions;
# gen_ai.user.id because aisre reads it as a user id too.
DEFAULT_HASH = (
    "user.id", "user.email", "user.name", "user.full_name", "user.hash",
    "enduser.id", "enduser.pseudo.id", "gen_ai.user.id", "session.id",
    "client.address", "source.address", "network.peer.address", "http.client_ip", "net.peer.ip",
    "net.sock.peer.addr",
)
# Credentials in captured HTTP headers and gRPC metadata (http.request.header.<name>,
# rpc.grpc.request.metadata.<name>).
DEFAULT_DENY = (
    "*.header.authorization", "*.header.proxy-authorization", "*.header.cookie",
    "*.header.set-cookie", "*.header.x-api-key", "*.header.x-auth-token", "*.header.api-key",
    "*.metadata.authorization", "*.metadata.cookie", "*.metadata.x-api-key",
)
# Free text and URLs that carry query strings, messages and stack traces.
DEFAULT_SCAN = (
    "url.full", "url.query", "url.path", "url.original", "http.url", "http.target",
    "exception.message", "exception.stacktrace", "error.message", "gen_ai.evaluation.explanation",
)


@dataclass(frozen=True)
class AttributeRules:
    """What happens to one tenant's non-content attributes; picklable and hashable."""

    enabled: bool = True
    allow: tuple[str, ...] = ()  # empty: every key may stay
    deny: tuple[str, ...] = DEFAULT_DENY
    hash: tuple[str, ...] = DEFAULT_HASH
    scan: tuple[str, ...] = DEFAULT_SCAN

    def action(self, key: str) -> Action | None:
        """What this tenant's rules do to ``key`` (deny beats allow beats hash beats scan)."""
        return _matcher(self).action(key)


OFF = AttributeRules(enabled=False, deny=(), hash=(), scan=())


class _Matcher:
    """The rules compiled: one regex per list, and each key's answer remembered."""

    def __init__(self, rules: AttributeRules) -> None:
        self.rules = rules
        self._deny = _globs(rules.deny)
        self._allow = _globs(rules.allow) if rules.allow else None
        self._hash = _globs(rules.hash)
        self._scan = _globs(rules.scan)
        self._keys: dict[str, Action | None] = {}
        self.plans: dict[tuple[str, ...], tuple[tuple[str, Action], ...]] = {}

    def action(self, key: str) -> Action | None:
        known = self._keys.get(key, 0)
        if known != 0:
            return known  # type: ignore[return-value]
        found: Action | None
        if not self.rules.enabled:
            found = None
        elif self._deny.fullmatch(key) or (self._allow is not None and not self._allow.fullmatch(key)):
            found = "drop"
        elif self._hash.fullmatch(key):
            found = "hash"
        elif self._scan.fullmatch(key):
            found = "scan"
        else:
            found = None
        if len(self._keys) < 10_000:  # attribute names repeat; a flood of new ones is not cached
            self._keys[key] = found
        return found


_NOTHING = re.compile(r"(?!)")


def _globs(patterns: tuple[str, ...]) -> re.Pattern[str]:
    if not patterns:
        return _NOTHING
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


_matchers: dict[AttributeRules, _Matcher] = {}


def matcher(rules: AttributeRules) -> _Matcher:
    """The compiled form of ``rules`` (shared by every filter with equal rules)."""
    return _matcher(rules)


def _matcher(rules: AttributeRules) -> _Matcher:
    found = _matchers.get(rules)
    if found is None:
        if len(_matchers) > 256:
            _matchers.clear()
        found = _matchers[rules] = _Matcher(rules)
    return found


def plan(rules: AttributeRules | _Matcher, keys: tuple[str, ...], is_content: Any) -> tuple[tuple[str, Action], ...]:
    """(key, action) for the keys of one attribute set that the rules touch; content keys
    (``is_content(key)``) are left to the content mode unless denied. Spans of one kind
    share a key set, so the answer is cached per key set."""
    matcher = rules if isinstance(rules, _Matcher) else _matcher(rules)
    found = matcher.plans.get(keys)
    if found is None:
        out = []
        for key in keys:
            action = matcher.action(key)
            if action is None or (action != "drop" and is_content(key)):
                continue
            if action == "drop" and is_content(key) and not matcher._deny.fullmatch(key):
                continue  # an allow list governs metadata; content has its own mode
            out.append((key, action))
        found = tuple(out)
        if len(keys) <= 64 and len(matcher.plans) < 4096:
            matcher.plans[keys] = found
    return found


def hash_value(salt: bytes, value: Any) -> Any:
    """``value`` as ``hmac:`` + 32 hex digits of HMAC-SHA256(salt, value); lists element-wise."""
    if isinstance(value, list):
        return [hash_value(salt, v) for v in value]
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if text.startswith(HASH_PREFIX):
        return text  # hashed already (a re-sent span, or hashed by the sender's collector)
    return HASH_PREFIX + hmac.digest(salt, text.encode("utf-8", "surrogatepass"), "sha256")[:16].hex()


_LISTS = ("allow", "deny", "hash", "scan")


def parse_rules(document: Any, base: AttributeRules, where: str) -> AttributeRules:
    """Rules from a YAML value: ``off``/``false``, ``on``/``true`` (the base), or a mapping
    whose lists (allow, deny, hash, scan) replace the base's; ``add_deny``, ``add_hash``,
    ``add_scan`` extend them instead."""
    if document is False or (isinstance(document, str) and document.strip().lower() in {"off", "false", "no"}):
        return OFF
    if document is True or document is None or (isinstance(document, str) and document.strip().lower() in {"on", "true", "yes", "default"}):
        return base if base.enabled else AttributeRules()
    if not isinstance(document, dict):
        raise PermanentError(f"{where}: attributes must be off, on or a mapping of allow/deny/hash/scan lists")
    unknown = set(document) - {*_LISTS, *(f"add_{n}" for n in _LISTS)}
    if unknown:
        raise PermanentError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (allow, deny, hash, scan, add_…)")
    rules = base if base.enabled else AttributeRules()
    for name in _LISTS:
        for key, extend in ((name, False), (f"add_{name}", True)):
            if key not in document:
                continue
            items = document[key]
            if items is None:
                items = []
            if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
                raise PermanentError(f"{where}: {key} must be a list of attribute keys or globs")
            value = tuple(i.strip() for i in items)
            changed: dict[str, Any] = {name: (getattr(rules, name) + value) if extend else value}
            rules = replace(rules, **changed)
    return rules
