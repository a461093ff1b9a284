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

Cancellation: a write whose caller is cancelled while it is still queued (not yet in a group
handed to the database thread) is dropped: it never happens. Once handed over it cannot be
stopped: it commits (or fails) with its group, and the caller, already gone, never hears which.
That is safe for the idempotent, compare-and-set writes (transitions, commit, refund, settings);
a write that creates something only its caller would know about passes ``undo`` to
:meth:`Database.write`, which queues the compensating write when that happens
(``JobStore.create_reserved`` fails the orphaned job and refunds it, so a cancelled request never
holds a member's credits or in-flight slot). A caller whose write must land even if it is
cancelled (recording a request_id) shields it. Closing runs every queued write first.

Durability: WAL with ``synchronous=NORMAL``. A process crash (even SIGKILL) loses nothing that
was committed; a power loss or OS crash may lose the last transactions but never corrupts the
file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage.models import DatabaseOpenError, StorageError

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
Outcome = tuple[Exception | None, Any]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
CACHE_KIB = 16 * 1024  # page cache per connection; SQLite's default is 2 MiB
MAX_GROUP = 256  # writes per shared transaction; bounds how long one hop holds the thread
GROUPS_IN_FLIGHT = 1
WORKER_STOP_TIMEOUT = 5.0  # seconds to wait for aiosqlite's thread after a failed connect


async def run_sync(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn(sqlite3_connection)`` on aiosqlite's worker thread, in one hop.

    aiosqlite has no public call for this. ``Connection._execute(fn)`` queues a callable on the
    worker thread that owns the sqlite3 connection and awaits its result; ``Connection._conn`` is
    that sqlite3 connection (ValueError once closed). Both exist from aiosqlite 0.20 to the
    installed 0.22.1 (core.py). The only other internal used is the worker thread, in
    :func:`_join_worker`. :class:`Database` never calls this after closing the connection.
    """
    return await conn._execute(lambda: fn(conn._conn))


def _worker_thread(conn: aiosqlite.Connection) -> threading.Thread | None:
    # 0.22 keeps its worker in ``_thread``; up to 0.20 the connection *was* the thread.
    if isinstance(conn, threading.Thread):
        return conn
    thread = getattr(conn, "_thread", None)
    return thread if isinstance(thread, threading.Thread) else None


async def _join_worker(conn: aiosqlite.Connection) -> None:
    """Wait for the worker thread of a connection whose opening failed.

    On a failed connect aiosqlite queues its thread's stop, but nobody waits for it: the thread
    then reports back to the event loop, and if the loop has closed meanwhile (the bot exiting on
    this very error) it dies with a "RuntimeError: Event loop is closed" traceback.
    """
    thread = _worker_thread(conn)
    if thread is None or not thread.is_alive():
        return
    await asyncio.to_thread(thread.join, WORKER_STOP_TIMEOUT)
    if thread.is_alive():
        log.warning("aiosqlite's worker thread did not stop after a failed connect")


def _check_path(path: Path) -> None:
    """Refuse, with a clear reason, a path SQLite could not use; create its folder."""
    if path.is_dir():
        raise DatabaseOpenError(path, "it is a directory; give the path of a file")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise DatabaseOpenError(path, f"{folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = f"cannot create its folder {folder}: {exc.strerror or exc}"
        raise DatabaseOpenError(path, problem) from exc
    # SQLite writes the -wal and -shm files beside the database, so the folder must be writable
    # even when the file exists. (root passes these checks; SQLite's own error then applies.)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseOpenError(path, f"this user cannot create files in {folder}")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseOpenError(path, "this user cannot read and write the file")


def _sqlite_problem(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return "the file is not an SQLite database"
    return f"SQLite: {exc}"


def _configure(conn: sqlite3.Connection) -> None:
    """Connection settings only: nothing here changes the file (see enable_wal)."""
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    # Reads the header: a file that is not a database fails here, while opening.
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()


def _enable_wal(conn: sqlite3.Connection) -> str:
    # journal_mode cannot change inside a transaction; WAL persists in the file once set.
    return conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]


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
        except Exception:
            _rollback(conn)
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


@dataclass(slots=True)
class _Write:
    op: Op
    future: asyncio.Future[Any]
    undo: Callable[[Any], Op] | None = None  # see Database.write
    what: str = "a write"  # for the log, when nobody is waiting for the outcome


def _log_detached_failure(write: _Write, future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("%s failed: %r", write.what, exc)


class Database:
    """The connection: grouped writes, snapshot reads, single-statement queries."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._queue: deque[_Write] = deque()
        self._groups: set[asyncio.Task[list[Outcome]]] = set()
        self._closing = False  # no new writes
        self._closed = False  # the connection is closed (or closing): no hops at all

    @classmethod
    async def connect(cls, path: Path) -> Database:
        """Open ``path`` (creating its folder) and set the connection up; nothing is written.

        Raises DatabaseOpenError (naming the path and the problem) if the file cannot be used.
        """
        _check_path(path)
        # isolation_level=None: the sqlite3 module opens no transactions of its own; we do.
        pending = aiosqlite.connect(path, isolation_level=None, cached_statements=256)
        try:
            conn = await pending
        except BaseException as exc:
            await _join_worker(pending)
            if isinstance(exc, sqlite3.Error | OSError):
                raise DatabaseOpenError(path, _sqlite_problem(exc)) from exc
            raise
        try:
            await run_sync(conn, _configure)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise DatabaseOpenError(path, _sqlite_problem(exc)) from exc
            raise
        return cls(conn, path)

    async def enable_wal(self) -> None:
        """Switch the file to WAL (it stays so); call once the schema is known to be ours."""
        try:
            mode = await self.query(_enable_wal)
        except sqlite3.Error as exc:
            raise DatabaseOpenError(self.path, _sqlite_problem(exc)) from exc
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
        write = _Write(op, future, None, what)
        future.add_done_callback(partial(_log_detached_failure, write))
        self._queue.append(write)

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
            ops = [write.op for write in group]
            task = asyncio.ensure_future(run_sync(self._conn, partial(run_group, ops=ops)))
            self._groups.add(task)
            task.add_done_callback(partial(self._settle, group))

    def _settle(self, group: list[_Write], task: asyncio.Task[list[Outcome]]) -> None:
        self._groups.discard(task)
        if task.cancelled():
            # The loop is shutting down: the thread may still have committed the group.
            error = StorageError("cancelled before the write's outcome was known")
            outcomes: list[Outcome] = [(error, None)] * len(group)
        elif (exc := task.exception()) is not None:
            log.warning("a group of %d writes failed and was rolled back: %r", len(group), exc)
            outcomes = [(exc if isinstance(exc, Exception) else StorageError(repr(exc)), None)]
            outcomes *= len(group)
        else:
            outcomes = task.result()
        for write, (error, result) in zip(group, outcomes, strict=True):
            if write.future.done():
                # The caller was cancelled while its write was on the thread: the write stands.
                if error is None and write.undo is not None:
                    self._detach(write.undo(result), f"undoing {write.what}")
                continue
            if error is None:
                write.future.set_result(result)
            else:
                write.future.set_exception(error)
        self._dispatch()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the database is closed")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run several SELECTs over one consistent snapshot."""
        self._check_open()
        return await run_sync(self._conn, lambda c: read_txn(c, fn))

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a single statement (its own implicit transaction)."""
        self._check_open()
        return await run_sync(self._conn, fn)

    async def close(self) -> None:
        """Finish every queued write (and what they queue), then close the connection.

        If this wait is cancelled, writes not yet on the thread fail with StorageError and the
        connection still closes (after the write on the thread, which aiosqlite runs first).
        """
        self._closing = True
        try:
            while self._groups:
                await asyncio.wait(set(self._groups))
        finally:
            self._closed = True
            while self._queue:
                write = self._queue.popleft()
                if not write.future.done():
                    write.future.set_exception(StorageError("the database closed first"))
            await self._conn.close()
