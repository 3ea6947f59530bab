"""Tenants and their API keys.

A key is ``rr_live_`` + 32 random bytes (url-safe base64): recognisable in a leaked config or a
secret scanner, and with 256 bits of entropy, so a plain SHA-256 is all the hashing it needs
(bcrypt/argon2 protect guessable passwords and would only add latency to every handshake). The
key is shown once, when it is made; the store keeps its hash and, for display, its public prefix
and last four characters. A lookup is by hash (an index) and the stored hash is compared in
constant time once more, so a timing difference never depends on how much of a key was right.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum
from hmac import compare_digest
from typing import Any

from relay.store.db import Database, Executor, IntegrityError, StoreError

KEY_PREFIX = "rr_live_"
KEY_RANDOM_BYTES = 32
# len(token_urlsafe(32)) == 43; anything else cannot be one of our keys and costs no query.
KEY_LENGTH = len(KEY_PREFIX) + 43
# What a listing shows of a key: enough to recognise it, nothing to use.
DISPLAY_PREFIX_CHARS = len(KEY_PREFIX) + 4
# Budgets fit NUMERIC and TEXT alike, and compare exactly with spend kept to the same precision.
MAX_BUDGET_USD = Decimal("1e12")
BUDGET_QUANTUM = Decimal("1e-9")
# The tenant local development mode uses; no real tenant may take the name.
RESERVED_TENANT_IDS = frozenset({"local"})

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_KEY_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")


class _Unchanged(Enum):
    """Marker for ``Tenants.update``: leave this field as it is."""

    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED


class TenantStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class TenantError(StoreError):
    """A tenant operation that cannot be done as asked (the message says why)."""


class NotFound(TenantError):
    pass


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    created_at: int
    is_admin: bool
    status: TenantStatus
    #: None: the relay's RELAY_TENANT_MAX_SESSIONS applies
    max_sessions: int | None
    #: USD; None: unlimited
    budget_usd: Decimal | None

    @property
    def active(self) -> bool:
        return self.status is TenantStatus.ACTIVE

    def session_cap(self, default: int) -> int:
        return default if self.max_sessions is None else self.max_sessions

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "admin": self.is_admin,
            "status": self.status.value,
            "max_sessions": self.max_sessions,
            "budget_usd": None if self.budget_usd is None else str(self.budget_usd),
        }


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What may be shown about a key: never the key."""

    id: str
    tenant_id: str
    prefix: str
    last4: str
    created_at: int
    revoked_at: int | None

    @property
    def display(self) -> str:
        return f"{self.prefix}…{self.last4}"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant_id,
            "display": self.display,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made. ``key`` is the only copy there will ever be: show it once, then drop it."""

    info: ApiKeyInfo
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeyMatch:
    tenant: Tenant
    key: ApiKeyInfo


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(value: str) -> bool:
    return (
        len(value) == KEY_LENGTH
        and value.startswith(KEY_PREFIX)
        and _KEY_CHARS.match(value[len(KEY_PREFIX) :]) is not None
    )


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].rstrip("-")


def parse_budget(value: object) -> Decimal | None:
    """USD as a non-negative finite Decimal (from str, int or Decimal — never float), or None."""
    if value is None:
        return None
    if isinstance(value, float | bool):
        raise TenantError('budget must be a decimal string such as "25.00", not a float')
    try:
        budget = Decimal(str(value))
    except InvalidOperation:
        raise TenantError(f"budget {str(value)[:32]!r} is not a decimal number") from None
    if not budget.is_finite() or not 0 <= budget < MAX_BUDGET_USD:
        raise TenantError(f"budget must be an amount from 0 to below {MAX_BUDGET_USD:f} USD")
    if budget != budget.quantize(BUDGET_QUANTUM):
        raise TenantError("budget has more than 9 decimal places")
    return budget


def _validate_cap(max_sessions: int | None) -> None:
    if max_sessions is not None and (isinstance(max_sessions, bool) or max_sessions < 0):
        raise TenantError("max_sessions must be an integer >= 0")


_TENANT_COLUMNS = "t.id, t.name, t.created_at, t.is_admin, t.status, t.max_sessions, t.budget_usd"
_KEY_COLUMNS = "k.id, k.tenant_id, k.prefix, k.last4, k.created_at, k.revoked_at"


def _tenant(row: tuple[Any, ...]) -> Tenant:
    return Tenant(
        id=row[0],
        name=row[1],
        created_at=int(row[2]),
        is_admin=bool(row[3]),
        status=TenantStatus(row[4]),
        max_sessions=None if row[5] is None else int(row[5]),
        # SQLite hands back the exact decimal string, PostgreSQL a Decimal: both convert exactly.
        budget_usd=None if row[6] is None else Decimal(row[6]),
    )


def _key(row: tuple[Any, ...]) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row[0],
        tenant_id=row[1],
        prefix=row[2],
        last4=row[3],
        created_at=int(row[4]),
        revoked_at=None if row[5] is None else int(row[5]),
    )


class Tenants:
    """Data access for tenants and API keys."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        name: str,
        *,
        tenant_id: str | None = None,
        admin: bool = False,
        max_sessions: int | None = None,
        budget_usd: Decimal | None = None,
    ) -> tuple[Tenant, NewKey]:
        """A new tenant and its first API key."""
        name = name.strip()
        if not name:
            raise TenantError("a tenant needs a name")
        slug = tenant_id if tenant_id is not None else slugify(name)
        if not _SLUG.match(slug):
            raise TenantError(
                f"tenant id {slug[:64]!r} must be 1-63 lower-case letters, digits or '-' (give one with --id)"
            )
        if slug in RESERVED_TENANT_IDS:
            raise TenantError(f"tenant id {slug!r} is reserved for local development mode")
        _validate_cap(max_sessions)
        budget = parse_budget(budget_usd)
        now = int(time.time())
        try:
            async with self.db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO tenants (id, name, created_at, is_admin, status, max_sessions, budget_usd)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (slug, name, now, admin, TenantStatus.ACTIVE.value, max_sessions, budget),
                )
                new_key = await self._insert_key(tx, slug, now)
        except IntegrityError:
            raise TenantError(f"tenant {slug!r} already exists") from None
        tenant = Tenant(slug, name, now, admin, TenantStatus.ACTIVE, max_sessions, budget)
        return tenant, new_key

    async def _insert_key(self, tx: Executor, tenant_id: str, now: int) -> NewKey:
        key = generate_key()
        info = ApiKeyInfo(
            id="key_" + secrets.token_hex(8),
            tenant_id=tenant_id,
            prefix=key[:DISPLAY_PREFIX_CHARS],
            last4=key[-4:],
            created_at=now,
            revoked_at=None,
        )
        await tx.execute(
            "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, last4, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (info.id, tenant_id, hash_key(key), info.prefix, info.last4, now),
        )
        return NewKey(info, key)

    async def add_key(self, tenant_id: str) -> NewKey:
        """One more key for an existing tenant (rotation: add, deploy, then revoke the old one)."""
        async with self.db.transaction() as tx:
            row = await tx.fetchone("SELECT status FROM tenants WHERE id = ?", (tenant_id,))
            if row is None:
                raise NotFound(f"no tenant {tenant_id[:64]!r}")
            if row[0] != TenantStatus.ACTIVE.value:
                raise TenantError(f"tenant {tenant_id!r} is revoked")
            return await self._insert_key(tx, tenant_id, int(time.time()))

    async def get(self, tenant_id: str) -> Tenant | None:
        row = await self.db.fetchone(f"SELECT {_TENANT_COLUMNS} FROM tenants t WHERE t.id = ?", (tenant_id,))
        return None if row is None else _tenant(row)

    async def all(self) -> list[Tenant]:
        rows = await self.db.fetchall(f"SELECT {_TENANT_COLUMNS} FROM tenants t ORDER BY t.id")
        return [_tenant(r) for r in rows]

    async def any_exist(self) -> bool:
        return await self.db.fetchone("SELECT 1 FROM tenants LIMIT 1") is not None

    async def keys(self, tenant_id: str | None = None) -> list[ApiKeyInfo]:
        if tenant_id is None:
            rows = await self.db.fetchall(f"SELECT {_KEY_COLUMNS} FROM api_keys k ORDER BY k.tenant_id, k.created_at")
        else:
            rows = await self.db.fetchall(
                f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.tenant_id = ? ORDER BY k.created_at", (tenant_id,)
            )
        return [_key(r) for r in rows]

    async def update(
        self,
        tenant_id: str,
        *,
        max_sessions: int | _Unchanged | None = UNCHANGED,
        budget_usd: Decimal | _Unchanged | None = UNCHANGED,
        status: TenantStatus | None = None,
    ) -> Tenant:
        """Change a tenant's cap, budget or status. Pass ``UNCHANGED`` to leave a field alone;
        ``None`` for cap or budget means "the default" / "unlimited"."""
        sets: list[str] = []
        params: list[Any] = []
        if not isinstance(max_sessions, _Unchanged):
            _validate_cap(max_sessions)
            sets.append("max_sessions = ?")
            params.append(max_sessions)
        if not isinstance(budget_usd, _Unchanged):
            sets.append("budget_usd = ?")
            params.append(parse_budget(budget_usd))
        if status is not None:
            sets.append("status = ?")
            params.append(TenantStatus(status).value)
        if sets:
            await self.db.execute(f"UPDATE tenants SET {', '.join(sets)} WHERE id = ?", (*params, tenant_id))
        tenant = await self.get(tenant_id)
        if tenant is None:
            raise NotFound(f"no tenant {tenant_id[:64]!r}")
        return tenant

    async def revoke_key(self, key_id: str) -> ApiKeyInfo:
        await self.db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (int(time.time()), key_id)
        )
        row = await self.db.fetchone(f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.id = ?", (key_id,))
        if row is None:
            raise NotFound(f"no API key {key_id[:64]!r}")
        return _key(row)

    async def revoke_tenant(self, tenant_id: str) -> Tenant:
        """The tenant's keys still identify it, so its clients are told 403 (revoked), not 401."""
        return await self.update(tenant_id, status=TenantStatus.REVOKED)

    async def authenticate(self, key: str) -> KeyMatch | None:
        """The tenant and key that ``key`` is, or None. Revoked keys and tenants are returned too:
        the caller decides (403), since a revoked key is still recognisably that tenant's."""
        if not looks_like_key(key):
            return None
        digest = hash_key(key)
        row = await self.db.fetchone(
            f"SELECT {_KEY_COLUMNS}, k.key_hash, {_TENANT_COLUMNS}"
            " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = ?",
            (digest,),
        )
        if row is None or not compare_digest(str(row[6]).encode(), digest.encode()):
            return None
        return KeyMatch(tenant=_tenant(row[7:]), key=_key(row[:6]))
