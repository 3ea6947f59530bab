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
  ``emulator.client_ssl_context()`` trusts it.
* ``key_style="snake"`` spells ``context_id``/``is_final`` in server messages, the drift clients
  must tolerate.
* Faults for tests: ``emulator.faults`` or ``?emulator_faults=…`` (`providers.emulation.faults`);
  ``error_on_response`` makes every context's first generation fail with an error message and close 1008.
  `wait_for_event` knows client messages by `message_kind` (``init``, ``text``, ``flush``,
  ``close_context``, ``keepalive``, …).

Run it as its own process (the load tester does): ``python -m providers.elevenlabs.emulator --port 8768``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

from websockets.asyncio.server import ServerConnection

from providers.elevenlabs.emulator_connection import (
    DEFAULT_INACTIVITY_TIMEOUT_S,
    ENDPOINT_PATH,
    MAX_CONTEXTS,
    ElevenLabsEmulatedConnection,
)
from providers.elevenlabs.emulator_context import DEFAULT_CHUNK_CHARS, KeyStyle
from providers.emulation.cli import CommonOptions, EmulatorCommand
from providers.emulation.faults import Faults
from providers.emulation.server import EmulatorServer

__all__ = ["DEFAULT_PORT", "ElevenLabsEmulator", "main"]

DEFAULT_PORT: Final = 8768  # one port per emulator, so all four can run side by side


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
        if chunk_chars <= 0:
            raise ValueError(f"chunk_chars must be positive; got {chunk_chars}")
        if inactivity_timeout_s <= 0:
            raise ValueError(f"inactivity_timeout_s must be positive; got {inactivity_timeout_s}")
        super().__init__(host=host, port=port, speed=speed, api_key=api_key, faults=faults, record=record, tls=tls)
        self.chunk_chars = chunk_chars
        self.inactivity_timeout_s = inactivity_timeout_s
        self.max_contexts = max_contexts
        self.key_style = KeyStyle(key_style)

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._server is not None else "stopped"
        return f"ElevenLabsEmulator({where}, speed={self.speed}, tls={self.tls is not None})"

    def ws_url(self, voice_id: str, *, multi: bool = True) -> str:
        """The WebSocket endpoint for `voice_id` (add ``?model_id=…&output_format=…``)."""
        endpoint = "multi-stream-input" if multi else "stream-input"
        return f"{self.ws_base_url}/v1/text-to-speech/{voice_id}/{endpoint}"

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


# -- command line -------------------------------------------------------------------------------


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chunk-chars", type=int, default=DEFAULT_CHUNK_CHARS, help="characters per audio message")
    parser.add_argument("--tls", action="store_true", help="serve wss with a throwaway self-signed certificate")
    parser.add_argument("--inactivity-timeout", type=float, default=DEFAULT_INACTIVITY_TIMEOUT_S, help="seconds")


def _build(args: argparse.Namespace, options: CommonOptions) -> ElevenLabsEmulator:
    return ElevenLabsEmulator(
        **options, chunk_chars=args.chunk_chars, tls=args.tls, inactivity_timeout_s=args.inactivity_timeout
    )


COMMAND: Final = EmulatorCommand(
    name="ElevenLabs emulator",
    module="providers.elevenlabs.emulator",
    description="Serve a local ElevenLabs streaming-TTS emulator.",
    default_port=DEFAULT_PORT,
    build=_build,
    endpoint=lambda emulator: emulator.base_url,
    add_arguments=_add_arguments,
)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
