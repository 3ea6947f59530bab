"""Log setup. One line per event; never payloads or keys."""

from __future__ import annotations

import logging

LOG = logging.getLogger("relay")


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
