"""A secret-detection corpus with known truth, shared by test_secret_corpus.py and
bench/redaction.py.

Positives: for each gitleaks rule in tests/data/secrets/gitleaks-rules.toml, strings
generated from the rule's own regex (random characters, seeded), plus kinds gitleaks has
no rule for (letter-only assignments, Azure connection strings, GCP service-account JSON,
cards split by Unicode spaces) generated here. Each secret is embedded in prose, in
JSON-escaped message content, and after a newline escape.

Negatives ("ordinary text"): Python's own documentation (``pydoc_data.topics``), standard
library source, the captured OTLP content in ../shared/fixtures, and generated ids that are
not secrets (UUIDs, SHA-1/256 and MD5 hex, trace and span ids, dates, order numbers,
versions, pod names, URLs).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import sysconfig
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]

DATA = Path(__file__).resolve().parents[1] / "data" / "secrets"
SHARED = Path(__file__).resolve().parents[3] / "shared"
_PRINTABLE = string.ascii_letters + string.digits + "+/"

# gitleaks rule id -> the kind it is reported under.
GITLEAKS_KINDS = {
    "aws-access-token": "AWS access key id",
    "gcp-api-key": "GCP API key",
    "azure-ad-client-secret": "Azure AD client secret",
    "github-pat": "GitHub token",
    "github-oauth": "GitHub token",
    "github-app-token": "GitHub token",
    "github-refresh-token": "GitHub token",
    "github-fine-grained-pat": "GitHub fine-grained PAT",
    "slack-app-token": "Slack token",
    "slack-bot-token": "Slack token",
    "slack-config-access-token": "Slack token",
    "slack-config-refresh-token": "Slack token",
    "slack-legacy-bot-token": "Slack token",
    "slack-legacy-token": "Slack token",
    "slack-legacy-workspace-token": "Slack token",
    "slack-user-token": "Slack token",
    "stripe-access-token": "Stripe key",
    "openai-api-key": "OpenAI key",
    "anthropic-api-key": "Anthropic key",
    "anthropic-admin-api-key": "Anthropic key",
    "jwt": "JWT",
    "private-key": "PEM private key",
}


@dataclass(frozen=True)
class Sample:
    kind: str
    source: str  # gitleaks rule id or "aisre"
    text: str  # the value sent
    needle: str  # what must not survive redaction
    json_escaped: bool = False


class _Gen:
    """Random strings matching a regex, from its parse tree (look-arounds skipped)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.groups: dict[int, str] = {}

    def run(self, pattern: str) -> tuple[str, str]:
        self.groups = {}
        out = self._seq(P.parse(pattern))
        return out, self.groups.get(1, out)

    def _seq(self, items: object) -> str:
        return "".join(self._one(op, av) for op, av in items)  # type: ignore[attr-defined]

    def _chars(self, av: list) -> list[str]:
        chars: list[str] = []
        negate = False
        for op, arg in av:
            if op is C.NEGATE:
                negate = True
            elif op is C.LITERAL:
                chars.append(chr(arg))
            elif op is C.RANGE:
                chars.extend(chr(c) for c in range(arg[0], arg[1] + 1))
            elif op is C.CATEGORY:
                chars.extend({C.CATEGORY_DIGIT: string.digits, C.CATEGORY_WORD: string.ascii_letters + string.digits + "_",
                              C.CATEGORY_SPACE: " "}.get(arg, _PRINTABLE))
        if "\\" in chars and len(chars) > 1:
            chars.remove("\\")  # in gitleaks' classes only for JSON-escaped slashes
        if negate or any(op is C.CATEGORY and arg is C.CATEGORY_NOT_SPACE for op, arg in av) or len(chars) > 200:
            return list(_PRINTABLE)  # [\s\S], negated classes: realistic key characters
        return chars

    def _one(self, op: object, av: object) -> str:
        rng = self.rng
        if op is C.LITERAL:
            return chr(av)  # type: ignore[arg-type]
        if op is C.NOT_LITERAL or op is C.ANY:
            return rng.choice(_PRINTABLE)
        if op is C.IN:
            return rng.choice(self._chars(av))  # type: ignore[arg-type]
        if op is C.BRANCH:
            return self._seq(rng.choice(av[1]))  # type: ignore[index]
        if op is C.SUBPATTERN:
            group, _, _, sub = av  # type: ignore[misc]
            text = self._seq(sub)
            if group:
                self.groups[group] = text
            return text
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None)):
            low, high, sub = av  # type: ignore[misc]
            high = low + 40 if high is C.MAXREPEAT else min(high, low + 20)
            low = low + 8 if av[1] is C.MAXREPEAT else low  # type: ignore[index]
            return "".join(self._seq(sub) for _ in range(rng.randint(low, high)))
        return ""  # anchors, look-arounds


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _aisre_kinds(rng: random.Random) -> Iterator[tuple[str, str, str]]:
    """(kind, text, needle) for kinds gitleaks has no rule for."""
    upper = string.ascii_uppercase
    b62 = string.ascii_letters + string.digits
    letters = string.ascii_letters
    key = "AKIA" + _rand(rng, upper, 16)
    yield "AWS access key id, no digit", f"note {key} end", key
    secret = _rand(rng, b62 + "/+", 40)
    yield "AWS secret assignment", f"aws_secret_access_key = {secret}", secret
    account_key = _rand(rng, b62 + "/+", 86) + "=="
    yield ("Azure storage connection string",
           f"DefaultEndpointsProtocol=https;AccountName=acct{rng.randint(1, 99)};AccountKey={account_key};"
           "EndpointSuffix=core.windows.net", account_key)
    body = "\n".join(_rand(rng, b62 + "/+", 64) for _ in range(6))
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
    doc = json.dumps({"type": "service_account", "project_id": "demo", "private_key": pem,
                      "client_email": "svc@demo.iam.gserviceaccount.com"})
    yield "GCP service-account key (JSON)", doc, json.dumps(body)[1:-1].split("\\n")[2]
    word = _rand(rng, string.ascii_lowercase, rng.randint(8, 14))
    yield "password=, letters only", f"login with password={word} please", word
    word = _rand(rng, letters, rng.randint(12, 24))
    yield "api_key=, letters only", f'config {{"api_key": "{word}"}}', word
    word = _rand(rng, letters, rng.randint(10, 20))
    yield "token:, letters only", f"token: {word}", word
    word = _rand(rng, letters, rng.randint(20, 40))
    yield "Bearer, letters only", f"curl -H 'Authorization: Bearer {word}'", word
    word = _rand(rng, letters, rng.randint(20, 40))
    yield "Bearer in prose", f"use bearer {word} for it", word
    token = "sk-" + _rand(rng, letters, 48)
    yield "OpenAI key, letters only", f"key {token} end", token
    token = _rand(rng, b62, rng.randint(32, 64))
    if any(c.isdigit() for c in token) and any(c.isupper() for c in token) and any(c.islower() for c in token):
        yield "high-entropy token", f"the value is {token} for prod", token
    for name, sep in (("no-break space", "\u00a0"), ("thin space", "\u2009"), ("narrow no-break space", "\u202f"),
                      ("en dash", "\u2013"), ("ideographic space", "\u3000"), ("figure space", "\u2007")):
        digits = _luhn_card(rng)
        card = sep.join(digits[i : i + 4] for i in range(0, 16, 4))
        yield f"card split by {name}", f"pay with {card} today", card


def _luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randint(0, 9) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def gitleaks_rules() -> list[dict]:
    """The vendored gitleaks rules."""
    with (DATA / "gitleaks-rules.toml").open("rb") as fh:
        return list(tomllib.load(fh)["rules"])


def positives(per_rule: int = 40, seed: int = 13) -> list[Sample]:
    """Seeded secrets of every kind, each in three settings."""
    rng = random.Random(seed)
    gen = _Gen(rng)
    out: list[Sample] = []
    for rule in gitleaks_rules():
        kind = GITLEAKS_KINDS[rule["id"]]
        for i in range(per_rule):
            sample, needle = gen.run(rule["regex"])
            out.extend(_settings(kind, rule["id"], sample.strip(), needle.strip(), i))
    for i in range(per_rule):
        for kind, text, needle in _aisre_kinds(rng):
            out.append(Sample(kind, "aisre", text, needle))
            if i % 2 == 0:
                out.append(Sample(kind, "aisre", json.dumps([{"role": "user", "content": text}]), needle, True))
    return out


def _settings(kind: str, source: str, sample: str, needle: str, i: int) -> list[Sample]:
    setting = i % 3
    if setting == 0:
        return [Sample(kind, source, f"Here it is: {sample} thanks", needle)]
    if setting == 1:
        content = f"hi\nmy key is {sample}\nbye"
        return [Sample(kind, source, json.dumps([{"role": "user", "parts": [{"type": "text", "content": content}]}]), needle, True)]
    return [Sample(kind, source, f"export KEY={sample}", needle)]


def leaked(sample: Sample, redacted: str) -> bool:
    """True when the secret (or, for long ones, any 12-character piece of it) survived."""
    text = "\n".join(_strings(json.loads(redacted))) if sample.json_escaped else redacted  # still valid JSON
    needle = sample.needle
    if len(needle) <= 24:
        return needle in text
    return any(needle[i : i + 12] in text for i in range(0, len(needle) - 12, 6))


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def ordinary_texts(seed: int = 7) -> list[tuple[str, str]]:
    """(source, text) pairs of ordinary text that holds no secret."""
    from pydoc_data.topics import topics

    out = [("python docs", text) for _, text in sorted(topics.items())]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("json/decoder.py", "http/client.py", "email/utils.py", "urllib/parse.py", "base64.py",
                 "logging/__init__.py", "argparse.py", "uuid.py", "hashlib.py", "secrets.py"):
        path = stdlib / name
        if path.exists():
            out.append(("python source", path.read_text(encoding="utf-8")))
    fixtures = SHARED / "fixtures" / "otlp"
    for path in sorted(fixtures.glob("*/json/*.json"))[:60]:
        for value in re.findall(r'"stringValue":\s*"((?:[^"\\]|\\.){40,})"', path.read_text(encoding="utf-8")):
            out.append(("captured content", value))
    rng = random.Random(seed)
    ids = []
    for i in range(2000):
        ids.append(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        ids.append(hashlib.sha256(str(i).encode()).hexdigest())
        ids.append(hashlib.sha1(str(i).encode()).hexdigest().upper() if i % 2 else hashlib.sha1(str(i).encode()).hexdigest())
        ids.append(hashlib.md5(str(i).encode()).hexdigest())
        ids.append(f"{rng.getrandbits(128):032x} {rng.getrandbits(64):016x}")
        ids.append(f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z")
        ids.append(f"order ORD-{rng.randint(2019, 2026)}-{rng.randint(0, 999999):06d} and A-{rng.randint(1000, 9999)}")
        ids.append(f"v{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}")
        ids.append(f"support-bot-{rng.getrandbits(32):08x}-{_rand(rng, string.ascii_lowercase + string.digits, 5)}")
        ids.append(f"https://docs.example.com/guides/getting-started/installation?page={rng.randint(1, 40)}")
    out.append(("generated ids", "\n".join(ids)))
    return out
