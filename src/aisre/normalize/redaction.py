"""PII redaction of prompt, completion, tool and retrieval content before it is stored.

Each tenant's content is kept as sent, redacted, or dropped (DESIGN §10). Redaction
replaces what it finds with ``[REDACTED:KIND]`` and counts it; the count goes into the
span's ``aisre.redactions`` attribute. What it finds:

- e-mail addresses;
- phone numbers: candidate digit runs confirmed by ``phonenumbers`` (libphonenumber's
  metadata, VALID leniency, so dates and order numbers stay);
- card numbers: 13-19 digits (spaces or dashes between) that pass the Luhn check
  (``stdnum.luhn``);
- IBANs that pass their country format and mod-97 checksum (``stdnum.iban``);
- API keys and tokens: OpenAI/Anthropic ``sk-…``, ``Bearer …``, AWS access key ids and
  ``aws_secret_access_key=…``, GitHub ``ghp_…``/``github_pat_…``, Slack ``xox?-…``,
  Google ``AIza…``, Stripe ``sk_live_…``, JWTs, and ``api_key=…``/``password: …``
  style assignments;
- IPv4 and IPv6 addresses (checked by ``ipaddress``).

Names and street addresses in free text are not found: that needs a language model.
Presidio would add them through spaCy NER, but it needs a spaCy model (tens to hundreds of
MB, fetched at install), costs milliseconds per text in the decoder processes, and its
recognizers for the kinds above are patterns and checksums like these.

Content is usually JSON text (``gen_ai.input.messages``), so no match starts right after a
backslash: a replacement never breaks a JSON escape. Text with no digit, ``@`` or ``:``
cannot hold any of these and is skipped after one scan.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import phonenumbers
import yaml
from stdnum import iban as _iban
from stdnum import luhn as _luhn

from aisre.core.errors import PermanentError

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
    }
)
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
        known = key not in NOT_CONTENT and (key in CONTENT_KEYS or key.startswith(CONTENT_PREFIXES))
        if len(_key_cache) < 10_000:  # attribute names repeat; a flood of new ones is not cached
            _key_cache[key] = known
    return known


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


# ----------------------------------------------------------------------------- detectors

# No match starts inside a word or right after a backslash (JSON escapes), except that an
# escape such as \n may directly precede one. Each pattern begins with a character class
# and checks the boundary after it, which lets the regex engine skip ahead cheaply.


def _bounded(first: str, boundary: str, rest: str) -> re.Pattern[str]:
    return re.compile(first + rf'(?:(?<=\\[nrtbf"/].)|(?<![{boundary}\\].))' + rest)


_SECRET = _bounded(
    "[sSrRAgxe]",
    "A-Za-z0-9_",
    r"(?<=[sSrRAgxe])(?:"
    r"(?<=s)k-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"
    r"|(?<=[rs])k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|(?<=A)(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}"
    r"|(?<=g)h[pousr]_[A-Za-z0-9]{30,}"
    r"|(?<=g)ithub_pat_[A-Za-z0-9_]{22,}"
    r"|(?<=x)ox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|(?<=A)Iza[A-Za-z0-9_\-]{35}"
    r"|(?<=e)yJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r")(?![A-Za-z0-9_\-])",
)
# "Bearer <token>" and "api_key = <value>": the scheme or name stays, the value goes.
_ASSIGNED_SECRET = re.compile(
    r"(?i)(\bbearer\s+|\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token|"
    r"password|passwd|pwd|aws_secret_access_key|client[_-]?secret)\\?[\"']?\s*[:=]\s*\\?[\"']?)"
    r"([A-Za-z0-9._~+/=\-]{6,})"
)
_EMAIL = re.compile(
    r"(?:(?<=\\[nrtbf\"/])|(?<![A-Za-z0-9._%+\-\\]))"
    r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9])"
)
_IBAN = _bounded("[A-Z]", "A-Za-z0-9", r"[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_CARD = _bounded(r"\d", r"\w", r"(?:[ \-]?\d){12,18}(?!\w)")
_IPV4 = _bounded(r"\d", r"\w.", r"\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\w|\.\d)")
# Every repeat below is unambiguous (separators and digits/hex never share a class), so a
# long run that fails at its end costs linear time, not exponential backtracking.
_IPV6 = re.compile(
    r'(?:(?<=\\[nrtbf"/])|(?<![\w:.\\]))(?=[0-9A-Fa-f:])'
    r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,8}(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{1,4}:|::")
# At least 7 digits, possibly separated: worth asking libphonenumber about. A leading
# ISO date ("2024-05-01 12") is not a phone number.
_PHONE_CANDIDATE = _bounded(r"[\d+(]", r"\w+", r"(?:[ \-.()/]{0,3}\d){6,16}\)?(?!\w)")
_DATE_START = re.compile(r"\(?\d{4}[\-/.]\d{1,2}[\-/.]\d{1,2}")
_TRIGGER = re.compile(r"[\d@:]")
# Cards, IPv4 addresses and phone numbers all hold a run like this; "5-7 days" does not.
_DIGIT_RUN = re.compile(r"\d[\d \-.()/]{4,}\d")
_ASCII_DIGIT_RUN = re.compile(r"(?a)\d[\d \-.()/]{4,}\d")  # twice as fast; most text is ASCII


_CHECK_BUDGET = 200


def _spend(budget: list[int]) -> bool:
    budget[0] -= 1
    return budget[0] >= 0


def _iban_end(candidate: str) -> int:
    """Length of the longest prefix of ``candidate`` that is a valid IBAN, or 0."""
    # A candidate may run on into the next capitalised word group ("DE89 3704 … 00 AND"):
    # try shorter prefixes, ending on a character, down to the shortest IBAN (15).
    ends = [i + 1 for i, ch in enumerate(candidate) if ch != " "]
    for end in reversed(ends):
        compact = candidate[:end].replace(" ", "")
        if len(compact) < 15:
            break
        if _iban.is_valid(compact):
            return end
    return 0


@dataclass
class Redactor:
    """Replaces PII in text with ``[REDACTED:KIND]``; :meth:`redact` returns (text, count)."""

    phone_region: str | None = "US"

    def redact(self, text: str) -> tuple[str, int]:
        """``text`` with everything found replaced, and how many replacements were made."""
        if not _TRIGGER.search(text):
            return text, 0
        count = 0

        def sub(pattern: re.Pattern[str], check: Callable[[re.Match[str]], tuple[str, int] | None]) -> None:
            nonlocal text, count

            def replace(match: re.Match[str]) -> str:
                nonlocal count
                out = check(match)
                if out is None:
                    return match.group(0)
                count += out[1]
                return out[0]

            text = pattern.sub(replace, text)

        # Cheap gates first (substring tests run in C): most text needs only these.
        if (
            "sk-" in text or "k_live_" in text or "k_test_" in text or "AKIA" in text or "ASIA" in text
            or "ABIA" in text or "ACCA" in text or "AIza" in text or "_pat_" in text or "hp_" in text
            or "ho_" in text or "hu_" in text or "hs_" in text or "hr_" in text or "xox" in text or "eyJ" in text
        ):
            sub(_SECRET, lambda m: ("[REDACTED:SECRET]", 1))
        lowered = text.lower()
        if (
            "bearer" in lowered or "key" in lowered or "secret" in lowered or "token" in lowered
            or "pass" in lowered or "pwd" in lowered
        ):
            sub(_ASSIGNED_SECRET, lambda m: (m.group(1) + "[REDACTED:SECRET]", 1))
        if "@" in text:
            sub(_EMAIL, lambda m: ("[REDACTED:EMAIL]", 1))
        if _IPV6_HINT.search(text):
            sub(_IPV6, self._ipv6)
        # IBANs too hold such a run (their account digits), so they share the gate.
        if _ASCII_DIGIT_RUN.search(text) or (not text.isascii() and _DIGIT_RUN.search(text)):
            # Checking a candidate with stdnum or libphonenumber costs tens of microseconds: a
            # text built of thousands of lookalikes would take seconds. Past a budget, candidates
            # are redacted unchecked (fail closed: over-redact rather than let one through).
            budget = [_CHECK_BUDGET]
            sub(_IBAN, lambda m: self._iban(m) if _spend(budget) else ("[REDACTED:IBAN]", 1))
            sub(_CARD, self._card)
            if "." in text:
                sub(_IPV4, self._ipv4)
            sub(_PHONE_CANDIDATE, lambda m: self._phone(m) if _spend(budget) else ("[REDACTED:PHONE]", 1))
        return text, count

    @staticmethod
    def _iban(match: re.Match[str]) -> tuple[str, int] | None:
        candidate = match.group(0)
        end = _iban_end(candidate)
        if not end:
            return None
        return "[REDACTED:IBAN]" + candidate[end:], 1

    @staticmethod
    def _card(match: re.Match[str]) -> tuple[str, int] | None:
        digits = match.group(0).replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and _luhn.is_valid(digits):
            return "[REDACTED:CARD]", 1
        return None

    @staticmethod
    def _ipv4(match: re.Match[str]) -> tuple[str, int] | None:
        try:
            ipaddress.IPv4Address(match.group(0))
        except ValueError:
            return None
        return "[REDACTED:IP]", 1

    @staticmethod
    def _ipv6(match: re.Match[str]) -> tuple[str, int] | None:
        candidate = match.group(0)
        groups = [g for g in re.split(r"[:.]", candidate) if g]
        if len(groups) < 2:  # "a::b"-like code and bare "::1" are not worth a false positive
            return None
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            return None
        return "[REDACTED:IP]", 1

    def _phone(self, match: re.Match[str]) -> tuple[str, int] | None:
        candidate = match.group(0)
        if _DATE_START.match(candidate):
            return None
        found = list(
            phonenumbers.PhoneNumberMatcher(candidate, self.phone_region, leniency=phonenumbers.Leniency.VALID)
        )
        if not found:
            return None
        pieces = []
        last = 0
        for number in found:
            pieces.append(candidate[last : number.start])
            pieces.append("[REDACTED:PHONE]")
            last = number.end
        pieces.append(candidate[last:])
        # A candidate may hold two numbers ("555-0132/555-0199"): each counts.
        return "".join(pieces), len(found)


@functools.lru_cache(maxsize=8)
def redactor(phone_region: str | None) -> Redactor:
    """One redactor per process and phone region."""
    return Redactor(phone_region)


# ----------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class ContentPolicy:
    """Which content mode each tenant gets; picklable, so decoder processes receive it."""

    default: Mode = "redact"
    tenants: tuple[tuple[str, Mode], ...] = ()
    phone_region: str | None = "US"

    def mode_for(self, tenant: str) -> Mode:
        for name, mode in self.tenants:
            if name == tenant:
                return mode
        return self.default

    def filter_for(self, tenant: str) -> ContentFilter | None:
        """What to apply to ``tenant``'s spans; None when content is kept as sent."""
        mode = self.mode_for(tenant)
        if mode == "keep":
            return None
        return ContentFilter(mode, redactor(self.phone_region) if mode == "redact" else None)


def check_mode(value: str, where: str) -> Mode:
    """``value`` as a content mode, or a PermanentError naming ``where`` it came from."""
    lowered = str(value).strip().lower()
    for mode in MODES:
        if lowered == mode:
            return mode
    raise PermanentError(f"{where}: content mode must be keep, redact or drop, got {value!r}")


def load_policy(default: str, path: str = "", phone_region: str = "US") -> ContentPolicy:
    """The policy from the ``content_capture`` setting and an optional per-tenant YAML file:

    ``tenants: {acme: drop, internal-tools: keep}``
    """
    base = check_mode(default, "setting content_capture")
    tenants: list[tuple[str, Mode]] = []
    if path:
        try:
            document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise PermanentError(f"cannot read content policy file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise PermanentError(f"content policy file {path} is not valid YAML: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("tenants"), dict):
            raise PermanentError(f"content policy file {path} must be a mapping with 'tenants: {{name: mode}}'")
        unknown = set(document) - {"tenants"}
        if unknown:
            raise PermanentError(f"content policy file {path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        for name, mode in document["tenants"].items():
            tenants.append((str(name), check_mode(mode, f"{path}: tenant {name!r}")))
    region = phone_region.strip().upper() or None
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise PermanentError(f"setting redact_phone_region: {phone_region!r} is not a region phonenumbers knows (e.g. US, GB, DE)")
    return ContentPolicy(base, tuple(tenants), region)


@dataclass
class ContentFilter:
    """Redacts or drops the content attributes of one span (and its message events)."""

    mode: Mode
    redactor: Redactor | None
    counts: dict[str, int] = field(default_factory=dict)

    def attributes(self, attrs: dict[str, Any]) -> int:
        """Filter span (or link) attributes in place; returns redactions (or drops) made."""
        done = 0
        for key in content_keys(attrs):
            done += self._apply(attrs, key)
        return done

    def event(self, name: str, attrs: dict[str, Any]) -> int:
        """Filter one event's attributes in place; message events are content throughout."""
        if name not in CONTENT_EVENTS:
            return self.attributes(attrs)
        done = 0
        for key in [k for k in attrs if k not in EVENT_METADATA]:
            done += self._apply(attrs, key)
        return done

    def _apply(self, attrs: dict[str, Any], key: str) -> int:
        if self.mode == "drop":
            del attrs[key]
            return 1
        assert self.redactor is not None
        value, count = _redact_value(self.redactor, attrs[key])
        if count:
            attrs[key] = value
        return count


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
