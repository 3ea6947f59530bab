"""One client socket on the Cartesia emulator: routes generation requests and cancels to contexts.

The handshake (key, version, connection cap) was checked by the server; this side of it:

* a generation request for a new ``context_id`` opens a context (`emulator_context`), unless the
  connection already has ``max_contexts`` active ones (``error`` 429 ``concurrency_limited``) or the
  ``error_on_response`` fault is on (``error`` 500 carrying the fault's message);
* later requests on a context append text; they must repeat the context's model, voice, output
  format and language (Cartesia's rule), or they are refused with an ``error``;
* a request for a context that already ended is refused; ``{"context_id", "cancel": true}`` stops a
  context at once (nothing more is sent for it, not even ``done``);
* malformed messages get an ``error`` (400); errors are structured for ``Cartesia-Version``
  2026-03-01 and later, and the legacy ``{"error": "Title: message"}`` shape before;
* a socket with no active context and no message for ``idle_timeout_s`` is closed (1000), as the
  service does after 5 minutes.

Every client message is recorded in ``received`` with a ``type`` the emulator adds: ``"generate"``,
``"cancel"`` or ``"invalid"`` (not JSON), so tests can `wait_for_event` on them. The characters of
every accepted request are counted in ``billed_characters`` (errors bill nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from typing import Any, Final

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from providers.cartesia.emulator_context import EmulatedContext
from providers.cartesia.emulator_request import (
    STRUCTURED_ERRORS_VERSION,
    Cancel,
    Generation,
    RequestError,
    parse_message,
)
from providers.emulation.faults import Faults
from providers.emulation.server import ConnectionDropped, EmulatedConnection

__all__ = ["ENDED_CONTEXTS", "CartesiaEmulatedConnection"]

log = logging.getLogger(__name__)

#: ended context ids remembered per connection (a request on one of them is refused)
ENDED_CONTEXTS: Final = 1024


class CartesiaEmulatedConnection(EmulatedConnection):
    def __init__(
        self,
        ws: ServerConnection,
        faults: Faults,
        *,
        version: str,
        record: bool = True,
        speed: float = 0.0,
        chunk_ms: int = 40,
        max_contexts: int | None = None,
        idle_timeout_s: float | None = 300.0,
    ) -> None:
        super().__init__(ws, faults, record=record)
        self.version = version
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.max_contexts = max_contexts
        self.idle_timeout_s = idle_timeout_s
        self.request_id = str(uuid.uuid4())
        #: contexts by id, active or ended (ended ones are kept for tests while recording)
        self.contexts: dict[str, EmulatedContext] = {}
        self.billed_characters = 0
        self._ended: deque[str] = deque(maxlen=ENDED_CONTEXTS)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def structured_errors(self) -> bool:
        return self.version >= STRUCTURED_ERRORS_VERSION

    def active_contexts(self) -> list[EmulatedContext]:
        return [c for c in self.contexts.values() if c.active]

    async def run(self) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout_s):
                        raw = await self.ws.recv()  # cancel-safe: a timeout loses no message
                except TimeoutError:
                    if self.active_contexts():
                        continue  # speaking, or waiting for more text, is not idle
                    await self.ws.close(1000, "idle timeout")
                    return
                await self._on_message(raw)
        finally:
            for context in self.contexts.values():
                context.cancel()
            for task in list(self._tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- client messages ------------------------------------------------------------------------

    async def _on_message(self, raw: str | bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.record_received({"type": "invalid", "bytes": len(raw)})
            await self.send_error(RequestError("the message is not valid JSON"))
            return
        kind = "cancel" if isinstance(message, dict) and message.get("cancel") is True else "generate"
        self.record_received({**message, "type": kind} if isinstance(message, dict) else {"type": "invalid"})
        context_id = message.get("context_id") if isinstance(message, dict) else None
        try:
            request = parse_message(message)
        except RequestError as exc:
            await self.send_error(exc, context_id if isinstance(context_id, str) else None)
            return
        if isinstance(request, Cancel):
            context = self.contexts.get(request.context_id)
            if context is not None and context.active:
                context.cancel()
                self._ended.append(request.context_id)
            return
        await self._on_generation(request)

    async def _on_generation(self, request: Generation) -> None:
        context = self.contexts.get(request.context_id)
        try:
            if context is None or not context.active:
                if context is not None or request.context_id in self._ended:
                    raise RequestError(f"context {request.context_id!r} has already ended; use a new context_id")
                context = self._open(request)
            elif request.fixed != context.request.fixed:
                raise RequestError(
                    "every input on a context must keep the same model_id, voice, output_format and language"
                )
            context.add(request)
        except RequestError as exc:
            await self.send_error(exc, request.context_id)
            return
        self.billed_characters += len(request.transcript)

    def _open(self, request: Generation) -> EmulatedContext:
        if self.faults.error_on_response is not None:
            raise RequestError(self.faults.error_on_response, status=500, code="internal_error", title="Server error")
        if self.max_contexts is not None and len(self.active_contexts()) >= self.max_contexts:
            raise RequestError(
                "You have exceeded your plan's concurrency limit.",
                status=429,
                code="concurrency_limited",
                title="Too many concurrent requests",
            )
        context = EmulatedContext(request, self._send_for_context, speed=self.speed, chunk_ms=self.chunk_ms)
        if not self.record:  # a long-running emulator keeps only active contexts
            for ended in [k for k, c in self.contexts.items() if not c.active]:
                del self.contexts[ended]
        self.contexts[request.context_id] = context
        task = asyncio.create_task(self._speak(context), name=f"cartesia-context-{request.context_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return context

    async def _speak(self, context: EmulatedContext) -> None:
        try:
            await context.run()
        except ConnectionDropped:
            pass  # a fault dropped the socket; the receive loop sees it closed
        except Exception:  # an emulator bug: log it and end this context, not the connection
            log.exception("emulated context %s failed", context.context_id)
        finally:
            self._ended.append(context.context_id)

    async def _send_for_context(self, event: dict[str, Any]) -> None:
        try:
            await self.send_event(event)
        except ConnectionClosed:
            # The client went away: the context ends quietly; the receive loop ends the connection.
            self.contexts[event["context_id"]].cancel()

    # -- errors ---------------------------------------------------------------------------------

    async def send_error(self, error: RequestError, context_id: str | None = None) -> None:
        """An ``error`` event in the shape of this connection's ``Cartesia-Version``."""
        event: dict[str, Any]
        if self.structured_errors:
            event = {
                "type": "error",
                "done": True,
                "status_code": error.status,
                "error_code": error.code,
                "title": error.title,
                "message": error.message,
                "request_id": f"{self.request_id}:{context_id or '-'}:{uuid.uuid4()}",
            }
        else:
            event = {
                "type": "error",
                "done": True,
                "error": f"{error.title}: {error.message}",
                "status_code": error.status,
            }
        if context_id is not None:
            event["context_id"] = context_id
        with contextlib.suppress(ConnectionDropped):
            await self.send_event(event)
