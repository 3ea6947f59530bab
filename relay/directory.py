"""The providers this relay serves, by name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from providers.base import Provider


class ProviderDirectory:
    def __init__(self, providers: Iterable[Provider] = ()) -> None:
        self._by_name: dict[str, Provider] = {}
        #: names served by a local emulator rather than the real service
        self.emulated: set[str] = set()
        #: the running emulator objects, by provider name (tests reach their fault switches here)
        self.emulators: dict[str, Any] = {}
        for provider in providers:
            self.add(provider)

    def add(self, provider: Provider, *, emulated: bool = False) -> None:
        self._by_name[provider.name] = provider
        if emulated:
            self.emulated.add(provider.name)

    def get(self, name: str) -> Provider | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)
