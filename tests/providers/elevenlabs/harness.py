"""An ElevenLabs provider pointed at a fresh emulator, for the cross-provider contract suite.

async with open_pair(speed=1.0) as (provider, emulator):
    upstream = await provider.connect(config)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final

from providers.elevenlabs.emulator import ElevenLabsEmulator
from providers.elevenlabs.provider import ElevenLabsProvider

API_KEY: Final = "sk_relay_harness_0123456789abcdef"


@contextlib.asynccontextmanager
async def open_pair(*, speed: float = 0.0) -> AsyncIterator[tuple[ElevenLabsProvider, ElevenLabsEmulator]]:
    """Start an emulator that accepts only `API_KEY` and yield a provider using it, then stop the emulator."""
    async with ElevenLabsEmulator(speed=speed, api_key=API_KEY) as emulator:
        yield ElevenLabsProvider(API_KEY, base_url=emulator.base_url, connect_timeout_s=5.0), emulator
