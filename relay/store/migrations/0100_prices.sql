-- Metering: the price table (relay/metering/pricing.py says what the units and bases are).

CREATE TABLE prices (
    provider TEXT NOT NULL,
    -- A model name, or '*': the provider's fallback for models without rows of their own.
    model TEXT NOT NULL,
    -- input_text_tokens, input_audio_tokens, cached_input_tokens, output_text_tokens,
    -- output_audio_tokens (USD per 1M tokens), characters (per 1K), audio_in_ms, audio_out_ms (per minute).
    unit TEXT NOT NULL,
    usd {{money}} NOT NULL,
    -- Where the price was read, and when (ISO 8601 date, to the precision the source gives).
    source TEXT NOT NULL DEFAULT '',
    as_of TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (provider, model, unit)
);
