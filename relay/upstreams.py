"""Build the provider directory from settings, starting local emulators for keyless providers.

A provider with a key talks to the real service; without one it is served by its emulator,
started in-process on a loopback port, and the log says so first thing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from providers.openai.emulator import OpenAIRealtimeEmulator
from providers.openai.provider import OpenAIProvider
from relay.config import Settings
from relay.directory import ProviderDirectory

LOG = logging.getLogger("relay.upstreams")

EMULATED_KEY = "emulated-no-key"


@contextlib.asynccontextmanager
async def provider_directory(settings: Settings, *, record: bool = False) -> AsyncIterator[ProviderDirectory]:
    """`record`: emulators keep what they received (tests inspect it); off for a long-running relay."""
    directory = ProviderDirectory()
    async with contextlib.AsyncExitStack() as stack:
        if settings.openai_emulated:
            emulator = OpenAIRealtimeEmulator(speed=settings.emulator_speed, record=record)
            await stack.enter_async_context(emulator)
            directory.add(
                OpenAIProvider(api_key=EMULATED_KEY, base_url=emulator.base_url, default_model=settings.openai_model),
                emulated=True,
            )
            directory.emulators["openai"] = emulator
            LOG.warning("provider openai: no OPENAI_API_KEY, EMULATED at %s", emulator.base_url)
        else:
            directory.add(
                OpenAIProvider(
                    api_key=settings.openai_api_key.value,
                    base_url=settings.openai_base_url,
                    default_model=settings.openai_model,
                )
            )
            LOG.info("provider openai: real service at %s", settings.openai_base_url)
        yield directory
