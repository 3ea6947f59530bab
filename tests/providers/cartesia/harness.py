"""A Cartesia provider wired to a fresh local emulator, for the cross-provider contract suite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from providers.cartesia.emulator import CartesiaEmulator
from providers.cartesia.provider import CartesiaProvider

API_KEY = "sk_car_contract-test-key"


@contextlib.asynccontextmanager
async def open_pair(*, speed: float = 0.0) -> AsyncIterator[tuple[CartesiaProvider, CartesiaEmulator]]:
    """Start an emulator (which accepts only `API_KEY`) and yield a provider pointed at it."""
    async with CartesiaEmulator(speed=speed, api_key=API_KEY) as emulator:
        yield CartesiaProvider(API_KEY, base_url=emulator.base_url, connect_timeout_s=5.0), emulator
