"""`realtime-relay meter` as an operator runs it: a real process consuming the real Redis into a
SQLite file, its --status, and the price commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from relay.metering.codec import encode
from relay.metering.producer import FIELD
from tests.metering.events import usage_event

BIN = str(Path(sys.executable).with_name("realtime-relay"))


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    values = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    values.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'meter.db'}",
        REDIS_URL=redis_url,
        RELAY_METER_STREAM=f"test:cli:{tag}",
        RELAY_METER_GROUP=f"cli-{tag}",
        RELAY_METER_DEAD_LETTER_STREAM=f"test:cli:{tag}:dead",
        RELAY_METER_CONSUMER_NAME=f"cli-consumer-{tag}",
        RELAY_LOG_LEVEL="warning",
    )
    yield values


def meter(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN, "meter", *args], env=env, capture_output=True, text=True, timeout=30)


def records(db_url: str) -> int:
    path = db_url.removeprefix("sqlite:///")
    try:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT count(*) FROM cost_records").fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet
        return 0


async def test_the_meter_process_consumes_reports_status_and_stops_cleanly(env: dict[str, str], redis_url: str) -> None:
    stream, group = env["RELAY_METER_STREAM"], env["RELAY_METER_GROUP"]
    async with Redis.from_url(redis_url) as redis:
        for _ in range(25):
            await redis.xadd(stream, {FIELD: encode(usage_event())})
        proc = await asyncio.create_subprocess_exec(
            BIN, "meter", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 20
            # Another process's progress: no event reaches us, so poll its database, bounded.
            while records(env["DATABASE_URL"]) < 25:
                assert proc.returncode is None, "the meter process died"
                assert time.monotonic() < deadline, "the meter process did not record the events"
                await asyncio.sleep(0.05)
            status = await asyncio.to_thread(meter, env, "--status")
            assert status.returncode == 0, status.stderr
            report = json.loads(status.stdout)
            [mine] = [g for g in report["groups"] if g["name"] == group]
            assert mine["pending"] == 0 and mine["lag"] == 0 and report["dead_letters"] == 0
            assert mine["consumers"] == 1
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        # It left the group on its way out (it owned nothing pending).
        [info] = await redis.xinfo_groups(stream)
        assert info["consumers"] == 0
        await redis.delete(stream, env["RELAY_METER_DEAD_LETTER_STREAM"])


PROVENANCE = ("--source", "contract", "--as-of", "2026-11")


def test_prices_can_be_set_listed_and_deleted(env: dict[str, str]) -> None:
    set_price = meter(
        env, "--set-price", "acme", "*", "characters", "0.07", "--source", "contract", "--as-of", "2026-11"
    )
    assert set_price.returncode == 0, set_price.stderr
    listed = json.loads(meter(env, "--prices", "--provider", "acme").stdout)
    assert listed == [
        {
            "provider": "acme",
            "model": "*",
            "unit": "characters",
            "usd": "0.07",
            "per": "1K characters",
            "source": "contract",
            "as_of": "2026-11",
        }
    ]
    assert meter(env, "--set-price", "acme", "*", "characters", "none").returncode == 0
    assert json.loads(meter(env, "--prices", "--provider", "acme").stdout) == []
    bad = meter(env, "--set-price", "acme", "*", "furlongs", "1")
    assert bad.returncode == 2 and "unknown unit" in bad.stderr


def test_without_redis_the_consumer_says_why_it_cannot_run(env: dict[str, str]) -> None:
    env.pop("REDIS_URL")
    result = meter(env)
    assert result.returncode == 2 and "REDIS_URL is not set" in result.stderr
