"""``python -m providers.elevenlabs.emulator`` serves until SIGINT (the load tester runs it as its own process)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import orjson
from websockets.asyncio.client import connect

from tests.conftest import REPO
from tests.providers.elevenlabs.conftest import strict_server_message


async def test_cli_serves_until_interrupted() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "providers.elevenlabs.emulator",
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
        match = re.search(r"on http://(\S+) ", line)
        assert match, line
        url = f"ws://{match.group(1)}/v1/text-to-speech/v1/multi-stream-input?output_format=pcm_16000"
        async with connect(url, additional_headers={"xi-api-key": "sk_any"}) as ws:
            await ws.send(orjson.dumps({"text": "Hi.", "context_id": "c", "flush": True}).decode())
            await ws.send(orjson.dumps({"context_id": "c", "close_context": True}).decode())
            messages = []
            while not messages or "isFinal" not in messages[-1]:
                messages.append(strict_server_message(await asyncio.wait_for(ws.recv(), 10)))
        assert messages[-1] == {"isFinal": True, "contextId": "c"} and "audio" in messages[0]
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert b"stopped" in await proc.stdout.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
