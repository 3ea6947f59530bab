"""The budget check at the handshake: a tenant whose spend reached its budget is refused with 402.

Spend is what the metering ledger has charged the tenant so far (all time; see docs/tenants.md),
read once per handshake and only for tenants that have a budget — never on the audio path. It
trails real use by the metering pipeline's lag, so a tenant can overshoot by the sessions already
running; that is the cost of keeping the check off the audio path.
"""

from __future__ import annotations

import logging

from relay.auth import AuthRefused, Identity
from relay.metering.usage import tenant_spend
from relay.state import RelayState
from relay.store.db import StoreError

LOG = logging.getLogger("relay.budget")


async def check_budget(state: RelayState, identity: Identity) -> None:
    record = identity.record
    if record is None or record.budget_usd is None:
        return
    try:
        spend = await tenant_spend(state.db, identity.tenant)
    except StoreError as exc:
        LOG.error("budget check could not read the tenant's spend: %s", exc)
        raise AuthRefused(503, "the tenant store is unavailable; try again") from None
    if spend >= record.budget_usd:
        raise AuthRefused(402, "this tenant has reached its budget")


async def over_budget(state: RelayState, identity: Identity) -> bool:
    """Mid-session check, run after each response (never on the audio path). A store error is not
    a reason to end a paying session: the handshake check is where the store must answer."""
    record = identity.record
    if record is None or record.budget_usd is None:
        return False
    # Budgets change (PUT, CLI): read the tenant's current one rather than the handshake's copy.
    current = await state.auth.tenants.get(identity.tenant)
    budget = current.budget_usd if current is not None else record.budget_usd
    if budget is None:
        return False
    try:
        return await tenant_spend(state.db, identity.tenant) >= budget
    except StoreError as exc:
        LOG.warning("mid-session budget check could not read the tenant's spend: %s", exc)
        return False
