"""Keeps what the RunComfy client learned of job durations across restarts, in the database.

Loaded once at start-up, before resumed jobs poll again, so the first job after a restart is
timed as well as a learned one. Saved a few seconds after a finished job taught the client
something (one write covers a burst of jobs), in a task of its own and never on the path of a
request Discord waits for; and once more on close. Layers: services -> client, services ->
storage; the client never sees the database, it only exports and loads plain data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from client import RunComfyClient
from storage import Storage

log = logging.getLogger(__name__)

SAVE_DELAY = 5.0  # seconds between a change and its write: a burst of jobs makes one write


class TimingKeeper:
    def __init__(
        self, storage: Storage, client: RunComfyClient, *, delay: float = SAVE_DELAY
    ) -> None:
        self._storage = storage
        self._client = client
        self._delay = delay
        self._dirty = False  # learned something not yet written
        self._closed = False
        self._listening = False
        self._task: asyncio.Task[None] | None = None
        self._sleeping = False  # the task is still waiting out the delay (safe to cancel)

    async def load(self) -> int:
        """Give the client the stored estimates; from now on, save what it learns."""
        taken = self._client.durations.load(await self._storage.estimates.load())
        if not self._listening:
            self._client.durations.on_change(self._changed)
            self._listening = True
        log.info("loaded %d learned job timings", taken)
        return taken

    def _changed(self) -> None:
        # Called inside a job's wait(): only marks and schedules, never writes here.
        self._dirty = True
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._save_later())

    async def _save_later(self) -> None:
        self._sleeping = True
        try:
            await asyncio.sleep(self._delay)
        finally:
            self._sleeping = False
        self._task = None
        await self._save()

    async def _save(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        try:
            await self._storage.estimates.save(self._client.durations.export())
        except Exception as err:  # timings are an optimisation: never fatal
            self._dirty = True
            log.warning("could not save learned job timings: %r", err)

    async def close(self) -> None:
        """Write what is pending; call before the database closes."""
        self._closed = True
        task = self._task
        if task is not None:
            if self._sleeping:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None
        await self._save()
