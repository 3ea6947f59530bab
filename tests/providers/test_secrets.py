"""`providers.secrets.Scrubber`: the scrubbing every provider shares (each provider's own key shapes are
tested with its translator)."""

from __future__ import annotations

import re

from providers.secrets import MAX_ERROR_MESSAGE_CHARS, REDACTED, Scrubber


class _DemoScrubber(Scrubber):
    __slots__ = ()
    pattern = re.compile(r"\bkey_[a-z0-9]{4,}")


def test_given_secrets_and_key_shapes_are_redacted() -> None:
    scrub = _DemoScrubber("my-own-secret", "")
    assert scrub("echo my-own-secret and key_abcd1234 here") == f"echo {REDACTED} and {REDACTED} here"
    assert scrub("key_ab is too short to look like a key") == "key_ab is too short to look like a key"


def test_long_text_is_cut_with_an_ellipsis() -> None:
    cut = _DemoScrubber()("x" * 5000)
    assert len(cut) == MAX_ERROR_MESSAGE_CHARS and cut.endswith("…")
    assert _DemoScrubber()("x" * MAX_ERROR_MESSAGE_CHARS) == "x" * MAX_ERROR_MESSAGE_CHARS


def test_repr_never_shows_the_secrets() -> None:
    assert repr(_DemoScrubber("s3cr3t", "other")) == "_DemoScrubber(<2 secret(s)>)"


def test_scrub_once_without_binding_uses_the_subclass_pattern() -> None:
    assert _DemoScrubber.scrub("a key_abcd1234 and mine", ["mine"]) == f"a {REDACTED} and {REDACTED}"
    assert not hasattr(_DemoScrubber("x"), "__dict__")  # slots all the way down
