"""The price table in the store: read it (whole, or the rows a batch of events needs), change it.

A change applies to events priced after it commits: the consumer reads the rows it needs inside
each batch's transaction, and every cost record keeps a copy of the prices it was charged at, so
no change ever alters a record already written.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from relay.metering.pricing import Price, PriceBook, PriceError
from relay.store.db import Database, Executor

_COLUMNS = "provider, model, unit, usd, source, as_of"


def _price(row: tuple[Any, ...]) -> Price:
    # SQLite hands back the exact decimal string, PostgreSQL a Decimal: both convert exactly.
    return Price(row[0], row[1], row[2], Decimal(row[3]), row[4], row[5])


async def list_prices(ex: Executor, provider: str | None = None) -> list[Price]:
    if provider is None:
        rows = await ex.fetchall(f"SELECT {_COLUMNS} FROM prices ORDER BY provider, model, unit")
    else:
        rows = await ex.fetchall(f"SELECT {_COLUMNS} FROM prices WHERE provider = ? ORDER BY model, unit", (provider,))
    return [_price(r) for r in rows]


async def price_book(ex: Executor, providers: Iterable[str]) -> PriceBook:
    """The rows of these providers (all their models and fallbacks): what a batch can need."""
    wanted = sorted(set(providers))
    if not wanted:
        return PriceBook()
    marks = ", ".join("?" for _ in wanted)
    rows = await ex.fetchall(f"SELECT {_COLUMNS} FROM prices WHERE provider IN ({marks})", wanted)
    return PriceBook(_price(r) for r in rows)


@dataclass(frozen=True, slots=True)
class PriceChange:
    """One row of a PUT: set the price, or (``usd`` None) delete the row."""

    provider: str
    model: str
    unit: str
    usd: Decimal | None
    source: str = ""
    as_of: str = ""


def parse_change(item: object) -> PriceChange:
    """A PriceChange from a JSON object, validated; ``PriceError`` says what is wrong."""
    if not isinstance(item, dict):
        raise PriceError("each price must be an object")
    strings: dict[str, str] = {}
    for key in ("provider", "model", "unit", "source", "as_of"):
        value = item.get(key, "")
        if not isinstance(value, str):
            raise PriceError(f"{key} must be a string")
        strings[key] = value.strip()
    raw = item.get("usd")
    usd: Decimal | None
    if raw is None:
        usd = None
    elif isinstance(raw, str) or (isinstance(raw, int) and not isinstance(raw, bool)):
        try:
            usd = Decimal(str(raw).strip())
        except InvalidOperation:
            raise PriceError(f"usd {str(raw)[:40]!r} is not a decimal number") from None
    else:
        # A JSON float (0.1) has already been through binary floating point: refuse it.
        raise PriceError('usd must be a decimal string such as "0.40" (or null to delete the row)')
    change = PriceChange(usd=usd, **strings)
    if usd is not None:
        Price(change.provider, change.model, change.unit, usd, change.source, change.as_of)  # validates
    elif not (change.provider and change.model and change.unit):
        raise PriceError("a deletion needs provider, model and unit")
    return change


async def apply_changes(db: Database, changes: Sequence[PriceChange]) -> None:
    """Upsert (or delete) the rows, all in one transaction: a bad batch changes nothing."""
    now = int(time.time())
    async with db.transaction() as tx:
        for c in changes:
            if c.usd is None:
                await tx.execute(
                    "DELETE FROM prices WHERE provider = ? AND model = ? AND unit = ?", (c.provider, c.model, c.unit)
                )
                continue
            await tx.execute(
                "INSERT INTO prices (provider, model, unit, usd, source, as_of, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (provider, model, unit) DO UPDATE SET usd = excluded.usd,"
                " source = excluded.source, as_of = excluded.as_of, updated_at = excluded.updated_at",
                (c.provider, c.model, c.unit, c.usd, c.source, c.as_of, now),
            )
