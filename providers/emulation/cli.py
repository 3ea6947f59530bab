"""The command line every emulator shares: ``python -m providers.<name>.emulator [options]``.

Each emulator module describes itself in one `EmulatorCommand` — its name, default port, its own
options and how to build it — and its ``main`` is `EmulatorCommand.main`. The command parses the
options every emulator has (``--host``, ``--port``, ``--speed``, ``--api-key``, ``--faults``) and the
emulator's own, builds the emulator without recording (a long-running process must not keep every
message), prints one line saying where it listens (the load tester and tests read it), serves until
SIGINT or SIGTERM, and prints that it stopped. Exit status 0, or 1 if the address cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar

from providers.emulation.faults import Faults
from providers.emulation.server import EmulatorServer

__all__ = ["CommonOptions", "EmulatorCommand"]

EmulatorT = TypeVar("EmulatorT", bound=EmulatorServer[Any])


class CommonOptions(TypedDict):
    """The `EmulatorServer` arguments that come from the shared options."""

    host: str
    port: int
    speed: float
    api_key: str | None
    faults: Faults
    record: bool


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


@dataclass(frozen=True)
class EmulatorCommand(Generic[EmulatorT]):
    """One emulator's command line."""

    #: says who listens and who stopped, e.g. ``"OpenAI Realtime emulator"``
    name: str
    #: the module run with ``python -m``
    module: str
    description: str
    default_port: int
    #: the emulator from the parsed arguments and the shared options
    build: Callable[[argparse.Namespace, CommonOptions], EmulatorT]
    #: where the emulator says it listens (a URL)
    endpoint: Callable[[EmulatorT], str]
    #: adds the emulator's own options
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    #: parses ``--faults`` (a `Faults` subclass for an emulator with switches of its own)
    faults: type[Faults] = Faults
    #: an example for ``--faults --help``
    faults_example: str = "delay_ms:5,drop_after_events:100"

    def parse_args(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        parser = argparse.ArgumentParser(prog=f"python -m {self.module}", description=self.description)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--port", type=int, default=self.default_port, help="0 picks a free port (printed at start)"
        )
        parser.add_argument("--speed", type=float, default=1.0, help="output pacing x real time; 0 = unpaced")
        parser.add_argument("--api-key", default=None, help="accept only this key (default: any key)")
        parser.add_argument("--faults", default="", help=f"e.g. {self.faults_example} (for every connection)")
        self.add_arguments(parser)
        return parser.parse_args(argv)

    def options(self, args: argparse.Namespace) -> CommonOptions:
        return CommonOptions(
            host=args.host,
            port=args.port,
            speed=args.speed,
            api_key=args.api_key,
            faults=self.faults.parse(args.faults),
            record=False,  # a long-running process must not keep every message
        )

    async def serve(self, args: argparse.Namespace) -> None:
        """Serve until SIGINT or SIGTERM."""
        emulator = self.build(args, self.options(args))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        async with emulator:
            ca = f", CA certificate {emulator.ca_pem_path}" if emulator.tls is not None else ""
            print(f"{self.name} listening on {self.endpoint(emulator)} (speed {emulator.speed}{ca})", flush=True)
            await stop.wait()
        print(f"{self.name} stopped", flush=True)

    def main(self, argv: Sequence[str] | None = None) -> int:
        args = self.parse_args(argv)
        try:
            asyncio.run(self.serve(args))
        except KeyboardInterrupt:
            pass
        except OSError as exc:
            print(f"cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        return 0
