"""Tenants and API keys on both dialects: keys hashed at rest, constant-time checks, revocation."""

from __future__ import annotations

import asyncio
import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from relay.store import tenants as tenants_module
from relay.store.db import Database
from relay.store.tenants import (
    KEY_PREFIX,
    UNCHANGED,
    NotFound,
    TenantError,
    Tenants,
    TenantStatus,
    looks_like_key,
)


def _file_bytes(path: Path) -> bytes:
    """The database file and its companions (-wal, -shm, -journal)."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def _every_stored_value(db: Database) -> str:
    """Every cell of every table, as text."""
    if db.dialect == "sqlite":
        tables = [r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")]
    else:
        tables = [r[0] for r in await db.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    cells = []
    for table in tables:
        for row in await db.fetchall(f"SELECT * FROM {table}"):
            cells.extend(str(v) for v in row)
    return "\n".join(cells)


async def test_a_key_is_shown_once_and_stored_only_as_its_hash(migrated: Database, database_url: str) -> None:
    tenants = Tenants(migrated)
    tenant, new_key = await tenants.create("Acme Corp", max_sessions=3, budget_usd=Decimal("25.50"))
    assert tenant.id == "acme-corp" and tenant.status is TenantStatus.ACTIVE and not tenant.is_admin
    key = new_key.key
    assert key.startswith(KEY_PREFIX) and looks_like_key(key)
    assert key not in repr(new_key) and key not in repr(new_key.info)
    secret_part = key[len(KEY_PREFIX) :]
    stored = await _every_stored_value(migrated)
    assert key not in stored and secret_part not in stored
    assert hashlib.sha256(key.encode()).hexdigest() in stored
    # Only the display prefix (4 characters past the fixed prefix) and the last 4 are kept.
    assert new_key.info.display == f"{key[: len(KEY_PREFIX) + 4]}…{key[-4:]}"
    if database_url.startswith("sqlite:///"):
        # Not in the file's bytes either (pages, free space, write-ahead log).
        await migrated.close()
        path = Path(database_url.removeprefix("sqlite:///"))
        raw = await asyncio.to_thread(_file_bytes, path)
        assert secret_part.encode() not in raw and secret_part[:16].encode() not in raw


async def test_keys_authenticate_their_tenant_and_nothing_else(migrated: Database) -> None:
    tenants = Tenants(migrated)
    acme, acme_key = await tenants.create("Acme")
    _, other_key = await tenants.create("Other", admin=True)
    match = await tenants.authenticate(acme_key.key)
    assert match is not None and match.tenant == acme and match.key.id == acme_key.info.id
    other = await tenants.authenticate(other_key.key)
    assert other is not None and other.tenant.is_admin
    near_miss = acme_key.key[:-1] + ("A" if acme_key.key[-1] != "A" else "B")
    for wrong in (near_miss, acme_key.key + "x", "rr_live_", "", acme_key.key.upper(), "Bearer " + acme_key.key):
        assert await tenants.authenticate(wrong) is None


async def test_the_stored_hash_is_compared_in_constant_time(
    migrated: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants = Tenants(migrated)
    _, new_key = await tenants.create("Acme")
    compared: list[tuple[bytes, bytes]] = []
    real = tenants_module.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tenants_module, "compare_digest", spy)
    assert await tenants.authenticate(new_key.key) is not None
    digest = hashlib.sha256(new_key.key.encode()).hexdigest().encode()
    assert compared == [(digest, digest)]


async def test_revoking_a_key_or_a_tenant(migrated: Database) -> None:
    tenants = Tenants(migrated)
    _, first = await tenants.create("Acme")
    second = await tenants.add_key("acme")
    revoked = await tenants.revoke_key(first.info.id)
    assert revoked.revoked and revoked.revoked_at is not None
    # A revoked key is still recognised (the caller answers 403, not 401); its sibling still works.
    match = await tenants.authenticate(first.key)
    assert match is not None and match.key.revoked
    match = await tenants.authenticate(second.key)
    assert match is not None and not match.key.revoked and match.tenant.active
    again = await tenants.revoke_key(first.info.id)
    assert again.revoked_at == revoked.revoked_at  # revoking twice keeps the first time
    tenant = await tenants.revoke_tenant("acme")
    assert tenant.status is TenantStatus.REVOKED
    match = await tenants.authenticate(second.key)
    assert match is not None and not match.tenant.active
    with pytest.raises(TenantError, match="revoked"):
        await tenants.add_key("acme")
    with pytest.raises(NotFound):
        await tenants.revoke_key("key_missing")
    with pytest.raises(NotFound):
        await tenants.revoke_tenant("nobody")


async def test_tenant_ids_caps_and_budgets(migrated: Database) -> None:
    tenants = Tenants(migrated)
    assert not await tenants.any_exist()
    tenant, _ = await tenants.create("  Ünïcode & Co.  ", tenant_id="unicode-co", budget_usd=Decimal("0.000000001"))
    assert tenant.name == "Ünïcode & Co." and tenant.budget_usd == Decimal("0.000000001")
    assert await tenants.any_exist()
    with pytest.raises(TenantError, match="already exists"):
        await tenants.create("Other", tenant_id="unicode-co")
    with pytest.raises(TenantError, match="reserved"):
        await tenants.create("Local")
    with pytest.raises(TenantError, match="lower-case"):
        await tenants.create("x", tenant_id="Bad_Id")
    with pytest.raises(TenantError, match="--id"):
        await tenants.create("!!!")
    with pytest.raises(TenantError, match="float"):
        await tenants.create("f", budget_usd=0.1)  # type: ignore[arg-type]
    with pytest.raises(TenantError, match="max_sessions"):
        await tenants.create("neg", max_sessions=-1)
    assert [t.id for t in await tenants.all()] == ["unicode-co"]  # the failed creates left nothing

    stored = await tenants.get("unicode-co")
    assert stored == tenant and stored.session_cap(100) == 100
    updated = await tenants.update("unicode-co", max_sessions=2, budget_usd=Decimal("12.34"))
    assert updated.max_sessions == 2 and updated.budget_usd == Decimal("12.34") and updated.session_cap(100) == 2
    kept = await tenants.update("unicode-co", max_sessions=UNCHANGED, budget_usd=None)
    assert kept.max_sessions == 2 and kept.budget_usd is None
    with pytest.raises(NotFound):
        await tenants.update("nobody", max_sessions=1)
