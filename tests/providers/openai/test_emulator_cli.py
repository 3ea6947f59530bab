"""``python -m providers.openai.emulator`` serves until SIGINT (the load tester runs it as its own process)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

from websockets.asyncio.client import connect

from tests.conftest import REPO
from tests.providers.openai.conftest import MODEL, validate_server_event


async def test_cli_serves_until_interrupted() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "providers.openai.emulator",
        "--port",
        "0",
        "--speed",
        "0",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"(ws://\S+/v1/realtime)", line)
        assert match, line
        async with connect(f"{match.group(1)}?model={MODEL}", additional_headers={"Authorization": "Bearer sk"}) as ws:
            assert validate_server_event(await ws.recv(decode=False))["type"] == "session.created"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert b"stopped" in await proc.stdout.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
