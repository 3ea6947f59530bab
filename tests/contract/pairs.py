"""Every adapter + emulator pair the relay ships. A new provider adds one `Pair` here and must
pass tests/contract/test_provider_contract.py — or it is not done."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from providers.base import Provider
from providers.cartesia.emulator import CartesiaEmulator
from providers.cartesia.provider import CartesiaProvider
from providers.elevenlabs.emulator import ElevenLabsEmulator
from providers.elevenlabs.provider import ElevenLabsProvider
from providers.gemini.emulator import GeminiEmulator
from providers.gemini.provider import GeminiProvider
from providers.openai.emulator import OpenAIRealtimeEmulator
from providers.openai.provider import OpenAIProvider

GOOD_KEY = "contract-key-0123456789"


@dataclass(frozen=True)
class Pair:
    name: str
    provider: Callable[[str, str], Provider]  # (api_key, base_url)
    emulator: Callable[[float, str | None], Any]  # (speed, required api_key) -> EmulatorServer
    audio_in: bool  # takes user audio (realtime) or only text (TTS)

    @contextlib.asynccontextmanager
    async def open(self, *, speed: float = 0.0, key: str = GOOD_KEY) -> AsyncIterator[tuple[Provider, Any]]:
        async with self.emulator(speed, GOOD_KEY) as emulator:
            yield self.provider(key, emulator.base_url), emulator


PAIRS: tuple[Pair, ...] = (
    Pair(
        "openai",
        lambda key, url: OpenAIProvider(api_key=key, base_url=url),
        lambda speed, key: OpenAIRealtimeEmulator(speed=speed, api_key=key),
        audio_in=True,
    ),
    Pair(
        "gemini",
        lambda key, url: GeminiProvider(api_key=key, base_url=url),
        lambda speed, key: GeminiEmulator(speed=speed, api_key=key),
        audio_in=True,
    ),
    Pair(
        "cartesia",
        lambda key, url: CartesiaProvider(api_key=key, base_url=url),
        lambda speed, key: CartesiaEmulator(speed=speed, api_key=key),
        audio_in=False,
    ),
    Pair(
        "elevenlabs",
        lambda key, url: ElevenLabsProvider(api_key=key, base_url=url),
        lambda speed, key: ElevenLabsEmulator(speed=speed, api_key=key),
        audio_in=False,
    ),
)
