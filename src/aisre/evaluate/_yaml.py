"""YAML with line numbers: every mapping and list remembers where it and its keys were written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from aisre.core.slo import SpecError, parse_duration
from aisre.core.textfile import NotUtf8, utf8_text


class LineDict(dict[Any, Any]):
    """A mapping from YAML with the 1-based line of itself and of each key."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}


class LineList(list[Any]):
    """A YAML sequence with the 1-based line of itself and of each item."""

    line: int = 0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines: list[int] = []


class _Loader(yaml.SafeLoader):
    """SafeLoader that builds LineDict/LineList, keeps timestamps as text, and flags duplicate keys."""

    duplicates: list[tuple[int, str]]


# Timestamps stay strings: OpenSLO startTime is "YYYY-MM-DD HH:MM:SS" text, not a datetime.
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be text or a number, not a list or mapping", key_node.start_mark
            ) from None
        if key in out:
            loader.duplicates.append((key_node.start_mark.line + 1, str(key)))
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def read_documents(path: Path, errors: list[SpecError]) -> list[tuple[Any, int]]:
    """All YAML documents of a file with their first line; syntax errors go to ``errors``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        errors.append(SpecError(str(path), 0, "", f"cannot read the file: {exc}"))
        return []
    return parse_documents(data, str(path), errors)


def parse_documents(text: str | bytes, file: str, errors: list[SpecError]) -> list[tuple[Any, int]]:
    """Parse YAML (text, or bytes that must be UTF-8) into (document, line) pairs, reporting
    encoding and syntax errors and duplicate keys."""
    docs: list[tuple[Any, int]] = []
    if isinstance(text, bytes):
        try:
            text = utf8_text(text, file)
        except NotUtf8 as exc:
            errors.append(SpecError(file, exc.line, "", exc.problem))
            return []
    try:
        # The reader refuses control characters as soon as it is built.
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        errors.append(SpecError(file, 0, "", f"not valid YAML: {getattr(exc, 'problem', None) or exc}"))
        return []
    loader.duplicates = []
    try:
        while loader.check_node():
            node = loader.get_node()
            docs.append((loader.construct_document(node), node.start_mark.line + 1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append(SpecError(file, line, "", f"not valid YAML: {problem}"))
        return []
    except RecursionError:
        # The composer recurses per nesting level; no spec is nested anywhere near this deep.
        errors.append(SpecError(file, 0, "", "not valid YAML: nested too deeply"))
        return []
    finally:
        loader.dispose()
    for line, key in loader.duplicates:
        errors.append(SpecError(file, line, key, "key appears twice in the same mapping"))
    return docs


def plain(value: Any) -> Any:
    """Deep copy into plain dicts and lists (drops line information)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    return f"text ({value!r})"


class View:
    """A mapping read with a path and line for every error, collecting errors instead of raising."""

    def __init__(self, data: LineDict, path: str, file: str, errors: list[SpecError]) -> None:
        self.data = data
        self.path = path
        self.file = file
        self.errors = errors

    @property
    def line(self) -> int:
        """Line of this mapping."""
        return self.data.line

    def child_path(self, key: str) -> str:
        """Spec path of a key under this mapping."""
        return f"{self.path}.{key}" if self.path else key

    def where(self, key: str) -> tuple[str, int]:
        """Spec path and line of a key (or of the mapping when the key is absent)."""
        return self.child_path(key), self.data.key_lines.get(key, self.data.line)

    def error(self, key: str, message: str) -> None:
        """Record an error about ``key``."""
        path, line = self.where(key)
        self.errors.append(SpecError(self.file, line, path, message))

    def has(self, key: str) -> bool:
        """Whether the key is present with a non-null value."""
        return self.data.get(key) is not None

    def pick(self, *keys: str) -> str:
        """The first of several spellings present (e.g. ``page_alert``/``pageAlert``), else the first."""
        for key in keys:
            if key in self.data:
                return key
        return keys[0]

    def check_keys(self, allowed: tuple[str, ...]) -> None:
        """Report keys that are not allowed here, listing the ones that are."""
        for key in self.data:
            if key not in allowed:
                self.error(str(key), f"unknown field; allowed: {', '.join(allowed)}")

    def require(self, key: str) -> bool:
        """Report a missing required key; True if it is there."""
        if self.data.get(key) is None:
            self.error(key, "is required")
            return False
        return True

    def text(self, key: str, required: bool = False) -> str | None:
        """A string (numbers are accepted and turned into text)."""
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(key, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(key, f"must be text (got {_type_name(value)})")
            return None
        return str(value)

    def number(self, key: str, required: bool = False) -> float | None:
        """A number."""
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(key, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(key, f"must be a number (got {_type_name(value)})")
            return None
        return float(value)

    def integer(self, key: str) -> int | None:
        """A whole number."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"must be a whole number (got {_type_name(value)})")
            return None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        """true or false."""
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(key, f"must be true or false (got {_type_name(value)})")
            return default
        return value

    def duration(self, key: str, required: bool = False) -> timedelta | None:
        """A duration such as 30d or 1h30m."""
        value = self.text(key, required)
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(key, str(exc))
            return None

    def labels(self, key: str) -> dict[str, str]:
        """A mapping of text to text (numbers and booleans are turned into text)."""
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(key, f"must be a mapping of names to values (got {_type_name(value)})")
            return {}
        out: dict[str, str] = {}
        for k, v in value.items():
            if isinstance(v, dict | list) or v is None:
                path, line = self.child_path(key), getattr(value, "key_lines", {}).get(k, self.line)
                self.errors.append(SpecError(self.file, line, f"{path}.{k}", "must be text"))
                continue
            out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def mapping(self, key: str, required: bool = False) -> View | None:
        """A nested mapping as a View."""
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(key, "is required")
            return None
        if not isinstance(value, LineDict):
            self.error(key, f"must be a mapping (got {_type_name(value)})")
            return None
        return View(value, self.child_path(key), self.file, self.errors)

    def items(self, key: str, required: bool = False) -> Iterator[tuple[Any, str, int]]:
        """The items of a list with their spec path and line."""
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(key, "is required")
            return
        if not isinstance(value, LineList):
            self.error(key, f"must be a list (got {_type_name(value)})")
            return
        for i, item in enumerate(value):
            yield item, f"{self.child_path(key)}[{i}]", value.item_lines[i]

    def as_view(self, item: Any, path: str, line: int, what: str = "a mapping") -> View | None:
        """Wrap a list item as a View, reporting it when it is not a mapping."""
        if not isinstance(item, LineDict):
            self.errors.append(SpecError(self.file, line, path, f"must be {what} (got {_type_name(item)})"))
            return None
        return View(item, path, self.file, self.errors)
