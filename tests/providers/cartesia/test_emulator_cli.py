"""``python -m providers.cartesia.emulator`` serves until SIGINT (the load tester runs it as its own process)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import orjson
from websockets.asyncio.client import connect

from tests.conftest import REPO
from tests.providers.cartesia.conftest import generation, validate_server_event


async def test_cli_serves_until_interrupted() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "providers.cartesia.emulator",
        "--port",
        "0",
        "--speed",
        "0",
        "--api-key",
        "sk_car_cli",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"(ws://\S+/tts/websocket)", line)
        assert match, line
        headers = {"X-API-Key": "sk_car_cli", "Cartesia-Version": "2026-03-01"}
        async with connect(match.group(1), additional_headers=headers) as ws:
            await ws.send(orjson.dumps(generation("cli", "Hi.")).decode())
            while (event := validate_server_event(await asyncio.wait_for(ws.recv(decode=False), 10)))["type"] != "done":
                assert event["context_id"] == "cli"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert b"stopped" in await proc.stdout.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
