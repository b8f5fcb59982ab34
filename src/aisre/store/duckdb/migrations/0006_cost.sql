-- Cost observability (DESIGN §5).

-- Model calls per tenant × journey × minute of the run's start × model × the run's prompt
-- version and release: what cost breakdowns and spike explanations read, so they cost
-- time buckets, not spans. Rebuilt with run_minutes for the minutes a commit touched.
CREATE TABLE cost_minutes (
    tenant VARCHAR NOT NULL,
    journey VARCHAR NOT NULL,
    minute_ns BIGINT NOT NULL,
    provider VARCHAR NOT NULL,
    model VARCHAR NOT NULL,              -- response model, else request model
    prompt_version VARCHAR NOT NULL,     -- the run's prompt version ('' when none)
    service_version VARCHAR NOT NULL,    -- the run's service.version ('' when none)
    calls BIGINT NOT NULL,               -- every model call attempt
    billed_calls BIGINT NOT NULL,        -- attempts that reported tokens
    first_calls BIGINT NOT NULL,         -- billed calls that do not repeat an answered call
    resent_calls BIGINT NOT NULL,        -- billed retries of a call that was answered (and billed) before
    retry_calls BIGINT NOT NULL,         -- attempts with retry_attempt > 0
    retry_billed_calls BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    http_429 BIGINT NOT NULL,
    http_5xx BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cost_usd DOUBLE NOT NULL,
    retry_cost_usd DOUBLE NOT NULL,
    failed_run_cost_usd DOUBLE NOT NULL, -- spent in runs that failed: money that bought nothing
    unpriced_calls BIGINT NOT NULL,      -- billed calls of models the catalog does not list
    unpriced_tokens BIGINT NOT NULL
);

-- Per-tenant prices that take precedence over the catalog from `effective_ns` on.
CREATE TABLE price_overrides (
    tenant VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    provider VARCHAR NOT NULL,
    input DOUBLE NOT NULL,               -- USD per 1M tokens
    output DOUBLE NOT NULL,
    cached_input DOUBLE NOT NULL,
    effective_ns BIGINT NOT NULL,
    created_ns BIGINT NOT NULL,
    PRIMARY KEY (tenant, model, effective_ns)
);

-- Cost budgets per tenant (journey '' = the whole tenant) per calendar week or month.
CREATE TABLE cost_budgets (
    tenant VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    journey VARCHAR NOT NULL,
    period VARCHAR NOT NULL,             -- week | month
    amount_usd DOUBLE NOT NULL,
    thresholds DOUBLE[] NOT NULL,        -- alert when forecast spend reaches these shares
    created_ns BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- Provider rate limits per model, for headroom.
CREATE TABLE rate_limits (
    tenant VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    requests_per_min DOUBLE,
    tokens_per_min DOUBLE,
    warn_at DOUBLE NOT NULL,             -- warn when the peak minute reaches this share
    PRIMARY KEY (tenant, model)
);
