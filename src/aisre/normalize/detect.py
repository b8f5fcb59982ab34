"""What redaction finds, and where: every detector runs over every value.

One RE2 set (``google-re2``: a DFA, linear time, one pass over the value's UTF-8) holds a
candidate pattern per kind and tells which kinds occur anywhere in the value. Each
candidate pattern is implied by its kind's exact pattern (it is that pattern's core, less
the word-boundary look-arounds RE2 lacks), so a value the set passes over holds nothing any
detector would find: the set decides what is worth checking, never what is secret. Only
the kinds the set reports run their exact Python pattern and check (Luhn, IBAN mod-97,
libphonenumber, ``ipaddress``, Shannon entropy).

Kinds, in the order they are replaced (secrets first, so a key is never half-read as a
phone number):

- ``SECRET``: PEM private-key blocks (also inside JSON, as in a GCP service-account file);
  key-prefix formats: AWS access key ids (``AKIA``/``ASIA``/``ABIA``/``ACCA``/``A3T…``, with
  or without digits), GCP API keys ``AIza…``, Azure AD client secrets (``…Q~…``), GitHub
  ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``/``github_pat_``, Slack ``xox?-``/``xapp-``/
  ``xoxe.``, Stripe ``sk_``/``rk_`` live/test/prod, OpenAI ``sk-…``/``sk-proj-…``, Anthropic
  ``sk-ant-…``, JWTs; assignments ``password=…``, ``api_key: …``, ``token=…``,
  ``aws_secret_access_key=…``, ``AccountKey=…`` (Azure storage connection strings),
  ``Authorization: Basic …``, ``Bearer …`` (letters only or not); and long random-looking
  tokens (see :func:`looks_random`).
- ``EMAIL``, ``IBAN`` (country format and mod-97), ``CARD`` (13-19 digits, any Unicode
  space or dash between them, Luhn), ``IP`` (v4 and v6, checked by ``ipaddress``),
  ``PHONE`` (libphonenumber, VALID leniency, so dates and order numbers stay).

Content is usually JSON text, so no match starts right after a backslash (a replacement
never breaks a JSON escape) and no token pattern ends on one.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import phonenumbers
import re2
from stdnum import iban as _iban
from stdnum import luhn as _luhn

KINDS = ("SECRET", "EMAIL", "IBAN", "CARD", "IP", "PHONE")

# ----------------------------------------------------------------------------- patterns

# Unicode spaces and dashes people (and word processors) put between digit groups: no-break,
# the en/em/thin/hair spaces, narrow no-break, ideographic; hyphen, figure/en/em dash, minus.
_SEPARATORS = (
    " \\-\u00a0\u00ad\u2000-\u200b\u202f\u205f\u2060\u3000\ufeff"
    "\u2010-\u2015\u2212\ufe58\ufe63\uff0d"
)
# The same characters as JSON escapes: json.dumps writes non-ASCII text that way by default.
_SEP_ESCAPE = r"\\u(?:00[aA]0|00[aA][dD]|200[0-9a-bA-B]|202[fF]|205[fF]|2060|3000|[fF][eE][fF]{2}|201[0-5]|2212|[fF][eE]58|[fF][eE]63|[fF]{2}0[dD])"
_SEP = f"(?:[{_SEPARATORS}]|{_SEP_ESCAPE})"
_UNICODE_ESCAPE = re.compile(r"\\u[0-9A-Fa-f]{4}")
_SEP_RE2 = (
    "(?:\\\\u[0-9A-Fa-f]{4}|[ \\-\\x{a0}\\x{ad}\\x{2000}-\\x{200b}\\x{202f}\\x{205f}\\x{2060}\\x{3000}\\x{feff}"
    "\\x{2010}-\\x{2015}\\x{2212}\\x{fe58}\\x{fe63}\\x{ff0d}])"
)
# What Python's \s matches in text, for RE2 (whose \s is ASCII only).
_WS_RE2 = r"[\s\x{0b}\x{1c}-\x{1f}\x{85}\p{Z}]"
# Phone numbers are checked by libphonenumber, which knows ASCII separators only.
_TO_ASCII = str.maketrans(
    {c: " " for c in "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"}
    | {c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"}
    | {c: " " for c in "\u00ad\u200b\u2060\ufeff"}
)


def _bounded(first: str, boundary: str, rest: str, flags: int = 0) -> re.Pattern[str]:
    # No match starts inside a word or right after a backslash (JSON escapes), except that an
    # escape such as \n may directly precede one. Each pattern begins with a character class
    # and checks the boundary after it, which lets the regex engine skip ahead cheaply.
    return re.compile(first + rf'(?:(?<=\\[nrtbf"/].)|(?<=\\u[0-9A-Fa-f]{{4}}.)|(?<![{boundary}\\].))' + rest, flags)


_SECRET = _bounded(
    "[sSrRAgxe]",
    "A-Za-z0-9_",
    r"(?<=[sSrRAgxe])(?:"
    r"(?<=s)k-(?:ant-(?:api|admin|sid)\d\d-|proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}"
    r"|(?<=[rs])k_(?:live|test|prod)_[A-Za-z0-9]{10,}"
    r"|(?<=A)(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16}"
    r"|(?<=g)h[pousr]_[A-Za-z0-9]{30,}"
    r"|(?<=g)ithub_pat_[A-Za-z0-9_]{22,}"
    r"|(?<=x)ox[abposre]-[A-Za-z0-9\-]{8,}"
    r"|(?<=x)oxe.xox[bp]-[A-Za-z0-9\-]{10,}"
    r"|(?<=x)app-\d-[A-Za-z0-9\-]{10,}"
    r"|(?<=A)Iza[A-Za-z0-9_\-]{35}"
    r"|(?<=e)y[A-Za-z0-9_\-]{10,}\.ey(?:[A-Za-z0-9_\-]|\\?/)+\.(?:[A-Za-z0-9_\-=]|\\?/)*"
    r")(?![A-Za-z0-9_\-])",
)
_AZURE_AD = re.compile(r"(?<![A-Za-z0-9_~.\-\\])[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])")
_PEM_BEGIN = re.compile(r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----", re.IGNORECASE)

# Names whose value is a secret in "name = value", "name: value", JSON and query strings.
_NAMES = (
    r"api[_-]?key|apikey|api[_-]?secret|x-api-key|api[_-]?token|secret(?:[_-]?(?:access[_-]?)?key)?"
    r"|client[_-]?secret|(?:access|auth|refresh|id|session|bearer|security|private)[_-]?token|token"
    r"|password|passwd|passphrase|pwd|aws_secret_access_key|aws_session_token"
    r"|private[_-]?key(?:[_-]?id)?|account[_-]?key|shared[_-]?access[_-]?key|credentials?"
)
_ASSIGNED_SECRET = re.compile(
    r"(?i)(\b(?:proxy-)?authorization\\?[\"']?\s*[:=]\s*\\?[\"']?(?:(?:basic|bearer|token|digest|negotiate)\s+)?"
    rf"|\b(?:{_NAMES})\\?[\"']?\s*[:=]\s*\\?[\"']?"
    r"|\bbearer\s+)"
    r"([^\s\"'\\,;&<>{}\[\]()`]{4,})"
)
# A value like these says there is no secret here; redacting it would only add noise.
_PLACEHOLDERS = frozenset(
    {"null", "none", "nil", "true", "false", "undefined", "empty", "unset", "string", "required",
     "optional", "hidden", "masked", "redacted", "secret", "password", "token", "xxxx", "****"}
)
_EMAIL = re.compile(
    r"(?:(?<=\\[nrtbf\"/])|(?<![A-Za-z0-9._%+\-\\]))"
    r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9])"
)
_IBAN = _bounded("[A-Z]", "A-Za-z0-9", r"[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
# Separators and digits never share a class, so a long run that fails costs linear time.
_CARD = _bounded(r"\d", r"\w", rf"(?:{_SEP}{{0,2}}\d){{12,18}}(?!\w)")
_IPV4 = _bounded(r"\d", r"\w.", r"\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r'(?:(?<=\\[nrtbf"/])|(?<![\w:.\\]))(?=[0-9A-Fa-f:])'
    r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,8}(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)
# At least 7 digits, possibly separated: worth asking libphonenumber about.
_PHONE_CANDIDATE = _bounded(r"[\d+(]", r"\w+", rf"(?<![A-Za-z]-.)(?:(?:[.()/]|{_SEP}){{0,3}}\d){{6,16}}\)?(?!\w)")
_DATE_START = re.compile(r"\(?\d{4}[\-/.]\d{1,2}[\-/.]\d{1,2}")
# Runs of token characters long enough to be a key; the check decides (looks_random).
_TOKEN = re.compile(r'(?:(?<=\\[nrtbf"/])|(?<![A-Za-z0-9+/_\-=\\]))[A-Za-z0-9+/_\-]{20,}={0,2}(?![A-Za-z0-9+/_\-=])')

# The RE2 candidate of each detector: what its exact pattern above must contain.
_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("pem", r"(?i)-----BEGIN"),
    ("prefix", r"sk-|[rs]k_(?:live|test|prod)_|A(?:KIA|SIA|BIA|CCA|3T)|gh[pousr]_|github_pat_|xox[abposre]|xapp-|AIza"
               r"|ey[A-Za-z0-9_\-]{10,}\.ey"),
    ("azure_ad", r"\dQ~"),
    ("assigned", rf"(?i)authorization\\?[\"']?{_WS_RE2}*[:=]|(?:{_NAMES})\\?[\"']?{_WS_RE2}*[:=]|bearer{_WS_RE2}"),
    ("email", r"@"),
    ("iban", r"[A-Z]{2}\p{Nd}{2}"),
    ("digits", rf"\p{{Nd}}(?:(?:[.()/]|{_SEP_RE2}){{0,3}}\p{{Nd}}){{5}}"),
    ("ipv4", r"\p{Nd}\.\p{Nd}+\.\p{Nd}+\.\p{Nd}"),
    ("ipv6", r":[0-9A-Fa-f]{0,4}:"),
    ("token", r"[A-Za-z0-9+/_\-]{20}"),
)
CANDIDATE_NAMES = tuple(name for name, _ in _CANDIDATES)

_CHECK_BUDGET = 200
# Past this many characters every detector runs, without asking the set: RE2 gives up
# (and would report nothing) when a text makes its DFA rebuild its cache too often, and
# that must never mean "nothing found". The exact patterns are linear-time too.
SET_MAX_CHARS = 65_536
_EVERY = list(range(len(_CANDIDATES)))
MAX_TOKEN_CHARS = 256
MIN_TOKEN_CHARS = 20
# 1st percentile of the Shannon entropy (bits per character) of uniformly random base62
# strings of each length (10,000 samples each): a random key of that length clears it 99
# times in 100. Between lengths the bound is interpolated.
_ENTROPY_FLOOR = ((20, 3.65), (24, 3.86), (32, 4.20), (40, 4.45), (64, 4.91), (100, 5.25))
_WORDY = re.compile(r"[a-z]{4,}|[A-Z][a-z]{3,}|[A-Z]{5,}")


def entropy(text: str) -> float:
    """Shannon entropy of ``text``'s characters, in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


def entropy_floor(length: int) -> float:
    """The entropy a random base62 key of ``length`` characters reaches 99 times in 100."""
    points = _ENTROPY_FLOOR
    if length <= points[0][0]:
        return points[0][1]
    for (l0, h0), (l1, h1) in itertools.pairwise(points):
        if length <= l1:
            return h0 + (h1 - h0) * (length - l0) / (l1 - l0)
    return points[-1][1]


def looks_random(token: str) -> bool:
    """True for a token that reads like a generated key: 20-256 characters of a base64
    alphabet mixing upper case, lower case and digits, as much entropy as random base62
    of its length, and no more than half of it in word-like runs.

    Left alone on purpose: hex-only strings (trace and span ids, UUIDs, hashes, commit
    ids), single-case or digit-free tokens, identifiers and URL paths made of words, and
    blobs over 256 characters (images, embeddings)."""
    core = token.rstrip("=")
    n = len(core)
    if n < MIN_TOKEN_CHARS or n > MAX_TOKEN_CHARS:
        return False
    has_upper = has_lower = has_digit = False
    for ch in core:
        if "a" <= ch <= "z":
            has_lower = True
        elif "A" <= ch <= "Z":
            has_upper = True
        elif "0" <= ch <= "9":
            has_digit = True
    if not (has_upper and has_lower and has_digit):
        return False
    if sum(len(w) for w in _WORDY.findall(core)) * 2 > n:
        return False
    return entropy(core) >= entropy_floor(n)


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


def _candidate_set() -> Any:
    options = re2.Options()
    options.max_mem = 64 << 20  # the DFA of every candidate at once; RE2's default is 8 MiB
    candidates = re2.Set.SearchSet(options)
    for _, pattern in _CANDIDATES:
        candidates.Add(pattern)
    candidates.Compile()
    return candidates._set  # the C++ set itself: the wrapper's per-call overhead doubles the cost


Check = Callable[[re.Match[str]], "tuple[str, int] | None"]


@dataclass
class Redactor:
    """Replaces what the detectors find with ``[REDACTED:KIND]``; :meth:`redact` returns
    (text, count). ``kinds`` limits the kinds replaced (span names and resource attributes
    keep their IP addresses: there they are servers', not people's)."""

    phone_region: str | None = "US"
    kinds: frozenset[str] = frozenset(KINDS)

    def __post_init__(self) -> None:
        self._set = _candidate_set()
        secret = "SECRET" in self.kinds
        steps: list[tuple[int, Callable[[str, list[int]], tuple[str, int]]]] = []

        def use(name: str, fn: Callable[[str, list[int]], tuple[str, int]], kind: str) -> None:
            if kind in self.kinds:
                steps.append((CANDIDATE_NAMES.index(name), fn))

        use("pem", lambda t, b: _pem(t), "SECRET")
        use("prefix", lambda t, b: _sub(_SECRET, t, lambda m: ("[REDACTED:SECRET]", 1)), "SECRET")
        use("azure_ad", lambda t, b: _sub(_AZURE_AD, t, lambda m: ("[REDACTED:SECRET]", 1)), "SECRET")
        use("assigned", lambda t, b: _sub(_ASSIGNED_SECRET, t, _assigned), "SECRET")
        use("email", lambda t, b: _sub(_EMAIL, t, lambda m: ("[REDACTED:EMAIL]", 1)), "EMAIL")
        use("ipv6", lambda t, b: _sub(_IPV6, t, _ipv6), "IP")
        # Checking a candidate with stdnum or libphonenumber costs tens of microseconds: a text
        # built of thousands of lookalikes would take seconds. Past a budget, candidates are
        # redacted unchecked (fail closed: over-redact rather than let one through).
        use("iban", lambda t, b: _sub(_IBAN, t, lambda m: _iban_check(m) if _spend(b) else ("[REDACTED:IBAN]", 1)), "IBAN")
        use("digits", lambda t, b: _sub(_CARD, t, _card), "CARD")
        use("ipv4", lambda t, b: _sub(_IPV4, t, _ipv4), "IP")
        region = self.phone_region
        use("digits", lambda t, b: _sub(_PHONE_CANDIDATE, t, lambda m: _phone(m, region) if _spend(b) else ("[REDACTED:PHONE]", 1)), "PHONE")
        if secret:
            steps.append((CANDIDATE_NAMES.index("token"), lambda t, b: _sub(_TOKEN, t, _token)))
        self._steps = tuple(steps)

    def __getstate__(self) -> dict[str, object]:
        return {"phone_region": self.phone_region, "kinds": self.kinds}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def candidates(self, text: str) -> frozenset[str]:
        """The detectors whose candidate pattern occurs in ``text`` (for tests and bench)."""
        return frozenset(CANDIDATE_NAMES[i] for i in self._found(text))

    def redact_repeated(self, text: str) -> tuple[str, int]:
        """:meth:`redact` for values that repeat, such as span names and status messages
        (OTel asks for low-cardinality names): answers for short ones are remembered."""
        if len(text) > 256:
            return self.redact(text)
        cache: dict[str, tuple[str, int]] = self.__dict__.setdefault("_cache", {})
        known = cache.get(text)
        if known is None:
            if len(cache) >= 8192:
                cache.clear()
            known = cache[text] = self.redact(text)
        return known

    def _found(self, text: str) -> list[int]:
        if len(text) > SET_MAX_CHARS:
            return _EVERY
        return self._set.Match(text.encode("utf-8", "surrogatepass"))

    def redact(self, text: str) -> tuple[str, int]:
        """``text`` with everything found replaced, and how many replacements were made."""
        found = self._found(text)
        if not found:
            return text, 0
        present = set(found)
        count = 0
        budget = [_CHECK_BUDGET]
        for index, step in self._steps:
            if index in present:
                text, n = step(text, budget)
                count += n
        return text, count


def _sub(pattern: re.Pattern[str], text: str, check: Check) -> tuple[str, int]:
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        out = check(match)
        if out is None:
            return match.group(0)
        count += out[1]
        return out[0]

    return pattern.sub(replace, text), count


def _pem(text: str) -> tuple[str, int]:
    """Private-key blocks, header to footer ("-----END … KEY-----", or a bare "KEY-----").
    A block with no footer is redacted to the end of its JSON string (an unescaped quote)
    or of the value: fail closed, yet the JSON around it stays valid. Found with str.find,
    so many headers cost linear time."""
    out: list[str] = []
    pos = count = 0
    stop = -1  # the next unescaped quote, searched again only once passed: linear overall
    for match in _PEM_BEGIN.finditer(text):
        if match.start() < pos:
            continue
        out.append(text[pos : match.start()])
        if stop < match.end():
            limit = _QUOTE.search(text, match.end())
            stop = limit.start() if limit else len(text)
        marker = text.find("-----", match.end(), stop)
        if marker < 0:
            end = stop
        elif text.startswith("-----END", marker):
            close = text.find("-----", marker + 8, stop)
            end = close + 5 if close >= 0 else stop
        else:
            end = marker + 5
        out.append("[REDACTED:SECRET]")
        count += 1
        pos = end
    if not count:
        return text, 0
    out.append(text[pos:])
    return "".join(out), count


_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_QUOTE = re.compile(r'(?<!\\)"')


def _assigned(match: re.Match[str]) -> tuple[str, int] | None:
    value = match.group(2)
    if value.lower() in _PLACEHOLDERS or value.startswith("[REDACTED"):
        return None
    # Code, not a credential: "password = getpass(", "token = self.token", "pwd = os.environ".
    if match.string.startswith("(", match.end()) or _DOTTED.fullmatch(value):
        return None
    # "Bearer" in prose ("bearer tokens") is a word; a bearer credential is long or mixed.
    if match.group(1).lower().startswith("bearer") and (
        len(value) < 8 or (len(value) < 16 and value.isalpha() and value.islower())
    ):
        return None
    return match.group(1) + "[REDACTED:SECRET]", 1


def _token(match: re.Match[str]) -> tuple[str, int] | None:
    return ("[REDACTED:SECRET]", 1) if looks_random(match.group(0)) else None


def _iban_check(match: re.Match[str]) -> tuple[str, int] | None:
    candidate = match.group(0)
    end = _iban_end(candidate)
    if not end:
        return None
    return "[REDACTED:IBAN]" + candidate[end:], 1


def _card(match: re.Match[str]) -> tuple[str, int] | None:
    digits = "".join(str(int(ch)) for ch in _UNICODE_ESCAPE.sub("", match.group(0)) if ch.isdecimal())
    if 13 <= len(digits) <= 19 and _luhn.is_valid(digits):
        return "[REDACTED:CARD]", 1
    return None


def _ipv4(match: re.Match[str]) -> tuple[str, int] | None:
    try:
        ipaddress.IPv4Address(match.group(0))
    except ValueError:
        return None
    return "[REDACTED:IP]", 1


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


def _phone(match: re.Match[str], region: str | None) -> tuple[str, int] | None:
    candidate = match.group(0)
    if _DATE_START.match(candidate):
        return None
    if "\\u" in candidate:  # JSON-escaped separators: check the plain text, replace it whole
        plain = _UNICODE_ESCAPE.sub(" ", candidate)
        n = sum(1 for _ in phonenumbers.PhoneNumberMatcher(plain, region, leniency=phonenumbers.Leniency.VALID))
        return ("[REDACTED:PHONE]", n) if n else None
    ascii_candidate = candidate.translate(_TO_ASCII)  # same length: offsets still hold
    found = list(phonenumbers.PhoneNumberMatcher(ascii_candidate, region, leniency=phonenumbers.Leniency.VALID))
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


def exact_patterns() -> Iterable[tuple[str, re.Pattern[str]]]:
    """(candidate name, exact pattern) pairs: every exact match must contain its candidate."""
    return (
        ("pem", _PEM_BEGIN), ("prefix", _SECRET), ("azure_ad", _AZURE_AD), ("assigned", _ASSIGNED_SECRET),
        ("email", _EMAIL), ("iban", _IBAN), ("digits", _CARD), ("digits", _PHONE_CANDIDATE),
        ("ipv4", _IPV4), ("ipv6", _IPV6), ("token", _TOKEN),
    )
