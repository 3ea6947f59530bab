"""The real relay, started as a child process (`realtime-relay serve`) for the conformance tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RELAY_BIN = Path(sys.executable).with_name("realtime-relay")
STARTUP_DEADLINE_S = 20.0


@dataclass(frozen=True)
class RelayServer:
    base_url: str  # http://127.0.0.1:<port>
    ws_url: str  # ws://127.0.0.1:<port>/v1/session
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_relay(log_dir: Path, name: str, **env_overrides: str) -> RelayServer:
    port = _free_port()
    env = dict(os.environ)
    env.pop("OPENAI_API_KEY", None)  # OpenAI is then served by the relay's built-in emulator
    env.setdefault("RELAY_EMULATOR_SPEED", "0")
    # Its own empty store: no tenant, so local development mode, whatever ./relay.db holds.
    env["DATABASE_URL"] = f"sqlite:///{log_dir / f'relay-{name}.db'}"
    env.update(env_overrides)
    log_path = log_dir / f"relay-{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(RELAY_BIN), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RelayServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/session", log_path, process)
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while not _healthy(f"{server.base_url}/healthz"):
        if process.poll() is not None:
            pytest.fail(f"the relay exited with {process.returncode} at start:\n{server.log_tail()}", pytrace=False)
        if time.monotonic() > deadline:
            stop_relay(server)
            pytest.fail(f"the relay did not answer /healthz within {STARTUP_DEADLINE_S} s:\n{server.log_tail()}")
        time.sleep(0.05)
    return server


def stop_relay(server: RelayServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    """The relay with the OpenAI emulator answering as fast as possible (RELAY_EMULATOR_SPEED=0)."""
    server = start_relay(tmp_path_factory.mktemp("relay"), "fast", RELAY_EMULATOR_SPEED="0")
    yield server
    stop_relay(server)


@pytest.fixture(scope="module")
def realtime_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    """The relay with the OpenAI emulator paced in real time (RELAY_EMULATOR_SPEED=1), for barge-in."""
    server = start_relay(tmp_path_factory.mktemp("relay"), "realtime", RELAY_EMULATOR_SPEED="1")
    yield server
    stop_relay(server)
