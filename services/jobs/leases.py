"""This process's share of the unfinished jobs when several bot processes share one database.

A job is run by the process holding its lease (storage.leases). The keeper renews this
process's leases, takes over jobs whose holder let its lease expire (it died: their results
are followed again by request_id and delivered once, through REST, which any process may use),
and stops following a job another process ended (a Cancel or Reject clicked on a process that
owns the server's shard): at once when the database announces the change (LISTEN/NOTIFY), or at
the next periodic check if that signal is lost. It also drops this process's cached copy of a
guild's rules when another process changed them. No discord.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

from services.jobs.running import RunningJobs
from services.settings import JobTiming
from storage import Storage
from storage.models import Job

log = logging.getLogger("services.jobs")

STOP_GRACE = 10.0  # seconds a stop waits for the upkeep to end (a DB call may be under way)


class RulesCache(Protocol):
    """What the keeper drops when another process changes a guild's rules (PolicyService)."""

    def invalidate(self, guild_id: int) -> None: ...

    def invalidate_all(self) -> None: ...


class LeaseKeeper:
    def __init__(
        self,
        storage: Storage,
        running: RunningJobs,
        adopt: Callable[[Job], Awaitable[None]],
        rules: RulesCache,
        *,
        owner: str,
        timing: JobTiming,
    ) -> None:
        self._storage = storage
        self._running = running  # the pipeline's tasks
        self._adopt = adopt  # resume one claimed job (the engine's rules)
        self._rules = rules  # this process's cached guild rules, dropped when they change
        self.owner = owner
        self._ttl = timedelta(seconds=timing.lease_seconds)
        self._renew_every = timing.lease_seconds / 3
        self._check_every = timing.lease_check
        self._task: asyncio.Task[None] | None = None
        self._heard: set[str] = set()  # jobs the database said changed, not checked yet
        self._wake = asyncio.Event()
        self.listening = False  # hearing other processes' changes now (PostgreSQL)

    @property
    def lease(self) -> tuple[str, timedelta]:
        """What a new job is born with: this process's lease."""
        return self.owner, self._ttl

    async def claim(self) -> list[Job]:
        """At start-up: the jobs this process may resume, now leased to it."""
        return await self._storage.leases.claim(self.owner, self._ttl)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep(), name="job-leases")

    async def stop(self) -> None:
        """Stop renewing and taking over (the leases stay until they expire or are released)."""
        if self._task is not None:
            self._task.cancel()
            _, running = await asyncio.wait([self._task], timeout=STOP_GRACE)
            if running:
                log.warning("lease upkeep did not stop within %s s; leaving it", STOP_GRACE)
            self._task = None

    async def release(self) -> None:
        """A clean stop: let the other processes take this one's unfinished jobs now."""
        if self._storage.cluster.shared:
            released = await self._storage.leases.release(self.owner)
            if released:
                log.info("released %d unfinished jobs to the other processes", released)

    def heard(self, job_id: str) -> None:
        """The database announced a change to ``job_id`` (any process's, ours included)."""
        running = self._running.get(job_id)
        if running is not None and running.task is not None:
            self._heard.add(job_id)
            self._wake.set()

    async def _keep(self) -> None:
        """Upkeep while listening; when the signal connection is lost, listen again."""
        while True:
            lost = asyncio.Event()
            try:
                async with self._storage.cluster.signals(
                    self.heard, self._rules.invalidate, lost.set
                ) as listening:
                    if listening:
                        log.info("following job and rule changes from other processes (LISTEN)")
                        # Rules read before now may have changed unheard (the periodic check
                        # covers the jobs).
                        self._rules.invalidate_all()
                        self.listening = True
                    try:
                        await self._upkeep(lost)
                    finally:
                        self.listening = False
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("cannot listen for other processes' changes", exc_info=True)
            await asyncio.sleep(self._check_every)

    async def _upkeep(self, lost: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_renew = loop.time() + self._renew_every
        while not lost.is_set():
            quiet = min(self._check_every, max(0.0, next_renew - loop.time()))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the task's
            # cancellation when its timeout fires at the same moment, and stop() then waits
            # forever for a keeper that goes on.
            try:
                async with asyncio.timeout(quiet):
                    await self._wake.wait()
                woken = True
            except TimeoutError:
                woken = False
            self._wake.clear()
            heard, self._heard = self._heard, set()
            try:
                if self._storage.cluster.shared:
                    # a signal: those jobs; a quiet period: every job (signals can be lost)
                    await self._stop_ended_elsewhere(heard if woken else None)
                if loop.time() >= next_renew:
                    next_renew = loop.time() + self._renew_every
                    await self._storage.leases.renew(self.owner, self._ttl)
                    await self._take_over()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is unreachable for a moment: the leases outlive a few misses.
                log.warning("lease upkeep failed; trying again", exc_info=True)
        log.warning("the connection listening for other processes' changes was lost")

    async def _take_over(self) -> None:
        jobs = await self._storage.leases.claim(self.owner, self._ttl, takeover=True)
        for job in jobs:
            log.info("job %s: taken over (its process let the lease expire)", job.id)
            await self._adopt(job)

    async def _stop_ended_elsewhere(self, only: set[str] | None) -> None:
        """Stop following jobs another process ended, or that another process now holds."""
        ids = [r.job_id for r in self._running if r.task is not None and r.following]
        if only is not None:
            ids = [i for i in ids if i in only]
        if not ids:
            return
        for job_id, (state, holder) in (await self._storage.leases.holders(ids)).items():
            # Only this process moves a job it follows on, except to an end (Cancel elsewhere).
            if not state.is_terminal and holder in (self.owner, None):
                continue
            running = self._running.get(job_id)
            if running is not None and running.task is not None and running.following:
                why = "ended" if state.is_terminal else "taken over"
                log.info("job %s: %s by another process; stopped following it", job_id, why)
                running.elsewhere = True
                running.task.cancel()
