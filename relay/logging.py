"""Log setup. One line per event; never payloads or keys."""

from __future__ import annotations

import logging
import re

LOG = logging.getLogger("relay")


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_redaction()


# Browser tokens ride in URLs (?token=) and subprotocols (relay.token.<t>); uvicorn logs the path
# with its query string on every WebSocket handshake, so its records are redacted before output.
_SECRET_IN_TEXT = re.compile(r"((?:[?&]token=)|(?:relay\.token\.))[^&\s\"',]+")
# (A logger's filters see only records logged on it, not on its children: name each one.)
_REDACTED_LOGGERS = ("uvicorn.error", "uvicorn.access")


def redact(text: str) -> str:
    return _SECRET_IN_TEXT.sub(r"\1***", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_redaction() -> None:
    """Attach the token redaction filter to the loggers that may see a URL (idempotent)."""
    for name in _REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
