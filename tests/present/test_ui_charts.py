"""Chart geometry and form helpers of the UI, on known inputs: change labels in lanes that
never overlap, the error-rate chart, the gate histograms' axes, the cost chart's bucket, the
sign-in redirect target and the action-item due date."""

from __future__ import annotations

from typing import Any

import pytest

from aisre.core.errors import PermanentError
from aisre.present.ui import format as fmt
from aisre.present.ui.cost import _budget_labels, bucket_for
from aisre.present.ui.gate import histogram_bars
from aisre.present.ui.incidents import parse_due
from aisre.present.ui.pages import safe_next

S = 10**9
T0 = 1_796_457_600  # 2026-12-05 00:00:00 UTC


def _chart() -> dict[str, Any]:
    return {"t0": T0, "t1": T0 + 3600, "left": 70, "right": 1182, "top": 14}


def test_change_labels_take_lanes_and_stay_inside() -> None:
    changes = [{"at_ns": (T0 + 600 + 10 * i) * S, "kind": kind, "summary": f"c{i}", "at": None}
               for i, kind in enumerate(("deploy", "config", "flag", "model"))]
    changes.append({"at_ns": (T0 + 3590) * S, "kind": "prompt", "summary": "late", "at": None})
    changes.append({"at_ns": (T0 + 7200) * S, "kind": "deploy", "summary": "outside", "at": None})
    marks = fmt.change_markers(_chart(), changes)
    assert len(marks) == 5  # the one after the chart's end is left out
    labelled = [m for m in marks if m["text"]]
    # Three lanes for four labels a few pixels apart: the fourth keeps its line and tooltip only.
    assert [(m["text"], m["text_y"]) for m in marks[:4]] == [("deploy", 24), ("config", 39), ("flag", 54), ("", 24)]
    boxes = [(m["text_x"] - (len(m["text"]) * 6.6 if m["anchor"] == "end" else 0),
              m["text_x"] + (0 if m["anchor"] == "end" else len(m["text"]) * 6.6), m["text_y"]) for m in labelled]
    for i, (a1, b1, y1) in enumerate(boxes):
        for a2, b2, y2 in boxes[i + 1:]:
            assert y1 != y2 or b1 < a2 or b2 < a1, "two labels overlap"
    # Near the right edge the label turns to the left of its line.
    late = marks[-1]
    assert late["anchor"] == "end" and late["text_x"] < late["x"] and late["text"] == "prompt"


def test_error_rate_chart_against_the_allowed_rate() -> None:
    rows = [{"time": f"2026-12-05T00:{m:02d}:00Z", "bad": b, "total": t, "error_ratio": (b / t if t else None)}
            for m, (b, t) in enumerate([(0, 10), (1, 10), (0, 0), (4, 10)])]
    chart = fmt.sli_chart(rows, 99.0, 60)
    assert chart is not None and len(chart["bars"]) == 3  # the empty minute is a gap
    assert [b["hot"] for b in chart["bars"]] == [False, True, True]  # above the 1 % allowed
    assert [t["label"] for t in chart["y_ticks"]] == ["0%", "20%", "40%", "60%"]
    assert chart["allowed_y"] is not None and chart["bottom"] > chart["allowed_y"] > chart["bars"][2]["y"]
    assert fmt.sli_chart([{"time": "2026-12-05T00:00:00Z", "bad": 0, "total": 0, "error_ratio": None}], 99.0, 60) is None


def test_gate_histogram_has_share_and_value_axes() -> None:
    dist = {"edges": [0.5 + 0.05 * i for i in range(11)], "baseline": [1] * 10, "candidate": [0] * 5 + [2] * 5}
    chart = histogram_bars(dist, "score")
    assert chart is not None and chart["unit"] == "score" and len(chart["bars"]) == 10
    assert [t["label"] for t in chart["x_ticks"]] == ["0.6", "0.8", "1.0"]  # round values inside the bins' range
    assert chart["x_ticks"][0]["anchor"] == "middle" and chart["x_ticks"][-1]["anchor"] == "end"  # kept inside
    labels = [t["label"] for t in chart["y_ticks"]]
    assert labels[0] == "0%" and labels.count("20%") == 2  # mirrored above and below the axis
    assert chart["bars"][0]["range"] == "0.5–0.55"


def test_cost_chart_bucket_follows_the_data_span() -> None:
    minute = 60 * S
    assert bucket_for(8 * minute) == (minute, "1 min")
    assert bucket_for(3 * 3600 * S) == (5 * minute, "5 min")
    assert bucket_for(28 * 86400 * S) == (86400 * S, "1 day")


def test_sign_in_returns_only_to_local_paths() -> None:
    assert safe_next("/slos/ask-success?range=1h") == "/slos/ask-success?range=1h"
    for bad in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "", None,
                "/login", "/logout", "/\t/evil"):
        assert safe_next(bad) == "/", bad


def test_action_item_due_dates() -> None:
    assert parse_due("2026-12-20") == 1_797_724_800 * S  # midnight UTC
    assert parse_due("2026-12-20T12:00:00Z") == (1_797_724_800 + 43200) * S
    assert parse_due("") is None
    with pytest.raises(PermanentError, match="date such as"):
        parse_due("next week")


def _box(x: float, y: float, text: str, anchor: str = "end") -> tuple[float, float, float, float]:
    width = len(text) * fmt.LABEL_CHAR_W
    left = x - width if anchor == "end" else x
    return (left, y - 12, left + width, y)


def test_budget_labels_never_overlap_when_thresholds_crowd() -> None:
    """A $0.05 budget against a forecast of dollars puts the 80 % and 100 % lines a pixel
    apart near the bottom, and the exhaustion marker at the right edge: every label drawn
    stays clear of the others, and each line keeps its label or its tooltip."""
    frame = {"left": 60.0, "right": 700.0, "top": 20.0, "bottom": 220.0}
    for exhaustion_x in (None, 690.0, 400.0, 62.0):
        thresholds = [{"y": 219.0, "label": "80%"}, {"y": 218.4, "label": "100%"}, {"y": 25.0, "label": "150%"}]
        out = _budget_labels(frame, thresholds, exhaustion_x)
        drawn = [_box(frame["right"] - 4, t["y"] - 3, t["text"]) for t in out["thresholds"] if t["text"]]
        assert [t["text"] for t in out["thresholds"]].count("") == 1  # one of the crowded pair gives way
        label = out["exhaustion_label"]
        if exhaustion_x is not None:
            assert label is not None
            drawn.append(_box(label["x"], label["y"], "exhausted", label["anchor"]))
            box = drawn[-1]
            assert frame["left"] <= box[0] and box[2] <= frame["right"]
        for i, a in enumerate(drawn):
            for b in drawn[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
