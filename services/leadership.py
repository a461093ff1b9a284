"""The once-per-bot duties, run by exactly one of the processes sharing a database.

The leader holds an advisory lock (storage.cluster) for its lifetime; the others try again now
and then, so when the leader stops or dies one of them takes the duties over. On SQLite the one
process always leads. No discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from storage.cluster import LEADER_LOCK, ClusterStore

log = logging.getLogger(__name__)

RETRY_SECONDS = 15.0


class Leadership:
    def __init__(
        self,
        cluster: ClusterStore,
        duties: Callable[[], Awaitable[None]],
        *,
        retry: float = RETRY_SECONDS,
    ) -> None:
        self._cluster = cluster
        self._duties = duties  # what the leader does once it leads
        self._retry = retry
        self._task: asyncio.Task[None] | None = None
        self.leading = False

    async def begin(self) -> bool:
        """Lead now if no other process does (running the duties); else keep trying."""
        if await self._cluster.try_lock(LEADER_LOCK):
            await self._lead()
        elif self._task is None:
            log.info("another process leads (syncs commands, re-posts held log entries)")
            self._task = asyncio.create_task(self._wait_for_turn(), name="leadership")
        return self.leading

    async def _lead(self) -> None:
        self.leading = True
        if self._cluster.shared:
            log.info("this process leads: it syncs commands and runs the once-per-bot duties")
        await self._duties()

    async def _wait_for_turn(self) -> None:
        while True:
            await asyncio.sleep(self._retry)
            try:
                if await self._cluster.try_lock(LEADER_LOCK):
                    await self._lead()
                    return
            except Exception:
                log.warning("could not ask for the leadership; trying again", exc_info=True)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
