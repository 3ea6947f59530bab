"""`GET /readyz`: whether this relay can take sessions — not draining, store (and Redis) reachable.

A load balancer polls this, so each check is bounded by a timeout and the answer names only which
dependency failed; the reason goes to the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from relay.state import RelayState
from relay.store.db import StoreError

LOG = logging.getLogger("relay.readiness")

CHECK_TIMEOUT_S = 2.0

Check = Callable[[], Awaitable[None]]


def checks(state: RelayState) -> dict[str, Check]:
    """The dependencies to check, by name. Redis joins when metering runs against one."""
    found: dict[str, Check] = {"store": state.db.ping}
    if state.metering is not None and state.metering.redis is not None:
        found["redis"] = state.metering.ping
    return found


async def _run(name: str, check: Check) -> bool:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        return True
    except TimeoutError:
        LOG.warning("readiness: %s did not answer within %.1f s", name, CHECK_TIMEOUT_S)
    except (StoreError, OSError, ConnectionError) as exc:
        LOG.warning("readiness: %s unavailable: %s", name, exc)
    return False


async def readiness(state: RelayState) -> tuple[bool, dict[str, str]]:
    """(ready, {dependency: "ok" | "unavailable"})."""
    named = checks(state)
    results = await asyncio.gather(*(_run(name, check) for name, check in named.items()))
    report = {name: "ok" if ok else "unavailable" for name, ok in zip(named, results, strict=True)}
    return all(results), report
