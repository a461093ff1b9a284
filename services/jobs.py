"""The job engine's public side: reserve, start, cancel, release, resume, close. No discord.

Around it: ``services/job_runner.py`` runs each job (submit, follow, deliver, fail),
``services/status_feed.py`` shows its progress (throttled), ``services/pacing.py`` keeps
background work from delaying Discord's 3-second answers.

The request path (``reserve``) is what runs before Discord is answered, so it is kept tiny: cheap
validation, the guild's rules from the policy cache, then ONE database step
(``jobs.create_reserved``: quota check, row and ledger entry in one transaction). Everything else
runs in one background task per job (``start``), tracked so shutdown can stop them; the database
keeps every job for the next start.

Each side effect is preceded by the row that lets a restart tell what happened:

    RESERVED -> SUBMITTING (before the POST) -> SUBMITTED (request_id) -> QUEUED/RUNNING
             -> COMPLETED (result_urls) -> DELIVERED (posted; credits committed)
    anywhere before COMPLETED: CANCELLED or FAILED (credits refunded, the member told why)

Resume rules (``resume``), applied to every unfinished job at start-up:
- RESERVED: nothing was sent, so submitting cannot duplicate anything; the member was shown the
  status message (the cog marks the job FAILED when that acknowledgement fails) and the credits
  are held: submit it now. A clean shutdown leaves jobs that had not started their POST here.
- SUBMITTING: the POST may or may not have reached RunComfy and no request_id was stored, so the
  job can be neither followed nor cancelled: FAILED, credits refunded, the member told to retry.
  A clean shutdown waits for submits in progress, so only a crash leaves a job here.
- SUBMITTED / QUEUED / RUNNING: followed again from the stored request_id, delivered once.
- COMPLETED: downloaded again from the stored result URLs and delivered.
- AWAITING_APPROVAL: left alone; the moderation service owns it (see ``DeliveryGate``).
- A result is never dropped: when Discord refuses every way of posting it, the job stays
  COMPLETED (credits still held) and is tried again (a backing-off timer, then the next start).
- A job past its deadline is cancelled at RunComfy where possible, then FAILED and refunded;
  transient API trouble before the deadline does not end it.
- A repeated ask on the same result within ``JobTiming.repeat_window`` (a double click on
  Re-roll, a form sent twice) is refused: one job, one charge.
Delivery is idempotent: DELIVERED is set by compare-and-set, a delivered job is never resumed,
and the presenter's delivery rewrites the job's own status message (repeating it changes nothing)
or sends its fallback with the job id as an enforced nonce.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, OrderedDict
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
from services.job_runner import (
    BEFORE_SUBMIT,
    DELIVERABLE,
    FOLLOWING,
    ActiveJobs,
    JobRunner,
    Key,
)
from services.job_types import (
    DEFAULT_UPLOAD_LIMIT,
    NOTES_PARAM,
    OPTION_FIELDS,
    UPLOAD_LIMIT_PARAM,
    CancelResult,
    Delivery,
    DeliveryGate,
    JobListener,
    JobPresenter,
    JobSpec,
    Progress,
    RefusalListener,
    Requester,
    Reservation,
    build_request,
    make_params,
    may_act_on,
    request_for,
)
from services.pacing import Pacing
from services.policy import PolicyRefusal, PolicyService, RequestContext
from services.prompt_text import clean_text
from services.settings import JobTiming
from services.status_feed import StatusFeeds
from storage import QuotaSettings, Storage
from storage.models import Balance, FormAlreadySentError, Job, JobState, NewJob

log = logging.getLogger(__name__)

RESTART_LOST_SUBMIT = (
    "The bot restarted while sending this job, so it can't tell whether RunComfy received it."
    " It was dropped and your credits are back; please try again."
)
NOT_ACKNOWLEDGED = "Discord didn't accept the bot's reply in time; nothing was sent."
NEVER_ACKNOWLEDGED = (
    "The bot stopped before Discord received its answer, so the job was never started;"
    " the credits are back."
)
# Cooldowns read when a member's last job was made from memory; entries older than the longest
# cooldown /admin allows (a day) are forgotten once there are this many (the database has them).
LAST_JOB_ENTRIES = 10_000
LAST_JOB_KEPT = timedelta(days=1)


class JobService:
    def __init__(
        self,
        storage: Storage,
        client: RunComfyClient,
        policy: PolicyService,
        *,
        quota: QuotaSettings,
        timing: JobTiming | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        inputs: InputImages | None = None,
    ) -> None:
        self._storage = storage
        self._client = client
        self._inputs = inputs or InputImages(client)
        self._policy = policy
        self._quota = quota
        self._timing = timing or JobTiming()
        self._rng = rng or random.Random()  # seeds: varied, not secret
        self._clock = clock
        self._presenter: JobPresenter | None = None
        self._gate: DeliveryGate | None = None
        self._listeners: list[JobListener] = []
        self._refusal_listeners: list[RefusalListener] = []
        self._last_job_at: dict[Key, datetime | None] = {}
        # Repeated asks (see ``_ask_key``): being reserved now, and recently reserved (monotonic).
        self._asking: set[tuple[Any, ...]] = set()
        self._recent_asks: OrderedDict[tuple[Any, ...], float] = OrderedDict()
        self._pacing = Pacing(self._timing)  # requests first (see services/pacing.py)
        self._feeds = StatusFeeds(
            self._timing, self._pacing, lambda: self._presenter, self._remember_status_message
        )
        self._jobs = ActiveJobs(self._feeds)
        self._runner = JobRunner(
            self,
            storage,
            client,
            self._jobs,
            timing=self._timing,
            pacing=self._pacing,
            feeds=self._feeds,
            clock=clock,
        )
        self._closing = False

    # -- wiring ----------------------------------------------------------------------------

    def bind(self, presenter: JobPresenter) -> None:
        self._presenter = presenter

    @property
    def presenter(self) -> JobPresenter | None:
        return self._presenter

    def set_gate(self, gate: DeliveryGate | None) -> None:
        self._gate = gate

    @property
    def gate(self) -> DeliveryGate | None:
        return self._gate

    def add_listener(self, listener: JobListener) -> None:
        """Be told of every job the engine ends (delivered, failed, cancelled): the log."""
        self._listeners.append(listener)

    def add_refusal_listener(self, listener: RefusalListener) -> None:
        """Be told of every request a policy rule refused (e.g. blocked prompts, for the log)."""
        self._refusal_listeners.append(listener)

    def _refused(self, spec: JobSpec, who: Requester, refusal: PolicyRefusal) -> None:
        for listener in self._refusal_listeners:
            try:
                listener(spec, who, refusal)
            except Exception:
                log.exception("user %s: a refusal listener failed", who.user_id)

    async def notify(self, job: Job) -> None:
        """Tell the listeners of a job the engine ended."""
        for listener in self._listeners:
            try:
                await listener(job)
            except Exception:
                log.exception("job %s: a listener failed", job.id)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def storage(self) -> Storage:
        return self._storage

    def in_flight(self, user_id: int, guild_id: int | None) -> int:
        """The member's unfinished jobs here, held ones included (as the reservation counts)."""
        return self._jobs.count((user_id, guild_id))

    def settled(self, job_id: str) -> None:
        """A held job ended outside the engine (a moderator rejected it): stop counting it."""
        self._jobs.settled(job_id)

    def active_count(self) -> int:
        return len(self._jobs)

    async def download(
        self, job_id: str, urls: Sequence[str]
    ) -> tuple[list[DownloadedImage], list[str]]:
        """Fetch images: (those fetched, the URLs that failed). See ``JobRunner.download``."""
        return await self._runner.download(job_id, urls)

    # -- the request path (before Discord is answered) --------------------------------------

    async def balance(self, who: Requester) -> Balance:
        """The member's credits today (for /quota)."""
        return await self._storage.quota.balance(who.user_id, who.guild_id, role_ids=who.role_ids)

    async def find(self, job_id: str) -> Job | None:
        return await self._storage.jobs.get(job_id)

    async def check_presence(self, who: Requester) -> None:
        """May ``who`` use the studio where they are (bans, channels, roles, DMs)? For actions
        that make nothing (/show); raises PolicyRefusal."""
        await self._policy.check_presence(self._context(who, prompt="", safety=None))

    def _context(
        self,
        who: Requester,
        *,
        prompt: str,
        safety: int | None,
        in_flight: int = 0,
        last_job_at: datetime | None = None,
    ) -> RequestContext:
        return RequestContext(
            user_id=who.user_id,
            guild_id=who.guild_id,
            channel_id=who.channel_id,
            parent_channel_id=who.rules_channel_id,
            role_ids=who.role_ids,
            is_moderator=who.is_moderator,
            age_restricted_channel=who.age_restricted_channel,
            prompt=prompt,
            safety=safety,
            in_flight=in_flight,
            last_job_at=last_job_at,
        )

    async def check_images(self, images: Sequence[NamedUrl]) -> None:
        """Images a member handed in: on Discord's CDN and really images (InvalidInput)."""
        await self._inputs.check(images)

    def cost_of(self, spec: JobSpec) -> int:
        return self._quota.cost(spec.num_images, spec.resolution)

    async def reserve(self, spec: JobSpec, who: Requester) -> Reservation:
        """Validate, check policy, reserve credits: the job row exists (RESERVED) on return.

        Raises InvalidInput / InvalidRequestError (bad input), PolicyRefusal, QuotaExceededError
        or StudioClosing; nothing is charged or sent in any of those cases.
        """
        if self._closing:
            raise StudioClosing()
        self._pacing.note_request()
        # invisible characters neither count as a prompt nor reach RunComfy
        spec = replace(spec, prompt=clean_text(spec.prompt).strip())
        request = build_request(spec, safety=spec.safety or 4)  # validates everything
        ask = self._ask_key(spec, who)
        if ask is not None:
            self._prune_asks()
            if ask in self._asking or ask in self._recent_asks:
                log.info("user %s: repeated request %s refused", who.user_id, ask[:2])
                raise RepeatedRequest(FORM_ALREADY_SENT) if spec.form_id else RepeatedRequest()
            self._asking.add(ask)
        try:
            reservation = await self._reserve(spec, who, request)
        finally:
            if ask is not None:
                self._asking.discard(ask)
        if ask is not None:
            self._recent_asks[ask] = time.monotonic()
        return reservation

    @staticmethod
    def _ask_key(spec: JobSpec, who: Requester) -> tuple[Any, ...] | None:
        """What makes two asks "the same" (a double click on Re-roll, a modal sent twice).

        A form's own id decides for it; the database refuses a second job from it for good.
        """
        if spec.form_id is not None:
            return ("form", spec.form_id)
        if spec.parent_job_id is None:
            return None  # a typed command: Discord sends each one once
        return (who.user_id, spec.parent_job_id, spec.kind, spec.prompt)

    def _prune_asks(self) -> None:
        cutoff = time.monotonic() - self._timing.repeat_window
        recent = self._recent_asks
        while recent and next(iter(recent.values())) < cutoff:
            recent.popitem(last=False)

    async def _reserve(self, spec: JobSpec, who: Requester, request: Any) -> Reservation:
        key = (who.user_id, who.guild_id)
        # Counted before the first await: concurrent requests of one member see each other.
        self._jobs.claim(key)
        try:
            try:
                decision = await self._policy.check(
                    self._context(
                        who,
                        prompt=spec.prompt,
                        safety=spec.safety,
                        in_flight=self._jobs.count(key) - 1,
                        last_job_at=await self._last_job(who),
                    )
                )
            except PolicyRefusal as refusal:
                self._refused(spec, who, refusal)
                raise
            params = make_params(
                request,
                decision,
                who.upload_limit,
                self._rng,
                safety_chosen=spec.safety is not None,
            )
            job = await self._storage.jobs.create_reserved(
                NewJob(
                    kind=spec.kind,
                    user_id=who.user_id,
                    guild_id=who.guild_id,
                    channel_id=who.channel_id,
                    prompt=spec.prompt,
                    params=params,
                    cost=self._quota.cost(spec.num_images, spec.resolution),
                    parent_job_id=spec.parent_job_id,
                    interaction_token=who.interaction_token,
                    token_expires_at=who.token_expires_at,
                    age_restricted_channel=who.age_restricted_channel,
                    form_id=spec.form_id,
                ),
                role_ids=who.role_ids,
                # the in-flight limit again, atomically with the insert (a double click)
                max_in_flight=decision.policy.max_jobs_in_flight or None,
            )
        except FormAlreadySentError as sent:
            self._jobs.unclaim(key)
            log.info("user %s: form sent again (job %s); refused", who.user_id, sent.job_id)
            raise RepeatedRequest(FORM_ALREADY_SENT) from None
        except BaseException:
            self._jobs.unclaim(key)
            raise
        self._jobs.add(job.id, key, claimed=True, last_shown=time.monotonic())
        self._remember_last_job(key, job.created_at)
        log.info(
            "job %s: reserved (%s, %d credits, user %s, guild %s)",
            job.id,
            job.kind.value,
            job.cost,
            job.user_id,
            job.guild_id,
        )
        return Reservation(job, decision.notes)

    def _remember_last_job(self, key: tuple[int, int | None], at: datetime) -> None:
        """Keep when each member's last job was made (cooldowns), forgetting old entries."""
        last = self._last_job_at
        last.pop(key, None)
        last[key] = at  # insertion order: oldest first
        if len(last) > LAST_JOB_ENTRIES:
            cutoff = at - LAST_JOB_KEPT
            for old in [k for k, t in last.items() if t is None or t < cutoff]:
                del last[old]

    async def _last_job(self, who: Requester) -> datetime | None:
        """When the member's last job here was created; read from the DB only when it matters."""
        if who.guild_id is None:
            return self._last_job_at.get((who.user_id, None))
        key = (who.user_id, who.guild_id)
        if key in self._last_job_at:
            return self._last_job_at[key]
        policy = await self._policy.policy(who.guild_id)
        if policy.cooldown_seconds <= 0:
            return None
        at = await self._storage.jobs.last_created_at(who.user_id, who.guild_id)
        self._last_job_at.setdefault(key, at)
        return self._last_job_at[key]

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
        self.start(job, status_message_id=status_message_id)

    def start(self, job: Job, *, status_message_id: int | None = None) -> None:
        """Run the job in the background (after Discord was answered).

        ``status_message_id``: the acknowledgement's message, when Discord said; it is written
        with the job's next state change (no extra database step).
        """
        if self._closing:
            return  # it stays in the database; the next start resumes it
        active = self._jobs.get(job.id)
        if active is None:
            key = (job.user_id, job.guild_id)
            active = self._jobs.add(job.id, key, claimed=False, last_shown=time.monotonic())
        if active.task is not None:
            return
        active.status_message_id = active.status_message_id or status_message_id
        active.task = asyncio.create_task(self._runner.run(job, active), name=f"job-{job.id}")

    async def abandon(self, job_id: str, reason: str = NOT_ACKNOWLEDGED) -> None:
        """The member never saw the job (the acknowledgement failed): fail it and refund."""
        job = await self._runner.transition(job_id, JobState.FAILED, BEFORE_SUBMIT, error=reason)
        self._jobs.forget(job_id)
        if job is None:
            log.warning("job %s: could not be abandoned (no longer reserved)", job_id)

    async def _remember_status_message(self, job_id: str, message_id: int) -> None:
        await self._storage.jobs.set_fields(job_id, status_message_id=message_id)

    # -- buttons ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        job = await self._storage.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def cancel(
        self, job_id: str, *, actor_id: int, guild_id: int | None, may_manage: bool
    ) -> str:
        """Cancel for the requester or a moderator of the job's server; a ``CancelResult``.

        ``guild_id``: where the actor clicked; ``may_manage``: they have Manage Messages there.
        """
        job = await self.get(job_id)
        if not may_act_on(job, actor_id=actor_id, guild_id=guild_id, manages_messages=may_manage):
            raise NotAllowed("cancel", "Only the member who asked (or a moderator) can cancel.")
        if job.state == JobState.RESERVED:
            cancelled = await self._runner.transition(job_id, JobState.CANCELLED, BEFORE_SUBMIT)
            if cancelled is not None:
                await self._runner.finish(cancelled, self._jobs.get(job_id))
                return CancelResult.CANCELLED
            job = await self.get(job_id)
        if job.state == JobState.SUBMITTING:
            active = self._jobs.get(job_id)
            if active is not None:
                # the POST is on the wire: its request_id is a moment away
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        active.submitted.wait(), timeout=self._timing.submit_grace
                    )
            job = await self.get(job_id)
        if job.state in (JobState.SUBMITTED, JobState.QUEUED):
            assert job.request_id is not None
            outcome = await self._client.job(job.request_id).cancel()
            if outcome is CancelOutcome.NOT_CANCELLABLE:
                log.info("job %s: cancel refused by RunComfy (running)", job_id)
                return CancelResult.RUNNING
            cancelled = await self._runner.transition(job_id, JobState.CANCELLED, FOLLOWING)
            if cancelled is not None:
                await self._runner.finish(cancelled, self._jobs.get(job_id))
                return CancelResult.CANCELLED
            job = await self.get(job_id)
        if job.state == JobState.SUBMITTING:
            return CancelResult.PENDING
        if job.state == JobState.RUNNING:
            return CancelResult.RUNNING
        if job.state == JobState.CANCELLED:
            return CancelResult.CANCELLED
        return CancelResult.FINISHED

    async def release(self, job_id: str, *, fallback_urls: Sequence[str] = ()) -> Job | None:
        """Approve: deliver a held job now (``fallback_urls``: other copies of its images).

        Returns the DELIVERED job, or None if it was not deliverable or delivery failed (then
        it is FAILED, refunded and the member told, like any failed delivery).
        """
        job = await self.get(job_id)
        if job.state not in DELIVERABLE:
            return None
        done = await self._runner.deliver(job, None, fallback_urls)
        return done if done is not None and done.state == JobState.DELIVERED else None

    # -- start-up and shutdown --------------------------------------------------------------

    async def resume(self) -> dict[str, int]:
        """Pick up every unfinished job (see the module docstring); counts by what was done."""
        counts: Counter[str] = Counter()
        for job in await self._storage.jobs.unfinished():
            active = self._jobs.get(job.id)
            if active is not None and active.task is not None:
                continue
            if job.state == JobState.SUBMITTING:
                failed = await self._runner.transition(
                    job.id, JobState.FAILED, {JobState.SUBMITTING}, error=RESTART_LOST_SUBMIT
                )
                if failed is not None:
                    await self._runner.finish(failed, None)
                counts["failed"] += 1
            elif job.state == JobState.RESERVED and not job.acknowledged:
                # The member never saw it accepted: running it would charge for a surprise.
                failed = await self._runner.transition(
                    job.id, JobState.FAILED, BEFORE_SUBMIT, error=NEVER_ACKNOWLEDGED
                )
                if failed is not None:
                    await self.notify(failed)  # the log; the member was never shown the job
                counts["never acknowledged"] += 1
            elif job.state == JobState.AWAITING_APPROVAL:
                self._jobs.hold(job)
                counts["held"] += 1
            else:
                self.start(job)
                counts[job.state.value] += 1
        if counts:
            log.info("resumed jobs: %s", dict(counts))
        return dict(counts)

    async def close(self) -> None:
        """Stop: no new jobs, let submits on the wire record their request_id, stop the rest."""
        self._closing = True
        self._pacing.stop()
        retries = await self._runner.stop()
        tasks = [a.task for a in self._jobs if a.task is not None]
        for active in self._jobs:
            self._feeds.stop(active)
            if active.retry is not None:
                active.retry.cancel()
        for task in tasks:
            task.cancel()
        tasks += retries
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        log.info("job engine stopped (%d unfinished jobs kept for the next start)", len(tasks))


__all__ = [
    "DEFAULT_UPLOAD_LIMIT",
    "NOTES_PARAM",
    "OPTION_FIELDS",
    "UPLOAD_LIMIT_PARAM",
    "CancelResult",
    "Delivery",
    "DeliveryGate",
    "JobListener",
    "JobPresenter",
    "JobService",
    "JobSpec",
    "Progress",
    "Requester",
    "Reservation",
    "build_request",
    "request_for",
]
