"""Fixtures for the demo tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .receiver import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    recv = OtlpReceiver()
    recv.start()
    try:
        yield recv
    finally:
        recv.stop()
