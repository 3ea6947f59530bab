-- Metering: the ledger. One row per usage event, keyed by the producer-made event id, so a
-- redelivered or replayed event is a no-op (INSERT ... ON CONFLICT (event_id) DO NOTHING).
-- Quantities are integers; money is {{money}} (NUMERIC / exact decimal TEXT), never a float.

CREATE TABLE cost_records (
    event_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    session_id TEXT NOT NULL,
    response_id TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    -- completed, cancelled or failed: every response is charged for what the provider reported.
    status TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    -- The UTC date of ts_ms (YYYY-MM-DD): what usage is grouped by.
    day TEXT NOT NULL,
    -- The session's metadata, a JSON object of strings.
    metadata TEXT NOT NULL,
    input_text_tokens BIGINT NOT NULL,
    input_audio_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_text_tokens BIGINT NOT NULL,
    output_audio_tokens BIGINT NOT NULL,
    characters BIGINT NOT NULL,
    audio_in_ms BIGINT NOT NULL,
    audio_out_ms BIGINT NOT NULL,
    -- The price rows charged: the event's model, '*' (the fallback), or NULL (none applied: unpriced).
    price_model TEXT,
    -- The unit prices charged, copied from the price table when the event was priced (USD per the
    -- unit's basis). NULL: the unit had no price. Later price changes never touch these.
    rate_input_text_tokens {{money}},
    rate_input_audio_tokens {{money}},
    rate_cached_input_tokens {{money}},
    rate_output_text_tokens {{money}},
    rate_output_audio_tokens {{money}},
    rate_characters {{money}},
    rate_audio_in_ms {{money}},
    rate_audio_out_ms {{money}},
    -- USD, rounded half-even to 10 decimal places.
    cost_usd {{money}} NOT NULL,
    unpriced BOOLEAN NOT NULL,
    recorded_at BIGINT NOT NULL
);

CREATE INDEX cost_records_tenant_day ON cost_records (tenant, day);
CREATE INDEX cost_records_session ON cost_records (session_id);

-- The session summary each session sends when it ends: its totals, for reconciliation. Never
-- priced (the responses it sums are), so nothing is charged twice.
CREATE TABLE session_records (
    event_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    session_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    day TEXT NOT NULL,
    metadata TEXT NOT NULL,
    input_text_tokens BIGINT NOT NULL,
    input_audio_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_text_tokens BIGINT NOT NULL,
    output_audio_tokens BIGINT NOT NULL,
    characters BIGINT NOT NULL,
    audio_in_ms BIGINT NOT NULL,
    audio_out_ms BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);

CREATE INDEX session_records_session ON session_records (session_id);

-- Per tenant, UTC day, provider and model: the sums of cost_records, kept in the same transaction
-- as the records they sum (only newly inserted ones are added), so usage queries and the budget
-- check read a few rows instead of every record.
CREATE TABLE usage_daily (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    events BIGINT NOT NULL,
    unpriced_events BIGINT NOT NULL,
    input_text_tokens BIGINT NOT NULL,
    input_audio_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_text_tokens BIGINT NOT NULL,
    output_audio_tokens BIGINT NOT NULL,
    characters BIGINT NOT NULL,
    audio_in_ms BIGINT NOT NULL,
    audio_out_ms BIGINT NOT NULL,
    cost_usd {{money}} NOT NULL,
    PRIMARY KEY (tenant, day, provider, model)
);
