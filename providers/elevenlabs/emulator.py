"""A local ElevenLabs streaming-TTS server, good enough for the official SDK, the relay and load tests.

    async with ElevenLabsEmulator(tls=True) as emulator:
        client = ElevenLabs(api_key="sk_test", base_url=emulator.base_url)   # the SDK only speaks wss
        audio = client.text_to_speech.convert_realtime(voice_id, text=..., output_format="pcm_16000")

    async with ElevenLabsEmulator(speed=1.0) as emulator:
        provider = ElevenLabsProvider("sk_test", base_url=emulator.base_url)

What it speaks (reference §2a, §2b and the §5 "Fake ElevenLabs TTS" checklist):

* ``/v1/text-to-speech/{voice_id}/stream-input`` and ``…/multi-stream-input`` with ``model_id``,
  ``output_format`` (``pcm_8000`` … ``pcm_48000``, ``ulaw_8000``, ``alaw_8000``), ``auto_mode`` and
  ``inactivity_timeout`` query parameters; ``/healthz`` answers 200. The protocol, the key, the
  5-context limit and the 1008 closes are in `emulator_connection`; chunk schedule, flush and speech
  with per-chunk alignment in `emulator_context`.
* Speech is the shared deterministic synthesizer (`providers.emulation.synth`): 70 ms per character.
* ``speed``: audio pacing as a multiple of real time (0 = as fast as the socket takes it).
* ``tls``: serve ``wss``/``https`` with a throwaway loopback certificate (`providers.emulation.tls`);
  ``emulator.tls.client_context()`` trusts it.
* ``key_style="snake"`` spells ``context_id``/``is_final`` in server messages, the drift clients
  must tolerate.
* Faults for tests: ``emulator.faults`` or ``?emulator_faults=…`` (`providers.emulation.faults`);
  ``error_on_response`` makes every context's first generation fail with an error message and close 1008.

Run it as its own process (the load tester does): ``python -m providers.elevenlabs.emulator --port 8767``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final

from websockets.asyncio.server import ServerConnection

from providers.elevenlabs.emulator_connection import (
    DEFAULT_INACTIVITY_TIMEOUT_S,
    ENDPOINT_PATH,
    MAX_CONTEXTS,
    ElevenLabsEmulatedConnection,
)
from providers.elevenlabs.emulator_context import DEFAULT_CHUNK_CHARS, KeyStyle
from providers.emulation.faults import Faults
from providers.emulation.server import DEFAULT_WAIT_S, EmulatorServer
from providers.emulation.tls import SelfSignedTLS, self_signed

__all__ = ["DEFAULT_PORT", "ElevenLabsEmulator", "main"]

DEFAULT_PORT: Final = 8767


class ElevenLabsEmulator(EmulatorServer[ElevenLabsEmulatedConnection]):
    """The server. ``speed``: output pacing as a multiple of real time (0 = as fast as possible)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 0.0,
        api_key: str | None = None,
        faults: Faults | None = None,
        record: bool = True,
        tls: bool = False,
        chunk_chars: int = DEFAULT_CHUNK_CHARS,
        inactivity_timeout_s: float = DEFAULT_INACTIVITY_TIMEOUT_S,
        max_contexts: int = MAX_CONTEXTS,
        key_style: KeyStyle | str = KeyStyle.CAMEL,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0; got {speed}")
        if chunk_chars <= 0:
            raise ValueError(f"chunk_chars must be positive; got {chunk_chars}")
        if inactivity_timeout_s <= 0:
            raise ValueError(f"inactivity_timeout_s must be positive; got {inactivity_timeout_s}")
        #: the certificate served when ``tls`` is on (clients trust it with ``tls.client_context()``)
        self.tls: SelfSignedTLS | None = self_signed() if tls else None
        super().__init__(
            host=host,
            port=port,
            faults=faults,
            record=record,
            ssl=self.tls.server_context() if self.tls is not None else None,
        )
        self.speed = speed
        self.api_key = api_key
        self.chunk_chars = chunk_chars
        self.inactivity_timeout_s = inactivity_timeout_s
        self.max_contexts = max_contexts
        self.key_style = KeyStyle(key_style)

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._server is not None else "stopped"
        return f"ElevenLabsEmulator({where}, speed={self.speed}, tls={self.tls is not None})"

    @property
    def base_url(self) -> str:
        """What to pass as ``ElevenLabsProvider(base_url=...)`` or ``ElevenLabs(base_url=...)``."""
        return f"{self.http_scheme}://{self.host}:{self.port}"

    def ws_url(self, voice_id: str, *, multi: bool = True) -> str:
        """The WebSocket endpoint for `voice_id` (add ``?model_id=…&output_format=…``)."""
        endpoint = "multi-stream-input" if multi else "stream-input"
        return f"{self.ws_scheme}://{self.host}:{self.port}/v1/text-to-speech/{voice_id}/{endpoint}"

    def accepts_path(self, path: str) -> bool:
        return ENDPOINT_PATH.fullmatch(path) is not None

    def create_connection(self, ws: ServerConnection, faults: Faults) -> ElevenLabsEmulatedConnection:
        return ElevenLabsEmulatedConnection(
            ws,
            faults,
            record=self.record,
            speed=self.speed,
            chunk_chars=self.chunk_chars,
            api_key=self.api_key,
            inactivity_timeout_s=self.inactivity_timeout_s,
            max_contexts=self.max_contexts,
            key_style=self.key_style,
        )

    async def wait_for_event(
        self,
        type: str,
        timeout: float = DEFAULT_WAIT_S,  # noqa: ASYNC109 - the helper's documented signature
        *,
        count: int = 1,
    ) -> dict[str, Any]:
        """The ``count``-th client message of this kind (`message_kind`: ``init``, ``text``, ``flush``,
        ``close_context``, ``keepalive``, …) on the most recent connection, waiting for both if needed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self.connections[-1] if self.connections else await self.wait_for_connection(1, timeout)
        return await conn.wait_for_event(type, max(0.0, deadline - loop.time()), count=count)


# -- command line -------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m providers.elevenlabs.emulator", description="Serve a local ElevenLabs streaming-TTS emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (printed at start)")
    parser.add_argument("--speed", type=float, default=1.0, help="output pacing x real time; 0 = unpaced")
    parser.add_argument("--chunk-chars", type=int, default=DEFAULT_CHUNK_CHARS, help="characters per audio message")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any key)")
    parser.add_argument("--tls", action="store_true", help="serve wss with a throwaway self-signed certificate")
    parser.add_argument("--inactivity-timeout", type=float, default=DEFAULT_INACTIVITY_TIMEOUT_S, help="seconds")
    parser.add_argument("--faults", default="", help="e.g. delay_ms:5,drop_after_events:100 (for every connection)")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    emulator = ElevenLabsEmulator(
        host=args.host,
        port=args.port,
        speed=args.speed,
        chunk_chars=args.chunk_chars,
        api_key=args.api_key,
        tls=args.tls,
        inactivity_timeout_s=args.inactivity_timeout,
        faults=Faults.parse(args.faults),
        record=False,  # a long-running process must not keep every message
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with emulator:
        print(f"ElevenLabs emulator listening on {emulator.base_url} (speed {emulator.speed})", flush=True)
        await stop.wait()
    print("ElevenLabs emulator stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
