"""A PostgreSQL connection that the storage closures use as they use an sqlite3 connection.

Each storage operation is a synchronous function over a connection, run on the database thread
(storage.db). For PostgreSQL that thread holds a :class:`PgConnection`: asyncpg on an event loop
of the thread's own, each ``execute`` run to its answer, so one set of closures (and of
behaviours) serves both backends. Statements are translated by storage.dialect; transaction
control keeps SQLite's meaning: ``BEGIN IMMEDIATE`` also takes one advisory lock that every
writer of the database takes, so writes from several processes are serialised exactly as
SQLite's file lock serialises them (reads never wait for it). Errors come back as sqlite3's
DB-API classes.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from storage.dialect import translate

T = TypeVar("T")

WRITE_LOCK = 0x5354_5544_494F  # pg_advisory_xact_lock key every write transaction takes
STATEMENT_CACHE = 512
CONNECT_TIMEOUT = 10.0  # seconds; an unreachable server is one clear error, not a long hang


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class Row(tuple[Any, ...]):
    """A result row read by position or by column name, like sqlite3.Row."""

    __slots__ = ()
    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=256)
def _row_class(columns: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {c: i for i, c in enumerate(columns)}})


def _value(value: Any) -> Any:
    # sum() over BIGINT is NUMERIC in PostgreSQL; SQLite's is an integer.
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def _rows(records: list[asyncpg.Record]) -> list[Row]:
    if not records:
        return []
    cls = _row_class(tuple(records[0].keys()))
    return [cls(_value(v) for v in record.values()) for record in records]


class Cursor:
    """What an sqlite3 cursor offers the storage closures."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    def fetchone(self) -> Row | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchmany(self, size: int) -> list[Row]:
        rows = self._rows[self._next : self._next + size]
        self._next += len(rows)
        return rows

    def fetchall(self) -> list[Row]:
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


def _error(exc: BaseException) -> sqlite3.Error:
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return sqlite3.IntegrityError(str(exc))
    return sqlite3.OperationalError(f"PostgreSQL: {exc}")


def _status_count(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class PgConnection:
    """One asyncpg connection on an event loop of its own, both living on the database thread.

    Each statement runs that loop until asyncpg has the answer: no hop to the bot's event loop,
    so a busy bot (Discord events, status edits) never slows the database down.
    """

    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self._loop = loop

    @classmethod
    def connect(cls, url: str) -> PgConnection:
        """On the database thread: a loop of its own, and the connection on it."""
        loop = asyncio.new_event_loop()
        try:
            conn = loop.run_until_complete(
                asyncpg.connect(url, statement_cache_size=STATEMENT_CACHE, timeout=CONNECT_TIMEOUT)
            )
        except BaseException:
            loop.close()
            raise
        return cls(conn, loop)

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self._loop.run_until_complete(coro)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise _error(exc) from exc

    @property
    def in_transaction(self) -> bool:
        return self._conn.is_in_transaction()

    def execute(self, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> Cursor:
        special = self._special(sql.strip())
        if special is not None:
            return special
        t = translate(sql)
        values = t.values(args)
        if t.returns_rows:
            rows = _rows(self._wait(self._conn.fetch(t.sql, *values)))
            return Cursor(rows, len(rows))
        return Cursor([], _status_count(self._wait(self._conn.execute(t.sql, *values))))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Cursor:
        t = translate(sql)
        self._wait(self._conn.executemany(t.sql, [t.values(r) for r in rows]))
        return Cursor([], -1)

    def script(self, sql: str) -> None:
        """Run statements as they are (no translation, no parameters)."""
        self._wait(self._conn.execute(sql))

    def close(self) -> None:
        try:
            self._wait(self._conn.close())
        finally:
            self._loop.close()

    def _special(self, sql: str) -> Cursor | None:
        """Transaction control and the PRAGMAs the package uses, in PostgreSQL's terms."""
        upper = sql.upper()
        if upper == "BEGIN IMMEDIATE":
            self.script(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        elif upper == "BEGIN":
            # One snapshot for all of a read's statements, as SQLite's read transaction.
            self.script("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        elif not upper.startswith("PRAGMA"):
            return None
        elif upper == "PRAGMA USER_VERSION":
            return Cursor([_row_class(("user_version",))((self._version(),))], 1)
        elif upper.startswith("PRAGMA USER_VERSION ="):
            version = int(upper.split("=", 1)[1])
            self.script(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"
                f"DELETE FROM schema_version; INSERT INTO schema_version VALUES ({version})"
            )
        elif upper == "PRAGMA INTEGRITY_CHECK":
            return Cursor([_row_class(("integrity_check",))(("ok",))], 1)
        elif upper.startswith("PRAGMA JOURNAL_MODE"):
            return Cursor([_row_class(("journal_mode",))(("wal",))], 1)
        # Other PRAGMAs (foreign_key_check, ...): the server enforces them; nothing to report.
        return Cursor([], 0)

    def _version(self) -> int:
        # The catalog table, not to_regclass(): its cache may predate another process's
        # migration that committed while this transaction waited for the write lock.
        exists = self._wait(
            self._conn.fetchval(
                "SELECT count(*) FROM pg_catalog.pg_tables"
                " WHERE schemaname = current_schema() AND tablename = 'schema_version'"
            )
        )
        if not exists:
            return 0
        return self._wait(self._conn.fetchval("SELECT max(version) FROM schema_version")) or 0
