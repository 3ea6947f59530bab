"""A Gemini provider pointed at a local Gemini emulator, for the cross-provider contract suite.

    async with open_pair(speed=0.0) as (provider, emulator):
        upstream = await provider.connect(config)

Plain ``ws://`` (the relay talks to its in-process emulator without TLS); any key is accepted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final

from providers.gemini.emulator import GeminiEmulator
from providers.gemini.provider import GeminiProvider

__all__ = ["API_KEY", "open_pair"]

API_KEY: Final = "AIzaSy-harness-test-key-0123456789abcdef"


@contextlib.asynccontextmanager
async def open_pair(*, speed: float = 0.0) -> AsyncIterator[tuple[GeminiProvider, GeminiEmulator]]:
    """An emulator (unpaced at ``speed`` 0) and a provider that connects to it."""
    async with GeminiEmulator(speed=speed) as emulator:
        yield GeminiProvider(API_KEY, base_url=emulator.base_url, connect_timeout_s=5.0), emulator
