"""`realtime-relay serve` as a user runs it: a real process answering on a real port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.services import free_port

BIN = Path(sys.executable).with_name("realtime-relay")


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return reply.status, reply.read().decode()


def test_serve_answers_health_and_says_what_is_emulated(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'relay.db'}"
    log = (tmp_path / "serve.log").open("w+b")
    proc = subprocess.Popen([BIN, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert proc.poll() is None, "serve exited during startup"
                assert time.monotonic() < deadline, "serve did not answer /healthz within 20 s"
                time.sleep(0.1)  # polling a child process's port: there is no event to wait on
        assert status == 200 and '"ok"' in body
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200 and '"openai"' in body
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "relay_sessions_active" in body
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    log.seek(0)
    text = log.read().decode()
    assert "EMULATED" in text and "local development mode" in text
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (exit status -15).
    assert "Finished server process" in text and proc.returncode in (0, -15)


def test_bad_setting_is_a_clear_error() -> None:
    env = {**os.environ, "RELAY_PORT": "eighty"}
    out = subprocess.run([BIN, "serve"], env=env, capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "RELAY_PORT must be a int" in out.stderr
