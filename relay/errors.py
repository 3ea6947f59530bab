"""One exception tree: each error maps to exactly one contract error code and close code.

`fatal` errors end the session: the client gets the `error` event, then the close code.
Non-fatal ones are reported and the session goes on. Messages are for the client: never a
provider key, never a stack trace.
"""

from __future__ import annotations


class RelayError(Exception):
    code: str = "internal_error"
    fatal: bool = True
    close_code: int | None = 1011

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidMessage(RelayError):
    """Malformed JSON/msgpack, or a missing or wrong-typed field."""

    code = "invalid_message"
    fatal = False
    close_code = None


class UnknownType(RelayError):
    code = "unknown_type"
    fatal = False
    close_code = None


class InvalidState(RelayError):
    """A message before `session.start`, or a second `session.start`."""

    code = "invalid_state"
    fatal = False
    close_code = None


class InvalidAudio(RelayError):
    """Audio that does not fit its format; the frame is dropped and counted."""

    code = "invalid_audio"
    fatal = False
    close_code = None


class Unsupported(RelayError):
    """Unknown provider or model, or a modality the provider lacks."""

    code = "unsupported"
    fatal = True
    close_code = 1008


class TooManyInvalid(RelayError):
    code = "invalid_message"
    fatal = True
    close_code = 1008


class QuotaExceeded(RelayError):
    code = "quota_exceeded"
    fatal = True
    close_code = 1008


class UpstreamFailed(RelayError):
    """The provider refused, failed or vanished and no fallback is left."""

    code = "upstream_error"
    fatal = True
    close_code = 1014


class Internal(RelayError):
    """A bug. The client learns nothing more than this; the log has the details."""

    code = "internal_error"
    fatal = True
    close_code = 1011


# Close codes used outside the error events.
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_UPSTREAM = 1014
