"""What several bot processes on one PostgreSQL database need of it besides the data.

- Advisory locks held for the process's lifetime: one per gateway shard (two processes with the
  same shards are refused) and one for the leader, the single process that syncs commands and
  runs the once-per-bot duties. The server drops them when the process's connection ends,
  however it ends.
- Signals: every job state change and every change to a guild's rules is announced
  (``NOTIFY``, storage.pg_schema); a process listens on a connection of its own and hears of a
  change another process made at its COMMIT.

On SQLite there is one process: every lock is granted and there is nothing to listen to.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import asyncpg

from storage.db import Database
from storage.pg import CONNECT_TIMEOUT
from storage.pg_schema import JOB_CHANNEL, POLICY_CHANNEL

log = logging.getLogger(__name__)

LEADER_LOCK = 0x5354_0001
SHARD_LOCK_BASE = 0x5354_1000  # + the shard id


class ClusterStore:
    def __init__(self, db: Database, url: str | None) -> None:
        self._db = db
        self._url = url  # PostgreSQL's, with its password (never logged); None: SQLite

    @property
    def shared(self) -> bool:
        """Whether other processes may use this database (PostgreSQL)."""
        return self._url is not None

    async def try_lock(self, key: int) -> bool:
        """Take the advisory lock ``key`` for this process's lifetime; False if another has it."""
        if self._url is None:
            return True
        return bool(
            await self._db.query(
                lambda c: c.execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0]
            )
        )

    async def claim_shards(self, shard_ids: list[int]) -> list[int]:
        """Lock each shard for this process; the ids another process already runs."""
        taken = []
        for shard_id in shard_ids:
            if not await self.try_lock(SHARD_LOCK_BASE + shard_id):
                taken.append(shard_id)
        return taken

    @contextlib.asynccontextmanager
    async def signals(
        self,
        on_job: Callable[[str], None],
        on_policy: Callable[[int], None],
        on_lost: Callable[[], None],
    ) -> AsyncIterator[bool]:
        """Call ``on_job(job_id)`` on every job state change and ``on_policy(guild_id)`` on every
        change to a guild's rules, while in the block; ``on_lost()`` if the connection drops
        (nothing is heard from then on). Yields False (nothing to hear) on SQLite."""
        if self._url is None:
            yield False
            return
        conn = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT)

        def job(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            on_job(payload)

        def policy(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            on_policy(int(payload))

        try:
            conn.add_termination_listener(lambda _conn: on_lost())
            await conn.add_listener(JOB_CHANNEL, job)
            await conn.add_listener(POLICY_CHANNEL, policy)
            yield True
        finally:
            try:
                await conn.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("closing the signal connection: %r", exc)
