"""The embedded default (no Redis): the same producer and ledger, in-process; where the journal lives;
and one bad event cannot hold up the rest."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from relay.config import Settings
from relay.metering.codec import decode, encode
from relay.metering.events import UsageEvent
from relay.metering.journal import Journal
from relay.metering.ledger import Ledger, RecordResult
from relay.metering.metrics import MeterMetrics
from relay.metering.pipeline import LedgerTransport, journal_path, start_metering
from relay.metering.usage import tenant_spend
from relay.store.db import Database, StoreError
from tests.metering.events import usage_event


async def test_the_embedded_default_records_in_process(store: Database, tmp_path: Path) -> None:
    settings = dataclasses.replace(
        Settings(), database_url="sqlite:///unused.db", meter_journal_path=str(tmp_path / "j")
    )
    metering = await start_metering(settings, store, MeterMetrics.standalone())
    assert metering.redis is None and metering.consumer is None
    events = [usage_event(tenant="t-embedded", usage={"input_text_tokens": 1_000_000}) for _ in range(30)]
    for e in events:
        metering.sink.emit(e)
    assert await metering.producer.flush()
    assert await tenant_spend(store, "t-embedded") == 30 * 4
    await metering.ping()  # nothing to check without Redis
    await metering.close()


def test_the_journal_lives_next_to_a_sqlite_store_unless_told_otherwise(tmp_path: Path) -> None:
    base = Settings()
    assert journal_path(dataclasses.replace(base, database_url="sqlite:///data/relay.db")) == (
        "data/relay.db.usage-journal",
        None,
    )
    assert journal_path(dataclasses.replace(base, database_url="postgresql://db/relay"))[0] == "./relay-usage.journal"
    assert journal_path(dataclasses.replace(base, meter_journal_path="/var/lib/relay/j"))[0] == "/var/lib/relay/j"
    path, temp = journal_path(dataclasses.replace(base, database_url="sqlite:///:memory:"))
    assert temp is not None and path.startswith(temp)  # private to this process, removed at close


class Refuses(Ledger):
    """A store that refuses one particular event (as a constraint would), and takes the rest."""

    def __init__(self, db: Database, bad: str) -> None:
        super().__init__(db)
        self.bad = bad

    async def record(self, events: Sequence[UsageEvent]) -> RecordResult:
        if any(e.event_id == self.bad for e in events):
            raise StoreError("refused")
        return await super().record(events)


async def test_an_event_the_store_keeps_refusing_is_dead_lettered_not_retried_forever(
    store: Database, tmp_path: Path
) -> None:
    good = [usage_event(tenant="t-refuse") for _ in range(4)]
    bad = usage_event(tenant="t-refuse")
    metrics = MeterMetrics.standalone()
    dead = Journal.open(str(tmp_path / "dead"))
    transport = LedgerTransport(Refuses(store, bad.event_id), dead, metrics, max_deliveries=3)
    batch = [encode(e) for e in [*good[:2], bad, *good[2:]]]
    for attempt in range(3):
        try:
            await transport.send(batch)
            raised = False
        except StoreError:
            raised = True
        assert raised == (attempt < 2)  # retried twice; the third refusal dead-letters it instead
    assert await store.fetchone("SELECT count(*) FROM cost_records WHERE tenant = ?", ("t-refuse",)) == (4,)
    assert [decode(r.payload).event_id for r in dead.read(10)] == [bad.event_id]
    assert metrics.registry.get_sample_value("relay_meter_dead_letters_total") == 1
    await transport.close()
