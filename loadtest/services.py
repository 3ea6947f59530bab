"""The processes under test: an OpenAI Realtime emulator and a relay, each its own process.

Each runs in its own process so that neither shares an event loop (or a GIL) with the load
client, and so that /proc shows each one's CPU separately. Both bind 127.0.0.1 only. They are
stopped by their own pid — SIGTERM, then SIGKILL after a grace period — whatever happens to the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

STARTUP_TIMEOUT_S: Final = 30.0
STOP_GRACE_S: Final = 15.0
HOST: Final = "127.0.0.1"
_PR_SET_PDEATHSIG: Final = 1
DIRECT_MODEL: Final = "gpt-realtime"  # what the relay asks OpenAI for when the client names no model
_RELAY_ENV_PREFIXES: Final = ("RELAY_", "OPENAI_", "GEMINI_", "CARTESIA_", "ELEVENLABS_", "DATABASE_URL", "REDIS_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    pid: int
    port: int


@dataclass(frozen=True, slots=True)
class Services:
    emulator: Service | None
    relay: Service | None
    relay_url: str | None  # ws://…/v1/session
    direct_url: str | None  # ws://…/v1/realtime?model=… on the emulator


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the harness dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG), so that no emulator, relay or worker outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, name: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} at start; see {log}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer {url} within {STARTUP_TIMEOUT_S:.0f} s; see {log}") from None
            time.sleep(0.05)


@contextmanager
def _process(name: str, args: list[str], env: dict[str, str], health: str, log_dir: Path) -> Iterator[int]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log: TextIO
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            args,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # services start before any thread exists (preexec is not thread-safe)
        )
        try:
            _wait_healthy(proc, health, name, log_path)
            yield proc.pid
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM this one process, wait, then SIGKILL it: never left running."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_GRACE_S)


@contextmanager
def start_services(
    *,
    log_dir: Path,
    provider: str,
    model: str | None,
    emulator_speed: float,
    max_sessions: int,
    relay_settings: tuple[tuple[str, str], ...] = (),
    relay_url: str | None = None,
    direct_url: str | None = None,
    need_emulator: bool = True,
) -> Iterator[Services]:
    """Start what the run needs and was not given: the emulator (for ``openai``) and the relay.

    Given ``relay_url``, no relay is started (and its CPU is not sampled unless a pid is given).
    Providers other than ``openai`` have no external emulator: the relay serves them with its
    in-process emulators (their cost then shows up inside the relay's CPU).
    """
    # The relay under test is configured by us alone: no inherited keys, stores or limits.
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(_RELAY_ENV_PREFIXES)}
    python = sys.executable
    with ExitStack() as stack:
        emulator: Service | None = None
        emulator_port: int | None = None
        if need_emulator and provider == "openai" and direct_url is None:
            emulator_port = free_port()
            args = [python, "-m", "providers.openai.emulator", "--host", HOST, "--port", str(emulator_port)]
            args += ["--speed", str(emulator_speed)]
            pid = stack.enter_context(
                _process("emulator", args, base_env, f"http://{HOST}:{emulator_port}/healthz", log_dir)
            )
            emulator = Service("emulator", pid, emulator_port)
            direct_url = f"ws://{HOST}:{emulator_port}/v1/realtime?model={model or DIRECT_MODEL}"
        relay: Service | None = None
        if relay_url is None:
            port = free_port()
            env = {
                **base_env,
                "RELAY_LOG_LEVEL": "warning",
                "RELAY_MAX_SESSIONS": str(max_sessions),
                "RELAY_TENANT_MAX_SESSIONS": str(max_sessions),
                "RELAY_EMULATOR_SPEED": str(emulator_speed),
                # A fresh store with no tenant: the contract's local mode admits loopback clients.
                "DATABASE_URL": "sqlite:///:memory:",
                **dict(relay_settings),
            }
            if emulator_port is not None:
                env["OPENAI_API_KEY"] = "loadtest-key"  # any value: the emulator accepts any key
                env["OPENAI_BASE_URL"] = f"http://{HOST}:{emulator_port}/v1"
            args = [python, "-m", "relay.cli", "serve", "--host", HOST, "--port", str(port)]
            pid = stack.enter_context(_process("relay", args, env, f"http://{HOST}:{port}/healthz", log_dir))
            relay = Service("relay", pid, port)
            relay_url = f"ws://{HOST}:{port}/v1/session"
        yield Services(emulator, relay, relay_url, direct_url)
