"""Async database access for SQLite and PostgreSQL behind one small interface.

SQL is written once, with ``?`` placeholders, and converted for psycopg (``%s``). Rows are plain
tuples. Money is ``Decimal``: PostgreSQL stores it as NUMERIC; SQLite stores the exact decimal
string in a TEXT column (a NUMERIC column in SQLite would coerce it to a binary float), so
``Decimal`` parameters are bound as ``str`` there and callers wrap money they read with
``Decimal(value)`` — which is exact for both ``str`` and ``Decimal``. Never ``SUM()`` money in
SQLite (it sums TEXT as floats); add the ``Decimal`` values in Python.

Concurrency:

- SQLite: one connection owned by one dedicated thread, so the event loop never blocks on disk
  I/O and the connection is never touched by two threads. An ``asyncio.Lock`` serialises
  statements and holds for the whole of a transaction (one connection cannot interleave two).
- PostgreSQL: a small pool of psycopg async connections (default 4). One connection behind a
  lock would make a handshake's API-key lookup wait behind a metering consumer's batch
  transaction; a pool lets them run side by side while keeping the server's connection count
  small and predictable. A connection that sat idle for a while is checked before it is handed
  out, and one that broke (server restart) is dropped and replaced, so the store recovers without
  a relay restart. A statement that itself meets a broken connection is not retried (it may not
  be idempotent): its caller sees ``StoreUnavailable``.

Inside ``transaction()``, use the handle it yields. Calling the database itself from inside the
transaction raises ``StoreError`` instead of deadlocking (SQLite) or silently running outside the
transaction (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

LOG = logging.getLogger("relay.store")

Dialect = Literal["sqlite", "postgresql"]
Params = Sequence[Any]
Row = tuple[Any, ...]

DEFAULT_POOL_SIZE = 4
# Bounds a connection attempt so that /readyz and the CLI answer promptly when the server is gone.
CONNECT_TIMEOUT_S = 5
# A pooled PostgreSQL connection idle longer than this is checked before it is handed out.
POOL_CHECK_IDLE_S = 10.0
# Another process (the CLI next to a running relay) may hold SQLite's write lock for a moment.
SQLITE_BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")


class StoreError(Exception):
    """A database operation failed. The message never contains credentials."""


class IntegrityError(StoreError):
    """A constraint (unique, foreign key, not null, check) refused the statement."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or the connection broke."""


class Executor(Protocol):
    """What both a ``Database`` and a transaction handle offer."""

    async def execute(self, sql: str, params: Params = ()) -> int: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...


# Which database (by id) the current task is inside a transaction of; see the module docstring.
_IN_TRANSACTION: contextvars.ContextVar[int | None] = contextvars.ContextVar("relay_store_tx", default=None)


class Database(ABC):
    """An open database. Statements outside ``transaction()`` commit on their own."""

    dialect: Dialect

    def __init__(self, url: str) -> None:
        self.url = redact_url(url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed (0 when the driver cannot tell)."""
        self._not_in_transaction()
        return await self._run(lambda ex: ex.execute(sql, params))

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        self._not_in_transaction()
        return await self._run(lambda ex: ex.fetchall(sql, params))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        self._not_in_transaction()
        return await self._run(lambda ex: ex.fetchone(sql, params))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        self._not_in_transaction()
        token = _IN_TRANSACTION.set(id(self))
        try:
            async with self._transaction() as handle:
                yield handle
        finally:
            _IN_TRANSACTION.reset(token)

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless a trivial query succeeds (readiness).

        Tried twice: the first attempt may meet a connection the server dropped (and discard
        it), which says nothing about whether the store is reachable now. ``SELECT 1`` is safe to
        repeat, unlike the statements ``execute`` never retries."""
        for attempt in (1, 2):
            try:
                await self.fetchone("SELECT 1")
                return
            except StoreUnavailable:
                if attempt == 2:
                    raise
            except StoreError as exc:
                raise StoreUnavailable(str(exc)) from exc

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _run(self, op: Callable[[Executor], Awaitable[T]]) -> T:
        """Run ``op`` against an autocommitting executor."""

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractAsyncContextManager[Executor]: ...

    def _not_in_transaction(self) -> None:
        if _IN_TRANSACTION.get() == id(self):
            raise StoreError("inside transaction(): use the handle it yields, not the database")


async def open_database(url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> Database:
    """Open ``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite:///:memory:`` or
    ``postgresql://user@host:port/dbname`` (``postgres://`` too)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return await SQLiteDatabase.open(url)
    if scheme in ("postgresql", "postgres"):
        return await PostgresDatabase.open(url, pool_size=pool_size)
    raise StoreError(f"unsupported database URL {redact_url(url)!r}: use sqlite:///PATH or postgresql://...")


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    host = netloc[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def sqlite_path(url: str) -> str:
    """``sqlite:///x.db`` -> ``x.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``; ``:memory:`` as is."""
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix):
        raise StoreError(f"a SQLite URL looks like sqlite:///PATH, got {url!r}")
    path = url[len(prefix) :]
    if not path:
        raise StoreError("the SQLite URL names no file (sqlite:///PATH or sqlite:///:memory:)")
    return path


# --------------------------------------------------------------------------------------------- SQLite


def _sqlite_params(params: Params) -> tuple[Any, ...]:
    # Exact decimal strings, never floats: see the module docstring.
    return tuple(str(p) if isinstance(p, Decimal) else p for p in params)


def _sqlite_error(exc: sqlite3.Error) -> StoreError:
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(str(exc))
    return StoreError(f"SQLite: {exc}")


class _SQLiteExecutor:
    """Statements against the connection, each run on the database's own thread."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, params: Params = ()) -> int:
        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute(sql, _sqlite_params(params))
            return max(cur.rowcount, 0)

        return await self._db._call(run)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        def run(conn: sqlite3.Connection) -> list[Row]:
            return list(conn.execute(sql, _sqlite_params(params)).fetchall())

        return await self._db._call(run)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        def run(conn: sqlite3.Connection) -> Row | None:
            row: Row | None = conn.execute(sql, _sqlite_params(params)).fetchone()
            return row

        return await self._db._call(run)


class SQLiteDatabase(Database):
    dialect: Dialect = "sqlite"

    def __init__(self, url: str, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        super().__init__(url)
        self._executor = executor
        self._conn = conn
        self._lock = asyncio.Lock()
        self._closed = False
        self._handle = _SQLiteExecutor(self)

    @classmethod
    async def open(cls, url: str) -> SQLiteDatabase:
        path = sqlite_path(url)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sqlite")

        def connect() -> sqlite3.Connection:
            # isolation_level=None: the driver opens no implicit transactions; we say BEGIN ourselves.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            if path != ":memory:":
                # WAL lets readers (the CLI, a second process) proceed while the relay writes.
                conn.execute("PRAGMA journal_mode = WAL")
            return conn

        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise StoreUnavailable(f"cannot open SQLite database {path!r}: {exc}") from exc
        return cls(url, executor, conn)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError("the database is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._conn)
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    async def _run(self, op: Callable[[Executor], Awaitable[T]]) -> T:
        async with self._lock:
            return await op(self._handle)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            # IMMEDIATE takes the write lock now, so two processes cannot both read-then-write.
            await self._call(lambda c: c.execute("BEGIN IMMEDIATE"))
            try:
                yield self._handle
            except BaseException:
                # Shielded: a cancelled caller must still leave the connection out of the transaction.
                await asyncio.shield(self._call(lambda c: c.execute("ROLLBACK")))
                raise
            try:
                await asyncio.shield(self._call(lambda c: c.execute("COMMIT")))
            except BaseException:
                # A failed COMMIT (SQLITE_BUSY) leaves the transaction open on our one connection.
                with contextlib.suppress(StoreError):
                    await asyncio.shield(self._call(lambda c: c.execute("ROLLBACK")))
                raise

    async def close(self) -> None:
        if self._closed:
            return
        async with self._lock:
            self._closed = True
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
            self._executor.shutdown(wait=False)


# ----------------------------------------------------------------------------------------- PostgreSQL


@lru_cache(maxsize=512)
def to_psycopg(sql: str) -> str:
    """``?`` -> ``%s`` outside quotes and comments; every ``%`` -> ``%%`` (psycopg's escape)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = sql.find(ch, i + 1)
            # A doubled quote inside a literal ('it''s') is just two adjacent literals to this scan.
            end = n if end < 0 else end + 1
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif ch == "?":
            out.append("%s")
            i += 1
        elif ch == "%":
            out.append("%%")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _pg_error(exc: psycopg.Error) -> StoreError:
    if isinstance(exc, psycopg.IntegrityError):
        return IntegrityError(_pg_message(exc))
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable(f"PostgreSQL unavailable: {_pg_message(exc)}")
    return StoreError(f"PostgreSQL: {_pg_message(exc)}")


def _pg_message(exc: Exception) -> str:
    # psycopg's connection errors name host and port, never the password; keep the first line.
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class _PgExecutor:
    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            async with self._conn.cursor() as cur:
                await cur.execute(to_psycopg(sql), tuple(params))
                return max(cur.rowcount, 0)
        except psycopg.Error as exc:
            raise _pg_error(exc) from exc

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            async with self._conn.cursor() as cur:
                await cur.execute(to_psycopg(sql), tuple(params))
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise _pg_error(exc) from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        try:
            async with self._conn.cursor() as cur:
                await cur.execute(to_psycopg(sql), tuple(params))
                return await cur.fetchone()
        except psycopg.Error as exc:
            raise _pg_error(exc) from exc


async def _alive(conn: psycopg.AsyncConnection[Row], idle_since: float) -> bool:
    """Whether a pooled connection still works. Only one that sat idle a while is asked (one round
    trip): a server restart or an idle timeout while nobody used it must not fail the next
    handshake. A connection that breaks mid-burst still fails its statement (see the module doc)."""
    if time.monotonic() - idle_since < POOL_CHECK_IDLE_S:
        return True
    try:
        await conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


class PostgresDatabase(Database):
    dialect: Dialect = "postgresql"

    def __init__(self, url: str, pool_size: int) -> None:
        super().__init__(url)
        self._conninfo = url
        self._slots = asyncio.Semaphore(pool_size)
        # (connection, when it was last handed back), most recently used last.
        self._idle: list[tuple[psycopg.AsyncConnection[Row], float]] = []
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> PostgresDatabase:
        if pool_size < 1:
            raise StoreError("pool_size must be at least 1")
        db = cls(url, pool_size)
        # Fail fast at start when the server is unreachable or the URL is wrong.
        db._idle.append((await db._connect(), time.monotonic()))
        return db

    async def _connect(self) -> psycopg.AsyncConnection[Row]:
        try:
            # autocommit: a statement outside transaction() commits itself; transaction() uses
            # psycopg's own BEGIN/COMMIT block.
            return await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to {self.url}: {_pg_message(exc)}") from exc

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        if self._closed:
            raise StoreError("the database is closed")
        async with self._slots:
            conn = None
            while self._idle and conn is None:
                candidate, since = self._idle.pop()
                if not candidate.closed and not candidate.broken and await _alive(candidate, since):
                    conn = candidate
                else:
                    await candidate.close()
            if conn is None:
                conn = await self._connect()
            try:
                yield conn
            finally:
                if conn.closed or conn.broken or self._closed:
                    await conn.close()
                else:
                    self._idle.append((conn, time.monotonic()))

    async def _run(self, op: Callable[[Executor], Awaitable[T]]) -> T:
        async with self._connection() as conn:
            return await op(_PgExecutor(conn))

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Executor]:
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    yield _PgExecutor(conn)
            except psycopg.Error as exc:
                raise _pg_error(exc) from exc

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()
