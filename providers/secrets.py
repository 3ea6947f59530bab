"""Keeping keys out of error messages: every provider scrubs text from upstream the same way.

A provider's error text (an ``error`` event, a close reason, an exception's message) may echo the
key it was sent, or a key of another account. `Scrubber` replaces the provider's own keys and
anything shaped like one of its keys with ``[redacted]``, then cuts the text to
`MAX_ERROR_MESSAGE_CHARS`. Each provider subclasses it with the shape of its keys::

    class Scrubber(providers.secrets.Scrubber):
        pattern = re.compile(r"\\bsk_[A-Za-z0-9*]{6,}")

    scrub = Scrubber(api_key)          # bound to this key; its repr never shows it
    scrub("bad key sk_abc123…")        # → "bad key [redacted]"
    Scrubber.scrub(text, [other_key])  # once, without binding
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar, Final

__all__ = ["MAX_ERROR_MESSAGE_CHARS", "REDACTED", "Scrubber"]

#: what a secret is replaced with
REDACTED: Final = "[redacted]"
#: longest error message passed on (longer ones are cut, ending in "…")
MAX_ERROR_MESSAGE_CHARS: Final = 500


class Scrubber:
    """Removes the given secrets and anything matching `pattern` from text; its repr never shows them."""

    __slots__ = ("_secrets",)

    #: what a key of this provider looks like (set by each provider's subclass)
    pattern: ClassVar[re.Pattern[str]]

    def __init__(self, *secrets: str) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = self.pattern.sub(REDACTED, text)
        if len(text) > MAX_ERROR_MESSAGE_CHARS:
            text = text[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self._secrets)} secret(s)>)"

    @classmethod
    def scrub(cls, text: str, secrets: Iterable[str] = ()) -> str:
        """`text` without `secrets` or anything shaped like a key, cut to `MAX_ERROR_MESSAGE_CHARS`."""
        return cls(*secrets)(text)
