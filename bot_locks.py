"""One bot process per database (SQLite) or per gateway shard (PostgreSQL).

Two processes running the same jobs or the same shards would answer members twice: the second
one is refused at start with one line. SQLite: a lock file beside the database. PostgreSQL:
an advisory lock per shard (storage.cluster), held by the process's connection; either is
released by the operating system or the server when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from bot_startup import StartupError
from services.settings import BotSettings
from storage import Storage


@contextlib.contextmanager
def instance_lock(database_path: Path) -> Iterator[None]:
    """Hold ``<database>.lock`` exclusively: one running bot per database.

    Two bots on one database would resume (and fail) each other's jobs. The lock is released
    by the kernel when the process ends, however it ends.
    """
    path = database_path.with_name(database_path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115  # held open for the whole run
    except OSError as err:
        raise StartupError(f"DATABASE_PATH: cannot open {path}: {err}") from err
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(
                f"DATABASE_PATH: another bot is already running on {database_path}"
                f" (it holds {path}); stop it first"
            ) from None
        yield
    finally:
        handle.close()  # releases the lock


async def claim_shards(storage: Storage, settings: BotSettings) -> None:
    """Take this process's shards on a shared database; StartupError if another has one."""
    if taken := await storage.cluster.claim_shards(settings.shards):
        raise StartupError(
            f"SHARD_IDS: another bot process already runs shard {', '.join(map(str, taken))}"
            " on this database; stop it first or give this one other SHARD_IDS"
        )
