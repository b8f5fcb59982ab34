"""Journey rules: name the journey of traces that carry no ``aisre.journey`` attribute,
from their service and root span name (DESIGN §3).

```yaml
journeys:
  - journey: checkout
    service: shop-api          # regular expression, whole-name match; optional
    root: "POST /checkout.*"   # regular expression, whole-name match; optional
```
The first rule that matches wins; a trace no rule matches is named after its root span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from aisre.core.errors import PermanentError
from aisre.core.textfile import utf8_text


@dataclass(frozen=True)
class JourneyRule:
    journey: str
    service: re.Pattern[str] | None = None
    root: re.Pattern[str] | None = None

    def matches(self, service: str | None, root_name: str | None) -> bool:
        """True when both given patterns match the whole service and root span name."""
        if self.service is not None and (service is None or not self.service.fullmatch(service)):
            return False
        return not (self.root is not None and (root_name is None or not self.root.fullmatch(root_name)))


def resolve(rules: tuple[JourneyRule, ...], service: str | None, root_name: str | None) -> str | None:
    """The journey the first matching rule names, or None."""
    for rule in rules:
        if rule.matches(service, root_name):
            return rule.journey
    return None


def load_rules(path: str | Path) -> tuple[JourneyRule, ...]:
    """Read and check a rules file; any mistake is a PermanentError naming the rule."""
    try:
        document = yaml.safe_load(utf8_text(Path(path).read_bytes(), str(path)))
    except OSError as exc:
        raise PermanentError(f"cannot read journey rules {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PermanentError(f"{path}: not valid YAML: {exc}") from None
    entries = document.get("journeys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise PermanentError(f"{path}: expected a top-level 'journeys:' list of rules")
    rules = []
    for i, entry in enumerate(entries, 1):
        where = f"{path}: rule {i}"
        if not isinstance(entry, dict):
            raise PermanentError(f"{where}: must be a mapping with journey, service and/or root")
        unknown = set(entry) - {"journey", "service", "root"}
        if unknown:
            raise PermanentError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: journey, service, root")
        journey = entry.get("journey")
        if not isinstance(journey, str) or not journey.strip():
            raise PermanentError(f"{where}: 'journey' must be a non-empty name")
        if entry.get("service") is None and entry.get("root") is None:
            raise PermanentError(f"{where}: give 'service', 'root' or both, or every trace would match")
        rules.append(JourneyRule(journey.strip(), _pattern(entry.get("service"), where, "service"), _pattern(entry.get("root"), where, "root")))
    return tuple(rules)


def _pattern(value: object, where: str, field: str) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PermanentError(f"{where}: '{field}' must be a regular expression string")
    try:
        return re.compile(value)
    except re.error as exc:
        raise PermanentError(f"{where}: '{field}' is not a valid regular expression: {exc}") from None
