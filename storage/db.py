"""The one database connection and how work reaches it.

aiosqlite runs each awaited call as a hop to its worker thread. A reservation or a transition is
several statements; awaiting each one would cost a hop apiece. Instead every storage operation
is a plain synchronous function over the ``sqlite3.Connection`` that runs on aiosqlite's worker
thread in one hop (:func:`run_sync`).

Writes go through :class:`Database.write`, which groups them (group commit): the writes queued
while the previous group was being committed run together in ONE ``BEGIN IMMEDIATE ... COMMIT``.
Each operation is still atomic on its own (if one raises, the group is rolled back and re-run
with each operation in its own SAVEPOINT, so only the failing one is undone and only its caller
sees the error), operations run in the order they were submitted and each sees the effects of
those before it, and no caller hears "done" before the COMMIT that made its write durable. A
transaction's cost is dominated by writing its pages to the WAL at COMMIT; a group shares those
pages, which is what makes thousands of reservations a second possible. ``BEGIN IMMEDIATE``
takes the write lock up front, so another process (a second bot, a maintenance script) waits
(busy timeout) instead of failing half-way.

Durability: WAL with ``synchronous=NORMAL``. A process crash (even SIGKILL) loses nothing that
was committed; a power loss or OS crash may lose the last transactions but never corrupts the
file.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage.models import StorageError

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
CACHE_KIB = 16 * 1024  # page cache per connection; SQLite's default is 2 MiB
MAX_GROUP = 256  # writes per shared transaction; bounds how long one hop holds the thread
GROUPS_IN_FLIGHT = 1


async def run_sync(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn(sqlite3_connection)`` on aiosqlite's worker thread, in one hop.

    aiosqlite has no public call for this. ``Connection._execute(fn)`` queues a callable on the
    worker thread that owns the sqlite3 connection and awaits its result; ``Connection._conn`` is
    that sqlite3 connection (ValueError once closed). Checked against the installed aiosqlite
    0.22.1 (core.py). This is the only place the storage layer touches aiosqlite internals.
    """
    return await conn._execute(lambda: fn(conn._conn))


def _configure(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    # journal_mode cannot change inside a transaction; WAL persists in the file once set.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")


def write_txn(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` inside BEGIN IMMEDIATE ... COMMIT; any error rolls everything back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def read_txn(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` inside one read transaction, so its several SELECTs see one snapshot."""
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    if problems == ["ok"]:
        problems = []
    problems += [f"foreign key: {tuple(row)}" for row in conn.execute("PRAGMA foreign_key_check")]
    return problems


Outcome = tuple[Exception | None, Any]


def run_group(conn: sqlite3.Connection, ops: list[Op]) -> list[Outcome]:
    """Run ``ops`` in one transaction; (error, result) per op, in order.

    Fast path: all ops back to back. If one raises, the whole group is rolled back and run again
    with each op in its own savepoint, so the failing op is undone alone and the others commit.
    (Ops therefore must not touch anything but the connection: only their last run counts.)
    An error outside the ops (BEGIN or COMMIT failing) propagates: then nothing was committed.
    """
    if len(ops) == 1:
        try:
            return [(None, write_txn(conn, ops[0]))]
        except Exception as exc:
            return [(exc, None)]
    conn.execute("BEGIN IMMEDIATE")
    try:
        try:
            results = [op(conn) for op in ops]
        except Exception:
            conn.execute("ROLLBACK")
            return _run_isolated(conn, ops)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return [(None, result) for result in results]


def _run_isolated(conn: sqlite3.Connection, ops: list[Op]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                result = op(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((exc, None))
            else:
                conn.execute("RELEASE op")
                outcomes.append((None, result))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


class Database:
    """The connection: grouped writes, snapshot reads, single-statement queries."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._queue: deque[tuple[Op, asyncio.Future[Any]]] = deque()
        self._groups: set[asyncio.Task[list[Outcome]]] = set()
        self._closing = False

    @classmethod
    async def connect(cls, path: Path) -> Database:
        """Open ``path`` (creating its folder) and set the connection up."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: the sqlite3 module opens no transactions of its own; we do.
        conn = await aiosqlite.connect(path, isolation_level=None, cached_statements=256)
        try:
            await run_sync(conn, _configure)
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` atomically in a write transaction (possibly shared; see module doc).

        ``op`` may run more than once (only its last run is committed), so it must change
        nothing but the database. If the caller is cancelled, the write may still happen, as
        with any queued statement.
        """
        if self._closing:
            raise StorageError("the database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        # One group at a time: the writes that queue up meanwhile form the next, larger group
        # (measured: larger groups beat keeping two smaller ones queued on the thread).
        while self._queue and len(self._groups) < GROUPS_IN_FLIGHT:
            group = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_GROUP))]
            ops = [op for op, _ in group]
            task = asyncio.ensure_future(run_sync(self._conn, partial(run_group, ops=ops)))
            self._groups.add(task)
            task.add_done_callback(partial(self._settle, group))

    def _settle(
        self, group: list[tuple[Op, asyncio.Future[Any]]], task: asyncio.Task[list[Outcome]]
    ) -> None:
        self._groups.discard(task)
        if task.cancelled():
            error = StorageError("cancelled before the write's outcome was known")
            outcomes: list[Outcome] = [(error, None)] * len(group)
        elif (exc := task.exception()) is not None:
            log.warning("a group of %d writes failed and was rolled back: %r", len(group), exc)
            outcomes = [(exc if isinstance(exc, Exception) else StorageError(repr(exc)), None)]
            outcomes *= len(group)
        else:
            outcomes = task.result()
        for (_, future), (error, result) in zip(group, outcomes, strict=True):
            if future.done():  # the caller gave up waiting; the write stands
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        self._dispatch()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run several SELECTs over one consistent snapshot."""
        return await run_sync(self._conn, lambda c: read_txn(c, fn))

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a single statement (its own implicit transaction)."""
        return await run_sync(self._conn, fn)

    async def close(self) -> None:
        """Finish queued writes, then close the connection."""
        self._closing = True
        while self._groups:
            await asyncio.wait(set(self._groups))
        await self._conn.close()
