-- Each tenant's own warning levels for the capacity resources (evaluate/capacity.py
-- RESOURCES), set through PUT /api/capacity/levels: one row per resource the tenant changed,
-- by its metric. threshold NULL keeps the built-in level; enabled false turns the resource
-- off (the capacity page, GET /api/capacity and the review leave it out). A resource without
-- a row keeps its built-in level.
CREATE TABLE capacity_levels (
    tenant VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    threshold DOUBLE,
    enabled BOOLEAN NOT NULL,
    updated_ns BIGINT NOT NULL,
    PRIMARY KEY (tenant, metric)
);
