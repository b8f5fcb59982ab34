-- Keys may expire: a request with a key past expires_ns is refused (401) like a revoked one.
ALTER TABLE api_keys ADD COLUMN expires_ns BIGINT;

-- Control-plane facts that only ever move one way. 'auth_required' is set in the same
-- transaction as the first key, so a store that has ever had a key keeps auth on even
-- after every key is revoked (revoking is no way to open the server).
CREATE TABLE control_flags (
    name VARCHAR PRIMARY KEY,
    set_ns BIGINT NOT NULL,
    set_by VARCHAR NOT NULL
);
INSERT INTO control_flags
    SELECT 'auth_required', min(created_ns), 'migration' FROM api_keys HAVING count(*) > 0;
