"""SpanIngest's decoder pool: a dead decoder is replaced once, off the event loop, and
requests meanwhile are refused as retryable instead of waiting."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from aisre.core.errors import RetryableError
from aisre.core.pipeline import EncodedExport
from aisre.ingest.pipeline import SpanIngest
from aisre.store.duckdb import DuckDBStore
from tests.otlp_factory import journey_request


def _export(traces: int = 5) -> EncodedExport:
    request, _ = journey_request(traces)
    return EncodedExport(request.SerializeToString(), "protobuf")


def _alive(pid: int) -> bool:
    """Running or stopped, not a zombie and not gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


async def _outcome(ingest: SpanIngest, export: EncodedExport) -> object:
    try:
        return await ingest.consume(export, "t")
    except RetryableError as error:
        return error


def test_dead_decoder_is_replaced_once_and_requests_meanwhile_get_503(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "ingest.duckdb"))
    ingest = SpanIngest(store, workers=2, retry_after_s=2.0)
    old = ingest.decoder_pids()
    assert len(old) == 2 and all(_alive(p) for p in old)
    victim, survivor = old
    try:
        # Both decoders stopped: four requests are surely in flight when one decoder dies,
        # and the broken pool cannot finish shutting down until the survivor runs again.
        for pid in old:
            os.kill(pid, signal.SIGSTOP)

        async def scenario() -> tuple[list[object], object]:
            tasks = [asyncio.create_task(_outcome(ingest, _export())) for _ in range(4)]
            await asyncio.sleep(0.2)  # let every task reach the pool
            os.kill(victim, signal.SIGKILL)
            lost = await asyncio.wait_for(asyncio.gather(*tasks), 60)
            during = await asyncio.wait_for(_outcome(ingest, _export()), 5)
            return lost, during

        lost, during = asyncio.run(scenario())
        # Every in-flight decode was lost and said so as retryable 503s (not 429s).
        assert all(isinstance(e, RetryableError) and not e.overloaded and e.retry_after == 2.0 for e in lost), lost
        # A request arriving while the pool is replaced is refused at once, not queued.
        assert isinstance(during, RetryableError) and not during.overloaded
        assert "restarting" in during.message
        assert ingest.pool_restarts == 0
    finally:
        for pid in old:
            if _alive(pid):
                os.kill(pid, signal.SIGCONT)

    async def until_accepted() -> object:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            result = await _outcome(ingest, _export(3))
            if not isinstance(result, RetryableError):
                return result
            await asyncio.sleep(0.2)
        pytest.fail("no export was accepted after the pool was replaced")

    result = asyncio.run(until_accepted())
    assert result.accepted == 9  # type: ignore[attr-defined]
    # One replacement for four failed requests; the old decoders are reaped; two new ones.
    assert ingest.pool_restarts == 1
    new = ingest.decoder_pids()
    assert len(new) == 2 and not set(new) & set(old)
    assert not _alive(victim) and not _alive(survivor)
    assert store.count_spans("t") == 9
    ingest.close()
    assert not any(_alive(p) for p in new)
    ingest.close()  # idempotent
    store.close()


def _read(path: Path) -> bytes:
    """A /proc file, or nothing if its thread or process is gone meanwhile."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _decoder_children() -> set[int]:
    """Live spawned worker processes of this (test) process (threads and children come and
    go while it looks: one that is gone is simply not counted)."""
    children = [int(c) for task in Path(f"/proc/{os.getpid()}/task").iterdir()
                for c in _read(task / "children").split()]
    return {c for c in children if _alive(c) and b"spawn_main" in _read(Path(f"/proc/{c}/cmdline"))}


def test_close_during_replacement_leaves_no_decoder(tmp_path: Path) -> None:
    # Only this ingest's decoders count: another test's pool may still be winding down.
    before = _decoder_children()
    store = DuckDBStore(str(tmp_path / "close.duckdb"))
    ingest = SpanIngest(store, workers=1)
    (pid,) = ingest.decoder_pids()
    os.kill(pid, signal.SIGKILL)
    lost = asyncio.run(_outcome(ingest, _export()))
    assert isinstance(lost, RetryableError) and not lost.overloaded
    ingest.close()  # waits for the replacement under way and shuts it down
    assert ingest.decoder_pids() == []
    assert _decoder_children() - before == set()
    store.close()


def test_a_full_writer_queue_refuses_before_decoding(tmp_path: Path) -> None:
    """Overloaded, ingest refuses at the door (429 queue_full) rather than decoding a body the
    writer would then refuse: the refused body is never decoded (a body that is not protobuf
    at all is refused as retryable, not rejected as malformed)."""
    import threading

    from aisre.core.errors import PermanentError
    from aisre.normalize.spans import flatten

    store = DuckDBStore(str(tmp_path / "full.duckdb"), max_queued_spans=100)
    ingest = SpanIngest(store, workers=0)
    release = threading.Event()
    try:
        # Learn a request's size, then hold the writer so what is submitted stays queued.
        assert asyncio.run(ingest.consume(_export(5), "t")).accepted == 15
        blocked = store._writer.call(release.wait)
        request, _ = journey_request(30)
        flat = flatten(request, "t")
        queued = store.submit_spans(flat.table, flat.resources)  # 90 of 100 spans queued
        assert store.queued_spans == 90
        garbage = EncodedExport(b"\xff not protobuf", "protobuf")
        refused = asyncio.run(_outcome(ingest, garbage))
        assert isinstance(refused, RetryableError) and refused.reason == "queue_full" and refused.overloaded
        assert "90 spans waiting" in refused.message
        release.set()
        blocked.result(10)
        queued.result(30)
        # With room again, the same body reaches the decoder and is rejected as malformed.
        with pytest.raises(PermanentError):
            asyncio.run(ingest.consume(garbage, "t"))
    finally:
        release.set()
        ingest.close()
        store.close()
