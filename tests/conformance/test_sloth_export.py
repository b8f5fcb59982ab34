"""aisre's Prometheus rules equal Sloth's generated ones (names aside), and promtool accepts them.

For every Sloth spec/expected pair in ``tests/data/refs/sloth`` both rule files are parsed,
Sloth's names are mapped to aisre's (``sloth_`` labels → ``aisre_``, ``sloth-slo-*`` groups →
``aisre-slo-*``), and then compared: the groups per SLO, the SLI windows and their PromQL, the
meta recordings, and for every alert its window pairs, each burn factor and error budget
(numerically and as text), the full expression, labels and annotations.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from aisre.core.slo import AlertSpec, SloSpec, parse_duration
from aisre.evaluate.export.prometheus import prometheus_rules, render_rules, write_rules
from aisre.evaluate.specs import load_specs
from aisre.evaluate.windows import load_windows
from tests.conftest import REFS

ROOT = Path(__file__).resolve().parents[2]
SLOTH = REFS / "sloth"
GOLDEN = Path(__file__).resolve().parent / "golden"
NATIVE_SPEC = GOLDEN / "design-example.slos.yaml"
SPEC_NAMES = sorted(p.name for p in (SLOTH / "specs").iterdir())
# Labels Sloth adds that aisre has no equivalent for (the examples script's extra `-l cmd=...`),
# and info labels whose values name the generator rather than the SLO.
SLOTH_ONLY_LABELS = {"cmd", "sloth_mode", "sloth_version", "sloth_spec"}

Variant = Callable[[list[SloSpec]], list[SloSpec]]


def _same(specs: list[SloSpec]) -> list[SloSpec]:
    return specs


def _no_alerts(specs: list[SloSpec]) -> list[SloSpec]:
    # `sloth generate --disable-alerts` is a CLI flag; in aisre it is the spec's own switch.
    off = AlertSpec(enabled=False)
    return [dataclasses.replace(s, alerting=dataclasses.replace(s.alerting, page=off, ticket=off))
            for s in specs]


def _extra_labels(specs: list[SloSpec]) -> list[SloSpec]:
    # `-l exk1=exv1 -l exk2=exv2` puts labels on every recording rule, as spec labels do.
    return [dataclasses.replace(s, labels={**s.labels, "exk1": "exv1", "exk2": "exv2"})
            for s in specs]


def _load(path: Path, days: int = 30, windows: str | None = None) -> list[SloSpec]:
    custom = [load_windows(SLOTH / "windows" / windows)] if windows else []
    return load_specs([path], default_window=timedelta(days=days), windows=custom)


TESTDATA = SLOTH / "testdata"
# (expected output, input, default period in days, windows file, variant)
TESTDATA_CASES: list[tuple[str, str, int, str | None, Variant]] = [
    ("out-base", "in-base", 30, None, _same),
    ("out-base-28d", "in-base", 28, None, _same),
    ("out-base-custom-windows-7d", "in-base", 7, "test-7d.yaml", _same),
    ("out-base-no-alerts", "in-base", 30, None, _no_alerts),
    ("out-base-extra-labels", "in-base", 30, None, _extra_labels),
    ("out-base-k8s", "in-base-k8s", 30, None, _same),
    ("out-multifile", "in-multifile", 30, None, _same),
    ("out-openslo", "in-openslo", 30, None, _same),
]
# Not expressible: `--disable-recordings` (out-base-no-recordings). aisre's alerts read its own
# SLI recordings, so it always writes them; a rule file with alerts on missing series is broken.
SKIPPED = {"out-base-no-recordings": "aisre always writes the SLI recordings its alerts read "
                                     "(Sloth's --disable-recordings has no aisre equivalent)"}


# ---------------------------------------------------------------------------- normalizing


def _sloth_groups(path: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        if doc.get("kind") == "PrometheusRule":  # the k8s CR wraps the same groups
            doc = doc["spec"]
        groups.extend(doc["groups"])
    return groups


def _norm(text: str) -> str:
    return re.sub(r"\bsloth_", "aisre_", text)


def _norm_group(name: str) -> str:
    return re.sub(r"^sloth-slo-(sli-recordings|meta-recordings|alerts)-", r"aisre-slo-\1-", name)


def _norm_labels(labels: dict[str, Any] | None) -> dict[str, str]:
    return {_norm(k): _norm(str(v)) for k, v in (labels or {}).items() if k not in SLOTH_ONLY_LABELS}


def _without(labels: dict[str, Any], *names: str) -> dict[str, str]:
    return {k: str(v) for k, v in labels.items() if k not in names}


_COND = re.compile(r"max\(slo:sli_error:ratio_rate(\w+)\{[^}]*\} > \(([\d.e+-]+) \* ([\d.e+-]+)\)\)")


def alert_structure(expr: str) -> list[list[tuple[timedelta, float, float]]]:
    """(window, factor, budget) per condition, grouped by `or`-ed pair."""
    pairs = []
    for part in expr.split("\nor\n"):
        conds = _COND.findall(part)
        assert len(conds) == 2 and " and\n" in part.replace("    and\n", " and\n"), part
        pairs.append([(parse_duration(w), float(f), float(b)) for w, f, b in conds])
    return pairs


def compare(expected: list[dict[str, Any]], got: list[dict[str, Any]], *,
            sli_exprs: bool = True) -> None:
    """Assert aisre's groups equal Sloth's after name normalization."""
    assert [_norm_group(g["name"]) for g in expected] == [g["name"] for g in got]
    for eg, gg in zip(expected, got, strict=True):
        assert len(eg["rules"]) == len(gg["rules"]), eg["name"]
        for er, gr in zip(eg["rules"], gg["rules"], strict=True):
            assert _norm(er.get("record", "")) == gr.get("record", ""), gr
            assert er.get("alert") == gr.get("alert")
            want_labels = _norm_labels(er.get("labels"))
            got_labels = {k: str(v) for k, v in gr["labels"].items()}
            if "alert" in er:
                # Alert rules also carry aisre_id (see the exporter); everything else is equal.
                assert _without(got_labels, "aisre_id") == want_labels
                assert {k: _norm(v) for k, v in er.get("annotations", {}).items()} == gr["annotations"]
                want, have = alert_structure(er["expr"]), alert_structure(gr["expr"])
                assert [[w for w, _, _ in p] for p in want] == [[w for w, _, _ in p] for p in have]
                for wp, hp in zip(want, have, strict=True):
                    for (_, wf, wb), (_, hf, hb) in zip(wp, hp, strict=True):
                        assert (hf, hb) == (wf, wb)  # exact: same float arithmetic as Sloth
                        assert hf * hb == pytest.approx(wf * wb, rel=1e-12)
            else:
                assert got_labels == {**want_labels, **_without(got_labels, *want_labels)}
                assert set(got_labels) - set(want_labels) <= {"aisre_mode", "aisre_version",
                                                              "aisre_spec"}
            if sli_exprs or not gr.get("record", "").startswith("slo:sli_error:"):
                assert _norm(er["expr"]).strip() == gr["expr"].strip(), gr.get("record") or gr["alert"]


def _windows(groups: list[dict[str, Any]]) -> set[str]:
    return {r["labels"]["aisre_window"] for g in groups for r in g["rules"]
            if "aisre_window" in r.get("labels", {})}


# ---------------------------------------------------------------------------- pairs


# Sloth SLO plugins rewrite the SLI recordings (here: a numerator correction per window) and
# add recordings of their own. aisre does not run Sloth plugins, so for these specs the SLI
# PromQL and the plugin's extra rules are left out; windows, factors, thresholds, meta rules
# and alert logic are still compared.
PLUGIN_SPECS = {"contrib-denominator-corrected.yaml": "slo:numerator_correction:"}


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_spec_export_equals_sloth_generated(name: str) -> None:
    expected = _sloth_groups(SLOTH / "generated" / name)
    plugin = PLUGIN_SPECS.get(name)
    if plugin:
        for g in expected:
            g["rules"] = [r for r in g["rules"] if not r.get("record", "").startswith(plugin)]
    got = prometheus_rules(_load(SLOTH / "specs" / name), version="dev")["groups"]
    compare(expected, got, sli_exprs=plugin is None)


@pytest.mark.parametrize("case", TESTDATA_CASES, ids=[c[0] for c in TESTDATA_CASES])
def test_testdata_export_equals_sloth_output(case: tuple[str, str, int, str | None, Variant]) -> None:
    out, inp, days, windows, variant = case
    expected = _sloth_groups(TESTDATA / f"{out}.rendered.yaml")
    got = prometheus_rules(variant(_load(TESTDATA / f"{inp}.yaml", days, windows)),
                           version="dev")["groups"]
    compare(expected, got)


@pytest.mark.parametrize("out", sorted(SKIPPED))
def test_inexpressible_variants_are_skipped(out: str) -> None:
    assert (TESTDATA / f"{out}.rendered.yaml").exists()
    pytest.skip(SKIPPED[out])


def test_every_rendered_output_is_covered() -> None:
    rendered = {p.name.removesuffix(".rendered.yaml") for p in TESTDATA.glob("out-*.rendered.yaml")}
    assert rendered == {c[0] for c in TESTDATA_CASES} | set(SKIPPED)


@pytest.mark.parametrize(("days", "windows", "want"), [
    (30, None, {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"}),
    (28, None, {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "4w"}),
    (7, "test-7d.yaml", {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "1w"}),
])
def test_sli_windows(days: int, windows: str | None, want: set[str]) -> None:
    groups = prometheus_rules(_load(TESTDATA / "in-base.yaml", days, windows))["groups"]
    assert _windows(groups) == want


# ---------------------------------------------------------------------------- golden


def test_native_export_matches_golden() -> None:
    specs = load_specs([NATIVE_SPEC])
    text = render_rules(specs, version="dev")
    golden = GOLDEN / "design-example.rules.yaml"
    assert text == golden.read_text(), (
        "export changed; if deliberate, regenerate with "
        "`aisre export prometheus-rules tests/conformance/golden/design-example.slos.yaml` "
        "and the version set to dev (see tests/conformance/golden/README.md)")


def test_native_tests_match_golden(tmp_path: Path) -> None:
    specs = load_specs([NATIVE_SPEC])
    _, tests = write_rules(specs, tmp_path / "design-example.rules.yaml", with_tests=True,
                           version="dev")
    assert tests.read_text() == (GOLDEN / "design-example.rules.test.yaml").read_text()


# ---------------------------------------------------------------------------- promtool


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("AISRE_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is required (AISRE_REQUIRE_PROMTOOL=1) but not on PATH; "
                        "install Debian's `prometheus` package")
        pytest.skip("promtool not on PATH (install Debian's `prometheus` package); "
                    "set AISRE_REQUIRE_PROMTOOL=1 to make this a failure")
    return path


def _run(*args: str, cwd: Path) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "FAILED" not in output, output


@pytest.mark.parametrize("source", [*(SLOTH / "specs" / n for n in SPEC_NAMES), NATIVE_SPEC],
                         ids=[*SPEC_NAMES, "design-example"])
def test_promtool_check_and_test(source: Path, tmp_path: Path) -> None:
    promtool = _promtool()
    rules, tests = write_rules(load_specs([source]), tmp_path / "rules.yaml", with_tests=True)
    _run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(rules), cwd=tmp_path)
    _run(promtool, "test", "rules", tests.name, cwd=tmp_path)


def test_promtool_test_catches_a_wrong_threshold(tmp_path: Path) -> None:
    promtool = _promtool()
    rules, tests = write_rules(load_specs([NATIVE_SPEC]), tmp_path / "rules.yaml", with_tests=True)
    assert "alert_rule_test" in tests.read_text()
    # Ten times the error budget in every threshold: the page must no longer fire in time.
    rules.write_text(re.sub(r"\* (0\.\d+)\)", lambda m: f"* {float(m.group(1)) * 10})",
                            rules.read_text()))
    proc = subprocess.run([promtool, "test", "rules", tests.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
