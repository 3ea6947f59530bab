"""A browser token's provider/model pins, enforced where ``session.start`` is judged.

The pins can only be checked once ``session.start`` names a provider and model, which is after
the handshake; so a pinned session sees a directory holding just what its token allows. Asking
for anything else then fails the way any unknown provider or model does: ``error`` ``unsupported``
(fatal, close 1008) — which is what the contract says for a provider/model the client cannot have.
A model pin also becomes the default model, so ``session.start`` may leave ``model`` out.
"""

from __future__ import annotations

from providers.base import Provider, ProviderKind, SessionConfig, UpstreamSession
from relay.directory import ProviderDirectory


class PinnedModel:
    """A provider restricted to one model."""

    def __init__(self, inner: Provider, model: str) -> None:
        self.inner = inner
        self.model = model
        self.name: str = inner.name
        self.kind: ProviderKind = inner.kind
        self.default_model: str = model
        self.modalities: frozenset[str] = inner.modalities

    def supports_model(self, model: str) -> bool:
        return model == self.model and self.inner.supports_model(model)

    async def connect(self, config: SessionConfig) -> UpstreamSession:
        return await self.inner.connect(config)


def pinned_directory(directory: ProviderDirectory, provider: str | None, model: str | None) -> ProviderDirectory:
    """``directory`` as a token with these pins sees it (``directory`` itself when nothing is pinned)."""
    if provider is None and model is None:
        return directory
    names = [provider] if provider is not None else directory.names()
    view = ProviderDirectory()
    for name in names:
        found = directory.get(name)
        if found is None:
            continue
        view.add(found if model is None else PinnedModel(found, model), emulated=name in directory.emulated)
        if name in directory.emulators:
            view.emulators[name] = directory.emulators[name]
    return view
