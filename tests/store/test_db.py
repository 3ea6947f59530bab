"""relay.store.db on both dialects: one SQL text, exact money, transactions, concurrency, recovery."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from relay.store import db as db_module
from relay.store.db import (
    Database,
    IntegrityError,
    StoreError,
    StoreUnavailable,
    open_database,
    redact_url,
    sqlite_path,
    to_psycopg,
)
from relay.store.migrate import render
from tests.store.pg import PgDatabases, terminate_connections

TABLE = "CREATE TABLE t (id INTEGER PRIMARY KEY, label TEXT NOT NULL, amount {{money}})"


async def _table(db: Database) -> None:
    await db.execute(render(TABLE, db.dialect))


async def test_one_sql_text_runs_on_both_dialects(db: Database) -> None:
    await _table(db)
    assert await db.execute("INSERT INTO t (id, label) VALUES (?, ?)", (1, "it's 100% done?")) == 1
    assert await db.execute("INSERT INTO t (id, label) VALUES (?, ?), (?, ?)", (2, "b", 3, "c")) == 2
    # '?' inside a literal is text, '%' anywhere is literal, comments are left alone.
    row = await db.fetchone("SELECT label, '?', '50%' FROM t WHERE id = ? -- a comment with ? and %", (1,))
    assert row == ("it's 100% done?", "?", "50%")
    assert await db.fetchall("SELECT id FROM t WHERE id > ? ORDER BY id", (1,)) == [(2,), (3,)]
    assert await db.fetchone("SELECT id FROM t WHERE id = ?", (99,)) is None
    assert await db.execute("UPDATE t SET label = ? WHERE id >= ?", ("x", 2)) == 2


async def test_money_round_trips_exactly(db: Database) -> None:
    await _table(db)
    amounts = [Decimal("0.000000001"), Decimal("12345678901.123456789"), Decimal("0.1"), Decimal("0")]
    for i, amount in enumerate(amounts):
        await db.execute("INSERT INTO t (id, label, amount) VALUES (?, ?, ?)", (i, "m", amount))
    rows = await db.fetchall("SELECT amount FROM t ORDER BY id")
    # SQLite gives the exact string back, PostgreSQL a Decimal; either converts exactly, never via float.
    assert [Decimal(r[0]) for r in rows] == amounts
    assert all(not isinstance(r[0], float) for r in rows)


async def test_transaction_commits_on_exit_and_rolls_back_on_error(db: Database) -> None:
    await _table(db)
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t (id, label) VALUES (?, ?)", (1, "kept"))
        assert await tx.fetchone("SELECT label FROM t WHERE id = ?", (1,)) == ("kept",)
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (id, label) VALUES (?, ?)", (2, "gone"))
            await tx.execute("UPDATE t SET label = ? WHERE id = ?", ("changed", 1))
            raise RuntimeError("boom")
    with pytest.raises(IntegrityError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (id, label) VALUES (?, ?)", (3, "gone too"))
            await tx.execute("INSERT INTO t (id, label) VALUES (?, ?)", (1, "duplicate key"))
    assert await db.fetchall("SELECT id, label FROM t ORDER BY id") == [(1, "kept")]


async def test_the_database_refuses_use_inside_its_own_transaction(db: Database) -> None:
    await _table(db)
    with pytest.raises(StoreError, match="handle"):
        async with db.transaction():
            await db.execute("INSERT INTO t (id, label) VALUES (1, 'outside')")
    assert await db.fetchall("SELECT id FROM t") == []


async def test_integrity_errors_are_typed(db: Database) -> None:
    await _table(db)
    await db.execute("INSERT INTO t (id, label) VALUES (1, 'a')")
    with pytest.raises(IntegrityError):
        await db.execute("INSERT INTO t (id, label) VALUES (1, 'b')")
    with pytest.raises(IntegrityError):
        await db.execute("INSERT INTO t (id, label) VALUES (2, NULL)")
    with pytest.raises(StoreError):
        await db.execute("SELEC nonsense")


async def test_many_tasks_at_once_lose_nothing_and_see_no_half_transactions(db: Database) -> None:
    await _table(db)
    await db.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
    await db.execute("INSERT INTO counter (n) VALUES (0)")

    async def writer(i: int) -> None:
        # Each transaction writes a pair of rows; every third one fails after its first row.
        try:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t (id, label) VALUES (?, ?)", (2 * i, "pair"))
                if i % 3 == 0:
                    raise ValueError("roll back")
                await tx.execute("INSERT INTO t (id, label) VALUES (?, ?)", (2 * i + 1, "pair"))
                await tx.execute("UPDATE counter SET n = n + 1")
        except ValueError:
            pass

    async def reader() -> None:
        for _ in range(5):
            (count,) = await db.fetchone("SELECT count(*) FROM t") or (None,)
            assert count is not None and count % 2 == 0, "a reader saw half a transaction"

    tasks = [writer(i) for i in range(60)] + [reader() for _ in range(10)]
    await asyncio.gather(*tasks)
    committed = 60 - len(range(0, 60, 3))
    assert await db.fetchone("SELECT count(*) FROM t") == (2 * committed,)
    assert await db.fetchone("SELECT n FROM counter") == (committed,)


async def test_a_slow_query_does_not_block_the_event_loop(db: Database) -> None:
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) SELECT count(*) FROM c"
    started = time.perf_counter()
    query = asyncio.create_task(db.fetchone(slow))
    ticks = 0
    while not query.done():
        ticks += 1
        await asyncio.sleep(0)  # yield to the loop: if the query ran on it, it would be done already
    assert await query == (1000000,)
    elapsed = time.perf_counter() - started
    assert elapsed > 0.05, "the query was too quick to show anything"
    assert ticks > 10, f"the loop turned only {ticks} times during a {elapsed:.2f} s query"


async def test_ping_and_close(db: Database) -> None:
    await db.ping()
    await db.close()
    with pytest.raises(StoreError):
        await db.fetchone("SELECT 1")
    await db.close()  # twice is harmless


async def test_sqlite_memory_and_unsupported_urls() -> None:
    memory = await open_database("sqlite:///:memory:")
    try:
        assert memory.dialect == "sqlite"
        assert await memory.fetchone("SELECT 1 + 1") == (2,)
    finally:
        await memory.close()
    with pytest.raises(StoreError, match="unsupported database URL"):
        await open_database("mysql://root:hunter2@db/x")
    with pytest.raises(StoreError) as refused:
        await open_database("mysql://root:hunter2@db/x")
    assert "hunter2" not in str(refused.value)
    assert sqlite_path("sqlite:///relay.db") == "relay.db"
    assert sqlite_path("sqlite:////var/lib/relay.db") == "/var/lib/relay.db"
    with pytest.raises(StoreError):
        sqlite_path("sqlite://relay.db")


def test_urls_are_redacted_and_placeholders_converted() -> None:
    assert redact_url("postgresql://relay:s3cret@db:5432/relay") == "postgresql://relay:***@db:5432/relay"
    assert redact_url("postgresql://relay@db/relay") == "postgresql://relay@db/relay"
    assert to_psycopg("SELECT ? , '?', \"?\" /* ? */ -- ?\n WHERE a LIKE '%x' AND b = ?") == (
        "SELECT %s , '?', \"?\" /* ? */ -- ?\n WHERE a LIKE '%%x' AND b = %s"
    )


async def test_postgresql_unreachable_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreUnavailable) as refused:
        # Port 1 on loopback: nothing listens, the connection is refused at once.
        await open_database("postgresql://relay:s3cret@127.0.0.1:1/relay")
    assert "s3cret" not in str(refused.value) and "***" in str(refused.value)


async def test_postgresql_pool_recovers_after_the_server_drops_its_connections(pg_databases: PgDatabases) -> None:
    url = pg_databases.create()
    db = await open_database(url, pool_size=2)
    try:
        await db.ping()
        await asyncio.to_thread(terminate_connections, pg_databases.server_url, url)
        # The statement that meets the dead connection fails (it is not retried: it may not be
        # idempotent); the pool drops that connection and the next statement gets a fresh one.
        with pytest.raises(StoreUnavailable):
            await db.fetchone("SELECT 1")
        assert await db.fetchone("SELECT 2") == (2,)
    finally:
        await db.close()
        pg_databases.drop(url)


async def test_postgresql_checks_a_connection_that_sat_idle_before_using_it(
    pg_databases: PgDatabases, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "POOL_CHECK_IDLE_S", 0.0)  # every pooled connection counts as idle
    url = pg_databases.create()
    db = await open_database(url, pool_size=2)
    try:
        await db.ping()
        await asyncio.to_thread(terminate_connections, pg_databases.server_url, url)
        # The dead connection is found out before the statement runs: nothing fails.
        assert await db.fetchone("SELECT 3") == (3,)
    finally:
        await db.close()
        pg_databases.drop(url)
