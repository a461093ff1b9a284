"""The moderators' log: an entry for every job that ends, for each blocked prompt, and the
approval entry of every held job. The job engine tells it (``JobEvents``).

Posting runs in the background, after delivery: a log that cannot be posted to (deleted
channel, missing permission) is logged with the job id and never delays or breaks delivery.
The entry's message id is stored on the job; a job that already has an entry (an approval) is
not logged twice. Blocked prompts: at most one entry per member per guild per
``BLOCKED_WINDOW``; later attempts within it raise a counter on that entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from client import RunComfyClient
from services.jobs import JobSpec, Requester
from services.jobs.outage import Outage
from services.jobs.runcomfy import download
from services.locks import KeyedLocks
from services.moderation.types import (
    BLOCKED_WINDOW,
    CLOSE_GRACE,
    BlockedAttempt,
    LogUnavailable,
    ModLogSink,
    utcnow,
)
from services.policy import PolicyRefusal, PolicyService
from storage import Storage
from storage.models import Job, JobState

log = logging.getLogger("services.moderation")


class ModLog:
    def __init__(
        self,
        storage: Storage,
        policy: PolicyService,
        client: RunComfyClient,
        sink: ModLogSink,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._storage = storage
        self._policy = policy
        self._client = client
        self._sink = sink
        self._clock = clock
        # (guild, member) -> the open blocked-prompt entry: (channel, message, first at, more)
        self._blocked: dict[tuple[int, int], tuple[int, int, datetime, int]] = {}
        self.locks = KeyedLocks()  # one entry, or one moderator action, per job at a time
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- background work --------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._closing:
            work.close()
            return
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Wait for log entries being posted (tests; shutdown)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self) -> None:
        """Stop: let entries on the wire finish for a moment, then drop the rest."""
        self._closing = True
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=CLOSE_GRACE)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("moderators' log: %d entries not posted (shutting down)", len(pending))

    # -- the log ----------------------------------------------------------------------------

    async def ended(self, job: Job) -> None:
        """A job ended: log it (unless it already has its entry, e.g. its approval)."""
        if job.guild_id is None or job.log_message_id is not None:
            return
        self.spawn(self._log_job(job), name=f"modlog-{job.id}")

    async def _log_job(self, job: Job) -> None:
        assert job.guild_id is not None
        try:
            # Under the job's lock: a click on the fresh entry waits until its id is stored.
            async with self.locks.hold(job.id):
                channel_id = (await self._policy.policy(job.guild_id)).log_channel_id
                if channel_id is None:
                    return
                message_id = await self._sink.post_job(channel_id, job)
                await self._storage.jobs.set_fields(job.id, log_message_id=message_id)
        except LogUnavailable as err:
            log.warning("job %s: could not post to the moderators' log (%s)", job.id, err)
        except Exception:
            log.exception("job %s: moderators' log entry failed", job.id)

    def outage(self, guild_id: int, outage: Outage) -> None:
        """RunComfy is failing: tell this server's moderators (once per incident; the engine
        decides when)."""
        self.spawn(self._log_outage(guild_id, outage), name=f"modlog-outage-{guild_id}")

    async def _log_outage(self, guild_id: int, outage: Outage) -> None:
        try:
            channel_id = (await self._policy.policy(guild_id)).log_channel_id
            if channel_id is not None:
                await self._sink.post_outage(channel_id, guild_id, outage)
        except LogUnavailable as err:
            log.warning("guild %s: could not post the outage notice (%s)", guild_id, err)
        except Exception:
            log.exception("guild %s: the outage notice failed", guild_id)

    def refused(self, spec: JobSpec, who: Requester, refusal: PolicyRefusal) -> None:
        """A refused request: blocked prompts go to the log (nothing else does)."""
        if refusal.rule != "blocklist" or who.guild_id is None:
            return
        attempt = BlockedAttempt(
            user_id=who.user_id,
            guild_id=who.guild_id,
            channel_id=who.channel_id,
            kind=spec.kind,
            prompt=spec.prompt,
            matched=refusal.matched,
            num_images=spec.num_images,
            resolution=spec.resolution,
            image_urls=tuple(spec.image_urls),
            at=self._clock(),
        )
        self.spawn(self._log_blocked(attempt), name=f"modlog-blocked-{who.user_id}")

    async def _log_blocked(self, attempt: BlockedAttempt) -> None:
        key = (attempt.guild_id, attempt.user_id)
        try:
            async with self.locks.hold(("blocked", *key)):
                channel_id = (await self._policy.policy(attempt.guild_id)).log_channel_id
                if channel_id is None:
                    return
                if await self._count_blocked(key, channel_id, attempt):
                    return
                message_id = await self._sink.post_blocked(channel_id, attempt)
                self._blocked[key] = (channel_id, message_id, attempt.at, 0)
                self._forget_old_blocked(attempt.at)
            log.info("user %s: blocked prompt logged", attempt.user_id)
        except LogUnavailable as err:
            log.warning(
                "user %s: could not log a blocked prompt in guild %s (%s)",
                attempt.user_id,
                attempt.guild_id,
                err,
            )
        except Exception:
            log.exception("user %s: logging a blocked prompt failed", attempt.user_id)

    async def _count_blocked(
        self, key: tuple[int, int], channel_id: int, attempt: BlockedAttempt
    ) -> bool:
        """Within the window of the member's last entry: count the attempt on it instead."""
        open_entry = self._blocked.get(key)
        if open_entry is None:
            return False
        entry_channel, message_id, since, more = open_entry
        if entry_channel != channel_id or attempt.at - since >= BLOCKED_WINDOW:
            return False
        if not await self._sink.count_blocked(channel_id, message_id, attempt, more + 1):
            return False  # the entry was deleted: post a new one
        self._blocked[key] = (entry_channel, message_id, since, more + 1)
        log.info("user %s: blocked prompt counted on log entry %s", attempt.user_id, message_id)
        return True

    def _forget_old_blocked(self, now: datetime) -> None:
        """Drop entries whose window has passed (bounded memory)."""
        for key, (_, _, since, _) in list(self._blocked.items()):
            if now - since >= BLOCKED_WINDOW:
                del self._blocked[key]

    # -- approval entries --------------------------------------------------------------------

    async def held(self, job: Job) -> None:
        """A job waits for approval: post its entry (in the background, tracked, so a shutdown
        waits for the entry and its stored id)."""
        self.spawn(self._place_quietly(job.id), name=f"modlog-held-{job.id}")

    async def _place_quietly(self, job_id: str) -> None:
        try:
            await self.place(job_id)
        except Exception:
            log.exception("job %s: placing a held job failed", job_id)

    async def place(self, job_id: str, *, verify: bool = False) -> bool:
        """Place a held job unless it already has its entry (start-up retries race the engine).

        ``verify``: an entry on record is checked too, and placed again if it is gone. False
        when approval no longer applies in its guild (the caller delivers it instead).
        """
        async with self.locks.hold(job_id):
            job = await self._storage.jobs.get(job_id)
            if job is None or job.state != JobState.AWAITING_APPROVAL:
                return True
            if job.log_message_id is not None:
                if not verify or await self._entry_present(job):
                    return True
                job = await self._storage.jobs.set_fields(job_id, log_message_id=None) or job
            return await self._place_held(job)

    async def _entry_present(self, job: Job) -> bool:
        """Whether the held job's entry is still in the current log channel.

        True when that cannot be told (no log channel, Discord refused the look-up): an entry
        is only posted again when Discord says it is not there.
        """
        assert job.guild_id is not None and job.log_message_id is not None
        channel_id = (await self._policy.policy(job.guild_id)).log_channel_id
        if channel_id is None:
            return True  # approval cannot happen anywhere else; left to the moderators
        try:
            present = await self._sink.entry_exists(channel_id, job.log_message_id)
        except LogUnavailable as err:
            log.warning("job %s: could not check its log entry (%s)", job.id, err)
            return True
        if not present:
            log.info(
                "job %s: its approval entry %s is gone from the log; posting it again",
                job.id,
                job.log_message_id,
            )
        return present

    async def _place_held(self, job: Job) -> bool:
        """Put a held job in front of moderators; False if approval no longer applies."""
        assert job.guild_id is not None
        policy = await self._policy.policy(job.guild_id)
        if not policy.approval_mode or policy.log_channel_id is None:
            return False
        images, missing = await download(self._client, job.id, job.result_urls)
        try:
            message_id = await self._sink.post_approval(policy.log_channel_id, job, images, missing)
        except LogUnavailable as err:
            log.warning(
                "job %s: held for approval, but the log could not be posted to (%s); it stays"
                " held until the log works (retried on restart and when the setting changes)",
                job.id,
                err,
            )
            return True
        await self._storage.jobs.set_fields(job.id, log_message_id=message_id)
        log.info("job %s: awaiting approval (log message %s)", job.id, message_id)
        return True

    async def held_jobs(self, guild_id: int | None = None) -> list[Job]:
        """Jobs waiting for approval (in one guild, or all guilds when None), oldest first."""
        return [
            job
            for job in await self._storage.jobs.unfinished()
            if job.state == JobState.AWAITING_APPROVAL
            and job.guild_id is not None
            and (guild_id is None or job.guild_id == guild_id)
        ]
