"""Versioned schema migrations for both dialects from one set of SQL files.

Files live in ``relay/store/migrations/`` as ``NNNN_name.sql``: the number is the version (the
store's own start at 0001, metering's at 0100, so the two never collide), applied in order, each
in its own transaction together with its row in ``schema_migrations`` — a migration is either
wholly applied and recorded, or not at all.

One schema serves both dialects. Where a type must differ, a file writes a macro instead of a
type name; there are exactly these:

==============  ===================  ==============================================================
macro           PostgreSQL           SQLite
==============  ===================  ==============================================================
``{{money}}``   ``NUMERIC``          ``TEXT`` — the exact decimal string (NUMERIC affinity would
                                     turn it into a binary float)
``{{bytes}}``   ``BYTEA``            ``BLOB``
==============  ===================  ==============================================================

Everything else must be SQL both accept (TEXT, INTEGER, BIGINT, BOOLEAN, ``ON CONFLICT``, ...).

Several relays may start at once against one PostgreSQL: each migration takes a transaction-scoped
advisory lock and re-checks ``schema_migrations`` under it, so exactly one of them applies it. On
SQLite, ``BEGIN IMMEDIATE`` gives the same exclusion across processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from relay.store.db import DEFAULT_POOL_SIZE, Database, Dialect, Executor, StoreError, open_database

LOG = logging.getLogger("relay.store")

MIGRATIONS_PACKAGE = "relay.store"
MIGRATIONS_DIR = "migrations"
# An arbitrary constant that names "the relay's migration lock" among PostgreSQL advisory locks.
ADVISORY_LOCK_ID = 0x52454C4159  # "RELAY"

MACROS: dict[str, dict[Dialect, str]] = {
    "money": {"postgresql": "NUMERIC", "sqlite": "TEXT"},
    "bytes": {"postgresql": "BYTEA", "sqlite": "BLOB"},
}

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MACRO = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)
"""


class MigrationError(StoreError):
    """A migration file is malformed, or applying one failed (and was rolled back)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, dialect: Dialect) -> list[str]:
        return split_statements(render(self.sql, dialect))


def load_migrations(directory: Path | Traversable | None = None) -> list[Migration]:
    """Every migration in ``directory`` (default: the package's), in version order."""
    folder = directory if directory is not None else resources.files(MIGRATIONS_PACKAGE) / MIGRATIONS_DIR
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version:04d}: {found[version].label}, {entry.name}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def render(sql: str, dialect: Dialect) -> str:
    def sub(match: re.Match[str]) -> str:
        macro = match.group(1)
        if macro not in MACROS:
            raise MigrationError(f"unknown migration macro {{{{{macro}}}}}; known: {', '.join(sorted(MACROS))}")
        return MACROS[macro][dialect]

    return _MACRO.sub(sub, sql)


def split_statements(sql: str) -> list[str]:
    """Split on ``;`` outside quotes and comments. (No procedural bodies: keep migrations plain DDL/DML.)"""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = sql.find(ch, i + 1)
            end = n if end < 0 else end + 1
            current.append(sql[i:end])
            i = end
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


async def _lock(tx: Executor, dialect: Dialect) -> None:
    if dialect == "postgresql":
        await tx.fetchone("SELECT pg_advisory_xact_lock(?)", (ADVISORY_LOCK_ID,))


async def applied_versions(db: Database) -> dict[int, str]:
    """Version -> checksum of every applied migration."""
    rows = await db.fetchall("SELECT version, checksum FROM schema_migrations")
    return {int(v): str(c) for v, c in rows}


async def migrate(db: Database, directory: Path | Traversable | None = None) -> list[str]:
    """Apply pending migrations; the labels (``0001_tenants``) of those applied now, in order."""
    migrations = load_migrations(directory)
    if directory is None and not migrations:
        # An install that left out the package's .sql files would otherwise start on no schema.
        raise MigrationError("no migrations found in relay/store/migrations: the package was installed without them")
    async with db.transaction() as tx:
        await _lock(tx, db.dialect)
        await tx.execute(_CREATE_TABLE)
    done = await applied_versions(db)
    applied: list[str] = []
    for migration in migrations:
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                LOG.warning("migration %s changed after it was applied; the change is not re-run", migration.label)
            continue
        statements = migration.statements(db.dialect)
        try:
            async with db.transaction() as tx:
                await _lock(tx, db.dialect)
                # Another node may have applied it while we waited for the lock.
                if await tx.fetchone("SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)):
                    continue
                for statement in statements:
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
                    (migration.version, migration.name, migration.checksum, int(time.time())),
                )
        except StoreError as exc:
            raise MigrationError(f"migration {migration.label} failed and was rolled back: {exc}") from exc
        LOG.info("applied migration %s", migration.label)
        applied.append(migration.label)
    return applied


@contextlib.asynccontextmanager
async def migrated_database(url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> AsyncIterator[Database]:
    """The database at ``url``, brought up to the current schema, closed on exit."""
    db = await open_database(url, pool_size=pool_size)
    try:
        applied = await migrate(db)
        if applied:
            LOG.info("%s: applied %d migration(s): %s", db.url, len(applied), ", ".join(applied))
        yield db
    finally:
        await db.close()
