"""`EmulatorServer`'s shared surface: addresses, TLS for clients, message recording and faults."""

from __future__ import annotations

import ssl

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from providers.emulation.faults import Faults
from providers.emulation.server import MALFORMED_FRAME, EmulatedConnection, EmulatorServer


class _Echo(EmulatedConnection):
    """Answers every client message with one labelled server message."""

    async def run(self) -> None:
        async for frame in self.ws:
            message = orjson.loads(frame)
            self.record_received(message)
            await self.send_message({"echo": message["type"]}, f"echo.{message['type']}")


class _EchoServer(EmulatorServer[_Echo]):
    def create_connection(self, ws: ServerConnection, faults: Faults) -> _Echo:
        return _Echo(ws, faults, record=self.record)


async def test_addresses_and_plain_servers_have_no_tls() -> None:
    async with _EchoServer(speed=2.0, api_key="k") as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert server.ws_base_url == f"ws://127.0.0.1:{server.port}"
        assert (server.speed, server.api_key, server.tls) == (2.0, "k", None)
        with pytest.raises(RuntimeError, match="tls=True"):
            server.client_ssl_context()
        with pytest.raises(RuntimeError, match="tls=True"):
            _ = server.ca_pem_path


def test_speed_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="speed"):
        _EchoServer(speed=-1)


async def test_tls_clients_trust_the_served_certificate() -> None:
    async with _EchoServer(tls=True) as server:
        assert server.base_url.startswith("https://") and server.ws_base_url.startswith("wss://")
        assert server.ca_pem_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        async with connect(server.ws_base_url + "/x", ssl=server.client_ssl_context()) as ws:
            await ws.send(orjson.dumps({"type": "ping"}).decode())
            assert orjson.loads(await ws.recv()) == {"echo": "ping"}
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(server.ws_base_url + "/x", ssl=ssl.create_default_context()):
                pass


async def test_messages_are_recorded_by_label_and_faults_apply() -> None:
    async with _EchoServer(faults=Faults(malformed_after_events=2)) as server:
        async with connect(server.ws_base_url + "/x") as ws:
            for kind in ("a", "b"):
                await ws.send(orjson.dumps({"type": kind}).decode())
            assert [await ws.recv() for _ in range(3)] == ['{"echo":"a"}', '{"echo":"b"}', MALFORMED_FRAME]
            assert (await server.wait_for_event("b"))["type"] == "b"
        conn = server.connections[-1]
        assert conn.sent_types == ["echo.a", "echo.b"] and conn.events_sent == 2
