"""The producer: emit never blocks or raises; the queue absorbs, then spills to the journal in order;
the journal is replayed in order; shutdown journals what it could not send; nothing is lost silently."""

from __future__ import annotations

import time
from pathlib import Path

from relay.metering.journal import Journal
from relay.metering.metrics import MeterMetrics
from relay.metering.producer import Producer
from tests.metering.events import usage_event
from tests.metering.transport import SwitchTransport


def producer(tmp_path: Path, transport: SwitchTransport, **options: float) -> Producer:
    values: dict[str, float] = {"queue_size": 50, "batch_size": 10, "spill_after_s": 3600, "backoff_max_s": 0.05}
    values.update(options)
    p = Producer(
        transport,
        Journal.open(str(tmp_path / "journal")),
        MeterMetrics.standalone(),
        queue_size=int(values["queue_size"]),
        batch_size=int(values["batch_size"]),
        spill_after_s=values["spill_after_s"],
        backoff_max_s=values["backoff_max_s"],
        flush_timeout_s=values.get("flush_timeout_s", 5.0),
    )
    p.start()
    return p


def count(p: Producer, name: str) -> float:
    value = p.metrics.registry.get_sample_value(f"relay_meter_{name}_total")
    return 0.0 if value is None else value


async def test_events_reach_the_transport_in_order(tmp_path: Path) -> None:
    transport = SwitchTransport()
    p = producer(tmp_path, transport, queue_size=1000)
    events = [usage_event() for _ in range(95)]  # one burst, all queued before the writer runs
    for e in events:
        p.emit(e)
    assert await p.flush()
    assert transport.event_ids() == [e.event_id for e in events]
    assert count(p, "sent") == 95 and count(p, "spilled") == 0
    await p.close()


async def test_the_queue_absorbs_an_outage_then_spills_and_replays_in_order(tmp_path: Path) -> None:
    transport = SwitchTransport()
    transport.up = False
    p = producer(tmp_path, transport)
    events = [usage_event() for _ in range(40)]
    for e in events:
        p.emit(e)
    await transport.wait_until(lambda: transport.failures >= 2)
    # Below the queue limit and within spill_after_s: held in memory, nothing journaled yet.
    assert count(p, "spilled") == 0 and not p.spilling
    more = [usage_event() for _ in range(60)]
    for e in more:
        p.emit(e)  # the queue (50) overflows: everything moves to the journal, in order
    assert p.spilling
    assert count(p, "spilled") == 100
    assert p.journal.pending == 100
    assert count(p, "lost") == 0
    transport.up = True
    assert await p.flush()
    assert transport.event_ids() == [e.event_id for e in events + more]
    assert count(p, "replayed") == 100 and not p.spilling and p.journal.pending == 0
    assert count(p, "send_errors") >= 2
    after = usage_event()
    p.emit(after)  # back to the queue
    assert await p.flush()
    assert transport.event_ids()[-1] == after.event_id
    assert count(p, "spilled") == 100
    await p.close()


async def test_a_lone_failed_batch_is_retried_without_new_events(tmp_path: Path) -> None:
    transport = SwitchTransport()
    transport.up = False
    p = producer(tmp_path, transport)
    only = usage_event()
    p.emit(only)
    await transport.wait_until(lambda: transport.failures >= 3)  # retried with no other event to wake it
    transport.up = True
    await transport.wait_until(lambda: bool(transport.received))
    assert transport.event_ids() == [only.event_id] and not p.spilling
    await p.close()


async def test_a_long_outage_spills_even_below_the_queue_limit(tmp_path: Path) -> None:
    transport = SwitchTransport()
    transport.up = False
    p = producer(tmp_path, transport, spill_after_s=0.0, flush_timeout_s=0.05)
    for _ in range(5):
        p.emit(usage_event())
    await transport.wait_until(lambda: p.spilling)
    assert p.journal.pending == 5 and count(p, "spilled") == 5
    await p.close()


async def test_emit_neither_waits_nor_raises(tmp_path: Path) -> None:
    transport = SwitchTransport()
    transport.up = False
    p = producer(tmp_path, transport, queue_size=10, flush_timeout_s=0.05)
    started = time.perf_counter()
    for _ in range(2000):  # far past the queue: spills, still never blocks
        p.emit(usage_event())
    assert time.perf_counter() - started < 1.0
    await p.close()  # the journal is closed now: a late event cannot be written anywhere ...
    p.emit(usage_event())  # ... and emit still does not raise: it is counted and logged instead
    assert count(p, "lost") == 1


async def test_shutdown_journals_what_it_could_not_send_and_the_next_start_replays_it_first(tmp_path: Path) -> None:
    transport = SwitchTransport()
    transport.up = False
    p = producer(tmp_path, transport, flush_timeout_s=0.1)
    left = [usage_event() for _ in range(7)]
    for e in left:
        p.emit(e)
    await p.close()
    assert transport.received == []

    transport.up = True
    again = producer(tmp_path, transport)
    assert again.spilling  # a journal from a previous run is replayed before anything new
    new = usage_event()
    again.emit(new)
    assert await again.flush()
    assert transport.event_ids() == [e.event_id for e in left] + [new.event_id]
    assert count(again, "replayed") == 8  # the new one too: while spilling, everything goes through the journal
    await again.close()


async def test_metrics_show_queue_depth_and_journal(tmp_path: Path) -> None:
    transport = SwitchTransport()
    transport.up = False
    p = producer(tmp_path, transport, queue_size=5, flush_timeout_s=0.05)
    for _ in range(3):
        p.emit(usage_event())
    registry = p.metrics.registry
    assert registry.get_sample_value("relay_meter_queue_depth") == 3
    for _ in range(5):
        p.emit(usage_event())
    assert registry.get_sample_value("relay_meter_queue_depth") == 0
    assert registry.get_sample_value("relay_meter_journal_pending") == 8
    await p.close()
