-- Journey runs assembled by the engine: every batch inserts one partial row per trace
-- (normalize/runs.py), and the partials of a trace merge by the rules of
-- normalize/semantics.py RUN_MERGE (compiled in store/clickhouse/semantics.py):
--   first / root-wins: argMin states keyed by (value is null, batch lacks the root, seq), so
--     the first non-null value wins, and the root batch's value before any other;
--   any / sum / min / max / union / concat: SimpleAggregateFunction columns;
--   retries: the cross-batch retry rule needs every model call of the run, so the partial
--     retries are summed and the call log concatenated, and the rule is applied at read.
-- Keyed by (tenant, trace_id) only: no date in the key, so a trace's partials that
-- straddle midnight still merge. Reads GROUP BY the key (never trust merges to be done).
-- Batches insert plain partial rows into run_parts_in (a Null table); run_parts_mv turns
-- them into states. The three statements are what store/clickhouse/semantics.py compiles
-- from RUN_MERGE (run_parts_ddl, run_parts_in_ddl, run_parts_mv_ddl); a test checks they agree.
CREATE TABLE IF NOT EXISTS run_parts (
    tenant LowCardinality(String),
    trace_id String,
    journey_attr AggregateFunction(argMin, Nullable(String), Tuple(Bool, Int64)),
    journey_rule AggregateFunction(argMin, Nullable(String), Tuple(Bool, Int64)),
    has_root SimpleAggregateFunction(max, Bool),
    root_span_id AggregateFunction(argMin, Nullable(String), Tuple(Bool, Int64)),
    root_name AggregateFunction(argMin, Nullable(String), Tuple(Bool, Int64)),
    root_service AggregateFunction(argMin, Nullable(String), Tuple(Bool, Int64)),
    root_start_ns AggregateFunction(argMin, Nullable(Int64), Tuple(Bool, Int64)),
    root_end_ns AggregateFunction(argMin, Nullable(Int64), Tuple(Bool, Int64)),
    start_ns SimpleAggregateFunction(min, Int64),
    end_ns SimpleAggregateFunction(max, Int64),
    failed SimpleAggregateFunction(max, Bool),
    failure_reason AggregateFunction(argMin, Nullable(String), Tuple(Bool, Int64)),
    span_count SimpleAggregateFunction(sum, Int64),
    error_spans SimpleAggregateFunction(sum, Int64),
    llm_calls SimpleAggregateFunction(sum, Int64),
    llm_errors SimpleAggregateFunction(sum, Int64),
    tool_calls SimpleAggregateFunction(sum, Int64),
    retrieval_calls SimpleAggregateFunction(sum, Int64),
    agent_steps SimpleAggregateFunction(sum, Int64),
    retries SimpleAggregateFunction(sum, Int64),
    input_tokens SimpleAggregateFunction(sum, Int64),
    output_tokens SimpleAggregateFunction(sum, Int64),
    cached_input_tokens SimpleAggregateFunction(sum, Int64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    service_version AggregateFunction(argMin, Nullable(String), Tuple(Bool, Bool, Int64)),
    prompt_name AggregateFunction(argMin, Nullable(String), Tuple(Bool, Bool, Int64)),
    prompt_version AggregateFunction(argMin, Nullable(String), Tuple(Bool, Bool, Int64)),
    environment AggregateFunction(argMin, Nullable(String), Tuple(Bool, Int64)),
    models SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    llm_call_log SimpleAggregateFunction(groupArrayArray, Array(Tuple(p Nullable(String), m Nullable(String), s Int64, e Int64, f Bool, r Nullable(Int32)))),
    user_id AggregateFunction(argMin, Nullable(String), Tuple(Bool, Int64)),
    session_id AggregateFunction(argMin, Nullable(String), Tuple(Bool, Int64)),
    first_received_ns SimpleAggregateFunction(min, Int64),
    last_received_ns SimpleAggregateFunction(max, Int64),
    retention_days SimpleAggregateFunction(max, UInt32)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, trace_id)
TTL toDateTime(intDiv(end_ns, 1000000000)) + toIntervalDay(retention_days) DELETE WHERE retention_days > 0
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS run_parts_in (
    tenant String,
    trace_id String,
    journey_attr Nullable(String),
    journey_rule Nullable(String),
    has_root Bool,
    root_span_id Nullable(String),
    root_name Nullable(String),
    root_service Nullable(String),
    root_start_ns Nullable(Int64),
    root_end_ns Nullable(Int64),
    start_ns Int64,
    end_ns Int64,
    failed Bool,
    failure_reason Nullable(String),
    span_count Int64,
    error_spans Int64,
    llm_calls Int64,
    llm_errors Int64,
    tool_calls Int64,
    retrieval_calls Int64,
    agent_steps Int64,
    retries Int64,
    input_tokens Int64,
    output_tokens Int64,
    cached_input_tokens Int64,
    cost_usd Float64,
    service_version Nullable(String),
    prompt_name Nullable(String),
    prompt_version Nullable(String),
    environment Nullable(String),
    models Array(String),
    llm_call_log Array(Tuple(p Nullable(String), m Nullable(String), s Int64, e Int64, f Bool, r Nullable(Int32))),
    user_id Nullable(String),
    session_id Nullable(String),
    first_received_ns Int64,
    last_received_ns Int64,
    seq Int64,
    retention_days UInt32
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS run_parts_mv TO run_parts AS
SELECT p.tenant AS tenant, p.trace_id AS trace_id,
    argMinState(p.journey_attr, (p.journey_attr IS NULL, p.seq)::Tuple(Bool, Int64)) AS journey_attr,
    argMinState(p.journey_rule, (p.journey_rule IS NULL, p.seq)::Tuple(Bool, Int64)) AS journey_rule,
    max(p.has_root) AS has_root,
    argMinState(p.root_span_id, (p.root_span_id IS NULL, p.seq)::Tuple(Bool, Int64)) AS root_span_id,
    argMinState(p.root_name, (p.root_name IS NULL, p.seq)::Tuple(Bool, Int64)) AS root_name,
    argMinState(p.root_service, (p.root_service IS NULL, p.seq)::Tuple(Bool, Int64)) AS root_service,
    argMinState(p.root_start_ns, (p.root_start_ns IS NULL, p.seq)::Tuple(Bool, Int64)) AS root_start_ns,
    argMinState(p.root_end_ns, (p.root_end_ns IS NULL, p.seq)::Tuple(Bool, Int64)) AS root_end_ns,
    min(p.start_ns) AS start_ns,
    max(p.end_ns) AS end_ns,
    max(p.failed) AS failed,
    argMinState(p.failure_reason, (p.failure_reason IS NULL, p.seq)::Tuple(Bool, Int64)) AS failure_reason,
    sum(p.span_count) AS span_count,
    sum(p.error_spans) AS error_spans,
    sum(p.llm_calls) AS llm_calls,
    sum(p.llm_errors) AS llm_errors,
    sum(p.tool_calls) AS tool_calls,
    sum(p.retrieval_calls) AS retrieval_calls,
    sum(p.agent_steps) AS agent_steps,
    sum(p.retries) AS retries,
    sum(p.input_tokens) AS input_tokens,
    sum(p.output_tokens) AS output_tokens,
    sum(p.cached_input_tokens) AS cached_input_tokens,
    sum(p.cost_usd) AS cost_usd,
    argMinState(p.service_version, (p.service_version IS NULL, NOT p.has_root, p.seq)::Tuple(Bool, Bool, Int64)) AS service_version,
    argMinState(p.prompt_name, (p.prompt_name IS NULL, NOT p.has_root, p.seq)::Tuple(Bool, Bool, Int64)) AS prompt_name,
    argMinState(p.prompt_version, (p.prompt_version IS NULL, NOT p.has_root, p.seq)::Tuple(Bool, Bool, Int64)) AS prompt_version,
    argMinState(p.environment, (p.environment IS NULL, p.seq)::Tuple(Bool, Int64)) AS environment,
    groupUniqArrayArray(p.models) AS models,
    groupArrayArray(p.llm_call_log) AS llm_call_log,
    argMinState(p.user_id, (p.user_id IS NULL, p.seq)::Tuple(Bool, Int64)) AS user_id,
    argMinState(p.session_id, (p.session_id IS NULL, p.seq)::Tuple(Bool, Int64)) AS session_id,
    min(p.first_received_ns) AS first_received_ns,
    max(p.last_received_ns) AS last_received_ns,
    max(p.retention_days) AS retention_days
FROM run_parts_in AS p
GROUP BY p.tenant, p.trace_id;

-- The minute each rooted run starts in, so a minute's runs are found without merging
-- every run of the tenant: filled by the engine from each insert into run_parts.
CREATE TABLE IF NOT EXISTS run_roots (
    tenant LowCardinality(String),
    minute_ns Int64,
    trace_id String,
    retention_days UInt32
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, minute_ns, trace_id)
TTL toDateTime(intDiv(minute_ns, 1000000000)) + toIntervalDay(retention_days) DELETE WHERE retention_days > 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS run_roots_mv TO run_roots AS
SELECT tenant, intDiv(finalizeAggregation(root_start_ns), 60000000000) * 60000000000 AS minute_ns, trace_id,
    retention_days
FROM run_parts
WHERE has_root AND finalizeAggregation(root_start_ns) IS NOT NULL;
