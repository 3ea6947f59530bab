"""Protocol v1 conformance across providers: the same client, the same contract, `provider` switched in
`session.start` — Gemini Live (audio in and out), Cartesia and ElevenLabs (text to speech) — against
`realtime-relay serve` with no keys, so every provider is served by its emulator."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from tests.conformance import audio as A
from tests.conformance.client import Event, RelayClient, Response, describe
from tests.conformance.conftest import RelayServer
from tests.conformance.test_conformance import (
    FRAME_MS,
    EchoCheck,
    assert_quiet_after,
    assert_usage_counts,
    check_echo,
    fmt,
    speech,
)

TTS = ["cartesia", "elevenlabs"]
PIECES = ["Hello and welcome. ", "Your table for two ", "is booked for seven tonight."]


def test_every_provider_is_served_and_emulated(relay: RelayServer) -> None:
    with urllib.request.urlopen(f"{relay.base_url}/readyz", timeout=5) as reply:
        ready = json.loads(reply.read())
    assert set(ready["providers"]) >= {"openai", "gemini", "cartesia", "elevenlabs"}
    assert set(ready["emulated"]) >= {"openai", "gemini", "cartesia", "elevenlabs"}
    log = relay.log_path.read_text(errors="replace")
    for name in ("openai", "gemini", "cartesia", "elevenlabs"):
        assert f"provider {name}: no" in log and "EMULATED" in log, f"the log does not say {name} is emulated"


@pytest.mark.parametrize("turn_detection", ["manual", "server_vad"])
async def test_gemini_audio_turn_echo(relay: RelayServer, turn_detection: str) -> None:
    x = speech("weather-paris-en-16k", 16000)
    if turn_detection == "server_vad":
        x = np.concatenate([x, A.silence(1.0, 16000)])  # the pause that ends the turn
    async with await RelayClient.connect(relay.ws_url) as c:
        started = await c.start("gemini", turn_detection=turn_detection, output_audio=fmt("pcm16", 24000))
        assert started["provider"] == "gemini"
        await c.stream_audio(A.frames(A.to_pcm16(x), 16000, "pcm16", FRAME_MS))
        if turn_detection == "manual":
            await c.send({"type": "audio.commit"})
        response, _ = await c.collect_response(wait_s=20)
        assert response.status == "completed", describe(response.events)
        usage = response.done["usage"]  # type: ignore[index]
        assert_usage_counts(usage)
        assert usage["input_audio_tokens"] > 0
        echo = A.from_pcm16(bytes(response.audio))
        sent_s = len(x) / 16000
        if turn_detection == "manual":
            expect = EchoCheck((0.0, sent_s), (0.0, sent_s))  # exactly what was sent before the commit
        else:
            expect = EchoCheck((0.0, sent_s), A.speech_span(x, 16000))  # VAD cuts the turn itself
        check_echo(x, 16000, echo, 24000, expect, f"gemini {turn_detection}")
        await assert_quiet_after(c, response)


async def test_gemini_barge_in(realtime_relay: RelayServer) -> None:
    async with await RelayClient.connect(realtime_relay.ws_url) as c:
        await c.start("gemini", turn_detection="manual", output_audio=fmt("pcm16", 24000))
        cancelled_at: list[float] = []

        async def barge_in(response: Response, _: Event) -> None:
            if not cancelled_at and len(response.audio) >= 3 * 960:
                await c.send({"type": "playback", "response_id": response.response_id, "played_ms": 40})
                cancelled_at.append(await c.send({"type": "response.cancel"}))

        await c.send({"type": "text", "text": "Tell me a long story about the sea, the wind and the stars. " * 3})
        response, _ = await c.collect_response(wait_s=20, on_audio=barge_in)
        assert cancelled_at, f"the response ended before it could be cancelled:{describe(response.events)}"
        assert response.status == "cancelled", describe(response.events)
        assert len(response.audio) / 48 < 3000, "most of the response arrived despite the cancel"
        await assert_quiet_after(c, response)


@pytest.mark.parametrize("provider", TTS)
@pytest.mark.parametrize("output", [("pcm16", 24000), ("ulaw", 8000)], ids=["pcm16-24k", "ulaw-8k"])
async def test_tts_streamed_text_with_alignment_and_characters(
    relay: RelayServer, provider: str, output: tuple[str, int]
) -> None:
    encoding, rate = output
    async with await RelayClient.connect(relay.ws_url) as c:
        started = await c.start(provider, output_audio=fmt(encoding, rate))
        assert started["provider"] == provider
        for piece in PIECES[:-1]:
            await c.send({"type": "text", "text": piece, "final": False})
        await c.send({"type": "text", "text": PIECES[-1], "final": True})
        response, _ = await c.collect_response(wait_s=20)
        assert response.status == "completed", describe(response.events)
        text = "".join(PIECES)
        assert response.done["usage"]["characters"] == len(text)  # type: ignore[index]
        alignments = response.of_type("alignment")
        assert alignments, f"no alignment events:{describe(response.events)}"
        unit = "words" if alignments[0].get("words") is not None else "chars"
        spoken = [s for a in alignments for s in a[unit]]
        starts = [t for a in alignments for t in a["start_ms"]]
        assert starts == sorted(starts), "alignment start times go backwards"
        joined = (" " if unit == "words" else "").join(spoken)
        assert joined.split() == text.split(), f"alignment {unit} do not spell the text: {joined!r}"
        audio_ms = len(response.audio) / (A.bytes_per_sample(encoding) * rate / 1000)
        assert audio_ms > 1000 and starts[-1] < audio_ms, f"{audio_ms:.0f} ms of audio, last start {starts[-1]}"
        await assert_quiet_after(c, response)


@pytest.mark.parametrize("provider", TTS)
async def test_tts_barge_in_stops_speech(realtime_relay: RelayServer, provider: str) -> None:
    async with await RelayClient.connect(realtime_relay.ws_url) as c:
        await c.start(provider)
        cancelled: list[float] = []

        async def barge_in(response: Response, _: Event) -> None:
            if not cancelled and len(response.audio) >= 3 * 960:
                cancelled.append(await c.send({"type": "response.cancel"}))

        await c.send({"type": "text", "text": "A long sentence that takes many seconds to say out loud. " * 4})
        response, _ = await c.collect_response(wait_s=20, on_audio=barge_in)
        assert cancelled and response.status == "cancelled", describe(response.events)
        assert len(response.audio) / 48 < 3000
        await assert_quiet_after(c, response)


@pytest.mark.parametrize("provider", TTS)
async def test_audio_to_a_tts_session_is_a_clear_non_fatal_error(relay: RelayServer, provider: str) -> None:
    async with await RelayClient.connect(relay.ws_url) as c:
        await c.start(provider)
        await c.send_audio(b"\x00\x00" * 320)
        events = await c.ping()
        errors = [e for e in events if e.type == "error"]
        assert len(errors) == 1 and errors[0]["fatal"] is False, describe(events)
        assert "audio" in errors[0]["message"]
        await c.send({"type": "text", "text": "Still here.", "final": True})
        response, _ = await c.collect_response()
        assert response.status == "completed"
