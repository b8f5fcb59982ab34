"""SLO spec loading: native, OpenSLO and Sloth YAML → one list of validated ``SloSpec``.

The format is detected per YAML document. Errors name the file, the line and the field; a
set of files with any error loads nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from aisre.core.slo import AlertWindows, SloSpec, SpecError, SpecValidationError
from aisre.evaluate._yaml import LineDict, LineList, View, read_documents
from aisre.evaluate.specs.native import is_native, load_native
from aisre.evaluate.specs.openslo import OpenSloObject, collect, is_openslo, load_openslo
from aisre.evaluate.specs.sloth import is_sloth, load_sloth
from aisre.evaluate.specs.validation import validate, validate_slo, warnings_for
from aisre.evaluate.windows import load_windows, windows_for

__all__ = ["LoadResult", "check_files", "expand_paths", "load_specs", "validate", "validate_slo"]

DEFAULT_WINDOW = timedelta(days=30)  # Sloth's default period
YAML_SUFFIXES = (".yaml", ".yml")
FORMAT_HELP = ("expected `slos:` (aisre), `version: prometheus/v1` (Sloth), "
               "`apiVersion: sloth.slok.dev/v1` (Sloth CR) or `apiVersion: openslo/v1` (OpenSLO)")


@dataclass
class LoadResult:
    """What a set of files holds: the SLOs per file and every error found."""

    files: list[Path] = field(default_factory=list)
    specs: list[SloSpec] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)

    def specs_in(self, path: Path) -> list[SloSpec]:
        """SLOs declared in one file."""
        return [s for s in self.specs if s.source.file == str(path)]

    def errors_in(self, path: Path) -> list[SpecError]:
        """Errors reported against one file."""
        return [e for e in self.errors if e.file == str(path)]


def expand_paths(paths: Iterable[Path]) -> tuple[list[Path], list[SpecError]]:
    """Files to read: each file as given, each folder's YAML files (recursively, sorted)."""
    files: list[Path] = []
    errors: list[SpecError] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in YAML_SUFFIXES)
            if not found:
                errors.append(SpecError(str(p), 0, "", "folder holds no .yaml or .yml files"))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            errors.append(SpecError(str(p), 0, "", "no such file or folder"))
    return files, errors


def check_files(
    paths: Iterable[Path],
    *,
    default_window: timedelta = DEFAULT_WINDOW,
    windows: Iterable[AlertWindows] = (),
    known_journeys: Collection[str] | None = None,
    known_scores: Collection[str] | None = None,
) -> LoadResult:
    """Read, map and validate spec files, returning SLOs and errors instead of raising."""
    files, errors = expand_paths(paths)
    result = LoadResult(files=files, errors=errors)
    openslo_objects: list[OpenSloObject] = []
    for path in files:
        for doc, line in read_documents(path, result.errors):
            result.specs.extend(_load_document(doc, line, str(path), default_window,
                                               openslo_objects, result.errors))
    result.specs.extend(load_openslo(openslo_objects, default_window, result.errors))
    result.specs = [_with_windows(s, tuple(windows), result.errors) for s in result.specs]
    result.errors.extend(validate(result.specs, known_journeys, known_scores))
    result.errors.sort(key=lambda e: (e.file, e.line))
    result.warnings = [w for s in result.specs for w in warnings_for(s)]
    return result


def load_specs(
    paths: list[Path],
    *,
    default_window: timedelta = DEFAULT_WINDOW,
    windows: Iterable[AlertWindows] = (),
    known_journeys: Collection[str] | None = None,
    known_scores: Collection[str] | None = None,
) -> list[SloSpec]:
    """Load SLO specs from files or folders; raises SpecValidationError if anything is wrong."""
    result = check_files(paths, default_window=default_window, windows=windows,
                         known_journeys=known_journeys, known_scores=known_scores)
    if result.errors:
        raise SpecValidationError(result.errors)
    return result.specs


def _load_document(
    doc: object, line: int, file: str, default_window: timedelta,
    openslo_objects: list[OpenSloObject], errors: list[SpecError],
) -> list[SloSpec]:
    if doc is None:
        return []  # empty document, e.g. a trailing `---`
    if isinstance(doc, LineList):
        if doc and all(isinstance(d, LineDict) and is_openslo(d) for d in doc):
            openslo_objects.extend(collect(doc, file, errors))
            return []
        errors.append(SpecError(file, line, "", f"cannot tell the spec format: {FORMAT_HELP}"))
        return []
    if not isinstance(doc, LineDict):
        errors.append(SpecError(file, line, "", f"cannot tell the spec format: {FORMAT_HELP}"))
        return []
    view = View(doc, "", file, errors)
    if is_openslo(doc):
        openslo_objects.extend(collect(doc, file, errors))
        return []
    if is_sloth(doc):
        return load_sloth(view, default_window)
    if is_native(doc):
        return load_native(view, default_window)
    if "version" in doc:
        view.error("version", f"unknown spec version {doc['version']!r}; supported: aisre/v1, "
                   "prometheus/v1 (Sloth)")
    elif "apiVersion" in doc:
        view.error("apiVersion", f"unknown apiVersion {doc['apiVersion']!r}; supported: "
                   "openslo/v1, openslo/v1alpha, sloth.slok.dev/v1")
    else:
        errors.append(SpecError(file, line, "", f"cannot tell the spec format: {FORMAT_HELP}"))
    return []


def _with_windows(
    spec: SloSpec, custom: tuple[AlertWindows, ...], errors: list[SpecError]
) -> SloSpec:
    """Attach the burn-rate window policy: the SLO's own file, a custom one, or a built-in."""
    alerting = spec.alerting
    if alerting.windows_file:
        path = Path(alerting.windows_file)
        if not path.is_absolute():
            path = Path(spec.source.file).parent / path
        where, line = spec.source.where("alerting.windows")
        try:
            chosen: AlertWindows | None = load_windows(path)
        except SpecValidationError as exc:
            errors.append(SpecError(spec.source.file, line, where,
                                    f"cannot use windows file {str(path)!r}: "
                                    + "; ".join(str(e) for e in exc.errors)))
            return spec
    else:
        chosen = windows_for(spec.window.duration, custom)
    return dataclasses.replace(spec, alerting=dataclasses.replace(alerting, windows=chosen))


def specs_from_text(text: str | bytes, name: str = "request") -> list[SloSpec]:
    """Load specs from YAML text or UTF-8 bytes (e.g. an API body); raises SpecValidationError like load_specs."""
    import tempfile

    # The loaders read files (and resolve references across them); one temporary file
    # keeps a single code path, with errors naming ``name`` instead of the temp path.
    with tempfile.TemporaryDirectory(prefix="aisre-slo-") as folder:
        path = Path(folder) / name.replace("/", "_")
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        try:
            return load_specs([path])
        except SpecValidationError as exc:
            raise SpecValidationError(
                [dataclasses.replace(e, file=name) for e in exc.errors]
            ) from None
