"""Redaction before anything is stored: content by the tenant's content mode, the other
attributes by its attribute rules.

Each tenant's content (prompts, completions, tool and retrieval values) is kept as sent,
redacted, or dropped (DESIGN §10). Redaction replaces what the detectors find
(:mod:`aisre.normalize.detect`: secrets, e-mail addresses, phone, card and IBAN numbers, IP
addresses) with ``[REDACTED:KIND]``; every detector runs over every value.

Outside content, the tenant's :class:`~aisre.normalize.attribute_rules.AttributeRules` drop,
hash or pattern-scan attributes by key; span names, status messages and resource attributes
are scanned too (for every kind but IP addresses, which there are servers'). Each span
counts what changed in ``aisre.redactions``, ``aisre.content_dropped``, ``aisre.hashed``
and ``aisre.attributes_dropped``.

Names and street addresses in free text are not found: that needs a language model.
Presidio would add them through spaCy NER, but it needs a spaCy model (tens to hundreds of
MB, fetched at install), costs milliseconds per text in the decoder processes, and its
recognizers for the kinds above are patterns and checksums like these.
"""

from __future__ import annotations

import functools
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import phonenumbers
import yaml

from aisre.core.errors import PermanentError
from aisre.normalize.attribute_rules import (
    OFF,
    AttributeRules,
    hash_value,
    matcher,
    parse_rules,
    plan,
)
from aisre.normalize.detect import KINDS, Redactor

__all__ = ["AttributeRules", "ContentFilter", "ContentPolicy", "Redactor", "is_content_key", "load_policy"]

Mode = Literal["keep", "redact", "drop"]
MODES: tuple[Mode, ...] = ("keep", "redact", "drop")
REDACTIONS_ATTRIBUTE = "aisre.redactions"
DROPPED_ATTRIBUTE = "aisre.content_dropped"

# Where content lives, across the OTel GenAI, OpenLLMetry, OpenInference and Traceloop
# conventions (attribute names exactly, or everything under a prefix).
CONTENT_KEYS = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "tool.parameters",
        "input.value",
        "output.value",
        "db.query.text",
        "db.statement",
        "aisre.retrieval.documents",
        "traceloop.entity.input",
        "traceloop.entity.output",
        # Vercel AI SDK (recordInputs / recordOutputs).
        "ai.prompt",
        "ai.prompt.messages",
        "ai.response.text",
        "ai.response.toolCalls",
        "ai.response.object",
        "ai.response.reasoning",
        "ai.toolCall.args",
        "ai.toolCall.result",
        "ai.value",
        "ai.values",
        "ai.embedding",
        "ai.embeddings",
        "ai.documents",
        # Logfire's LLM integrations put the whole request and response here.
        "request_data",
        "response_data",
        # Mastra: the provider's raw response body.
        "mastra.metadata.body",
    }
)
# Content named by its last part under a framework's own namespace: LiteLLM's raw
# provider payload (llm.openai.messages, llm.anthropic.system, llm.None.input …) and
# Mastra's span input and output (mastra.agent_run.input, mastra.model_step.output …).
# Only names of exactly three parts: "llm.system" (the provider) and "llm.token_count.prompt"
# stay metadata.
CONTENT_LEAVES = {
    "llm": frozenset({"messages", "choices", "content", "system", "input"}),
    "mastra": frozenset({"input", "output"}),
}
CONTENT_PREFIXES = (
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.prompts",
    "llm.completions",
    "retrieval.documents.",
    "reranker.input_documents.",
    "reranker.output_documents.",
    "embedding.embeddings.",
    "gen_ai.retrieval.",
)
# Under the prefixes above but metadata, not content: they feed typed columns.
NOT_CONTENT = frozenset({"gen_ai.prompt.name", "gen_ai.prompt.version", "gen_ai.prompt.id"})
# Events whose attributes are message content (OTel GenAI event conventions).
CONTENT_EVENTS = frozenset(
    {
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
        "gen_ai.content.prompt",
        "gen_ai.content.completion",
        "gen_ai.client.inference.operation.details",
    }
)
# Attributes of those events that describe the message rather than hold it.
EVENT_METADATA = frozenset({"gen_ai.system", "gen_ai.provider.name", "role", "index", "finish_reason", "id"})

_key_cache: dict[str, bool] = {}


def is_content_key(key: str) -> bool:
    """True when attribute ``key`` holds prompt, completion, tool or retrieval content."""
    known = _key_cache.get(key)
    if known is None:
        known = key not in NOT_CONTENT and (
            key in CONTENT_KEYS or key.startswith(CONTENT_PREFIXES) or _content_leaf(key)
        )
        if len(_key_cache) < 10_000:  # attribute names repeat; a flood of new ones is not cached
            _key_cache[key] = known
    return known


def _content_leaf(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 3 and parts[2] in CONTENT_LEAVES.get(parts[0], ())


_shape_cache: dict[tuple[str, ...], tuple[str, ...]] = {}


def content_keys(attrs: dict[str, Any]) -> tuple[str, ...]:
    """The content attributes among ``attrs``' keys; spans of one kind share a key set, so
    the answer is cached per key set (one lookup per span instead of one per attribute)."""
    shape = tuple(attrs)
    found = _shape_cache.get(shape)
    if found is None:
        found = tuple(k for k in shape if is_content_key(k))
        if len(shape) <= 64 and len(_shape_cache) < 4096:
            _shape_cache[shape] = found
    return found


DEFAULT_RULES = AttributeRules()
# Span names, status messages and resource attributes: IP addresses there are servers'.
ATTRIBUTE_KINDS = frozenset(KINDS) - {"IP"}
HASHED_ATTRIBUTE = "aisre.hashed"
ATTRIBUTES_DROPPED_ATTRIBUTE = "aisre.attributes_dropped"


@functools.lru_cache(maxsize=16)
def redactor(phone_region: str | None, kinds: frozenset[str] = frozenset(KINDS)) -> Redactor:
    """One redactor per process, phone region and set of kinds."""
    return Redactor(phone_region, kinds)


# ----------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class ContentPolicy:
    """Each tenant's content mode and attribute rules; picklable, so decoder processes
    receive it. ``salt`` keys the HMAC of hashed attributes (setting redact_hash_salt)."""

    default: Mode = "redact"
    tenants: tuple[tuple[str, Mode], ...] = ()
    phone_region: str | None = "US"
    rules: AttributeRules = DEFAULT_RULES
    tenant_rules: tuple[tuple[str, AttributeRules], ...] = ()
    salt: bytes = b""

    def mode_for(self, tenant: str) -> Mode:
        for name, mode in self.tenants:
            if name == tenant:
                return mode
        return self.default

    def rules_for(self, tenant: str) -> AttributeRules:
        for name, rules in self.tenant_rules:
            if name == tenant:
                return rules
        return self.rules

    def scrub(self, tenant: str, value: Any) -> Any:
        """A JSON value (e.g. a policy decision's input) as the tenant's content mode leaves
        content: as sent, pattern-redacted, or dropped (None)."""
        mode = self.mode_for(tenant)
        if mode == "keep":
            return value
        if mode == "drop":
            return None
        return _redact_value(redactor(self.phone_region), value)[0]

    def filter_for(self, tenant: str) -> ContentFilter | None:
        """What to apply to ``tenant``'s spans; None when everything is kept as sent."""
        mode = self.mode_for(tenant)
        rules = self.rules_for(tenant)
        if mode == "keep" and not rules.enabled:
            return None
        return ContentFilter(
            mode,
            redactor(self.phone_region) if mode == "redact" else None,
            rules,
            self.salt,
            redactor(self.phone_region, ATTRIBUTE_KINDS) if rules.enabled else None,
        )


def check_mode(value: str, where: str) -> Mode:
    """``value`` as a content mode, or a PermanentError naming ``where`` it came from."""
    lowered = str(value).strip().lower()
    for mode in MODES:
        if lowered == mode:
            return mode
    raise PermanentError(f"{where}: content mode must be keep, redact or drop, got {value!r}")


def load_policy(
    default: str, path: str = "", phone_region: str = "US", *, attributes: bool = True, salt: bytes = b""
) -> ContentPolicy:
    """The policy from the ``content_capture`` and ``redact_attributes`` settings and an
    optional per-tenant YAML file::

        attributes: {add_hash: [customer.id]}        # every tenant's rules (optional)
        tenants:
          acme: drop                                 # content mode only
          lab: {content: keep, attributes: off}      # both
          clinic: {attributes: {deny: [url.query], add_hash: [patient.id]}}
    """
    base = check_mode(default, "setting content_capture")
    rules = AttributeRules() if attributes else OFF
    tenants: list[tuple[str, Mode]] = []
    tenant_rules: list[tuple[str, AttributeRules]] = []
    if path:
        try:
            document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise PermanentError(f"cannot read content policy file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise PermanentError(f"content policy file {path} is not valid YAML: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("tenants", {}), dict):
            raise PermanentError(f"content policy file {path} must be a mapping with 'tenants: {{name: mode}}'")
        unknown = set(document) - {"tenants", "attributes"}
        if unknown:
            raise PermanentError(f"content policy file {path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        if "attributes" in document:
            rules = parse_rules(document["attributes"], rules, f"{path}: attributes")
        for name, entry in (document.get("tenants") or {}).items():
            where = f"{path}: tenant {name!r}"
            if isinstance(entry, dict):
                unknown = set(entry) - {"content", "attributes"}
                if unknown:
                    raise PermanentError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (content, attributes)")
                if "content" in entry:
                    tenants.append((str(name), check_mode(entry["content"], where)))
                if "attributes" in entry:
                    tenant_rules.append((str(name), parse_rules(entry["attributes"], rules, f"{where}: attributes")))
            else:
                tenants.append((str(name), check_mode(entry, where)))
    region = phone_region.strip().upper() or None
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise PermanentError(f"setting redact_phone_region: {phone_region!r} is not a region phonenumbers knows (e.g. US, GB, DE)")
    return ContentPolicy(base, tuple(tenants), region, rules, tuple(tenant_rules), salt)


def load_salt(value: str, db: str) -> bytes:
    """The HMAC key for hashed attributes from setting redact_hash_salt: the text itself,
    ``env:NAME`` or ``file:PATH`` (kept out of the command line), or, when empty, a random
    key created once in ``DB.salt`` (mode 0600) so a user hashes alike across restarts."""
    value = value.strip()
    if value.startswith("env:"):
        found = os.environ.get(value[4:], "")
        if not found:
            raise PermanentError(f"setting redact_hash_salt: environment variable {value[4:]} is not set")
        return found.encode()
    if value.startswith("file:"):
        try:
            found = Path(value[5:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PermanentError(f"setting redact_hash_salt: cannot read {value[5:]}: {exc.strerror}") from None
        if not found:
            raise PermanentError(f"setting redact_hash_salt: {value[5:]} is empty")
        return found.encode()
    if value:
        return value.encode()
    path = Path(db + ".salt")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip().encode()
    except OSError as exc:
        raise PermanentError(f"cannot create the hash key file {path}: {exc.strerror} (or set redact_hash_salt)") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secrets.token_hex(32) + "\n")
    return path.read_text(encoding="utf-8").strip().encode()


# What a filter counts: pattern redactions, content values dropped, values hashed,
# attributes dropped by the rules.
REDACTED, CONTENT_DROPPED, HASHED, ATTRS_DROPPED = range(4)


@dataclass
class ContentFilter:
    """Applies one tenant's content mode and attribute rules to a request's spans."""

    mode: Mode
    redactor: Redactor | None
    rules: AttributeRules = OFF
    salt: bytes = b""
    scanner: Redactor | None = None
    tally: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def __post_init__(self) -> None:
        self._matcher = matcher(self.rules)  # hashing the rules once per request, not per span

    def attributes(self, attrs: dict[str, Any]) -> None:
        """Filter span (or link) attributes in place, counting into ``tally``."""
        if self.mode != "keep":
            for key in content_keys(attrs):
                self._apply(attrs, key)
        if self.rules.enabled and attrs:
            self._rules(attrs)

    def event(self, name: str, attrs: dict[str, Any]) -> None:
        """Filter one event's attributes in place; message events are content throughout."""
        if name not in CONTENT_EVENTS:
            self.attributes(attrs)
        elif self.mode != "keep":
            for key in [k for k in attrs if k not in EVENT_METADATA]:
                self._apply(attrs, key)

    def resource(self, attrs: dict[str, Any]) -> None:
        """Filter resource attributes in place: the rules, then every other value scanned."""
        if not self.rules.enabled:
            return
        self._rules(attrs)
        assert self.scanner is not None
        for key, value in attrs.items():
            if isinstance(value, str | list | dict) and self._matcher.action(key) is None:
                new, count = _redact_value(self.scanner, value)
                if count:
                    attrs[key] = new
                    self.tally[REDACTED] += count

    def text(self, value: str) -> str:
        """A span name or status message, scanned."""
        if not value or self.scanner is None:
            return value
        known = self.scanner.redact_repeated(value)
        self.tally[REDACTED] += known[1]
        return known[0]

    def _rules(self, attrs: dict[str, Any]) -> None:
        for key, action in plan(self._matcher, tuple(attrs), is_content_key):
            if action == "drop":
                del attrs[key]
                self.tally[ATTRS_DROPPED] += 1
            elif action == "hash":
                attrs[key] = hash_value(self.salt, attrs[key])
                self.tally[HASHED] += 1
            else:
                assert self.scanner is not None
                new, count = _redact_value(self.scanner, attrs[key])
                if count:
                    attrs[key] = new
                    self.tally[REDACTED] += count

    def _apply(self, attrs: dict[str, Any], key: str) -> None:
        if self.mode == "drop":
            del attrs[key]
            self.tally[CONTENT_DROPPED] += 1
            return
        assert self.redactor is not None
        value, count = _redact_value(self.redactor, attrs[key])
        if count:
            attrs[key] = value
            self.tally[REDACTED] += count


def _redact_value(redactor: Redactor, value: Any) -> tuple[Any, int]:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, list):
        total = 0
        out = []
        for item in value:
            new, count = _redact_value(redactor, item)
            out.append(new)
            total += count
        return out, total
    if isinstance(value, dict):
        total = 0
        mapped = {}
        for k, item in value.items():
            new, count = _redact_value(redactor, item)
            mapped[k] = new
            total += count
        return mapped, total
    return value, 0
