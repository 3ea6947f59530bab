"""The ledger: price a batch of usage events and write their records, exactly once, in one transaction.

This is "the consumer code" both pipelines share: the Redis stream consumer calls it for each batch
it reads (and XACKs only after it returns, i.e. after COMMIT), and the embedded default's
in-process producer calls it directly.

Exactly once: every row is keyed by the producer's ``event_id`` and written with
``INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING event_id``; only the rows that come back
(new ones) are added to the ``usage_daily`` rollup, in the same transaction. A redelivered,
replayed or duplicated event is therefore a no-op, and a crash anywhere before COMMIT leaves
nothing behind.

What is charged: ``kind="response"`` events, priced with the price rows read inside the same
transaction (so a price change applies from the next batch on). The ``kind="session"`` summary is
kept in ``session_records`` for reconciliation and never priced: the responses it sums already are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import orjson

from relay.metering.events import UsageEvent
from relay.metering.prices import price_book
from relay.metering.pricing import UNITS, Charge
from relay.store.db import Database, Executor

LOG = logging.getLogger("relay.metering.ledger")

# SQLite: rows per multi-row INSERT (200 x 33 columns stays well under its parameter limit).
ROWS_PER_STATEMENT: Final = 200

# (column, PostgreSQL type). PostgreSQL inserts a batch as one INSERT ... SELECT FROM unnest() of one
# array per column: a short statement with a handful of parameters, which psycopg prepares once,
# where a 200-row VALUES list would be re-parsed (in Python) on every batch.
_COST_COLUMNS: Final = (
    ("event_id", "text"),
    ("tenant", "text"),
    ("session_id", "text"),
    ("response_id", "text"),
    ("provider", "text"),
    ("model", "text"),
    ("status", "text"),
    ("ts_ms", "bigint"),
    ("day", "text"),
    ("metadata", "text"),
    *((u, "bigint") for u in UNITS),
    ("price_model", "text"),
    *((f"rate_{u}", "numeric") for u in UNITS),
    ("cost_usd", "numeric"),
    ("unpriced", "boolean"),
    ("recorded_at", "bigint"),
)
_SESSION_COLUMNS: Final = (
    ("event_id", "text"),
    ("tenant", "text"),
    ("session_id", "text"),
    ("provider", "text"),
    ("model", "text"),
    ("ts_ms", "bigint"),
    ("day", "text"),
    ("metadata", "text"),
    *((u, "bigint") for u in UNITS),
    ("recorded_at", "bigint"),
)
_ROLLUP_KEY: Final = ("tenant", "day", "provider", "model")
_ROLLUP_SUMS: Final = ("events", "unpriced_events", *UNITS)


@dataclass(frozen=True, slots=True)
class RecordResult:
    recorded: int  # events written now (responses and session summaries)
    duplicates: int  # events already in the ledger: no-ops
    unpriced: int  # of the newly recorded responses, those no price applied to


def utc_day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).date().isoformat()


def _text(value: str) -> str:
    # PostgreSQL TEXT cannot hold NUL; a client-chosen model name must not be able to make its own
    # usage unrecordable (a poison entry), so NUL becomes U+FFFD in every dialect.
    return value.replace("\x00", "\ufffd")


def _metadata(event: UsageEvent) -> str:
    # orjson escapes NUL as \u0000, so the JSON text is safe for PostgreSQL as it is.
    return orjson.dumps(event.metadata, option=orjson.OPT_SORT_KEYS).decode()


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, events: Sequence[UsageEvent]) -> RecordResult:
        """Price and write ``events`` in one transaction, committed when this returns."""
        unique: dict[str, UsageEvent] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        batch_duplicates = len(events) - len(unique)
        # Sorted by event id: concurrent consumers then take row locks in one order (no deadlock).
        ordered = [unique[k] for k in sorted(unique)]
        responses = [e for e in ordered if e.kind == "response"]
        summaries = [e for e in ordered if e.kind == "session"]
        now = int(time.time())
        async with self.db.transaction() as tx:
            book = await price_book(tx, (e.provider for e in responses))
            charges = {e.event_id: book.charge(e.provider, e.model, e.usage) for e in responses}
            new_ids = await self._insert_responses(tx, responses, charges, now)
            new_ids |= await self._insert_summaries(tx, summaries, now)
            new_responses = [e for e in responses if e.event_id in new_ids]
            await self._roll_up(tx, new_responses, charges)
        unpriced = sum(1 for e in new_responses if charges[e.event_id].unpriced)
        return RecordResult(len(new_ids), len(ordered) - len(new_ids) + batch_duplicates, unpriced)

    async def _insert_responses(
        self, tx: Executor, events: list[UsageEvent], charges: dict[str, Charge], now: int
    ) -> set[str]:
        rows = []
        for e in events:
            c = charges[e.event_id]
            q = e.usage.to_dict()
            rows.append(
                (
                    e.event_id,
                    _text(e.tenant),
                    _text(e.session_id),
                    None if e.response_id is None else _text(e.response_id),
                    _text(e.provider),
                    _text(e.model),
                    _text(e.status),
                    e.ts_ms,
                    utc_day(e.ts_ms),
                    _metadata(e),
                    *(q[u] for u in UNITS),
                    c.price_model,
                    *(c.rates.get(u) for u in UNITS),
                    c.cost,
                    c.unpriced,
                    now,
                )
            )
        return await _insert_new(tx, self.db.dialect, "cost_records", _COST_COLUMNS, rows)

    async def _insert_summaries(self, tx: Executor, events: list[UsageEvent], now: int) -> set[str]:
        rows = []
        for e in events:
            q = e.usage.to_dict()
            rows.append(
                (
                    e.event_id,
                    _text(e.tenant),
                    _text(e.session_id),
                    _text(e.provider),
                    _text(e.model),
                    e.ts_ms,
                    utc_day(e.ts_ms),
                    _metadata(e),
                    *(q[u] for u in UNITS),
                    now,
                )
            )
        return await _insert_new(tx, self.db.dialect, "session_records", _SESSION_COLUMNS, rows)

    async def _roll_up(self, tx: Executor, events: list[UsageEvent], charges: dict[str, Charge]) -> None:
        """Add the new records to their ``usage_daily`` rows.

        Read-modify-write rather than ``SET cost_usd = cost_usd + ?``: in SQLite money is TEXT and
        ``+`` would add binary floats. Each row is locked before it is read (``FOR UPDATE`` in
        PostgreSQL; SQLite's write transaction is exclusive already), and rows are visited in key
        order so that concurrent consumers cannot deadlock on them.
        """
        deltas: dict[tuple[str, str, str, str], tuple[list[int], Decimal]] = {}
        for e in events:
            key = (_text(e.tenant), utc_day(e.ts_ms), _text(e.provider), _text(e.model))
            sums, cost = deltas.get(key, ([0] * len(_ROLLUP_SUMS), Decimal(0)))
            c = charges[e.event_id]
            q = e.usage.to_dict()
            add = [1, 1 if c.unpriced else 0, *(q[u] for u in UNITS)]
            deltas[key] = ([a + b for a, b in zip(sums, add, strict=True)], cost + c.cost)
        lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
        where = " AND ".join(f"{k} = ?" for k in _ROLLUP_KEY)
        zero_cols = ", ".join((*_ROLLUP_KEY, *_ROLLUP_SUMS, "cost_usd"))
        zero_marks = ", ".join("?" for _ in range(len(_ROLLUP_KEY) + len(_ROLLUP_SUMS) + 1))
        for key in sorted(deltas):
            sums, cost = deltas[key]
            await tx.execute(
                f"INSERT INTO usage_daily ({zero_cols}) VALUES ({zero_marks}) ON CONFLICT DO NOTHING",
                (*key, *([0] * len(_ROLLUP_SUMS)), Decimal(0)),
            )
            row = await tx.fetchone(
                f"SELECT {', '.join(_ROLLUP_SUMS)}, cost_usd FROM usage_daily WHERE {where}{lock}", key
            )
            if row is None:  # inserted just above, in this transaction: cannot happen
                raise RuntimeError(f"usage_daily row {key} vanished inside its transaction")
            new_sums = [int(old) + d for old, d in zip(row[:-1], sums, strict=True)]
            new_cost = Decimal(row[-1]) + cost
            await tx.execute(
                f"UPDATE usage_daily SET {', '.join(f'{c} = ?' for c in _ROLLUP_SUMS)}, cost_usd = ? WHERE {where}",
                (*new_sums, new_cost, *key),
            )


async def _insert_new(
    tx: Executor, dialect: str, table: str, columns: Sequence[tuple[str, str]], rows: list[tuple[Any, ...]]
) -> set[str]:
    """Insert rows keyed by event_id, skipping ids already present; the ids actually inserted."""
    if not rows:
        return set()
    names = ", ".join(name for name, _ in columns)
    tail = " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    if dialect == "postgresql":
        arrays = ", ".join(f"?::{kind}[]" for _, kind in columns)
        values = [list(column) for column in zip(*rows, strict=True)]
        found = await tx.fetchall(f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){tail}", values)
        return {r[0] for r in found}
    inserted: set[str] = set()
    row_marks = "(" + ", ".join("?" for _ in columns) + ")"
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        sql = f"INSERT INTO {table} ({names}) VALUES {', '.join(row_marks for _ in chunk)}{tail}"
        inserted.update(r[0] for r in await tx.fetchall(sql, [value for row in chunk for value in row]))
    return inserted
