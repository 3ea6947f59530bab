-- Tenants and their API keys. Times are unix seconds (BIGINT) in both dialects.

CREATE TABLE tenants (
    -- A slug: lower-case letters, digits and '-'; what usage records and logs name.
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    -- NULL: the relay's RELAY_TENANT_MAX_SESSIONS applies (so changing the setting moves every default tenant).
    max_sessions INTEGER CHECK (max_sessions IS NULL OR max_sessions >= 0),
    -- USD; NULL means unlimited.
    budget_usd {{money}}
);

CREATE TABLE api_keys (
    -- Not secret: what `tenants list` shows and `tenants revoke` takes.
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    -- SHA-256 of the whole key, hex. The key itself is stored nowhere.
    key_hash TEXT NOT NULL UNIQUE,
    -- For display only: the key's public prefix and its last four characters.
    prefix TEXT NOT NULL,
    last4 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
