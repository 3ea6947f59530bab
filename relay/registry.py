"""Which sessions this process holds: capacity, per-tenant caps and draining for shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Protocol


class Drainable(Protocol):
    tenant: str

    async def shut_down(self, reason: str, close_code: int) -> None: ...


class SessionRegistry:
    def __init__(self, max_sessions: int, tenant_max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.tenant_max_sessions = tenant_max_sessions
        self._sessions: set[Drainable] = set()
        self._per_tenant: Counter[str] = Counter()
        self._empty = asyncio.Event()
        self._empty.set()
        self.draining = False

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[Drainable]:
        return list(self._sessions)

    def at_capacity(self) -> bool:
        return len(self._sessions) >= self.max_sessions

    def tenant_full(self, tenant: str, limit: int | None = None) -> bool:
        """Whether ``tenant`` holds ``limit`` sessions (default: the relay-wide per-tenant cap)."""
        return self._per_tenant[tenant] >= (self.tenant_max_sessions if limit is None else limit)

    def add(self, session: Drainable) -> None:
        self._sessions.add(session)
        self._per_tenant[session.tenant] += 1
        self._empty.clear()

    def remove(self, session: Drainable) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            self._per_tenant[session.tenant] -= 1
            if self._per_tenant[session.tenant] <= 0:
                del self._per_tenant[session.tenant]
        if not self._sessions:
            self._empty.set()

    async def drain(self, timeout_s: float) -> None:
        """Stop admitting sessions; let the open ones finish for `timeout_s`, then end them with 1012."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        if self._sessions:
            await asyncio.gather(
                *(s.shut_down("server_restart", 1012) for s in list(self._sessions)), return_exceptions=True
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), 5.0)
