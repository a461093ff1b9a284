"""The one database connection and how work reaches it.

The ``sqlite3.Connection`` lives on one thread of our own (:class:`_Worker`), so the event loop
never blocks on SQLite. A reservation is several statements; rather than a hop to the thread
for each, every storage operation is a synchronous function over the connection run there in
one hop. One thread, one queue: hops run in the order they were queued.

Writes go through :meth:`Database.write`, which groups them (group commit): those queued while
the previous group was committing run together in ONE ``BEGIN IMMEDIATE ... COMMIT``. Writing
pages to the WAL at COMMIT dominates a transaction's cost and a group shares it: that is what
makes thousands of reservations a second possible. Each write is still atomic alone (if one
raises, the group is rolled back and re-run with a SAVEPOINT per write, so only the failing one
is undone and only its caller sees the error); writes run in the order submitted, each seeing
those before it, and no caller hears "done" before the COMMIT that made its write durable.
``BEGIN IMMEDIATE`` takes the write lock up front, so another process (a second bot, a
maintenance script) waits (busy timeout) instead of failing half-way.

Cancellation: a write cancelled while still queued never happens; once handed to the thread it
commits (or fails) with its group, unheard. That is safe for the idempotent, compare-and-set
writes; one that creates something only its caller knows of passes ``undo`` (see
:meth:`Database.write`; ``JobStore.create_reserved`` fails and refunds the orphaned job). A
caller whose write must land even if cancelled (recording a request_id) shields it. Closing runs
every queued write first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

import asyncpg

from storage.models import DatabaseOpenError, StorageError
from storage.pg import PgConnection, redact
from storage.sqlite_open import check_path, open_sqlite, sqlite_problem

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
Outcome = tuple[Exception | None, Any]
Call = tuple[asyncio.Future[Any], Callable[[], Any]]  # a hop, queued for the database thread

log = logging.getLogger(__name__)

MAX_GROUP = 256  # writes per shared transaction; bounds how long one hop holds the thread
GROUPS_IN_FLIGHT = 1
THREAD_NAME = "storage-db"  # the database thread's name


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls some failed transactions back by itself; a second ROLLBACK would then fail
    # and hide the real error.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def write_txn(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` inside BEGIN IMMEDIATE ... COMMIT; any error rolls everything back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
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


def run_group(conn: sqlite3.Connection, ops: list[Op]) -> list[Outcome]:
    """Run ``ops`` in one transaction; (error, result) per op, in order.

    Fast path: all ops back to back. If one raises, the whole group is rolled back and run again
    with each op in its own savepoint, so the failing op is undone alone and the others commit
    once. (Ops therefore must not touch anything but the connection: only their last run counts.)
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
        except Exception as exc:
            _rollback(conn)
            # The error's type only: its message may quote what a member typed.
            log.debug("a write in a group of %d failed (%s)", len(ops), type(exc).__name__)
            return _run_isolated(conn, ops)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return [(None, result) for result in results]


def _run_isolated(conn: sqlite3.Connection, ops: list[Op]) -> list[Outcome]:
    """Each op in its own savepoint; a failing op is undone alone.

    Some errors make SQLite abandon the whole transaction, savepoints and all (e.g. a trigger's
    RAISE(ROLLBACK), an interrupt, some I/O errors): then the ops before it were undone too, so
    the run starts over without the failing op. At most ``len(ops)`` restarts.
    """
    failed: dict[int, Exception] = {}
    while True:
        outcomes: list[Outcome] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for index, op in enumerate(ops):
                if index in failed:
                    outcomes.append((failed[index], None))
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    result = op(conn)
                except Exception as exc:
                    if not conn.in_transaction:
                        failed[index] = exc
                        break
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((exc, None))
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((None, result))
            else:
                conn.execute("COMMIT")
                return outcomes
        except BaseException:
            _rollback(conn)
            raise


def _answer(future: asyncio.Future[Any], error: BaseException | None, result: Any) -> None:
    if not future.done():  # done: its caller was cancelled
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class _Worker:
    """The database thread: runs calls in order, one at a time, answering on the event loop.
    Not a ThreadPoolExecutor: measured, its hops cost 1.2-2x as much, 3-6x when many queue."""

    def __init__(self) -> None:
        self._calls: SimpleQueue[Call | None] = SimpleQueue()  # None: stop
        # Daemon: a database nobody closed must not hang the bot's exit; an interrupted
        # transaction is rolled back by SQLite on the next open, as after a crash.
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., T], *args: Any, defer: bool = False) -> asyncio.Future[T]:
        """Queue ``fn(*args)`` now or (``defer``) after this loop turn; runs even if cancelled."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        call: Call = (future, partial(fn, *args))
        if defer:
            loop.call_soon(self._calls.put, call)
        else:
            self._calls.put(call)
        return future

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            future, fn = item
            try:
                error, result = None, fn()
            except BaseException as exc:  # handed to the caller, like any result
                error, result = exc, None
            with contextlib.suppress(RuntimeError):  # the event loop closed: nobody is waiting
                future.get_loop().call_soon_threadsafe(_answer, future, error, result)

    async def stop(self, last: Callable[[], object]) -> None:
        """Run ``last`` after all queued (deferred too; nothing may follow), end the thread and wait
        for it, so it never outlives the event loop (a failed open); if cancelled, it still ends."""
        done = self.call(last, defer=True)
        asyncio.get_running_loop().call_soon(self._calls.put, None)
        await asyncio.shield(done)
        self._thread.join()  # it has nothing left to run: this only waits for it to exit


@dataclass(slots=True)
class _Write:
    op: Op
    future: asyncio.Future[Any]
    undo: Callable[[Any], Op] | None = None  # see Database.write
    what: str = "a write"  # for the log, when nobody is waiting for the outcome


def _log_failure(what: str, future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("%s failed: %r", what, exc)


class Database:
    """The connection: grouped writes, snapshot reads, single-statement queries."""

    def __init__(self, worker: _Worker, conn: sqlite3.Connection | PgConnection, path: Any) -> None:
        self._worker = worker
        self._conn = conn  # used on the worker's thread only
        self.path = path
        self._queue: deque[_Write] = deque()
        self._groups: set[asyncio.Future[list[Outcome]]] = set()
        self._closing = False  # no new writes
        self._closed = False  # the connection is closed (or closing): no hops at all

    @classmethod
    async def connect(cls, path: Path) -> Database:
        """Open ``path`` (creating its folder) and set the connection up; nothing is written.
        Raises DatabaseOpenError (naming the path and the problem) if the file cannot be used."""
        check_path(path)
        worker = _Worker()
        try:
            conn = await worker.call(open_sqlite, path)
        except BaseException as exc:
            await worker.stop(lambda: None)
            if isinstance(exc, sqlite3.Error | OSError):
                raise DatabaseOpenError(path, sqlite_problem(exc)) from exc
            raise
        return cls(worker, conn, path)

    @classmethod
    async def connect_postgres(cls, url: str) -> Database:
        """Connect to PostgreSQL at ``url``; the same closures then run against it (storage.pg)."""
        worker = _Worker()
        try:
            conn = await worker.call(PgConnection.connect, url)
        except BaseException as exc:
            await worker.stop(lambda: None)
            if isinstance(exc, OSError | asyncpg.PostgresError | asyncpg.InterfaceError):
                raise DatabaseOpenError(redact(url), f"PostgreSQL: {exc}") from exc
            raise
        return cls(worker, conn, redact(url))

    @property
    def dialect(self) -> str:
        return getattr(self._conn, "dialect", "sqlite")

    @property
    def postgres(self) -> PgConnection | None:
        """The PostgreSQL connection, for what only it offers (LISTEN, leases); None on SQLite."""
        return self._conn if isinstance(self._conn, PgConnection) else None

    async def enable_wal(self) -> None:
        """Switch the file to WAL (it stays so); call once the schema is known to be ours."""
        try:
            # journal_mode cannot change inside a transaction; WAL persists in the file once set.
            mode = await self.query(lambda c: c.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.Error as exc:
            raise DatabaseOpenError(self.path, sqlite_problem(exc)) from exc
        if str(mode).lower() != "wal":
            log.warning("%s: SQLite kept journal mode %r instead of WAL", self.path, mode)

    async def write(
        self,
        op: Callable[[sqlite3.Connection], T],
        *,
        undo: Callable[[T], Op] | None = None,
        what: str = "a write",
    ) -> T:
        """Run ``op`` atomically in a write transaction (possibly shared; see module doc).

        ``op`` may run more than once (only its last run is committed), so it must change
        nothing but the database. If the caller is cancelled before ``op`` reaches the database
        thread, it never runs; after that it commits regardless, and then ``undo(result)``, if
        given, is queued as a write of its own (``what`` names it in the log if it fails).
        """
        if self._closing:
            raise StorageError("the database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(op, future, undo, what))
        self._dispatch()
        return await future

    def _detach(self, op: Op, what: str) -> None:
        """Queue a write nobody awaits; a failure is logged."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(partial(_log_failure, what))
        self._queue.append(_Write(op, future, None, what))

    def _dispatch(self) -> None:
        # One group at a time: the writes that queue up meanwhile form the next, larger group
        # (measured: larger groups beat keeping two smaller ones queued on the thread).
        while self._queue and len(self._groups) < GROUPS_IN_FLIGHT:
            group: list[_Write] = []
            while self._queue and len(group) < MAX_GROUP:
                write = self._queue.popleft()
                if not write.future.done():  # done: its caller was cancelled; skip the write
                    group.append(write)
            if not group:
                continue
            if self._closed:
                for write in group:
                    write.future.set_exception(StorageError("the database closed first"))
                continue
            # Handed over now (a caller cancelled from here on still commits), but queued on the
            # thread after this loop turn, as before: reads that tasks already scheduled ask for
            # in this turn see the state before it. Nothing cancels ``hop``: _settle always runs.
            hop = self._worker.call(run_group, self._conn, [w.op for w in group], defer=True)
            self._groups.add(hop)
            hop.add_done_callback(partial(self._settle, group))

    def _settle(self, group: list[_Write], hop: asyncio.Future[list[Outcome]]) -> None:
        self._groups.discard(hop)
        if (exc := hop.exception()) is None:
            outcomes: list[Outcome] = hop.result()
        else:
            log.warning("a group of %d writes failed and was rolled back: %r", len(group), exc)
            outcomes = [(exc if isinstance(exc, Exception) else StorageError(repr(exc)), None)]
            outcomes *= len(group)
        for write, (error, result) in zip(group, outcomes, strict=True):
            if not write.future.done():
                _answer(write.future, error, result)
            elif error is None and write.undo is not None:
                # The caller was cancelled while its write was on the thread: the write stands.
                self._detach(write.undo(result), f"undoing {write.what}")
        self._dispatch()

    def _call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closed:
            raise StorageError("the database is closed")
        return self._worker.call(fn, self._conn, *args)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run several SELECTs over one consistent snapshot."""
        return await self._call(read_txn, fn)

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a single statement (its own implicit transaction)."""
        return await self._call(fn)

    async def close(self) -> None:
        """Finish every queued write (and what they queue), then close the connection. If this
        wait is cancelled, writes not yet on the thread fail with StorageError and the connection
        still closes (after whatever is already on the thread, which runs first)."""
        self._closing = True
        try:
            while self._groups:
                await asyncio.wait(set(self._groups))
        finally:
            self._closed = True
            for write in self._queue:
                _answer(write.future, StorageError("the database closed first"), None)
            self._queue.clear()
            await self._worker.stop(self._conn.close)
