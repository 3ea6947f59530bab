"""Browser tokens: signed claims, constant-time verification, expiry, and nothing secret inside."""

from __future__ import annotations

import base64
import logging
import re

import orjson
import pytest

from relay.config import Secret
from relay.store import tokens as tokens_module
from relay.store.tokens import MAX_TTL_S, TOKEN_PREFIX, TokenInvalid, TokenSigner

SECRET = Secret("x" * 40)
NOW = 1_800_000_000.0
# RFC 7230 tchar: what a WebSocket subprotocol name (relay.token.<token>) may contain.
TCHAR = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def test_a_token_carries_its_claims_and_verifies() -> None:
    signer = TokenSigner(SECRET)
    token, claims = signer.mint("acme", 300, provider="openai", model="gpt-realtime", now=NOW)
    assert token.startswith(TOKEN_PREFIX) and TCHAR.match(token) and len(token) < 300
    assert claims.expires_at == int(NOW) + 300
    assert signer.verify(token, now=NOW + 299) == claims
    # Another signer with the same secret (another relay node) accepts it too.
    assert TokenSigner(SECRET).verify(token, now=NOW) == claims
    # Two tokens minted in the same second differ.
    assert signer.mint("acme", 300, now=NOW)[0] != signer.mint("acme", 300, now=NOW)[0]


def test_the_payload_holds_claims_only() -> None:
    token, _ = TokenSigner(SECRET).mint("acme", 60, provider="openai", now=NOW)
    payload = token[len(TOKEN_PREFIX) :].split(".")[0]
    body = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(body) == {"v", "t", "exp", "p", "n"}
    assert SECRET.value not in token


def test_expired_tampered_and_foreign_tokens_are_refused() -> None:
    signer = TokenSigner(SECRET)
    token, _ = signer.mint("acme", 60, now=NOW)
    with pytest.raises(TokenInvalid, match="expired"):
        signer.verify(token, now=NOW + 60)
    payload, signature = token[len(TOKEN_PREFIX) :].split(".")
    forged_body = orjson.dumps({"v": 1, "t": "other", "exp": int(NOW) + 60, "n": "x"})
    forged = TOKEN_PREFIX + base64.urlsafe_b64encode(forged_body).rstrip(b"=").decode() + "." + signature
    flipped = TOKEN_PREFIX + payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    for bad in (forged, flipped, token[:-1], token + "A", token.replace(".", ""), "rrt_", "", "x" * 5000):
        with pytest.raises(TokenInvalid):
            signer.verify(bad, now=NOW)
    with pytest.raises(TokenInvalid, match="signature"):
        TokenSigner(Secret("y" * 40)).verify(token, now=NOW)


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = TokenSigner(SECRET)
    token, _ = signer.mint("acme", 60, now=NOW)
    calls: list[int] = []
    real = tokens_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", spy)
    signer.verify(token, now=NOW)
    assert calls == [1]


def test_ttl_is_bounded() -> None:
    signer = TokenSigner(SECRET)
    for bad in (0, -1, MAX_TTL_S + 1):
        with pytest.raises(ValueError):
            signer.mint("acme", bad)


def test_without_a_secret_tokens_are_per_process_and_it_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="relay.tokens"):
        first = TokenSigner(Secret(""))
    assert first.ephemeral and "RELAY_TOKEN_SECRET is not set" in caplog.text
    token, _ = first.mint("acme", 60)
    with pytest.raises(TokenInvalid):
        TokenSigner(Secret("")).verify(token)
    assert SECRET.value not in repr(TokenSigner(SECRET))
