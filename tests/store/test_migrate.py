"""Versioned migrations on both dialects: applied once, atomically, by exactly one of several racers."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from relay.store.db import Database, open_database
from relay.store.migrate import (
    MigrationError,
    applied_versions,
    load_migrations,
    migrate,
    migrated_database,
    render,
    split_statements,
)


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


async def _tables(db: Database) -> set[str]:
    if db.dialect == "sqlite":
        rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await db.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows}


async def test_the_package_migrations_apply_once(db: Database) -> None:
    applied = await migrate(db)
    assert applied[0] == "0001_tenants"
    assert applied == [m.label for m in load_migrations()]
    assert {"tenants", "api_keys", "schema_migrations"} <= await _tables(db)
    assert await migrate(db) == []
    versions = await applied_versions(db)
    assert sorted(versions) == [m.version for m in load_migrations()]


def test_store_and_metering_migrations_never_share_numbers() -> None:
    versions = [m.version for m in load_migrations()]
    assert len(versions) == len(set(versions))
    store = [m for m in load_migrations() if m.version < 100]
    assert store and all(m.name for m in store)


async def test_a_failing_migration_leaves_nothing_behind(db: Database, tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "m",
        {
            "0001_a.sql": "CREATE TABLE a (id INTEGER PRIMARY KEY);",
            # The table is created, then the next statement fails: the whole file must roll back.
            "0002_b.sql": "CREATE TABLE b (id INTEGER PRIMARY KEY);\nINSERT INTO nowhere VALUES (1);",
        },
    )
    with pytest.raises(MigrationError, match="0002_b"):
        await migrate(db, folder)
    assert "b" not in await _tables(db) and "a" in await _tables(db)
    assert sorted(await applied_versions(db)) == [1]
    # Fixed, it applies; what was applied before is not re-run.
    _write(folder, {"0002_b.sql": "CREATE TABLE b (id INTEGER PRIMARY KEY);"})
    assert await migrate(db, folder) == ["0002_b"]


async def test_racing_migrators_apply_each_migration_exactly_once(database_url: str, tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "m",
        {
            "0001_a.sql": "CREATE TABLE a (id INTEGER PRIMARY KEY);",
            "0002_b.sql": "CREATE TABLE b (id INTEGER PRIMARY KEY); INSERT INTO b VALUES (1);",
            "0003_c.sql": "INSERT INTO b VALUES (2);",
        },
    )
    # Separate Database objects: separate connections, as separate relay processes would have.
    dbs = [await open_database(database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(d, folder) for d in dbs))
        applied = sorted(label for result in results for label in result)
        assert applied == ["0001_a", "0002_b", "0003_c"]
        assert await dbs[0].fetchall("SELECT id FROM b ORDER BY id") == [(1,), (2,)]
    finally:
        for d in dbs:
            await d.close()


async def test_money_macro_keeps_decimals_exact_in_each_dialect(db: Database, tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", {"0001_m.sql": "CREATE TABLE m (v {{ money }} NOT NULL, b {{bytes}});"})
    await migrate(db, folder)
    await db.execute("INSERT INTO m (v, b) VALUES (?, ?)", (Decimal("0.30000000000000000001"), b"\x00\xff"))
    value, blob = await db.fetchone("SELECT v, b FROM m") or (None, None)
    assert Decimal(value) == Decimal("0.30000000000000000001")
    assert bytes(blob) == b"\x00\xff"


async def test_migrated_database_opens_migrates_and_closes(database_url: str) -> None:
    async with migrated_database(database_url) as db:
        assert "tenants" in await _tables(db)
    with pytest.raises(Exception, match="closed"):
        await db.fetchone("SELECT 1")


def test_malformed_migration_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="NNNN_name"):
        load_migrations(_write(tmp_path / "a", {"1_x.sql": "SELECT 1;"}))
    with pytest.raises(MigrationError, match="share version 0001"):
        load_migrations(_write(tmp_path / "b", {"0001_x.sql": "", "0001_y.sql": ""}))
    with pytest.raises(MigrationError, match="unknown migration macro"):
        render("CREATE TABLE t (v {{float}})", "sqlite")
    assert render("x {{money}}", "postgresql") == "x NUMERIC" and render("x {{money}}", "sqlite") == "x TEXT"


def test_statements_split_on_semicolons_outside_quotes_and_comments() -> None:
    sql = "INSERT INTO t VALUES ('a;b'); -- c;d\n/* e;f */ UPDATE t SET \"x;y\" = 1;\n\n;"
    assert split_statements(sql) == ["INSERT INTO t VALUES ('a;b')", 'UPDATE t SET "x;y" = 1']
