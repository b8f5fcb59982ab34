"""Fuzz the OTLP decoders and the SLO spec loaders: at least 1M inputs, no crash, no hang.

Run:  .venv/bin/python bench/fuzz.py                       # 1,000,000 inputs, coverage-guided
      .venv/bin/python bench/fuzz.py --inputs 50000 --jobs 1
      .venv/bin/python bench/fuzz.py --engine random        # without atheris

Targets (each input goes through the same code the server runs):

| target | what runs |
|---|---|
| `otlp-protobuf` | `parse_request(bytes, "protobuf")` then `flatten` with redaction and small limits |
| `otlp-json` | `parse_request(bytes, "json")` (OTLP/JSON, hex ids) then `flatten` likewise |
| `otlp-body` | `decode_export`: Content-Encoding gzip/deflate/identity over the bytes, then protobuf |
| `slo-specs` | the bytes as a YAML file through `check_files` (native aisre, OpenSLO, Sloth) |

Allowed outcomes: a result, or a `PermanentError` (which the server turns into 400 / a clear
CLI message). Anything else raised is a **crash**; an input running past --hang-s seconds is a
**hang** (a timer interrupts it). Both are counted, and the input is saved under
`bench/.fuzz-findings/` for replay (`--replay FILE --target NAME`).

Engine: atheris (libFuzzer, coverage-guided over aisre's and PyYAML's code) when installed,
else a seeded random mutator (bit flips, byte edits, splices of the seeds). Seeds: small OTLP
requests built here (GenAI attributes, events, links, nested values, bad ids), the captures in
`../shared/fixtures`, and the SLO specs in `../shared/refs` and the demo. The inputs are split
over the targets by --weights and run in --jobs processes at a time; the whole run is bounded
by --max-seconds. Target (PASS/FAIL): inputs run >= --inputs, crashes == 0, hangs == 0.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FINDINGS = REPO / "bench" / ".fuzz-findings"
TARGETS = ("otlp-protobuf", "otlp-json", "otlp-body", "slo-specs")
DEFAULT_WEIGHTS = "otlp-protobuf=4,otlp-json=3,otlp-body=1,slo-specs=2"


# --------------------------------------------------------------------------- seeds


def _otlp_seeds() -> list[bytes]:
    """Small requests that reach deep into flatten: GenAI attributes, PII, events, links."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import (
        AnyValue,
        ArrayValue,
        KeyValue,
        KeyValueList,
    )
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    def kv(key: str, value: Any) -> KeyValue:
        if isinstance(value, bool):
            return KeyValue(key=key, value=AnyValue(bool_value=value))
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        if isinstance(value, float):
            return KeyValue(key=key, value=AnyValue(double_value=value))
        if isinstance(value, list):
            return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=[kv("", v).value for v in value])))
        if isinstance(value, dict):
            return KeyValue(key=key, value=AnyValue(kvlist_value=KeyValueList(values=[kv(k, v) for k, v in value.items()])))
        if isinstance(value, bytes):
            return KeyValue(key=key, value=AnyValue(bytes_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=str(value)))

    seeds = []
    rng = random.Random(7)
    variants = [
        {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
         "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3,
         "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"mail a@b.io +1 415 555 2671"}]}]'},
        {"openinference.span.kind": "LLM", "llm.model_name": "claude-3-5-sonnet", "llm.token_count.prompt": "40",
         "llm.invocation_parameters": '{"model": "x"}', "llm.input_messages.0.message.content": "card 4111111111111111"},
        {"llm.request.type": "chat", "gen_ai.system": "anthropic", "gen_ai.prompt.0.content": "sk-abcdefghijklmnopqrstuvwx",
         "http.response.status_code": 503, "error.type": "RateLimitError", "aisre.score.groundedness": 0.5},
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t", "gen_ai.tool.call.arguments": {"a": [1, 2.5, True]},
         "retrieval.documents.0.document.content": ["GB82WEST12345698765432", b"\x00\x01"], "aisre.journey": "ask"},
    ]
    for i, attrs in enumerate(variants):
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.extend([kv("service.name", "svc"), kv("service.version", "1.0")])
        ss = rs.scope_spans.add()
        ss.scope.name = "scope"
        trace_id = rng.randbytes(16)
        root = Span(trace_id=trace_id, span_id=rng.randbytes(8), name="POST /ask", kind=2,
                    start_time_unix_nano=1_700_000_000_000_000_000, end_time_unix_nano=1_700_000_001_000_000_000,
                    attributes=[kv("aisre.journey", "ask")], status=Status(code=i % 3, message="Error code: 429 - x"))
        child = Span(trace_id=trace_id, span_id=rng.randbytes(8), parent_span_id=root.span_id, name="chat", kind=3,
                     start_time_unix_nano=1_700_000_000_100_000_000, end_time_unix_nano=1_700_000_000_900_000_000,
                     attributes=[kv(k, v) for k, v in attrs.items()])
        event = child.events.add(name=["exception", "gen_ai.user.message", "gen_ai.evaluation.result", "e"][i],
                                 time_unix_nano=1_700_000_000_200_000_000)
        event.attributes.extend([kv("exception.message", "Error code: 500"), kv("content", "ip 10.0.0.1"),
                                 kv("gen_ai.evaluation.name", "g"), kv("gen_ai.evaluation.score.value", 0.9)])
        link = child.links.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8))
        link.attributes.append(kv("k", {"nested": {"deeper": [1]}}))
        ss.spans.extend([root, child])
        seeds.append(request.SerializeToString())
    return seeds


def _json_from_protobuf(body: bytes) -> bytes:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    doc = json_format.MessageToDict(request)

    def hexify(obj: Any) -> None:
        if isinstance(obj, dict):
            for key in ("traceId", "spanId", "parentSpanId"):
                if isinstance(obj.get(key), str):
                    import base64

                    obj[key] = base64.b64decode(obj[key]).hex()
            for value in obj.values():
                hexify(value)
        elif isinstance(obj, list):
            for value in obj:
                hexify(value)

    hexify(doc)
    return json.dumps(doc).encode()


def seeds_for(target: str) -> list[bytes]:
    """The starting corpus of one target."""
    import gzip
    import zlib

    fixtures = SHARED / "fixtures" / "otlp"
    if target == "otlp-protobuf":
        return _otlp_seeds() + [p.read_bytes() for p in sorted(fixtures.glob("*/raw/*.pb"))[:3]]
    if target == "otlp-json":
        return [_json_from_protobuf(b) for b in _otlp_seeds()] + [p.read_bytes() for p in sorted(fixtures.glob("*/json/*.json"))[:2]]
    if target == "otlp-body":
        out = []
        for body in _otlp_seeds():
            out += [b"g" + gzip.compress(body), b"d" + zlib.compress(body), b"i" + body]
        return out
    specs = sorted((SHARED / "refs").rglob("*.yaml")) + sorted((SHARED / "refs").rglob("*.yml"))
    specs += [REPO / "src" / "aisre" / "demo" / "slos.yaml"]
    return [p.read_bytes() for p in specs if p.stat().st_size < 16_384][:60]


# --------------------------------------------------------------------------- targets


class Hang(BaseException):
    """Raised by the per-input timer; a BaseException so no `except Exception` swallows it."""


def make_target(name: str) -> Any:
    """A function bytes -> None that raises only on a crash (anything but PermanentError)."""
    from aisre.core.errors import PermanentError
    from aisre.core.pipeline import EncodedExport
    from aisre.evaluate.specs import check_files
    from aisre.normalize.redaction import ContentPolicy
    from aisre.normalize.spans import Limits, flatten
    from aisre.receive.otlp_decode import decode_export, parse_request

    content = ContentPolicy("redact").filter_for("t")
    limits = Limits(max_attributes=64, max_value_chars=4096, max_depth=8, max_spans=1000)

    def otlp(data: bytes, encoding: Any) -> None:
        with contextlib.suppress(PermanentError):
            flatten(parse_request(data, encoding), "t", 1, content=content, limits=limits)

    if name == "otlp-protobuf":
        return lambda data: otlp(data, "protobuf")
    if name == "otlp-json":
        return lambda data: otlp(data, "json")
    if name == "otlp-body":
        encodings = {ord("g"): "gzip", ord("d"): "deflate"}

        def body(data: bytes) -> None:
            if not data:
                return
            export = EncodedExport(data[1:], "protobuf", encodings.get(data[0], "identity"))
            with contextlib.suppress(PermanentError):
                flatten(decode_export(export, 1 << 16), "t", 1, content=content, limits=limits)

        return body
    if name == "slo-specs":
        folder = Path(tempfile.mkdtemp(prefix="aisre-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        path = folder / "spec.yaml"

        def specs(data: bytes) -> None:
            path.write_bytes(data)
            check_files([path])  # returns errors; must never raise

        return specs
    raise SystemExit(f"unknown target {name!r}; known: {', '.join(TARGETS)}")


# --------------------------------------------------------------------------- worker


def _where(exc: BaseException) -> str:
    """A crash's kind: its type and the innermost aisre line it passed through."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/aisre/" in f.filename]
    place = f" at {frames[-1].filename.rsplit('/aisre/', 1)[1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{place}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"


class Worker:
    """Runs one target for N inputs, counting crashes and hangs and saving their inputs."""

    def __init__(self, target: str, runs: int, hang_s: float, status: Path, deadline: float) -> None:
        self.name, self.runs, self.hang_s, self.status, self.deadline = target, runs, hang_s, status, deadline
        self.fn = make_target(target)
        self.inputs = self.crashes = self.hangs = 0
        self.kinds: dict[str, int] = {}
        self._last_write = 0.0
        signal.signal(signal.SIGALRM, self._on_alarm)

    @staticmethod
    def _on_alarm(signum: int, frame: Any) -> None:
        raise Hang

    def one(self, data: bytes) -> None:
        signal.setitimer(signal.ITIMER_REAL, self.hang_s)
        try:
            self.fn(data)
        except Hang:
            self.hangs += 1
            self._save(data, "hang", "Hang")
        except Exception as exc:  # a crash: anything but PermanentError escaped
            self.crashes += 1
            self._save(data, "crash", _where(exc))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        self.inputs += 1
        now = time.monotonic()
        if self.inputs >= self.runs or now >= self.deadline:
            self.write()
            os._exit(0)  # libFuzzer has no clean way back; the status file holds the counts
        if now - self._last_write > 0.5:
            self.write()

    def _save(self, data: bytes, kind: str, what: str) -> None:
        self.kinds[what] = self.kinds.get(what, 0) + 1
        if self.kinds[what] <= 3:  # a few examples of each distinct failure
            FINDINGS.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha1(data).hexdigest()[:12]
            (FINDINGS / f"{self.name}-{kind}-{digest}.bin").write_bytes(data)

    def write(self) -> None:
        self._last_write = time.monotonic()
        self.status.write_text(json.dumps({"target": self.name, "inputs": self.inputs, "crashes": self.crashes,
                                           "hangs": self.hangs, "kinds": self.kinds}))


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """One random edit: flip, set, insert, delete, duplicate, splice or truncate."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[pos % len(buf)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 4 and buf:
            chunk = buf[pos : pos + rng.randint(1, 64)]
            buf[pos:pos] = chunk * rng.randint(1, 8)
        elif op == 5:
            other = rng.choice(seeds)
            start = rng.randrange(len(other) + 1)
            buf[pos:] = other[start : start + rng.randint(1, 256)] + buf[pos:]
        else:
            del buf[pos:]
    return bytes(buf[:65_536])


def run_worker(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.worker_seconds
    worker = Worker(args.worker, args.runs, args.hang_s, Path(args.status), deadline)
    seeds = seeds_for(args.worker)
    if args.engine == "atheris":
        import atheris

        corpus = Path(tempfile.mkdtemp(prefix=f"aisre-corpus-{args.worker}-"))
        for i, seed in enumerate(seeds):
            (corpus / f"seed{i}").write_bytes(seed)
        with atheris.instrument_imports(include=["aisre", "yaml"]):
            # Re-import under instrumentation: coverage feedback comes from aisre's own code.
            for mod in [m for m in sys.modules if m.startswith("aisre")]:
                del sys.modules[mod]
            worker.fn = make_target(args.worker)
        atheris.Setup([sys.argv[0], "-max_len=65536", f"-seed={args.seed}", "-rss_limit_mb=4096",
                       "-print_final_stats=0", "-timeout=0", str(corpus)], worker.one)
        atheris.Fuzz()
    else:
        rng = random.Random(args.seed)
        for seed in seeds:
            worker.one(seed)
        while True:
            worker.one(mutate(rng, rng.choice(seeds), seeds))


# --------------------------------------------------------------------------- parent


def _weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in TARGETS:
            raise SystemExit(f"--weights: unknown target {name!r}")
        out[name.strip()] = float(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000, help="total inputs across the targets")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="share of the inputs per target")
    parser.add_argument("--jobs", type=int, default=2, help="targets fuzzed at the same time")
    parser.add_argument("--engine", choices=("atheris", "random"), default=None,
                        help="default: atheris when it is installed")
    parser.add_argument("--hang-s", type=float, default=5.0, help="an input running longer is a hang")
    parser.add_argument("--max-seconds", type=float, default=3600, help="bound on the whole run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default="", help="also write the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    parser.add_argument("--replay", default="", help="run one saved input (with --target) and show the error")
    parser.add_argument("--target", default="")
    # internal: one target in a child process
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--status", default="", help=argparse.SUPPRESS)
    parser.add_argument("--worker-seconds", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine is None:
        try:
            import atheris  # noqa: F401

            args.engine = "atheris"
        except ImportError:
            args.engine = "random"
    if args.worker:
        run_worker(args)
        return 0
    if args.replay:
        make_target(args.target)(Path(args.replay).read_bytes())
        print("no error")
        return 0
    return run_all(args)


def run_all(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    weights = _weights(args.weights)
    total_w = sum(weights.values())
    plan = {t: round(args.inputs * w / total_w) for t, w in weights.items() if w > 0}
    tmp = Path(tempfile.mkdtemp(prefix="aisre-fuzz-status-"))
    start = time.monotonic()
    deadline = start + args.max_seconds
    pending = list(plan)
    running: dict[str, subprocess.Popen[bytes]] = {}
    results: dict[str, dict[str, Any]] = {}
    restarts: dict[str, int] = dict.fromkeys(plan, 0)

    def status(target: str) -> dict[str, Any]:
        path = tmp / f"{target}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {"inputs": 0, "crashes": 0, "hangs": 0, "kinds": {}}

    def launch(target: str, done: int) -> None:
        log = open(tmp / f"{target}.log", "ab")  # noqa: SIM115 - lives as long as the child
        running[target] = subprocess.Popen(
            [sys.executable, __file__, "--worker", target, "--runs", str(plan[target] - done),
             "--status", str(tmp / f"{target}.part{restarts[target]}.json"), "--engine", args.engine,
             "--hang-s", str(args.hang_s), "--seed", str(args.seed + restarts[target]),
             "--worker-seconds", str(max(1.0, deadline - time.monotonic()))],
            stdout=log, stderr=subprocess.STDOUT,
        )

    def combined(target: str) -> dict[str, Any]:
        total = {"inputs": 0, "crashes": 0, "hangs": 0, "kinds": {}}
        for part in sorted(tmp.glob(f"{target}.part*.json")):
            try:
                s = json.loads(part.read_text())
            except (OSError, ValueError):
                continue
            for key in ("inputs", "crashes", "hangs"):
                total[key] += s[key]
            for kind, n in s["kinds"].items():
                total["kinds"][kind] = total["kinds"].get(kind, 0) + n
        return total

    console.print(f"engine {args.engine}; plan: " + ", ".join(f"{t} {n:,}" for t, n in plan.items()))
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        tasks = {t: progress.add_task(t, total=n, info="") for t, n in plan.items()}
        while pending or running:
            while pending and len(running) < args.jobs:
                launch(pending.pop(0), 0)
            time.sleep(0.5)
            for target, proc in list(running.items()):
                s = combined(target)
                progress.update(tasks[target], completed=min(s["inputs"], plan[target]),
                                info=f"crashes {s['crashes']}  hangs {s['hangs']}")
                code = proc.poll()
                if code is None:
                    if time.monotonic() > deadline + 30:
                        proc.kill()
                    continue
                del running[target]
                if s["inputs"] < plan[target] and time.monotonic() < deadline and restarts[target] < 20:
                    # The worker process died (e.g. a native crash or libFuzzer stopping): a crash.
                    restarts[target] += 1
                    part = tmp / f"{target}.part{restarts[target] - 1}.json"
                    data = json.loads(part.read_text()) if part.exists() else {"inputs": 0, "crashes": 0, "hangs": 0, "kinds": {}}
                    data["crashes"] += 1
                    data["kinds"][f"worker exited {code}"] = data["kinds"].get(f"worker exited {code}", 0) + 1
                    part.write_text(json.dumps(data))
                    launch(target, s["inputs"])
                else:
                    results[target] = combined(target)
    elapsed = time.monotonic() - start
    inputs = sum(r["inputs"] for r in results.values())
    crashes = sum(r["crashes"] for r in results.values())
    hangs = sum(r["hangs"] for r in results.values())

    table = Table(title=f"fuzz ({args.engine}), {elapsed:,.0f} s")
    for col in ("target", "inputs", "inputs/s", "crashes", "hangs", "what"):
        table.add_column(col, justify="right" if col in ("inputs", "inputs/s", "crashes", "hangs") else "left")
    for target, r in results.items():
        table.add_row(target, f"{r['inputs']:,}", "", str(r["crashes"]), str(r["hangs"]),
                      "; ".join(f"{k} x{n}" for k, n in r["kinds"].items())[:120])
    table.add_row("total", f"{inputs:,}", f"{inputs / elapsed:,.0f}", str(crashes), str(hangs), "")
    console.print(table)
    targets = [
        (f"inputs run >= {args.inputs:,}", f"{inputs:,}", inputs >= args.inputs),
        ("crashes == 0", str(crashes), crashes == 0),
        ("hangs == 0", str(hangs), hangs == 0),
    ]
    verdicts = Table(title="Targets")
    for col in ("target", "measured", "result"):
        verdicts.add_column(col)
    for name, measured, ok in targets:
        verdicts.add_row(name, measured, "PASS" if ok else "FAIL")
    console.print(verdicts)
    if crashes or hangs:
        console.print(f"inputs saved under {FINDINGS}; replay with --replay FILE --target NAME")
    if args.json:
        Path(args.json).write_text(json.dumps({"engine": args.engine, "seconds": elapsed, "inputs": inputs,
                                               "crashes": crashes, "hangs": hangs, "targets": results}, indent=2))
    return 1 if args.strict and not all(ok for _, _, ok in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
