"""Journey rules: naming journeys of traces that carry no aisre.journey attribute."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from aisre.core.errors import PermanentError
from aisre.normalize.journeys import load_rules, resolve
from aisre.normalize.spans import flatten
from tests.conftest import ServerProcess, aisre_up_refused
from tests.otlp_factory import journey_request

RULES = """
journeys:
  - journey: checkout
    service: svc
    root: "POST /ask"
  - journey: anything-from-svc
    service: svc
"""


def test_first_matching_rule_wins(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    rules = load_rules(path)
    assert resolve(rules, "svc", "POST /ask") == "checkout"
    assert resolve(rules, "svc", "GET /health") == "anything-from-svc"
    assert resolve(rules, "other", "POST /ask") is None
    assert resolve(rules, "svc-2", "POST /ask") is None  # whole-name match, not a prefix


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("journeys: {}", "top-level 'journeys:' list"),
        ("journeys:\n  - service: svc", "'journey' must be a non-empty name"),
        ("journeys:\n  - journey: x", "give 'service', 'root' or both"),
        ("journeys:\n  - journey: x\n    root: '('", "not a valid regular expression"),
        ("journeys:\n  - journey: x\n    route: /a", "unknown field(s) ['route']"),
        ("journeys: [", "not valid YAML"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(PermanentError) as err:
        load_rules(path)
    assert message in err.value.message


def test_attribute_beats_rule_and_rule_beats_root_name(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    rules = load_rules(path)
    with_attr, _ = journey_request(1, journey="ask")
    parts = flatten(with_attr, "t", journey_rules=rules).traces.to_pylist()
    assert (parts[0]["journey_attr"], parts[0]["journey_rule"]) == ("ask", "checkout")


def test_server_applies_rules(server_factory, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    server: ServerProcess = server_factory(tmp_path / "r.duckdb", "--journey-rules", str(path))
    request, _ = journey_request(3)
    for span in request.resource_spans[0].scope_spans[0].spans:
        del span.attributes[:]  # no aisre.journey anywhere: the rule decides
    httpx.post(server.url + "/v1/traces", content=request.SerializeToString(),
               headers={"Content-Type": "application/x-protobuf"}).raise_for_status()
    journeys = {j["journey"]: j["runs"] for j in httpx.get(server.url + "/api/journeys").json()["items"]}
    assert journeys == {"checkout": 3}


def test_server_refuses_to_start_with_bad_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("journeys:\n  - journey: x")
    assert "give 'service', 'root' or both" in aisre_up_refused(tmp_path, "--journey-rules", str(path))
