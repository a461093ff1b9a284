"""The moderators' side of the studio: the log, approval mode and the moderators' buttons.

No discord imports: the Discord side implements ``ModLogSink`` (cogs/modlog.py) and checks the
clicker's permissions; this service decides what happens and changes the stored state.

Decisions:
- Log: every job of a guild with a log channel is logged once it ends (delivered, failed,
  cancelled, rejected), plus each prompt the blocklist refused. Posting runs in the background,
  after delivery: a log that cannot be posted to (deleted channel, missing permission) is logged
  with the job id and never delays or breaks delivery. The entry's message id is stored on the job
  (``log_message_id``); a job that already has an entry (an approval) is not logged twice.
- Approval mode holds a finished job only when the guild also has a log channel. Approval on
  without a log channel (``/admin approval`` and ``/admin log-channel`` warn the admin when they
  leave it so) delivers directly, and the bot's log names each job delivered unapproved. A held
  job is AWAITING_APPROVAL: it survives restarts (the engine never delivers it on resume) and
  the buttons carry its id. Turning approval off leaves jobs already waiting to the moderators.
- If the approval entry cannot be posted, the job stays held (never posted unreviewed, never lost):
  ``retry_held`` places it again at start-up and whenever a guild's log or approval setting
  changes; if approval was turned off meanwhile, it is delivered.
- Approve delivers through the engine (the requester's status message while the interaction token
  lives, else a channel message mentioning them) and commits the credits. Reject moves the job to
  REJECTED, which refunds in the same transaction (a rejected result always gives the credits
  back), and edits the requester's status message to a neutral notice (no prompt, no images,
  no verdict). The verdict goes privately: an ephemeral followup on the requester's interaction
  while its token lives, else a DM when the guild's DMs setting is on. Only if neither reaches
  them is a short notice (no prompt) posted in the channel, mentioning them.
- Remove deletes the public result message and clears ``result_message_id``: a DELIVERED job
  without a result message was removed by a moderator (``is_removed``), and /show, Re-roll and
  Edit refuse it (``ensure_not_removed``).
- Refund applies to delivered jobs only (the others were refunded when they ended) and is
  idempotent: a second click refunds nothing. Credits live per UTC day: refunding a job of an
  earlier day gives back that (past) day's credits, which the member can no longer use, so the
  same amount is also granted for today (a ledger grant naming the job). A job whose day a
  reset already gave back is not refunded again, and the moderator is told so.
- A button acts only from the job's own log entry (``entry_id`` must be ``log_message_id``) and
  only on a job of the clicker's guild: a button copied onto another message does nothing.
- Held jobs whose entry was deleted (or whose log channel moved) are placed again by
  ``retry_held``: at start-up, when the log or approval setting changes, and on ``/admin
  pending``. Otherwise a held job without an entry could never be approved.
- Blocked prompts: at most one entry per member per guild per ``BLOCKED_WINDOW``; later attempts
  within it raise a counter on that entry ("+3 more attempts"), so one member cannot flood the log.
- One moderator action per job at a time (a lock), so a double click or two moderators clicking
  Approve and Reject together cannot both act.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from client.models import DownloadedImage
from services.admin import AdminService
from services.errors import JobNotFound, NotAllowed, StudioError
from services.job_types import JobSpec, Requester
from services.jobs import JobService
from services.policy import PolicyRefusal, PolicyService
from storage import Storage
from storage.models import Ban, Job, JobKind, JobState, LedgerKind

log = logging.getLogger(__name__)

REJECTED_ERROR = "Not approved by a moderator."
CLOSE_GRACE = 2.0  # seconds shutdown waits for log entries being posted
BLOCKED_WINDOW = timedelta(minutes=1)  # one blocked-prompt entry per member per guild per window
REMOVED_MESSAGE = "A moderator removed this result, so it can't be used again."
WRONG_ENTRY = "This button is not on the job's log entry, so it does nothing."


def _utcnow() -> datetime:
    return datetime.now(UTC)


def is_removed(job: Job) -> bool:
    """A delivered job whose public result a moderator removed (Remove clears the message id)."""
    return job.state == JobState.DELIVERED and job.result_message_id is None


def ensure_not_removed(job: Job, action: str = "reuse") -> None:
    """Refuse to re-use (show, re-roll, edit) a result a moderator removed."""
    if is_removed(job):
        raise NotAllowed(action, REMOVED_MESSAGE)


class LogUnavailable(Exception):
    """The log channel (or the message to act on) could not be used: deleted, no permission."""

    def __init__(self, channel_id: int | None, problem: str) -> None:
        super().__init__(f"channel {channel_id}: {problem}")
        self.channel_id = channel_id
        self.problem = problem


class ModerationError(StudioError):
    """A moderator action that could not be done; ``str()`` is the message for the moderator."""


@dataclass(frozen=True, slots=True)
class BlockedAttempt:
    """A prompt the blocklist refused: shown to moderators only, in the log."""

    user_id: int
    guild_id: int
    channel_id: int
    kind: JobKind
    prompt: str
    matched: str | None  # the blocklist entry that matched
    num_images: int
    resolution: str
    image_urls: tuple[str, ...] = ()
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What a moderator's click did: ``done`` False means nothing changed (and why)."""

    job: Job
    done: bool
    message: str
    detail: str = ""  # something the entry's note should add (e.g. "granted for today")


class ModLogSink(Protocol):
    """The Discord side of the log. Raises ``LogUnavailable`` when Discord refuses."""

    async def post_job(self, channel_id: int, job: Job) -> int:
        """Post the entry of a job that ended; returns the log message id."""

    async def post_approval(
        self,
        channel_id: int,
        job: Job,
        images: Sequence[DownloadedImage],
        missing: Sequence[str],
    ) -> int:
        """Post a held job with its images and Approve / Reject; returns the message id."""

    async def post_blocked(self, channel_id: int, attempt: BlockedAttempt) -> int:
        """Post a blocked prompt (spoilered) with the matched entry; returns the message id."""

    async def count_blocked(
        self, channel_id: int, message_id: int, attempt: BlockedAttempt, more: int
    ) -> bool:
        """Show ``more`` further attempts on a blocked-prompt entry; False if it is gone."""

    async def entry_exists(self, channel_id: int, message_id: int) -> bool:
        """Whether a log entry is still there (False: deleted, or not in that channel)."""

    async def show_held(self, job: Job) -> None:
        """Tell the requester (their status message) that a moderator will look at it."""

    async def show_rejected(self, job: Job, *, dm: bool) -> str:
        """Tell the requester privately that the result was not approved (``dm``: allowed);
        returns how they were told (for the moderator)."""

    async def remove_result(self, job: Job) -> bool:
        """Delete the job's public result message; False if it was already gone."""


class ModerationService:
    def __init__(
        self,
        storage: Storage,
        jobs: JobService,
        policy: PolicyService,
        admin: AdminService,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._clock = clock
        # (guild, member) -> the open blocked-prompt entry: (channel, message, first at, more)
        self._blocked: dict[tuple[int, int], tuple[int, int, datetime, int]] = {}
        self._storage = storage
        self._jobs = jobs
        self._policy = policy
        self._admin = admin
        self._sink: ModLogSink | None = None
        self._locks = KeyedLocks()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    def attach(self) -> None:
        """Hook into the job engine: the approval gate, job endings and refusals."""
        self._jobs.set_gate(self)
        self._jobs.add_listener(self.job_ended)
        self._jobs.add_refusal_listener(self.refused)

    def bind(self, sink: ModLogSink) -> None:
        self._sink = sink

    @property
    def sink(self) -> ModLogSink | None:
        return self._sink

    # -- background work --------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._closing or self._sink is None:
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

    async def job_ended(self, job: Job) -> None:
        """The engine's listener: log a job that ended (unless it already has its entry)."""
        if job.guild_id is None or job.log_message_id is not None:
            return
        self._spawn(self._log_job(job), name=f"modlog-{job.id}")

    async def _log_job(self, job: Job) -> None:
        assert job.guild_id is not None and self._sink is not None
        try:
            # Under the job's lock: a click on the fresh entry waits until its id is stored.
            async with self._locks.hold(job.id):
                channel_id = (await self._policy.policy(job.guild_id)).log_channel_id
                if channel_id is None:
                    return
                message_id = await self._sink.post_job(channel_id, job)
                await self._storage.jobs.set_fields(job.id, log_message_id=message_id)
        except LogUnavailable as err:
            log.warning("job %s: could not post to the moderators' log (%s)", job.id, err)
        except Exception:
            log.exception("job %s: moderators' log entry failed", job.id)

    def refused(self, spec: JobSpec, who: Requester, refusal: PolicyRefusal) -> None:
        """The engine's refusal listener: blocked prompts go to the log (nothing else does)."""
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
        self._spawn(self._log_blocked(attempt), name=f"modlog-blocked-{who.user_id}")

    async def _log_blocked(self, attempt: BlockedAttempt) -> None:
        assert self._sink is not None
        key = (attempt.guild_id, attempt.user_id)
        try:
            async with self._locks.hold(("blocked", *key)):
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
        assert self._sink is not None
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

    # -- approval mode (the engine's DeliveryGate) --------------------------------------------

    async def hold(self, job: Job) -> bool:
        if job.guild_id is None:
            return False
        policy = await self._policy.policy(job.guild_id)
        if not policy.approval_mode:
            return False
        if policy.log_channel_id is None:
            log.warning(
                "job %s: approval mode is on in guild %s but no log channel is set;"
                " delivering without approval",
                job.id,
                job.guild_id,
            )
            return False
        return self._sink is not None

    async def held(self, job: Job) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            await sink.show_held(job)
        except Exception:
            log.exception("job %s: could not tell the requester it awaits approval", job.id)
        # In the background, tracked: a shutdown waits for the entry and its stored id.
        self._spawn(self._place_quietly(job.id), name=f"modlog-held-{job.id}")

    async def _place_quietly(self, job_id: str) -> None:
        try:
            await self._place_once(job_id)
        except Exception:
            log.exception("job %s: placing a held job failed", job_id)

    async def _place_once(self, job_id: str, *, verify: bool = False) -> None:
        """Place a held job unless it already has its entry (start-up retries race the engine).

        ``verify``: an entry on record is checked too, and placed again if it is gone.
        """
        async with self._locks.hold(job_id):
            job = await self._storage.jobs.get(job_id)
            if job is None or job.state != JobState.AWAITING_APPROVAL:
                return
            if job.log_message_id is not None:
                if not verify or await self._entry_present(job):
                    return
                job = await self._storage.jobs.set_fields(job_id, log_message_id=None) or job
            await self._place_held(job)

    async def _entry_present(self, job: Job) -> bool:
        """Whether the held job's entry is still in the current log channel.

        True when that cannot be told (no log channel, Discord refused the look-up): an entry
        is only posted again when Discord says it is not there.
        """
        assert job.guild_id is not None and job.log_message_id is not None
        assert self._sink is not None
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

    async def _place_held(self, job: Job) -> None:
        """Put a held job in front of moderators, or deliver it if approval no longer applies."""
        assert job.guild_id is not None and self._sink is not None
        policy = await self._policy.policy(job.guild_id)
        if not policy.approval_mode or policy.log_channel_id is None:
            log.info("job %s: approval no longer required here; delivering", job.id)
            await self._jobs.release(job.id)
            return
        images, missing = await self._jobs.download(job.id, job.result_urls)
        try:
            message_id = await self._sink.post_approval(policy.log_channel_id, job, images, missing)
        except LogUnavailable as err:
            log.warning(
                "job %s: held for approval, but the log could not be posted to (%s); it stays"
                " held until the log works (retried on restart and when the setting changes)",
                job.id,
                err,
            )
            return
        await self._storage.jobs.set_fields(job.id, log_message_id=message_id)
        log.info("job %s: awaiting approval (log message %s)", job.id, message_id)

    async def held_jobs(self, guild_id: int | None = None) -> list[Job]:
        """Jobs waiting for approval (in one guild, or all guilds when None), oldest first."""
        return [
            job
            for job in await self._storage.jobs.unfinished()
            if job.state == JobState.AWAITING_APPROVAL
            and job.guild_id is not None
            and (guild_id is None or job.guild_id == guild_id)
        ]

    async def retry_held(self, guild_id: int | None = None) -> int:
        """Place held jobs without an entry, or whose entry is gone (all guilds when None).

        Returns how many were looked at.
        """
        if self._sink is None:
            return 0
        jobs = await self.held_jobs(guild_id)
        for job in jobs:
            try:
                await self._place_once(job.id, verify=True)
            except Exception:
                log.exception("job %s: placing a held job failed", job.id)
        return len(jobs)

    async def pending(self, guild_id: int) -> list[Job]:
        """``/admin pending``: the guild's held jobs, after posting again any missing entry."""
        await self.retry_held(guild_id)
        return await self.held_jobs(guild_id)

    def settings_changed(self, guild_id: int) -> None:
        """A guild's log or approval setting changed: held jobs without an entry are retried."""
        self._spawn(self._retry_quietly(guild_id), name=f"modlog-retry-{guild_id}")

    def start(self) -> None:
        """At start-up: place held jobs whose entry could not be posted before."""
        self._spawn(self._retry_quietly(None), name="modlog-resume")

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
        async with self._locks.hold(job_id):
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
        async with self._locks.hold(job_id):
            job = await self.job_in(guild_id, job_id, entry_id=entry_id)
            if job.state != JobState.AWAITING_APPROVAL:
                return ActionResult(job, False, _not_waiting(job))
            log.info("job %s: approved by user %s", job_id, actor_id)
            delivered = await self._jobs.release(job_id, fallback_urls=fallback_urls)
            job = delivered or await self.job_in(guild_id, job_id)
            if delivered is None:
                if job.state == JobState.AWAITING_APPROVAL:  # Discord refused: still held
                    return ActionResult(
                        job,
                        False,
                        "Approved, but Discord would not take the result, so it was not posted;"
                        " it is still waiting here. Try Approve again later.",
                    )
                why = job.error or "it could not be posted"
                return ActionResult(job, True, f"Approved, but the result was not posted: {why}")
            return ActionResult(
                job, True, f"Approved: the result is posted in <#{job.channel_id}>."
            )

    async def reject(
        self, guild_id: int, job_id: str, *, actor_id: int, entry_id: int | None = None
    ) -> ActionResult:
        async with self._locks.hold(job_id):
            job = await self.job_in(guild_id, job_id, entry_id=entry_id)
            if job.state != JobState.AWAITING_APPROVAL:
                return ActionResult(job, False, _not_waiting(job))
            rejected = await self._storage.jobs.transition(
                job_id,
                JobState.REJECTED,
                expected={JobState.AWAITING_APPROVAL},
                error=REJECTED_ERROR,
            )
            if rejected is None:
                job = await self.job_in(guild_id, job_id)
                return ActionResult(job, False, _not_waiting(job))
            self._jobs.settled(job_id)  # no longer in flight for the member
            log.info("job %s: -> rejected by user %s (credits refunded)", job_id, actor_id)
            dm = await self._policy.may_dm_members(guild_id)
            how = "not told (no way to reach them)"
            if self._sink is not None:
                try:
                    how = await self._sink.show_rejected(rejected, dm=dm)
                except Exception:
                    log.exception("job %s: could not tell the requester of the rejection", job_id)
            return ActionResult(
                rejected, True, f"Rejected: <@{job.user_id}> was {how}; credits refunded."
            )

    async def remove(
        self, guild_id: int, job_id: str, *, actor_id: int, entry_id: int | None = None
    ) -> ActionResult:
        async with self._locks.hold(job_id):
            job = await self.job_in(guild_id, job_id, entry_id=entry_id)
            if job.state != JobState.DELIVERED:
                return ActionResult(job, False, f"Job `{job.id}` has no posted result.")
            if job.result_message_id is None:
                return ActionResult(job, False, "The result was already removed.")
            assert self._sink is not None
            try:
                existed = await self._sink.remove_result(job)
            except LogUnavailable as err:
                raise ModerationError(f"The result could not be deleted: {err.problem}") from err
            job = await self._storage.jobs.set_fields(job_id, result_message_id=None) or job
            log.info("job %s: result removed by user %s", job_id, actor_id)
            if not existed:
                return ActionResult(job, True, "The result message was already deleted.")
            return ActionResult(job, True, f"Removed the result from <#{job.channel_id}>.")

    async def refund(
        self, guild_id: int, job_id: str, *, actor_id: int, entry_id: int | None = None
    ) -> ActionResult:
        async with self._locks.hold(job_id):
            job = await self.job_in(guild_id, job_id, entry_id=entry_id)
            if job.state != JobState.DELIVERED:
                return ActionResult(
                    job, False, f"Nothing to refund: job `{job.id}` is {job.state.value}."
                )
            amount = job.committed or 0
            if not await self._storage.quota.refund(job_id):
                return ActionResult(job, False, await self._why_not_refunded(job))
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
                return ActionResult(
                    job,
                    True,
                    f"Refunded {amount} credits to <@{job.user_id}>: the job was on"
                    f" {day.isoformat()} (UTC), so they were granted for today instead.",
                    detail=f"job of {day.isoformat()}: granted for today",
                )
            return ActionResult(job, True, f"Refunded {amount} credits to <@{job.user_id}>.")

    async def _why_not_refunded(self, job: Job) -> str:
        entries = await self._storage.quota.job_entries(job.id)
        if any(e.kind == LedgerKind.REFUND for e in entries):
            return f"Job `{job.id}` was already refunded."
        return (
            f"Nothing to refund: job `{job.id}`'s credits were already given back by a reset"
            " of that day."
        )

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


def _not_waiting(job: Job) -> str:
    return f"Job `{job.id}` is no longer waiting for approval (it is {job.state.value})."


class KeyedLocks:
    """One asyncio lock per key (a job id, a message id), dropped when nobody uses it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


__all__ = [
    "ActionResult",
    "BlockedAttempt",
    "KeyedLocks",
    "LogUnavailable",
    "ModLogSink",
    "ModerationError",
    "ModerationService",
    "ensure_not_removed",
    "is_removed",
]
