"""`providers.sockets`: the pieces every provider connection shares."""

from __future__ import annotations

import logging

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.frames import Close
from websockets.http11 import Response

from providers.sockets import describe_close, handshake_error, websocket_url, wire_logger


def scrub(text: str) -> str:
    return text.replace("sk-secret", "[redacted]")


def refused(status: int) -> InvalidStatus:
    return InvalidStatus(Response(status, "refused", Headers()))


def test_wire_logger_never_enables_debug(caplog: pytest.LogCaptureFixture) -> None:
    log = wire_logger("providers.demo.connection")
    assert log.logger.name == "providers.demo.connection.wire"
    with caplog.at_level(logging.DEBUG, logger="providers.demo.connection.wire"):
        assert not log.isEnabledFor(logging.DEBUG)
        assert log.isEnabledFor(logging.INFO)
        log.debug("> Authorization: Bearer sk-secret")
        log.info("connection closed")
    assert "sk-secret" not in caplog.text and "connection closed" in caplog.text


def test_describe_close() -> None:
    assert describe_close(ConnectionClosed(None, None), scrub) == "no close frame"
    assert describe_close(ConnectionClosed(Close(1011, ""), None), scrub) == "code 1011"
    closed = ConnectionClosed(Close(1008, "bad key sk-secret"), None)
    assert describe_close(closed, scrub) == "code 1008: bad key [redacted]"


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (401, False), (404, False), (429, True), (503, True)])
def test_a_refused_upgrade_is_permanent_for_400_to_404(status: int, retryable: bool) -> None:
    error = handshake_error("Demo", refused(status), scrub)
    assert str(error) == f"Demo refused the connection: HTTP {status}" and error.retryable is retryable


def test_a_bad_url_is_permanent_and_anything_else_retryable_and_scrubbed() -> None:
    bad_url = handshake_error("Demo", InvalidURI("http://x", "not a ws URL"), scrub)
    assert str(bad_url) == "Demo URL is not a valid WebSocket URL" and not bad_url.retryable
    other = handshake_error("Demo", OSError("reset while sending sk-secret"), scrub)
    assert str(other) == "could not connect to Demo: OSError: reset while sending [redacted]" and other.retryable


@pytest.mark.parametrize(
    ("base_url", "params", "url"),
    [
        ("https://api.example.com", (), "wss://api.example.com/stream"),
        ("http://127.0.0.1:9/prefix/", (), "ws://127.0.0.1:9/prefix/stream"),
        ("WSS://h/v1?raw=a%20b", (), "wss://h/v1/stream?raw=a%20b"),  # the query untouched without params
        ("https://h/v1?x=1&empty=", [("model", "m 1")], "wss://h/v1/stream?x=1&empty=&model=m+1"),
    ],
)
def test_websocket_url(base_url: str, params: list[tuple[str, str]], url: str) -> None:
    assert websocket_url("Demo", base_url, "/stream", params) == url


@pytest.mark.parametrize("base_url", ["ftp://h", "https://", "h/path"])
def test_websocket_url_refuses_other_urls(base_url: str) -> None:
    with pytest.raises(ValueError, match="Demo base_url must be an http"):
        websocket_url("Demo", base_url, "/stream")
