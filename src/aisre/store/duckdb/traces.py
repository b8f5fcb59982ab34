"""Merging a batch's per-trace partials (normalize/runs.py) into `traces`.

Counts add up; root-span fields come from whichever batch carries the root, so a root
that arrives after its children completes the run without counting anything twice.
"""

from __future__ import annotations

from aisre.store.duckdb.semantics import merge_traces_sql

INSERT_TRACES = "INSERT INTO traces SELECT * FROM parts"

MERGE_TRACES = merge_traces_sql()
