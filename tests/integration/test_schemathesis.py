"""Schemathesis over every route in /openapi.json of a live server: no 5xx, whatever it sends.

A few generated requests per operation keep this under a minute; the server holds real data
(traces, an SLO set) so the generated requests reach past the "not found" answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.conftest import REPO, ServerProcess, free_port
from tests.otlp_factory import journey_request

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db: Path = tmp_path_factory.mktemp("schemathesis") / "api.duckdb"
    server = ServerProcess(db, free_port(), free_port()).start()
    request, _ = journey_request(20)
    httpx.post(server.url + "/v1/traces", content=request.SerializeToString(),
               headers={"Content-Type": "application/x-protobuf"}, timeout=30).raise_for_status()
    slos = (REPO / "src" / "aisre" / "demo" / "slos.yaml").read_bytes()
    httpx.put(server.url + "/api/slos", content=slos, headers={"Content-Type": "application/yaml"},
              timeout=30).raise_for_status()
    yield server
    assert server.stop() == 0  # and it still shuts down cleanly afterwards


def test_openapi_describes_every_route(live_server: ServerProcess) -> None:
    paths = httpx.get(live_server.url + "/openapi.json").json()["paths"]
    assert {"/v1/traces", "/api/stats", "/api/journeys", "/api/journeys/runs", "/api/traces/{trace_id}",
            "/api/slos", "/api/slos/{name}", "/api/slos/{name}/replay", "/api/alerts", "/api/scores",
            "/healthz", "/metrics"} <= set(paths)
    assert {"get", "put"} <= set(paths["/api/slos"])


def test_no_server_errors(live_server: ServerProcess) -> None:
    # schemathesis.pytest.from_fixture does not work with this pytest, so each operation's
    # strategy is driven by hypothesis here; a failure names the operation and the request.
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_5xx(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error], timeout=30)

        no_5xx()


UI_PATHS = ("/traces/{}", "/slos/{}", "/runs?journey={}&outcome={}", "/?since={}", "/runs?since={}&until={}")


def test_ui_pages_never_answer_5xx(live_server: ServerProcess) -> None:
    """The HTML pages are not in the OpenAPI document; the same check with generated text."""
    from hypothesis import strategies as st

    with httpx.Client(base_url=live_server.url, timeout=30) as client:

        @given(template=st.sampled_from(UI_PATHS), values=st.lists(st.text(max_size=40), min_size=2, max_size=2))
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_5xx(template: str, values: list[str]) -> None:
            from urllib.parse import quote

            url = template.format(*(quote(v, safe="") for v in values))
            response = client.get(url)
            assert response.status_code < 500, (url, response.status_code, response.text[:300])

        no_5xx()
