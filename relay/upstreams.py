"""Build the provider directory from settings, starting local emulators for keyless providers.

A provider with a key talks to the real service; without one it is served by its emulator,
started in-process on a loopback port, and the log says so first thing. Adding a provider is one
entry in `UPSTREAMS`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from providers.base import Provider
from providers.cartesia import provider as cartesia
from providers.cartesia.emulator import CartesiaEmulator
from providers.cartesia.provider import CartesiaProvider
from providers.elevenlabs import provider as elevenlabs
from providers.elevenlabs.emulator import ElevenLabsEmulator
from providers.elevenlabs.provider import ElevenLabsProvider
from providers.gemini import provider as gemini
from providers.gemini.emulator import GeminiEmulator
from providers.gemini.provider import GeminiProvider
from providers.openai.emulator import OpenAIRealtimeEmulator
from providers.openai.provider import OpenAIProvider
from relay.config import Settings
from relay.directory import ProviderDirectory

LOG = logging.getLogger("relay.upstreams")

EMULATED_KEY = "emulated-no-key"


@dataclass(frozen=True)
class Upstream:
    name: str
    #: the provider, given the key and base URL to use
    build: Callable[[Settings, str, str], Provider]
    #: the real service's base URL from settings
    base_url: Callable[[Settings], str]
    #: the emulator (an async context manager with `.base_url`), given speed and whether to record
    emulator: Callable[[float, bool], Any]


UPSTREAMS: tuple[Upstream, ...] = (
    Upstream(
        "openai",
        lambda s, key, url: OpenAIProvider(api_key=key, base_url=url, default_model=s.openai_model),
        lambda s: s.openai_base_url,
        lambda speed, record: OpenAIRealtimeEmulator(speed=speed, record=record),
    ),
    Upstream(
        "gemini",
        lambda s, key, url: GeminiProvider(
            api_key=key, base_url=url, default_model=s.gemini_model or gemini.DEFAULT_MODEL
        ),
        lambda s: s.gemini_base_url,
        lambda speed, record: GeminiEmulator(speed=speed, record=record),
    ),
    Upstream(
        "cartesia",
        lambda s, key, url: CartesiaProvider(
            api_key=key,
            base_url=url,
            default_model=s.cartesia_model or cartesia.DEFAULT_MODEL,
            default_voice=s.cartesia_voice or cartesia.DEFAULT_VOICE,
        ),
        lambda s: s.cartesia_base_url,
        lambda speed, record: CartesiaEmulator(speed=speed, record=record),
    ),
    Upstream(
        "elevenlabs",
        lambda s, key, url: ElevenLabsProvider(
            api_key=key,
            base_url=url,
            default_model=s.elevenlabs_model or elevenlabs.DEFAULT_MODEL,
            default_voice=s.elevenlabs_voice or elevenlabs.DEFAULT_VOICE,
        ),
        lambda s: s.elevenlabs_base_url,
        lambda speed, record: ElevenLabsEmulator(speed=speed, record=record),
    ),
)


@contextlib.asynccontextmanager
async def provider_directory(settings: Settings, *, record: bool = False) -> AsyncIterator[ProviderDirectory]:
    """`record`: emulators keep what they received (tests inspect it); off for a long-running relay."""
    directory = ProviderDirectory()
    async with contextlib.AsyncExitStack() as stack:
        for upstream in UPSTREAMS:
            key = settings.api_key(upstream.name)
            if key:
                url = upstream.base_url(settings)
                directory.add(upstream.build(settings, key.value, url))
                LOG.info("provider %s: real service at %s", upstream.name, url)
                continue
            emulator = await stack.enter_async_context(upstream.emulator(settings.emulator_speed, record))
            directory.add(upstream.build(settings, EMULATED_KEY, emulator.base_url), emulated=True)
            directory.emulators[upstream.name] = emulator
            LOG.warning(
                "provider %s: no %s key, EMULATED at %s", upstream.name, upstream.name.upper(), emulator.base_url
            )
        yield directory
