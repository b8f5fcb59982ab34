"""Change detection's read on ClickHouse: the first run carrying each service version,
model and prompt version per journey, among runs received after a mark (the same rows
as store/duckdb/incidents.py's _APPEARANCES)."""

from __future__ import annotations

from typing import Any

from aisre.store.clickhouse.client import Client
from aisre.store.clickhouse.semantics import journey_runs_sql

_NULL = "CAST(NULL, 'Nullable(String)')"


def run_appearances(client: Client, tenant: str, since_received_ns: int) -> list[tuple[Any, ...]]:
    """(journey, kind, value, prompt_name, first run start, a root service, last received) rows."""
    runs = (
        "SELECT journey, root_service, run_start_ns, service_version, prompt_name, prompt_version, models, "
        f"last_received_ns FROM ({journey_runs_sql('tenant = {tenant:String}')}) "
        "WHERE has_root AND last_received_ns > {since:Int64}"
    )
    sql = (
        f"WITH r AS ({runs}) "
        f"SELECT journey, 'deploy' AS kind, assumeNotNull(service_version) AS value, {_NULL} AS prompt_name, "
        "min(run_start_ns) AS first_ns, any(root_service) AS service, max(last_received_ns) AS latest "
        "FROM r WHERE service_version IS NOT NULL GROUP BY journey, service_version "
        "UNION ALL "
        "SELECT journey, 'prompt', concat(ifNull(prompt_name, ''), '@', assumeNotNull(prompt_version)), "
        "any(prompt_name), min(run_start_ns), any(root_service), max(last_received_ns) "
        "FROM r WHERE prompt_version IS NOT NULL GROUP BY journey, prompt_name, prompt_version "
        "UNION ALL "
        f"SELECT journey, 'model', model, {_NULL}, min(run_start_ns), any(root_service), max(last_received_ns) "
        "FROM r ARRAY JOIN models AS model WHERE model != '' GROUP BY journey, model"
    )
    found = client.query(sql, {"tenant": tenant, "since": since_received_ns})
    columns = [found.column(i).to_pylist() for i in range(found.num_columns)]
    return [tuple(row) for row in zip(*columns, strict=True)]
