"""The job engine's public side: reserve, accept, cancel, release, resume, close. No discord.

The request path (``reserve``) runs before Discord is answered, so it is kept small: cheap
validation, the guild's rules from the policy cache, then ONE database step
(``jobs.create_reserved``: quota, in-flight limit, row and ledger entry in one transaction).
Each job then runs as one coroutine (``services/jobs/pipeline.py``). The database is the only
record of what is in flight, held or cooling down; memory holds tasks and handles.

Each side effect is preceded by the row that lets a restart tell what happened:

    RESERVED -> SUBMITTING (before the POST) -> SUBMITTED (request_id) -> QUEUED/RUNNING
             -> COMPLETED (result_urls) -> [AWAITING_APPROVAL] -> DELIVERED (credits committed)
    anywhere before COMPLETED: CANCELLED or FAILED (credits refunded, the member told why)

Resume rules (``resume``), applied to every unfinished job at start-up:
- RESERVED, acknowledged (Discord took the answer): nothing was sent, so it is submitted now.
- RESERVED, never acknowledged: Discord may never have shown it: FAILED and refunded, and its
  status message (if Discord has one) says so; nothing else is posted.
- SUBMITTING: the POST may or may not have reached RunComfy and no request_id was stored:
  FAILED, credits refunded, the member told to retry (a clean shutdown never leaves one).
- SUBMITTED / QUEUED / RUNNING: followed again from the stored request_id, delivered once.
- COMPLETED: downloaded again from the stored result URLs and delivered.
- AWAITING_APPROVAL: left to the moderators (their log places it again if needed).
A result is never dropped: when Discord refuses every way of posting it, the job stays
COMPLETED (credits held) and is tried again. Delivery is a compare-and-set: never twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from client import RunComfyClient
from client.models import CancelOutcome, DownloadedImage
from services.errors import (
    FORM_ALREADY_SENT,
    JobNotFound,
    NotAllowed,
    RepeatedRequest,
    StudioClosing,
)
from services.image_inputs import InputImages, NamedUrl
from services.jobs.breaker import CircuitBreaker
from services.jobs.leases import LeaseKeeper
from services.jobs.outage import ApiWatch, OutageNotices
from services.jobs.pipeline import BEFORE_SUBMIT, DELIVERABLE, FOLLOWING, JobPipeline
from services.jobs.repeats import RepeatGuard
from services.jobs.request import decided, request_context, validated
from services.jobs.runcomfy import download
from services.jobs.types import (
    CancelResult,
    JobEvents,
    JobPresenter,
    JobSpec,
    NoEvents,
    Requester,
    Reservation,
    may_act_on,
)
from services.metrics import Metrics
from services.policy import CoolingDown, PolicyRefusal, PolicyService
from services.prompt_text import clean_text
from services.settings import JobTiming
from services.wording import N_
from storage import QuotaSettings, Storage
from storage.models import (
    Balance,
    CoolingDownError,
    FormAlreadySentError,
    Job,
    JobState,
    NewJob,
)

log = logging.getLogger("services.jobs")

RESTART_LOST_SUBMIT = N_(
    "The bot restarted while sending this job, so it can't tell whether RunComfy received it."
    " It was dropped and your credits are back; please try again."
)
NOT_ACKNOWLEDGED = N_("Discord didn't accept the bot's reply in time; nothing was sent.")
NEVER_ACKNOWLEDGED = N_(
    "The bot stopped before Discord received its answer, so the job was never started;"
    " the credits are back."
)


class JobService:
    def __init__(
        self,
        storage: Storage,
        client: RunComfyClient,
        policy: PolicyService,
        presenter: JobPresenter,
        *,
        quota: QuotaSettings,
        timing: JobTiming | None = None,
        events: JobEvents | None = None,
        inputs: InputImages | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        breaker: CircuitBreaker | None = None,
        metrics: Metrics | None = None,
        outages: OutageNotices | None = None,  # the moderators' log
        lease_owner: str = "this process",  # unique among the processes on one database
    ) -> None:
        self._storage = storage
        self._client = client
        self._policy = policy
        self._quota = quota
        self._timing = timing or JobTiming()
        self._events = events or NoEvents()
        self._inputs = inputs or InputImages(client)
        self._rng = rng or random.Random()  # seeds: varied, not secret
        self.watch = ApiWatch(breaker or CircuitBreaker(), metrics or Metrics(), outages, clock)
        self._pipeline = JobPipeline(
            storage,
            client,
            presenter,
            policy,
            self._events,
            self.watch,
            timing=self._timing,
            clock=clock,
        )
        self._repeats = RepeatGuard(self._timing.repeat_window)
        self._leases = LeaseKeeper(
            storage,
            self._pipeline.running,
            self._adopt,
            policy,
            owner=lease_owner,
            timing=self._timing,
        )

    @property
    def closing(self) -> bool:
        return self._pipeline.closing

    @property
    def listening(self) -> bool:
        """Hearing other processes' job and rule changes now (PostgreSQL; for health checks)."""
        return self._leases.listening

    def active_count(self) -> int:
        """Jobs with a task or a pending retry in this process."""
        return len(self._pipeline.running)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        job = await self._storage.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def find(self, job_id: str) -> Job | None:
        return await self._storage.jobs.get(job_id)

    async def balance(self, who: Requester) -> Balance:
        """The member's credits today (for /quota)."""
        return await self._storage.quota.balance(who.user_id, who.guild_id, role_ids=who.role_ids)

    async def in_flight(self, user_id: int, guild_id: int | None) -> int:
        """The member's unfinished jobs here, held ones included (as the reservation counts)."""
        return await self._storage.jobs.member_in_flight(user_id, guild_id)

    async def download(
        self, job_id: str, urls: Sequence[str]
    ) -> tuple[list[DownloadedImage], list[str]]:
        """Fetch images: (those fetched, the URLs that failed)."""
        return await download(self._client, job_id, urls)

    async def check_images(self, images: Sequence[NamedUrl]) -> None:
        """Images a member handed in: on Discord's CDN and really images (InvalidInput)."""
        await self._inputs.check(images)

    async def check_presence(self, who: Requester) -> None:
        """May ``who`` use the studio where they are (bans, channels, roles, DMs)? For actions
        that make nothing (/show); raises PolicyRefusal."""
        await self._policy.check_presence(request_context(who, prompt="", safety=None))

    def cost_of(self, spec: JobSpec) -> int:
        return self._quota.cost(spec.num_images, spec.resolution)

    # -- the request path (before Discord is answered) --------------------------------------

    async def reserve(self, spec: JobSpec, who: Requester) -> Reservation:
        """Validate, check policy, reserve credits: the job row exists (RESERVED) on return.

        Raises InvalidInput / InvalidRequestError (bad input), PolicyRefusal, QuotaExceededError,
        TooManyJobsError, RepeatedRequest or StudioClosing; nothing is charged in those cases.
        """
        if self.closing:
            raise StudioClosing()
        # invisible characters neither count as a prompt nor reach RunComfy
        spec = replace(spec, prompt=clean_text(spec.prompt).strip())
        api = validated(spec)
        with self._repeats.once(spec, who):
            return await self._reserve(spec, who, api)

    async def _reserve(self, spec: JobSpec, who: Requester, api: Any) -> Reservation:
        policy = await self._policy.policy(who.guild_id) if who.guild_id is not None else None
        # What is in flight and when the member last asked: from the database, the one record
        # (the reservation below checks the in-flight limit again, atomically).
        in_flight = await self.in_flight(who.user_id, who.guild_id)
        last_job_at = cooldown = None
        if policy is not None and policy.cooldown_seconds > 0 and not who.is_moderator:
            last_job_at = await self._storage.jobs.last_created_at(who.user_id, who.guild_id)
            cooldown = timedelta(seconds=policy.cooldown_seconds)
        context = request_context(
            who, prompt=spec.prompt, safety=spec.safety, in_flight=in_flight, last=last_job_at
        )
        try:
            decision = await self._policy.check(context)
        except PolicyRefusal as refusal:
            try:
                self._events.refused(spec, who, refusal)
            except Exception:
                log.exception("user %s: the refusal could not be logged", who.user_id)
            raise
        request = decided(
            api,
            decision,
            upload_limit=who.upload_limit,
            rng=self._rng,
            safety_chosen=spec.safety is not None,
            private=spec.private,
        )
        self.watch.admit()  # RunComfy keeps failing: refused before anything is charged
        try:
            job = await self._storage.jobs.create_reserved(
                NewJob(
                    kind=spec.kind,
                    user_id=who.user_id,
                    guild_id=who.guild_id,
                    channel_id=who.channel_id,
                    prompt=spec.prompt,
                    params=request.to_params(),
                    cost=self.cost_of(spec),
                    parent_job_id=spec.parent_job_id,
                    interaction_token=who.interaction_token,
                    token_expires_at=who.token_expires_at,
                    age_restricted_channel=who.age_restricted_channel,
                    form_id=spec.form_id,
                    locale=who.locale,
                ),
                role_ids=who.role_ids,
                max_in_flight=decision.policy.max_jobs_in_flight or None,
                cooldown=cooldown,  # again, atomically: asks at once cannot slip past it
                lease=self._leases.lease,  # this process runs it; no other takes it over
            )
        except CoolingDownError as err:
            assert cooldown is not None
            raise CoolingDown(err.last_at + cooldown, int(cooldown.total_seconds())) from None
        except FormAlreadySentError as sent:
            log.info("user %s: form sent again (job %s); refused", who.user_id, sent.job_id)
            raise RepeatedRequest(FORM_ALREADY_SENT) from None
        self.watch.reserved(job)
        log.info(
            "job %s: reserved (%s, %d credits, user %s, guild %s)",
            job.id,
            job.kind.value,
            job.cost,
            job.user_id,
            job.guild_id,
        )
        return Reservation(job, request.notes)

    async def accepted(self, job: Job, *, status_message_id: int | None = None) -> None:
        """Discord took the answer: record that (a restart now resumes the job), then run it.

        ``status_message_id``: the acknowledgement's message, when Discord said.
        """
        fields: dict[str, Any] = {"acknowledged": True}
        if status_message_id is not None:
            fields["status_message_id"] = status_message_id
        try:
            job = await self._storage.jobs.set_fields(job.id, **fields) or job
        except Exception:
            # the member saw it accepted: run it all the same (only a crash now would refund it)
            log.exception("job %s: could not record its acknowledgement", job.id)
        self._pipeline.start(job)

    async def abandon(self, job_id: str, reason: str = NOT_ACKNOWLEDGED) -> None:
        """The member never saw the job (the acknowledgement failed): fail it and refund."""
        job = await self._pipeline.transition(job_id, JobState.FAILED, BEFORE_SUBMIT, error=reason)
        if job is None:
            log.warning("job %s: could not be abandoned (no longer reserved)", job_id)

    # -- buttons ----------------------------------------------------------------------------

    async def cancel(
        self, job_id: str, *, actor_id: int, guild_id: int | None, may_manage: bool
    ) -> CancelResult:
        """Cancel for the requester or a moderator of the job's server.

        ``guild_id``: where the actor clicked; ``may_manage``: they have Manage Messages there.
        """
        pipeline = self._pipeline
        job = await self.get(job_id)
        if not may_act_on(job, actor_id=actor_id, guild_id=guild_id, manages_messages=may_manage):
            raise NotAllowed("cancel", "Only the member who asked (or a moderator) can cancel.")
        if job.state == JobState.RESERVED:
            cancelled = await pipeline.transition(job_id, JobState.CANCELLED, BEFORE_SUBMIT)
            if cancelled is not None:
                await pipeline.finish(cancelled)
                return CancelResult.CANCELLED
            job = await self.get(job_id)
        if job.state == JobState.SUBMITTING:
            running = pipeline.running.get(job_id)
            if running is not None:
                # the POST is on the wire: its request_id is a moment away
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        running.submitted.wait(), timeout=self._timing.submit_grace
                    )
            job = await self.get(job_id)
        if job.state in (JobState.SUBMITTED, JobState.QUEUED):
            assert job.request_id is not None
            outcome = await self._client.job(job.request_id).cancel()
            if outcome is CancelOutcome.NOT_CANCELLABLE:
                log.info("job %s: cancel refused by RunComfy (running)", job_id)
                return CancelResult.RUNNING
            cancelled = await pipeline.transition(job_id, JobState.CANCELLED, FOLLOWING)
            if cancelled is not None:
                await pipeline.finish(cancelled)
                return CancelResult.CANCELLED
            job = await self.get(job_id)
        return {
            JobState.SUBMITTING: CancelResult.PENDING,
            JobState.RUNNING: CancelResult.RUNNING,
            JobState.CANCELLED: CancelResult.CANCELLED,
        }.get(job.state, CancelResult.FINISHED)

    async def release(self, job_id: str, *, fallback_urls: Sequence[str] = ()) -> Job | None:
        """Approve: deliver a held job now (``fallback_urls``: other copies of its images).

        Returns the DELIVERED job, or None if it was not deliverable or not posted.
        """
        job = await self.get(job_id)
        if job.state not in DELIVERABLE:
            return None
        return await self._pipeline.deliver(job, None, fallback_urls)

    # -- start-up and shutdown --------------------------------------------------------------

    async def resume(self) -> dict[str, int]:
        """Claim and pick up every unfinished job this process may run (see the module
        docstring), then keep the leases; counts by what was done."""
        counts: Counter[str] = Counter()
        for job in await self._leases.claim():
            if (done := await self._adopt(job)) is not None:
                counts[done] += 1
        if counts:
            log.info("resumed jobs: %s", dict(counts))
        self._leases.start()
        return dict(counts)

    async def _adopt(self, job: Job) -> str | None:
        """Resume one job this process now holds (after a restart or a takeover)."""
        pipeline = self._pipeline
        running = pipeline.running.get(job.id)
        if running is not None and running.task is not None:
            return None
        if job.state == JobState.SUBMITTING:
            failed = await pipeline.transition(
                job.id, JobState.FAILED, {JobState.SUBMITTING}, error=RESTART_LOST_SUBMIT
            )
            if failed is not None:
                await pipeline.finish(failed)
            return "failed"
        if job.state == JobState.RESERVED and not job.acknowledged:
            # The member never saw it accepted: running it would charge for a surprise.
            failed = await pipeline.transition(
                job.id, JobState.FAILED, BEFORE_SUBMIT, error=NEVER_ACKNOWLEDGED
            )
            if failed is not None:
                await pipeline.withdraw(failed)
            return "never acknowledged"
        if job.state == JobState.AWAITING_APPROVAL:
            return "held"
        pipeline.start(job)
        return job.state.value

    async def close(self) -> None:
        """Stop: no new jobs, let submits on the wire record their request_id, stop the rest."""
        await self._leases.stop()
        stopped = await self._pipeline.stop()
        log.info("job engine stopped (%d unfinished jobs kept for the next start)", stopped)
        await self._leases.release()
