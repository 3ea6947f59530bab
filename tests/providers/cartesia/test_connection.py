"""The connection's pieces that the end-to-end tests cannot pin down: the mailbox between the reader
and `events()` (backpressure, dropping a cancelled response's audio, its end), and reopening a socket
Cartesia closed while idle when the service is gone by then."""

from __future__ import annotations

import asyncio

import pytest

from audiocodecs.format import PCM16_16K, PCM16_24K
from providers.base import SessionConfig, UpstreamError
from providers.cartesia.connection import _Mailbox
from providers.cartesia.emulator import CartesiaEmulator
from providers.cartesia.provider import CartesiaProvider
from providers.emulation.faults import Faults
from providers.events import AudioDelta, ResponseDone, ResponseStarted, ResponseStatus, TextDelta
from tests.providers.cartesia.conftest import API_KEY

TIMEOUT_S = 5.0


async def test_a_full_mailbox_holds_the_reader_back() -> None:
    box = _Mailbox(capacity=2)
    box.put([AudioDelta("r", b"1"), AudioDelta("r", b"2")])
    with pytest.raises(TimeoutError):  # full: the reader would wait here, not read the socket
        await asyncio.wait_for(box.wait_for_room(), 0.05)
    assert await box.get() == AudioDelta("r", b"1")
    await asyncio.wait_for(box.wait_for_room(), TIMEOUT_S)  # room again: the reader goes on


async def test_a_getter_waits_for_events_and_the_end() -> None:
    box = _Mailbox(capacity=8)
    getter = asyncio.create_task(box.get())
    box.put([ResponseStarted("r")])
    assert await asyncio.wait_for(getter, TIMEOUT_S) == ResponseStarted("r")
    box.put([ResponseDone("r", ResponseStatus.FAILED)])
    box.finish(UpstreamError("gone"))
    box.put([ResponseStarted("late")])  # nothing is accepted after the end
    assert await box.get() == ResponseDone("r", ResponseStatus.FAILED)  # what came before the end first
    with pytest.raises(UpstreamError, match="gone"):
        await box.get()


async def test_cancel_drops_queued_audio_of_that_response_only() -> None:
    box = _Mailbox(capacity=8)
    box.put([AudioDelta("a", b"1"), TextDelta("a", "t"), AudioDelta("b", b"2"), AudioDelta("a", b"3")])
    box.discard_response("a")
    box.finish(drop=False)
    assert [await box.get(), await box.get(), await box.get()] == [TextDelta("a", "t"), AudioDelta("b", b"2"), None]


async def test_a_closed_mailbox_drops_what_it_held() -> None:
    box = _Mailbox(capacity=8)
    box.put([AudioDelta("a", b"1")])
    box.finish(drop=True)
    assert await box.get() is None


async def test_reopening_after_an_idle_close_can_fail() -> None:
    async with CartesiaEmulator(api_key=API_KEY, idle_timeout_s=0.05) as emulator:
        provider = CartesiaProvider(API_KEY, base_url=emulator.base_url, connect_timeout_s=TIMEOUT_S)
        session = await provider.connect(SessionConfig(model="", client_input=PCM16_16K, client_output=PCM16_24K))
        await asyncio.wait_for(emulator.connections[0].ws.wait_closed(), TIMEOUT_S)
        emulator.faults = Faults(reject_connect=503)
        await session.send_text("Nobody hears this.", final=True, respond=True)  # does not raise
        events = aiter(session.events())
        started = await asyncio.wait_for(anext(events), TIMEOUT_S)
        done = await asyncio.wait_for(anext(events), TIMEOUT_S)
        assert isinstance(started, ResponseStarted) and isinstance(done, ResponseDone)
        assert done.status is ResponseStatus.FAILED and done.usage.characters == 0  # never sent
        with pytest.raises(UpstreamError) as failed:
            await asyncio.wait_for(anext(events), TIMEOUT_S)
        assert "HTTP 503" in str(failed.value) and failed.value.retryable
        await session.close()
