"""Files and bodies that are not UTF-8 are reported as such, with file, line, byte and
offset, by every loader: SLO specs, gate files, windows, receivers, journey rules, prices."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisre.act.notify import load_receivers
from aisre.core.errors import PermanentError
from aisre.core.slo import SpecValidationError
from aisre.core.textfile import NotUtf8, utf8_text
from aisre.evaluate.gate.config import load_gate_config, parse_gate_config
from aisre.evaluate.specs import check_files, specs_from_text
from aisre.evaluate.windows import load_windows
from aisre.normalize.journeys import load_rules
from aisre.normalize.prices import load_catalog

# The bad byte sits inside the key "objective": decoding with replacement used to make it an
# unknown key and report "objective is required".
SLO = b"slos:\n  - name: ask\n    journey: ask\n    obj\xffective: 99\n"
OFFSET = SLO.index(b"\xff")
EXPECTED = f"file is not valid UTF-8 (byte 0xff at offset {OFFSET})"


def test_utf8_text_names_line_byte_and_offset() -> None:
    with pytest.raises(NotUtf8) as info:
        utf8_text(SLO, "slos.yaml")
    assert info.value.message == f"slos.yaml:4: {EXPECTED}"
    assert (info.value.line, info.value.byte, info.value.offset) == (4, 0xFF, OFFSET)
    assert utf8_text("ok é".encode(), "f") == "ok é"


def test_slo_specs_from_a_file_and_from_a_body(tmp_path: Path) -> None:
    path = tmp_path / "slos.yaml"
    path.write_bytes(SLO)
    result = check_files([path])
    assert [(e.file, e.line, e.message) for e in result.errors] == [(str(path), 4, EXPECTED)]
    with pytest.raises(SpecValidationError) as info:
        specs_from_text(SLO, "request body")
    assert [str(e) for e in info.value.errors] == [f"request body:4: {EXPECTED}"]
    assert "objective is required" not in str(info.value)


def test_gate_and_windows_files(tmp_path: Path) -> None:
    gate = tmp_path / "gate.yaml"
    gate.write_bytes(b"judge:\n  pass_score: 9\xe9\n")
    for load in (lambda: load_gate_config(gate), lambda: parse_gate_config(gate.read_bytes(), str(gate))):
        with pytest.raises(SpecValidationError) as info:
            load()
        assert str(info.value.errors[0]) == f"{gate}:2: file is not valid UTF-8 (byte 0xe9 at offset 22)"
    windows = tmp_path / "windows.yaml"
    windows.write_bytes(b"apiVersion: sloth.slok.dev/v1\n\xc3(\n")
    with pytest.raises(SpecValidationError) as info:
        load_windows(windows)
    assert str(info.value.errors[0]) == f"{windows}:2: file is not valid UTF-8 (byte 0xc3 at offset 30)"


@pytest.mark.parametrize(
    ("load", "body"),
    [
        (load_receivers, b"receivers:\n  - name: ops\xff\n"),
        (load_rules, b"journeys:\n  - journey: ask\xff\n"),
        (load_catalog, b"# prices\nversion: x\xff\n"),
    ],
)
def test_receivers_journey_rules_and_prices(tmp_path: Path, load, body: bytes) -> None:
    path = tmp_path / "file.yaml"
    path.write_bytes(body)
    with pytest.raises(PermanentError) as info:
        load(str(path))
    offset = body.index(b"\xff")
    assert info.value.message == f"{path}:2: file is not valid UTF-8 (byte 0xff at offset {offset})"


def test_yaml_nested_too_deeply_is_an_error_not_a_recursion_error() -> None:
    with pytest.raises(SpecValidationError, match="nested too deeply"):
        specs_from_text(b"[" * 100_000, "request body")
    with pytest.raises(SpecValidationError, match="nested too deeply"):
        parse_gate_config("a: " + "[" * 100_000)
