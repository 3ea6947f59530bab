"""One contract, every provider: lifecycle, audio and text in and out, barge-in, usage, upstream
errors and disconnects — through the adapter interface the session uses, against each emulator."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from audiocodecs.files import read_pcm16
from audiocodecs.format import AudioFormat, Encoding
from audiocodecs.transcode import Transcoder
from providers import events as ev
from providers.base import Provider, SessionConfig, TurnDetection, UpstreamError, UpstreamSession
from tests.conftest import AUDIO_DIR
from tests.contract.pairs import PAIRS, Pair

every_pair = pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
# Text-to-speech providers take no audio (the relay refuses audio for them with a clear error).
AUDIO_PAIRS = [p for p in PAIRS if p.audio_in]
audio_pairs = pytest.mark.parametrize("pair", AUDIO_PAIRS, ids=[p.name for p in AUDIO_PAIRS])

PCM16_24K = AudioFormat(Encoding.PCM16, 24000)
LONG_TEXT = "Streaming speech goes on for a while so that there is time to interrupt it. " * 3


def _config(pair: Pair, *, manual: bool = True) -> SessionConfig:
    return SessionConfig(
        model="",
        client_input=AudioFormat(Encoding.PCM16, 16000),
        client_output=PCM16_24K,
        turn_detection=TurnDetection.MANUAL if manual else TurnDetection.SERVER_VAD,
    )


async def _connect(pair: Pair, provider: Provider, config: SessionConfig) -> UpstreamSession:
    return await provider.connect(dataclasses.replace(config, model=provider.default_model))


async def _collect(upstream: UpstreamSession, until_done: int = 1, timeout_s: float = 15.0) -> list[ev.ProviderEvent]:
    out: list[ev.ProviderEvent] = []
    done = 0

    async def run() -> None:
        nonlocal done
        async for event in upstream.events():
            out.append(event)
            if isinstance(event, ev.ResponseDone):
                done += 1
                if done >= until_done:
                    return

    await asyncio.wait_for(run(), timeout_s)
    return out


def _audio_ms(events: list[ev.ProviderEvent], fmt: AudioFormat) -> float:
    return sum(fmt.duration_ms(len(e.audio)) for e in events if isinstance(e, ev.AudioDelta))


async def _speech(fmt: AudioFormat) -> list[bytes]:
    pcm = read_pcm16(AUDIO_DIR / "weather-paris-en-16k.wav", 16000)
    tc = Transcoder(AudioFormat(Encoding.PCM16, 16000), fmt)
    data = pcm.tobytes()
    chunks: list[bytes] = []
    for i in range(0, len(data), 640):
        chunks.extend(tc.feed(data[i : i + 640]))
    chunks.extend(tc.flush())
    return chunks


@every_pair
async def test_lifecycle_connect_close_ends_events_quietly(pair: Pair) -> None:
    async with pair.open() as (provider, _emulator):
        upstream = await _connect(pair, provider, _config(pair))
        assert upstream.output_format.encoding in tuple(Encoding)
        await upstream.close()
        events = [e async for e in upstream.events()]
        assert not [e for e in events if isinstance(e, ev.ProviderError)]
        await upstream.close()  # idempotent


@every_pair
async def test_text_in_audio_out_with_usage(pair: Pair) -> None:
    async with pair.open() as (provider, _emulator):
        upstream = await _connect(pair, provider, _config(pair))
        text = "Hello there, relay."
        await upstream.send_text(text, final=True, respond=True)
        events = await _collect(upstream)
        done = [e for e in events if isinstance(e, ev.ResponseDone)]
        assert len(done) == 1 and done[0].status is ev.ResponseStatus.COMPLETED
        assert _audio_ms(events, upstream.output_format) > 200
        rids = {e.response_id for e in events if isinstance(e, ev.AudioDelta)}
        assert rids == {done[0].response_id}
        usage = done[0].usage
        if pair.audio_in:
            assert usage.output_audio_tokens > 0 and usage.input_text_tokens > 0
        else:
            assert usage.characters == len(text)
        await upstream.close()


@every_pair
async def test_streamed_text_pieces_make_one_response(pair: Pair) -> None:
    async with pair.open() as (provider, _emulator):
        upstream = await _connect(pair, provider, _config(pair))
        pieces = ["The weather ", "in Paris ", "is mild today."]
        for i, piece in enumerate(pieces):
            await upstream.send_text(piece, final=i == len(pieces) - 1, respond=True)
        events = await _collect(upstream)
        done = [e for e in events if isinstance(e, ev.ResponseDone)]
        assert len(done) == 1 and done[0].status is ev.ResponseStatus.COMPLETED
        if not pair.audio_in:
            assert done[0].usage.characters == len("".join(pieces))
        await upstream.close()


@audio_pairs
async def test_audio_turn_is_answered(pair: Pair) -> None:
    async with pair.open() as (provider, _emulator):
        upstream = await _connect(pair, provider, _config(pair))
        chunks = await _speech(upstream.input_format)
        for chunk in chunks:
            await upstream.send_audio(chunk)
        await upstream.commit(respond=True)
        events = await _collect(upstream)
        done = next(e for e in events if isinstance(e, ev.ResponseDone))
        assert done.status is ev.ResponseStatus.COMPLETED and done.usage.input_audio_tokens > 0
        sent_ms = sum(upstream.input_format.duration_ms(len(c)) for c in chunks)
        # The emulators echo an audio turn: the answer lasts as long as the turn.
        assert _audio_ms(events, upstream.output_format) == pytest.approx(sent_ms, abs=120)
        await upstream.close()


@every_pair
async def test_barge_in_cancels_and_stops_audio(pair: Pair) -> None:
    async with pair.open(speed=1.0) as (provider, _emulator):
        upstream = await _connect(pair, provider, _config(pair))
        await upstream.send_text(LONG_TEXT, final=True, respond=True)
        events: list[ev.ProviderEvent] = []
        stream = upstream.events().__aiter__()

        async def next_event() -> ev.ProviderEvent:
            event = await asyncio.wait_for(stream.__anext__(), 10)
            events.append(event)
            return event

        while not isinstance(await next_event(), ev.AudioDelta):
            pass
        rid = next(e.response_id for e in events if isinstance(e, ev.AudioDelta))
        await upstream.interrupt(rid, 20)
        while not isinstance(last := await next_event(), ev.ResponseDone):
            pass
        assert last.response_id == rid and last.status is ev.ResponseStatus.CANCELLED
        produced_ms = _audio_ms(events, upstream.output_format)
        assert produced_ms < 3000, "cancel did not stop the response"
        # Nothing more of it after its ResponseDone: ask for another turn and look at everything.
        await upstream.send_text("Next.", final=True, respond=True)
        while not isinstance(await next_event(), ev.ResponseDone):
            pass
        after = events[events.index(last) + 1 :]
        assert not [e for e in after if isinstance(e, ev.AudioDelta) and e.response_id == rid]
        await upstream.close()


@every_pair
async def test_upstream_drop_mid_response_fails_the_response_then_raises(pair: Pair) -> None:
    async with pair.open(speed=1.0) as (provider, emulator):
        upstream = await _connect(pair, provider, _config(pair))
        await upstream.send_text(LONG_TEXT, final=True, respond=True)
        events: list[ev.ProviderEvent] = []
        with pytest.raises(UpstreamError) as failure:

            async def run() -> None:
                async for event in upstream.events():
                    events.append(event)
                    if isinstance(event, ev.AudioDelta) and not emulator.connections[-1].dropped:
                        await emulator.connections[-1].drop()

            await asyncio.wait_for(run(), 10)
        done = [e for e in events if isinstance(e, ev.ResponseDone)]
        assert len(done) == 1 and done[0].status is ev.ResponseStatus.FAILED
        assert "contract-key" not in str(failure.value)
        await upstream.close()


@every_pair
async def test_wrong_key_is_refused_without_leaking_it(pair: Pair) -> None:
    async with pair.open(key="sk-wrong-secret-key-42") as (provider, _emulator):
        with pytest.raises(UpstreamError) as refused:
            upstream = await _connect(pair, provider, _config(pair))
            # Some services only refuse on first use; either way it must surface as UpstreamError.
            await upstream.send_text("hi", final=True, respond=True)
            await _collect(upstream, timeout_s=5)
        assert "sk-wrong-secret-key-42" not in str(refused.value)
        assert refused.value.retryable is False


@every_pair
async def test_refused_handshake_is_a_retryable_upstream_error(pair: Pair) -> None:
    async with pair.open() as (provider, emulator):
        emulator.faults.reject_connect = 503
        with pytest.raises(UpstreamError) as refused:
            await _connect(pair, provider, _config(pair))
        assert refused.value.retryable is True
