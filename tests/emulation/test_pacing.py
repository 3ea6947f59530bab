"""The pacer: media released at speed x real time, drift-free, interruptible."""

from __future__ import annotations

import asyncio
import time

from providers.emulation.pacing import Pacer


async def test_unpaced_only_yields() -> None:
    pacer = Pacer(0.0)
    started = time.monotonic()
    for ms in range(0, 60_000, 40):
        await pacer.wait(ms)
    assert time.monotonic() - started < 1.0
    assert pacer.due_in(10_000) == 0.0


async def test_paced_follows_the_clock() -> None:
    pacer = Pacer(4.0)
    started = time.monotonic()
    for ms in range(0, 440, 40):  # media up to 400 ms at 4x: due at 100 ms
        await pacer.wait(ms)
    assert 0.095 <= time.monotonic() - started < 0.5


async def test_schedule_is_absolute_so_lateness_does_not_accumulate() -> None:
    now = [100.0]
    pacer = Pacer(1.0, clock=lambda: now[0])
    now[0] += 0.5  # the caller was late by 500 ms
    assert pacer.due_in(400) < 0  # 400 ms of media is overdue: no extra wait
    assert abs(pacer.due_in(1000) - 0.5) < 1e-9


async def test_interrupt_wakes_a_waiter_at_once() -> None:
    pacer = Pacer(1.0)
    waiter = asyncio.create_task(pacer.wait(60_000))
    await asyncio.sleep(0)  # one loop iteration: the task reaches its wait (not a timing sleep)
    started = time.monotonic()
    pacer.interrupt()
    await asyncio.wait_for(waiter, 1.0)
    assert time.monotonic() - started < 0.5


async def test_interrupt_is_sticky() -> None:
    pacer = Pacer(1.0)
    pacer.interrupt()
    started = time.monotonic()
    await asyncio.wait_for(pacer.wait(60_000), 1.0)
    assert pacer.interrupted and time.monotonic() - started < 0.5
