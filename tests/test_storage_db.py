"""The database: grouped writes (atomic and ordered when many share a transaction),
cancelled callers, closing, and opening paths that cannot be a database."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from storage import DatabaseOpenError, InvalidSettingError, JobState, Storage, StorageError
from storage.db import THREAD_NAME, run_group
from storage.jobs import ABANDONED_ERROR
from tests.storage_fixtures import GUILD, new_job, open_storage


async def test_a_failing_write_in_a_group_is_undone_alone(db_target):
    async with open_storage(db_target, default_daily_credits=100) as storage:
        parent = await storage.jobs.create_reserved(new_job())
        results = await asyncio.gather(
            # Alone on the database thread while the next four queue up into one group, so a
            # write before the failing one shares its transaction.
            storage.quota.grant(3, GUILD, 1, actor_id=9),
            storage.jobs.create_reserved(new_job(user_id=2, cost=2)),
            # Fails inside the transaction, after the quota check has run.
            storage.jobs.create_reserved(new_job(user_id=2, cost=5, parent_job_id="nosuchjob")),
            storage.jobs.create_reserved(new_job(user_id=2, cost=3, parent_job_id=parent.id)),
            storage.jobs.transition(parent.id, JobState.DELIVERED),
            return_exceptions=True,
        )
        _, first, failed, third, delivered = results
        assert isinstance(failed, InvalidSettingError) and failed.field == "parent_job_id"
        assert third.parent_job_id == parent.id
        assert delivered.state is JobState.DELIVERED
        assert {j.id for j in await storage.jobs.recent_for_user(2)} == {first.id, third.id}
        assert (await storage.quota.balance(2, GUILD)).used == 5
        # Each surviving write committed once: one entry apiece, not one per run of the group.
        assert len(await storage.quota.ledger(2, GUILD)) == 2
        assert len(await storage.quota.job_entries(parent.id)) == 2  # reserve, commit
        assert await storage.quota.audit() == []


async def test_writes_apply_in_the_order_they_were_made(db_target):
    async with open_storage(db_target) as storage:
        job = await storage.jobs.create_reserved(new_job())
        steps = [JobState.SUBMITTING, JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING]
        results = await asyncio.gather(
            *(
                storage.jobs.transition(job.id, s, expected=[p])
                for p, s in zip([JobState.RESERVED, *steps], steps, strict=False)
            )
        )
        assert [r.state for r in results] == steps
        assert [e.state for e in await storage.jobs.events(job.id)] == [JobState.RESERVED, *steps]


async def test_no_writes_after_close(db_target):
    async with open_storage(db_target) as storage:
        pending = asyncio.ensure_future(storage.jobs.create_reserved(new_job()))
        await asyncio.sleep(0)
    # Closing waited for the queued write to finish.
    assert pending.done() and pending.result().state is JobState.RESERVED
    with pytest.raises(StorageError):
        await storage.jobs.create_reserved(new_job())


async def test_writes_queued_beyond_one_group_all_finish_before_close(db_target):
    async with open_storage(db_target, default_daily_credits=10_000) as storage:
        pending = [
            asyncio.ensure_future(storage.jobs.create_reserved(new_job())) for _ in range(600)
        ]
        await asyncio.sleep(0)  # every one is queued; at most one group is on the thread
    assert all(p.done() and p.exception() is None for p in pending)
    async with open_storage(db_target) as storage:
        assert len(await storage.jobs.unfinished()) == 600


async def test_reads_after_close_are_a_storage_error(db_target):
    async with open_storage(db_target) as storage:
        pass
    with pytest.raises(StorageError, match="closed"):
        await storage.jobs.get("anything")
    with pytest.raises(StorageError, match="closed"):
        await storage.quota.balance(1, GUILD)


# --- cancelled callers -----------------------------------------------------------------------


async def test_a_write_cancelled_before_it_reaches_the_database_never_happens(db_target):
    async with open_storage(db_target) as storage:
        first = asyncio.ensure_future(storage.jobs.create_reserved(new_job(user_id=1)))
        queued = asyncio.ensure_future(storage.jobs.create_reserved(new_job(user_id=2)))
        # Both run up to their write: the first is on the database thread, the second waits.
        await asyncio.sleep(0)
        queued.cancel()
        assert (await first).state is JobState.RESERVED
        with pytest.raises(asyncio.CancelledError):
            await queued
        after = await storage.jobs.create_reserved(new_job(user_id=3))
        assert after.state is JobState.RESERVED
    async with open_storage(db_target) as storage:
        assert await storage.jobs.recent_for_user(2) == []
        assert (await storage.quota.balance(2, GUILD)).used == 0
        assert await storage.quota.ledger(2, GUILD) == []


async def test_a_reservation_cancelled_mid_write_is_released_not_left_holding_credits(db_target):
    async with open_storage(db_target, default_daily_credits=3) as storage:
        task = asyncio.ensure_future(
            storage.jobs.create_reserved(new_job(cost=3, interaction_token="t"), max_in_flight=1)
        )
        await asyncio.sleep(0)  # its write is handed to the database thread: it will commit
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # Closing waited for the write and for the release it caused.
    async with open_storage(db_target, default_daily_credits=3) as storage:
        [job] = await storage.jobs.recent_for_user(1)
        assert (job.state, job.error) == (JobState.FAILED, ABANDONED_ERROR)
        assert await storage.jobs.unfinished() == []  # a restart will not submit it
        assert (await storage.quota.balance(1, GUILD)).remaining == 3
        assert await storage.quota.audit() == []
        # The member can ask again at once: neither the credits nor the in-flight slot are held.
        again = await storage.jobs.create_reserved(new_job(cost=3), max_in_flight=1)
        assert again.state is JobState.RESERVED


# --- a whole transaction abandoned by SQLite ------------------------------------------------


def test_a_write_that_makes_sqlite_abandon_the_transaction_undoes_no_other_write(tmp_path):
    conn = sqlite3.connect(tmp_path / "group.sqlite3", isolation_level=None)
    try:
        conn.execute("CREATE TABLE t (v TEXT)")
        # RAISE(ROLLBACK) makes SQLite roll back the whole transaction, savepoints included, as
        # some errors (an interrupt, some I/O errors) do.
        conn.execute(
            "CREATE TRIGGER veto BEFORE INSERT ON t WHEN NEW.v = 'veto'"
            " BEGIN SELECT RAISE(ROLLBACK, 'vetoed'); END"
        )

        def insert(value):
            return lambda c: c.execute("INSERT INTO t VALUES (?)", (value,)).rowcount

        def plain_failure(c):
            c.execute("INSERT INTO t VALUES ('undone')")
            raise ValueError("refused")

        outcomes = run_group(
            conn, [insert("a"), insert("veto"), insert("b"), plain_failure, insert("c")]
        )
        errors = [type(error) if error else None for error, _ in outcomes]
        assert errors == [None, sqlite3.IntegrityError, None, ValueError, None]
        assert [v for (v,) in conn.execute("SELECT v FROM t ORDER BY rowid")] == ["a", "b", "c"]
        assert not conn.in_transaction
    finally:
        conn.close()


# --- opening a path that cannot be a database ------------------------------------------------


def _database_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)}


async def test_closing_ends_the_database_thread(db_target):
    before = _database_threads()
    async with open_storage(db_target) as storage:
        await storage.jobs.create_reserved(new_job())
        assert len(_database_threads() - before) == 1
    assert _database_threads() == before


async def _open(path: Path) -> None:
    async with Storage.open(path):
        pass


def _open_error(path: Path) -> DatabaseOpenError:
    with pytest.raises(DatabaseOpenError) as caught:
        asyncio.run(_open(path))
    error = caught.value
    assert isinstance(error, StorageError) and isinstance(error, OSError)  # bot.py catches OSError
    assert error.path == path
    assert str(error).startswith(f"cannot open the database {path}: ")
    assert "\n" not in str(error)
    return error


def test_a_path_sqlite_cannot_open_fails_cleanly_and_leaves_no_thread_behind(tmp_path, monkeypatch):
    # A unix socket passes every check on the path, then SQLite itself fails to open it. That
    # is the failure after which the database thread could outlive the event loop (with aiosqlite
    # it died with "RuntimeError: Event loop is closed").
    unopenable = tmp_path / "s"
    thread_errors: list[object] = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    before = _database_threads()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(unopenable))
        for _ in range(5):
            error = _open_error(unopenable)
            assert "unable to open database file" in error.problem
            assert _database_threads() == before  # stopped before the error was raised
    assert thread_errors == []


def test_a_directory_is_refused_naming_the_path(tmp_path):
    error = _open_error(tmp_path)
    assert "directory" in error.problem


def test_a_folder_that_cannot_be_created_is_refused_naming_the_path(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the folder should be")
    assert "is a file" in _open_error(blocker / "bot.sqlite3").problem
    assert "cannot create its folder" in _open_error(blocker / "deeper" / "bot.sqlite3").problem


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "notes.txt"
    text = "these are notes, not a database\n" * 20
    path.write_text(text)
    assert "not an SQLite database" in _open_error(path).problem
    assert path.read_text() == text


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert "cannot create files" in _open_error(folder / "bot.sqlite3").problem
    finally:
        folder.chmod(0o755)
