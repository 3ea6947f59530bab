"""ElevenLabs ``output_format`` names and the audio formats they mean, for the adapter and the emulator.

The TTS WebSockets take ``output_format`` as a query parameter (reference §2a). The raw ones map onto
`AudioFormat`: ``pcm_<rate>`` is 16-bit little-endian mono PCM, ``ulaw_8000``/``alaw_8000`` are G.711.
The spec lists ``pcm_8000`` … ``pcm_44100``; ``pcm_32000`` and ``pcm_48000`` are sent by pipecat and
livekit and listed by the SDK's text-to-dialogue WebSocket enum, so they are offered too. MP3 and Opus
outputs are containers the relay would have to decode; the adapter never asks for them.
"""

from __future__ import annotations

from typing import Final

from audiocodecs.format import AudioFormat, Encoding

__all__ = ["DEFAULT_OUTPUT_FORMAT", "OUTPUT_FORMATS", "PCM_RATES", "audio_format", "negotiate_output_format"]

PCM_RATES: Final = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
#: what to ask for when nothing else fits (the rate the relay's own default output uses)
DEFAULT_OUTPUT_FORMAT: Final = "pcm_24000"

OUTPUT_FORMATS: Final[dict[str, AudioFormat]] = {
    **{f"pcm_{rate}": AudioFormat(Encoding.PCM16, rate) for rate in PCM_RATES},
    "ulaw_8000": AudioFormat(Encoding.ULAW, 8000),
    "alaw_8000": AudioFormat(Encoding.ALAW, 8000),
}
_G711: Final = {Encoding.ULAW: "ulaw_8000", Encoding.ALAW: "alaw_8000"}


def audio_format(name: str) -> AudioFormat | None:
    """The format an ``output_format`` name stands for; None for names without a raw format (mp3, opus)."""
    return OUTPUT_FORMATS.get(name)


def negotiate_output_format(client: AudioFormat) -> str:
    """The ``output_format`` that spares the session any resampling where ElevenLabs allows it.

    G.711 at 8 kHz passes through untouched; anything else gets 16-bit PCM at the client's own rate
    (f32 and Opus clients then only change the sample encoding), or, for a rate ElevenLabs lacks,
    the next higher one it has.
    """
    if client.sample_rate == 8000 and client.encoding in _G711:
        return _G711[client.encoding]
    for rate in PCM_RATES:
        if rate >= client.sample_rate:
            return f"pcm_{rate}"
    return DEFAULT_OUTPUT_FORMAT
