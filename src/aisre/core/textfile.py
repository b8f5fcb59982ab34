"""Text of configuration files and bodies: strict UTF-8, with the place it breaks named."""

from __future__ import annotations

from aisre.core.errors import PermanentError


class NotUtf8(PermanentError):
    """Bytes that are not UTF-8: names the file, the line and the first bad byte."""

    def __init__(self, file: str, line: int, byte: int, offset: int) -> None:
        self.file, self.line, self.byte, self.offset = file, line, byte, offset
        self.problem = f"file is not valid UTF-8 (byte 0x{byte:02x} at offset {offset})"
        super().__init__(f"{file}:{line}: {self.problem}")


def utf8_text(data: bytes, file: str) -> str:
    """``data`` decoded as UTF-8; NotUtf8 (a PermanentError) says where it is not.

    Replacing bad bytes instead would turn ``obj\\xffective`` into an unknown key and report
    a confusing "objective is required"."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotUtf8(file, data.count(b"\n", 0, exc.start) + 1, data[exc.start], exc.start) from None
