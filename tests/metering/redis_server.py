"""A private redis-server on a free port, for tests that stop, restart or empty Redis.

By default without persistence (``--save "" --appendonly no``): a restart comes back empty, like a
Redis that lost its data. ``persistent=True`` turns on AOF with ``appendfsync always``: a restart
then comes back with everything it acknowledged (an outage, not a loss).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.services import ServiceUnavailable, free_port

START_DEADLINE_S = 10.0


class PrivateRedis:
    def __init__(self, directory: Path, port: int | None = None, *, persistent: bool = False) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.persistent = persistent
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise ServiceUnavailable("redis-server is not installed (Debian: apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                *self._persistence(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_DEADLINE_S
        while not _answers(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceUnavailable(f"a private redis-server on port {self.port} did not start")
            time.sleep(0.02)  # a child process's port: there is no event to wait on

    def _persistence(self) -> list[str]:
        # noeviction: a metering Redis must refuse writes when full, never evict the stream.
        options = ["--maxmemory-policy", "noeviction", "--save", ""]
        if self.persistent:
            # appendfsync always: a SIGKILL loses nothing that was acknowledged.
            return [*options, "--appendonly", "yes", "--appendfsync", "always"]
        return [*options, "--appendonly", "no"]

    def stop(self) -> None:
        """Kill it (SIGKILL: no chance to save anything, like a crash) and wait until it is gone."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait(timeout=10)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False
