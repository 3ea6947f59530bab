"""The relay's database: SQLite or PostgreSQL access, versioned migrations, tenants and API keys."""

from relay.store.db import Database, Executor, IntegrityError, StoreError, StoreUnavailable, open_database
from relay.store.migrate import MigrationError, migrate, migrated_database

__all__ = [
    "Database",
    "Executor",
    "IntegrityError",
    "MigrationError",
    "StoreError",
    "StoreUnavailable",
    "migrate",
    "migrated_database",
    "open_database",
]
