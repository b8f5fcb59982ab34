"""Redaction throughput and recall, before and after, on the same corpora; then the
end-to-end ingest rate against its target.

Run:  /work/main/.venv/bin/python bench/redaction.py                  # before = 1ff91ce
      /work/main/.venv/bin/python bench/redaction.py --before REF --ingest-seconds 0

"Before" is src/aisre/normalize/redaction.py as of --before (a git revision; default: the
last one with the digit/@/: pre-filter), loaded from git into this process; "after" is the
working tree's redactor. Both redact the same values, one at a time, as ingest does:

| corpus | what |
|---|---|
| ingest bench content | the gen_ai.input.messages and tool arguments of bench/ingest.py's bodies |
| captured content | string values of 40+ characters from ../shared/fixtures OTLP/JSON captures |
| ordinary text | tests/normalize/secret_corpus.py negatives: Python docs, stdlib source, ids |
| secret corpus | tests/normalize/secret_corpus.py positives (gitleaks rules and aisre's kinds) |

Printed: values/s and MB/s per corpus and redactor (best of --reps), recall per secret kind
for both, and (unless --ingest-seconds 0) `bench/ingest.py --skip-phoenix` with the after
code, whose target is 50,000 persisted spans/s. Exit code 0 unless --strict and the ingest
target failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
DEFAULT_BEFORE = "1ff91ce"


def _before(ref: str) -> Callable[[str], tuple[str, int]]:
    source = subprocess.run(
        ["git", "show", f"{ref}:src/aisre/normalize/redaction.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="aisre-redaction-before-")) / "redaction_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("redaction_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["redaction_before"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.Redactor("US").redact  # type: ignore[no-any-return]


def _after() -> Callable[[str], tuple[str, int]]:
    from aisre.normalize.detect import Redactor

    return Redactor("US").redact


def corpora() -> dict[str, list[str]]:
    """Name -> values, each redacted on its own."""
    from tests.normalize import secret_corpus

    import ingest

    values = []
    for seed in range(3):
        request, _, _ = ingest._build_request(random.Random(seed))
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    for kv in span.attributes:
                        if kv.key in ("gen_ai.input.messages", "gen_ai.tool.call.arguments"):
                            values.append(kv.value.string_value)
    ordinary = [t for _, t in secret_corpus.ordinary_texts()]
    captured = [t for s, t in secret_corpus.ordinary_texts() if s == "captured content"]
    # Long documents are split into message-sized values, as content arrives.
    pieces = [text[i : i + 2000] for text in ordinary for i in range(0, len(text), 2000)]
    return {
        "ingest bench content": values,
        "captured content": captured,
        "ordinary text": pieces,
        "secret corpus": [s.text for s in secret_corpus.positives()],
    }


def throughput(redact: Callable[[str], tuple[str, int]], values: list[str], reps: int) -> tuple[float, float]:
    """(values/s, MB/s), best of ``reps`` passes."""
    size = sum(len(v.encode()) for v in values)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for value in values:
            redact(value)
        best = min(best, time.perf_counter() - start)
    return len(values) / best, size / best / 1e6


def recall(redact: Callable[[str], tuple[str, int]]) -> dict[str, tuple[int, int]]:
    """Kind -> (found, total) on the secret corpus."""
    from tests.normalize import secret_corpus

    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sample in secret_corpus.positives():
        redacted, _ = redact(sample.text)
        try:
            ok = not secret_corpus.leaked(sample, redacted)
        except ValueError:  # broke the JSON around it: count as missed
            ok = False
        out[sample.kind][0] += ok
        out[sample.kind][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def run_ingest(seconds: float) -> dict[str, Any] | None:
    """bench/ingest.py against the working tree's server; its JSON figures."""
    with tempfile.TemporaryDirectory(prefix="aisre-bench-redaction-") as tmp:
        out = Path(tmp) / "ingest.json"
        subprocess.run(
            [sys.executable, str(REPO / "bench" / "ingest.py"), "--skip-phoenix", "--overload", "0",
             "--seconds", str(seconds), "--json", str(out)],
            cwd=REPO, check=False,
        )
        return json.loads(out.read_text()) if out.exists() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of the redactor to compare with")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ingest-seconds", type=float, default=15.0, help="0 skips the end-to-end ingest run")
    ap.add_argument("--json", type=Path, metavar="OUT")
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args(argv)

    redactors = {"before": _before(args.before), "after": _after()}
    data = corpora()
    figures: dict[str, Any] = {"before": args.before, "throughput": {}, "recall": {}}
    print(f"{'corpus':22s} {'values':>7s} {'MB':>6s} | {'before values/s':>15s} {'MB/s':>6s} | {'after values/s':>15s} {'MB/s':>6s} | speed-up")
    for name, values in data.items():
        size = sum(len(v.encode()) for v in values) / 1e6
        row = {who: throughput(fn, values, args.reps) for who, fn in redactors.items()}
        figures["throughput"][name] = {who: {"values_per_s": v, "mb_per_s": m} for who, (v, m) in row.items()}
        (bv, bm), (av, am) = row["before"], row["after"]
        print(f"{name:22s} {len(values):7d} {size:6.2f} | {bv:15,.0f} {bm:6.1f} | {av:15,.0f} {am:6.1f} | {av / bv:5.2f}x")

    print("\nrecall on the secret corpus (found / seeded)")
    both = {who: recall(fn) for who, fn in redactors.items()}
    figures["recall"] = {who: {k: list(v) for k, v in r.items()} for who, r in both.items()}
    print(f"{'kind':38s} {'before':>14s} {'after':>14s}")
    for kind in sorted(both["after"]):
        b, a = both["before"].get(kind, (0, 0)), both["after"][kind]
        print(f"{kind:38s} {b[0]:5d}/{b[1]:<4d}{b[0] / max(b[1], 1):5.0%} {a[0]:5d}/{a[1]:<4d}{a[0] / max(a[1], 1):5.0%}")

    failed = False
    if args.ingest_seconds > 0:
        print(f"\nend-to-end: bench/ingest.py --skip-phoenix --seconds {args.ingest_seconds:g}")
        result = run_ingest(args.ingest_seconds)
        if result is None:
            print("ingest bench wrote no figures")
            failed = True
        else:
            figures["ingest"] = result
            for target in result["targets"]:
                print(f"  {target['target']}: {target['measured']} {target['result']}")
                failed |= target["result"] == "FAIL" and bool(re.search(r"persisted >=", target["target"]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
