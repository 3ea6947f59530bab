"""Reading the ledger: usage and cost totals per group, a tenant's spend, reconciliation.

Totals come from the ``usage_daily`` rollup (kept in the ledger's own transactions, so it always
equals the sum of ``cost_records``). Money is added up in Python with ``Decimal``: SQLite stores
it as TEXT, and ``SUM()`` there would add binary floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Final

from relay.metering.pricing import UNITS, ZERO
from relay.store.db import Executor

GROUP_KEYS: Final = ("tenant", "provider", "model", "day")


class UsageQueryError(ValueError):
    """A usage query that cannot be answered as asked (the message says why)."""


@dataclass(slots=True)
class UsageTotals:
    key: dict[str, str] = field(default_factory=dict)
    events: int = 0
    unpriced_events: int = 0
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNITS, 0))
    cost_usd: Decimal = ZERO

    def add(self, events: int, unpriced: int, quantities: Sequence[int], cost: Decimal) -> None:
        self.events += events
        self.unpriced_events += unpriced
        for unit, q in zip(UNITS, quantities, strict=True):
            self.usage[unit] += q
        self.cost_usd += cost

    def as_json(self) -> dict[str, Any]:
        return {
            **self.key,
            "events": self.events,
            "unpriced_events": self.unpriced_events,
            "usage": dict(self.usage),
            # A decimal string: JSON numbers become binary floats in most clients.
            "cost_usd": str(self.cost_usd),
        }


@dataclass(frozen=True, slots=True)
class UsageReport:
    groups: list[UsageTotals]
    total: UsageTotals


def parse_group_by(raw: str | None, *, allow_tenant: bool) -> list[str]:
    if not raw:
        return []
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    allowed = GROUP_KEYS if allow_tenant else tuple(k for k in GROUP_KEYS if k != "tenant")
    for k in keys:
        if k not in allowed:
            raise UsageQueryError(f"group_by takes {', '.join(allowed)}; got {k[:40]!r}")
    if len(set(keys)) != len(keys):
        raise UsageQueryError("group_by names a key twice")
    return keys


def parse_day(raw: str | None, name: str) -> date | None:
    if raw is None or raw == "":
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise UsageQueryError(f"{name} must be a date, YYYY-MM-DD (UTC); got {raw[:40]!r}") from None


async def usage_report(
    ex: Executor,
    *,
    tenant: str | None,
    start: date | None = None,
    end: date | None = None,
    group_by: Sequence[str] = (),
) -> UsageReport:
    """Totals per group of ``group_by`` keys over UTC days ``start`` (inclusive) to ``end``
    (exclusive); ``tenant`` None means every tenant. Groups are sorted by their keys."""
    for k in group_by:
        if k not in GROUP_KEYS:
            raise UsageQueryError(f"unknown group key {k!r}")
    where: list[str] = []
    params: list[Any] = []
    if tenant is not None:
        where.append("tenant = ?")
        params.append(tenant)
    if start is not None:
        where.append("day >= ?")
        params.append(start.isoformat())
    if end is not None:
        where.append("day < ?")
        params.append(end.isoformat())
    sql = f"SELECT tenant, provider, model, day, events, unpriced_events, {', '.join(UNITS)}, cost_usd FROM usage_daily"
    if where:
        sql += " WHERE " + " AND ".join(where)
    groups: dict[tuple[str, ...], UsageTotals] = {}
    total = UsageTotals()
    for row in await ex.fetchall(sql, params):
        fields = dict(zip(GROUP_KEYS, (row[0], row[1], row[2], row[3]), strict=True))
        key = tuple(fields[k] for k in group_by)
        group = groups.get(key)
        if group is None:
            group = groups[key] = UsageTotals(key={k: fields[k] for k in group_by})
        events, unpriced, quantities, cost = int(row[4]), int(row[5]), [int(v) for v in row[6:-1]], Decimal(row[-1])
        group.add(events, unpriced, quantities, cost)
        total.add(events, unpriced, quantities, cost)
    ordered = [groups[k] for k in sorted(groups)]
    return UsageReport(ordered if group_by else [], total)


async def tenant_spend(ex: Executor, tenant: str, since: date | None = None) -> Decimal:
    """What ``tenant`` has been charged, in USD (since the UTC day ``since``, or ever): the budget check."""
    sql = "SELECT cost_usd FROM usage_daily WHERE tenant = ?"
    params: list[Any] = [tenant]
    if since is not None:
        sql += " AND day >= ?"
        params.append(since.isoformat())
    total = ZERO
    for (cost,) in await ex.fetchall(sql, params):
        total += Decimal(cost)
    return total


@dataclass(frozen=True, slots=True)
class Mismatch:
    session_id: str
    tenant: str
    field: str
    summary: int
    responses: int


# audio_in_ms is left out: the summary also counts user audio no response followed (what the
# session heard after its last response), which no response record carries.
RECONCILED_UNITS: Final = tuple(u for u in UNITS if u != "audio_in_ms")


async def reconcile(ex: Executor, since_ms: int = 0) -> list[Mismatch]:
    """Sessions whose summary (``session_records``) disagrees with the sum of their response records:
    the safety net for events lost between producer and ledger (e.g. Redis failing over)."""
    sums = ", ".join(f"SUM(c.{u})" for u in RECONCILED_UNITS)
    summary_cols = ", ".join(f"s.{u}" for u in RECONCILED_UNITS)
    rows = await ex.fetchall(
        f"SELECT s.session_id, s.tenant, {summary_cols}, {sums} FROM session_records s"
        " LEFT JOIN cost_records c ON c.session_id = s.session_id AND c.tenant = s.tenant"
        f" WHERE s.ts_ms >= ? GROUP BY s.session_id, s.tenant, {summary_cols}",
        (since_ms,),
    )
    n = len(RECONCILED_UNITS)
    found: list[Mismatch] = []
    for row in rows:
        for i, unit in enumerate(RECONCILED_UNITS):
            summary = int(row[2 + i])
            responses = int(row[2 + n + i] or 0)
            if summary != responses:
                found.append(Mismatch(row[0], row[1], unit, summary, responses))
    return found
