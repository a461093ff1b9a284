"""The moderators' buttons and ``/admin pending``: approve, reject, remove, refund, ban.

Permissions are checked by the caller (cogs); this decides what happens and changes the stored
state. One moderator action per job at a time (the log's lock), so a double click or two
moderators clicking Approve and Reject together cannot both act. An action returns an
``ActionResult``; the cogs word it. Held jobs whose entry is missing are placed again by
``retry_held`` (at start-up, on a log or approval setting change, on ``/admin pending``); if
approval was turned off meanwhile, they are delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from services.admin import AdminService
from services.errors import JobNotFound, NotAllowed
from services.jobs import JobService
from services.moderation.log import ModLog
from services.moderation.types import (
    REJECTED_ERROR,
    WRONG_ENTRY,
    ActionResult,
    LogUnavailable,
    ModerationError,
    ModLogSink,
    Notice,
    Outcome,
    utcnow,
)
from services.policy import PolicyService
from storage import Storage
from storage.models import Ban, Job, JobState, LedgerKind

log = logging.getLogger("services.moderation")


class ModerationService:
    def __init__(
        self,
        storage: Storage,
        jobs: JobService,
        policy: PolicyService,
        admin: AdminService,
        modlog: ModLog,
        sink: ModLogSink,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._storage = storage
        self._jobs = jobs
        self._policy = policy
        self._admin = admin
        self._log = modlog
        self._sink = sink
        self._clock = clock

    @property
    def log(self) -> ModLog:
        return self._log

    async def wait_idle(self) -> None:
        """Wait for log entries being posted (tests)."""
        await self._log.wait_idle()

    async def close(self) -> None:
        await self._log.close()

    # -- held jobs ------------------------------------------------------------------------------

    async def retry_held(self, guild_id: int | None = None) -> int:
        """Place held jobs without an entry, or whose entry is gone (all guilds when None).

        Returns how many were looked at.
        """
        jobs = await self._log.held_jobs(guild_id)
        for job in jobs:
            try:
                if not await self._log.place(job.id, verify=True):
                    log.info("job %s: approval no longer required here; delivering", job.id)
                    await self._jobs.release(job.id)
            except Exception:
                log.exception("job %s: placing a held job failed", job.id)
        return len(jobs)

    async def pending(self, guild_id: int) -> list[Job]:
        """``/admin pending``: the guild's held jobs, after posting again any missing entry."""
        await self.retry_held(guild_id)
        return await self._log.held_jobs(guild_id)

    def settings_changed(self, guild_id: int) -> None:
        """A guild's log or approval setting changed: held jobs without an entry are retried."""
        self._log.spawn(self._retry_quietly(guild_id), name=f"modlog-retry-{guild_id}")

    def start(self) -> None:
        """At start-up: place held jobs whose entry could not be posted before."""
        self._log.spawn(self._retry_quietly(None), name="modlog-resume")

    async def _retry_quietly(self, guild_id: int | None) -> None:
        try:
            count = await self.retry_held(guild_id)
        except Exception:
            log.exception("retrying held jobs failed (guild %s)", guild_id)
            return
        if count:
            log.info("held jobs checked: %d", count)

    # -- the moderators' buttons (permissions are checked by the caller) ----------------------

    async def job_in(self, guild_id: int, job_id: str, *, entry_id: int | None = None) -> Job:
        """The job, if it belongs to this guild (a log in one guild never acts on another's).

        ``entry_id``: the message the button was clicked on, which must be the job's entry (a
        button copied onto another message does nothing).
        """
        job = await self._storage.jobs.get(job_id)
        if job is None or job.guild_id != guild_id:
            raise JobNotFound(job_id)
        if entry_id is not None and job.log_message_id != entry_id:
            log.info("job %s: button on message %s, not its log entry", job_id, entry_id)
            raise NotAllowed("moderate", WRONG_ENTRY)
        return job

    async def entry_job(self, guild_id: int, job_id: str, *, entry_id: int) -> Job:
        """``job_in`` after any entry being posted for the job has its id stored."""
        async with self._log.locks.hold(job_id):
            return await self.job_in(guild_id, job_id, entry_id=entry_id)

    async def approve(
        self,
        guild_id: int,
        job_id: str,
        *,
        actor_id: int,
        fallback_urls: Sequence[str] = (),
        entry_id: int | None = None,
    ) -> ActionResult:
        async with self._log.locks.hold(job_id):
            job = await self.job_in(guild_id, job_id, entry_id=entry_id)
            if job.state != JobState.AWAITING_APPROVAL:
                return ActionResult(job, Outcome.NOT_WAITING)
            log.info("job %s: approved by user %s", job_id, actor_id)
            delivered = await self._jobs.release(job_id, fallback_urls=fallback_urls)
            job = delivered or await self.job_in(guild_id, job_id)
            if delivered is None:
                if job.state == JobState.AWAITING_APPROVAL:  # Discord refused: still held
                    return ActionResult(job, Outcome.STILL_HELD)
                return ActionResult(job, Outcome.APPROVED_UNPOSTED)
            return ActionResult(job, Outcome.APPROVED)

    async def reject(
        self, guild_id: int, job_id: str, *, actor_id: int, entry_id: int | None = None
    ) -> ActionResult:
        async with self._log.locks.hold(job_id):
            job = await self.job_in(guild_id, job_id, entry_id=entry_id)
            if job.state != JobState.AWAITING_APPROVAL:
                return ActionResult(job, Outcome.NOT_WAITING)
            rejected = await self._storage.jobs.transition(
                job_id,
                JobState.REJECTED,
                expected={JobState.AWAITING_APPROVAL},
                error=REJECTED_ERROR,
            )
            if rejected is None:
                job = await self.job_in(guild_id, job_id)
                return ActionResult(job, Outcome.NOT_WAITING)
            log.info("job %s: -> rejected by user %s (credits refunded)", job_id, actor_id)
            dm = await self._policy.may_dm_members(guild_id)
            notice = Notice.NONE
            try:
                notice = await self._sink.show_rejected(rejected, dm=dm)
            except Exception:
                log.exception("job %s: could not tell the requester of the rejection", job_id)
            return ActionResult(rejected, Outcome.REJECTED, notice=notice)

    async def remove(
        self, guild_id: int, job_id: str, *, actor_id: int, entry_id: int | None = None
    ) -> ActionResult:
        async with self._log.locks.hold(job_id):
            job = await self.job_in(guild_id, job_id, entry_id=entry_id)
            if job.state != JobState.DELIVERED:
                return ActionResult(job, Outcome.NO_RESULT)
            if job.result_message_id is None:
                return ActionResult(job, Outcome.ALREADY_REMOVED)
            try:
                existed = await self._sink.remove_result(job)
            except LogUnavailable as err:
                raise ModerationError(
                    "The result could not be deleted: {problem}", problem=err.problem
                ) from err
            job = await self._storage.jobs.set_fields(job_id, result_message_id=None) or job
            log.info("job %s: result removed by user %s", job_id, actor_id)
            return ActionResult(job, Outcome.REMOVED if existed else Outcome.GONE)

    async def refund(
        self, guild_id: int, job_id: str, *, actor_id: int, entry_id: int | None = None
    ) -> ActionResult:
        async with self._log.locks.hold(job_id):
            job = await self.job_in(guild_id, job_id, entry_id=entry_id)
            if job.state != JobState.DELIVERED:
                return ActionResult(job, Outcome.NOT_DELIVERED)
            amount = job.committed or 0
            if not await self._storage.quota.refund(job_id):
                return ActionResult(job, await self._why_not_refunded(job))
            log.info("job %s: %d credits refunded by user %s", job_id, amount, actor_id)
            day = job.created_at.astimezone(UTC).date()
            if day < self._clock().astimezone(UTC).date() and amount > 0:
                # That day's credits are past use: give the same amount for today instead.
                await self._admin.grant(
                    guild_id,
                    job.user_id,
                    amount,
                    actor_id=actor_id,
                    reason=f"refund of job {job.id} from {day.isoformat()}",
                )
                return ActionResult(job, Outcome.REFUNDED_TODAY, amount=amount, day=day)
            return ActionResult(job, Outcome.REFUNDED, amount=amount)

    async def _why_not_refunded(self, job: Job) -> Outcome:
        entries = await self._storage.quota.job_entries(job.id)
        if any(e.kind == LedgerKind.REFUND for e in entries):
            return Outcome.ALREADY_REFUNDED
        return Outcome.RESET

    async def ban(
        self,
        guild_id: int,
        user_id: int,
        *,
        actor_id: int,
        reason: str | None,
        duration: str | timedelta | None,
    ) -> Ban:
        """Ban a member from the studio (the admin service validates reason and duration)."""
        ban = await self._admin.ban(
            guild_id, user_id, actor_id=actor_id, reason=reason, duration=duration
        )
        log.info("user %s: banned in guild %s by user %s", user_id, guild_id, actor_id)
        return ban
