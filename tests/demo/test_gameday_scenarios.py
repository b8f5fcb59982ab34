"""The game-day scenarios a drill drives: each fault shows in the spans at the layer triage
reads (a timed-out or rate-limited model call, a search that returned nothing), and the runs
it breaks fail at their root with that cause."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aisre.demo.runner import run
from aisre.normalize.spans import flatten

from .receiver import OtlpReceiver
from .test_runner import FAST


def _traces(receiver: OtlpReceiver) -> dict[str, list[dict[str, Any]]]:
    batch = flatten(receiver.merged(), tenant="t")
    assert batch.rejected == 0, batch.reasons
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in batch.table.to_pylist():
        out[row["trace_id"]].append(row)
    return out


def _root(spans: list[dict[str, Any]]) -> dict[str, Any]:
    return next(s for s in spans if s["is_root"])


def test_latency_spike_times_calls_out(receiver: OtlpReceiver) -> None:
    stats = run(receiver.endpoint, duration_s=2.0, seed=3, scenario="latency-spike", **{**FAST, "workers": 16})
    assert stats.crashed == 0
    traces = _traces(receiver)
    asks = [t for t in traces.values() if _root(t)["journey"] == "ask"]
    assert asks
    # Every chat call takes 8 s more. A plain call gets no byte within the service's 5 s
    # deadline: the run fails on it, and its span carries the timeout. A streamed answer's first
    # chunk comes within the deadline, so it completes, but slowly (past the 4 s latency SLO).
    timed_out, slow = [], []
    for spans in asks:
        root = _root(spans)
        chats = [s for s in spans if s["operation"] == "chat"]
        if root["status"] == "error":
            assert root["error_type"] == "APITimeoutError", root["status_message"]
            assert chats[-1]["status"] == "error"
            timed_out.append(spans)
        else:
            assert all(c["duration_ns"] >= 8.0 * FAST["time_scale"] * 1e9 for c in chats)
            slow.append(spans)
    assert len(timed_out) > len(slow) > 0  # about 30 % of answers stream
    assert stats.failures["ask"] == len(timed_out)


def test_rate_limit_storm_fails_runs_on_429s(receiver: OtlpReceiver) -> None:
    stats = run(receiver.endpoint, duration_s=2.0, seed=4, scenario="rate-limit-storm", **FAST)
    assert stats.crashed == 0
    traces = _traces(receiver)
    failed = [t for t in traces.values() if _root(t)["marks_failure"]]
    assert failed and len(failed) < len(traces)
    for spans in failed:
        assert _root(spans)["error_type"] == "RateLimitError"
        # The service tried the failing call three times (two retries) before giving up: the
        # run's last three chat spans are 429s, retry attempts 0, 1, 2.
        chats = sorted((s for s in spans if s["operation"] == "chat"), key=lambda s: s["start_ns"])
        assert [(c["http_status"], c["retry_attempt"]) for c in chats[-3:]] == [(429, 0), (429, 1), (429, 2)]


def test_retrieval_empty_fails_only_the_runs_without_context(receiver: OtlpReceiver) -> None:
    stats = run(receiver.endpoint, duration_s=2.0, seed=5, scenario="retrieval-empty", failure_rate=0.0,
                rate_limit_rate=0.0, **FAST)
    assert stats.crashed == 0
    asks = [t for t in _traces(receiver).values() if _root(t)["journey"] == "ask"]
    empty, found = [], []
    for spans in asks:
        search = next(s for s in spans if s["operation"] == "retrieval")
        (empty if search["attributes"] and '"db.response.returned_rows":0' in search["attributes"].replace(" ", "")
         else found).append(spans)
    assert empty and found
    # No context: the run fails with NoContext and never calls the chat model.
    for spans in empty:
        assert _root(spans)["error_type"] == "NoContext"
        assert not any(s["operation"] == "chat" for s in spans)
    assert not any(_root(s)["error_type"] == "NoContext" for s in found)
    assert stats.failures["ask"] == len(empty)
