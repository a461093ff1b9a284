"""The job engine: reserve, submit, follow, deliver, cancel, resume. No discord imports.

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
from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from client import JobHandle, RunComfyClient
from client.errors import (
    JobCancelledError,
    JobFailedError,
    JobTimeoutError,
    RunComfyError,
)
from client.models import CancelOutcome, DownloadedImage
from client.models import JobState as ApiState
from client.models import JobStatus as ApiStatus
from services.errors import JobNotFound, NotAllowed, StudioClosing
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
    request_for,
)
from services.policy import PolicyRefusal, PolicyService, RequestContext
from services.settings import JobTiming
from storage import QuotaSettings, Storage
from storage.models import Job, JobState, NewJob

log = logging.getLogger(__name__)

DOWNLOAD_LIMIT = 64 * 2**20

_BEFORE_SUBMIT = frozenset({JobState.RESERVED})
_FOLLOWING = frozenset({JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING})
_DELIVERABLE = frozenset({JobState.COMPLETED, JobState.AWAITING_APPROVAL})
_API_TO_STORE = {ApiState.QUEUED: JobState.QUEUED, ApiState.RUNNING: JobState.RUNNING}

RESTART_LOST_SUBMIT = (
    "The bot restarted while sending this job, so it can't tell whether RunComfy received it."
    " It was dropped and your credits are back; please try again."
)
NOT_ACKNOWLEDGED = "Discord didn't accept the bot's reply in time; nothing was sent."


# -- the engine --------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Active:
    """In-memory companion of an unfinished job."""

    job_id: str
    key: tuple[int, int | None]  # (user, guild), for the in-flight count
    task: asyncio.Task[None] | None = None
    submitted: asyncio.Event = field(default_factory=asyncio.Event)
    finished: bool = False
    # status throttle
    last_shown: float = 0.0
    pending: Progress | None = None
    flush: asyncio.TimerHandle | None = None
    showing: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    editing: bool = False  # a status edit is on the wire
    status_message_id: int | None = None
    handle: JobHandle | None = None  # from the submit; rebuilt from request_id after a restart


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
    ) -> None:
        self._storage = storage
        self._client = client
        self._policy = policy
        self._quota = quota
        self._timing = timing or JobTiming()
        self._rng = rng or random.Random()  # seeds: varied, not secret
        self._clock = clock
        self._presenter: JobPresenter | None = None
        self._gate: DeliveryGate | None = None
        self._listeners: list[JobListener] = []
        self._refusal_listeners: list[RefusalListener] = []
        self._active: dict[str, _Active] = {}
        self._in_flight: Counter[tuple[int, int | None]] = Counter()
        self._last_job_at: dict[tuple[int, int | None], datetime | None] = {}
        self._submits: set[asyncio.Future[Any]] = set()
        # Background work is paced so a burst of jobs never starves the event loop that must
        # acknowledge the next interactions within Discord's 3 seconds: at most this many
        # submits/deliveries, and status edits, are in progress at once; the rest wait.
        self._steps = asyncio.Semaphore(self._timing.parallel_steps)
        self._edits = asyncio.Semaphore(self._timing.parallel_edits)
        # When the latest requests arrived (monotonic), to tell a burst; trimmed as it is read.
        self._recent_requests: deque[float] = deque(maxlen=max(1, self._timing.yield_burst))
        self._calm = asyncio.Event()  # cleared during a burst of requests
        self._calm.set()
        self._closing = False

    # -- wiring ----------------------------------------------------------------------------

    def bind(self, presenter: JobPresenter) -> None:
        self._presenter = presenter

    @property
    def presenter(self) -> JobPresenter | None:
        return self._presenter

    def set_gate(self, gate: DeliveryGate | None) -> None:
        self._gate = gate

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

    async def _notify(self, job: Job) -> None:
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
        return self._in_flight[(user_id, guild_id)]

    def active_count(self) -> int:
        return len(self._active)

    # -- the request path (before Discord is answered) --------------------------------------

    def cost_of(self, spec: JobSpec) -> int:
        return self._quota.cost(spec.num_images, spec.resolution)

    async def reserve(self, spec: JobSpec, who: Requester) -> Reservation:
        """Validate, check policy, reserve credits: the job row exists (RESERVED) on return.

        Raises InvalidInput / InvalidRequestError (bad input), PolicyRefusal, QuotaExceededError
        or StudioClosing; nothing is charged or sent in any of those cases.
        """
        if self._closing:
            raise StudioClosing()
        self._note_request()
        request = build_request(spec, safety=spec.safety or 4)  # validates everything
        key = (who.user_id, who.guild_id)
        # Counted before the first await: concurrent requests of one member see each other.
        self._in_flight[key] += 1
        try:
            try:
                decision = await self._policy.check(
                    RequestContext(
                        user_id=who.user_id,
                        guild_id=who.guild_id,
                        channel_id=who.rules_channel_id or who.channel_id,
                        role_ids=who.role_ids,
                        is_moderator=who.is_moderator,
                        age_restricted_channel=who.age_restricted_channel,
                        prompt=spec.prompt,
                        safety=spec.safety,
                        in_flight=self._in_flight[key] - 1,
                        last_job_at=await self._last_job(who),
                    )
                )
            except PolicyRefusal as refusal:
                self._refused(spec, who, refusal)
                raise
            params = make_params(request, decision, who.upload_limit, self._rng)
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
                ),
                role_ids=who.role_ids,
                # the in-flight limit again, atomically with the insert (a double click)
                max_in_flight=decision.policy.max_jobs_in_flight or None,
            )
        except BaseException:
            self._in_flight[key] -= 1
            raise
        self._active[job.id] = _Active(job.id, key, last_shown=time.monotonic())
        self._last_job_at[key] = job.created_at
        log.info(
            "job %s: reserved (%s, %d credits, user %s, guild %s)",
            job.id,
            job.kind.value,
            job.cost,
            job.user_id,
            job.guild_id,
        )
        return Reservation(job, decision.notes)

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

    def start(self, job: Job, *, status_message_id: int | None = None) -> None:
        """Run the job in the background (after Discord was answered).

        ``status_message_id``: the acknowledgement's message, when Discord said; it is written
        with the job's next state change (no extra database step).
        """
        if self._closing:
            return  # it stays in the database; the next start resumes it
        active = self._active.get(job.id)
        if active is None:
            key = (job.user_id, job.guild_id)
            active = self._active[job.id] = _Active(job.id, key, last_shown=time.monotonic())
            self._in_flight[key] += 1
        if active.task is not None:
            return
        active.status_message_id = active.status_message_id or status_message_id
        active.task = asyncio.create_task(self._run(job, active), name=f"job-{job.id}")

    async def abandon(self, job_id: str, reason: str = NOT_ACKNOWLEDGED) -> None:
        """The member never saw the job (the acknowledgement failed): fail it and refund."""
        job = await self._transition(job_id, JobState.FAILED, _BEFORE_SUBMIT, error=reason)
        self._forget(job_id)
        if job is None:
            log.warning("job %s: could not be abandoned (no longer reserved)", job_id)

    # -- the background task ----------------------------------------------------------------

    async def _yield_to_requests(self) -> None:
        """Let a burst of interactions be acknowledged before more background work starts.

        One event loop serves both; asyncio has no priorities, so background steps wait while
        requests arrive in a burst (bounded by ``yield_max``, so they cannot starve).
        """
        if self._calm.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._calm.wait(), timeout=self._timing.yield_max)

    def _note_request(self) -> None:
        """Record a request; a burst clears ``_calm`` until one timer sees it has passed."""
        if self._timing.yield_window <= 0:
            return
        self._recent_requests.append(time.monotonic())
        if self._calm.is_set() and self._in_burst():
            self._calm.clear()
            loop = asyncio.get_running_loop()
            loop.call_later(self._timing.yield_window / 4, self._check_quiet)

    def _in_burst(self) -> bool:
        recent = self._recent_requests
        cutoff = time.monotonic() - self._timing.yield_window
        while recent and recent[0] < cutoff:
            recent.popleft()
        return len(recent) >= self._timing.yield_burst

    def _check_quiet(self) -> None:
        if self._in_burst() and not self._closing:
            asyncio.get_running_loop().call_later(self._timing.yield_window / 4, self._check_quiet)
        else:
            self._calm.set()

    async def _run(self, job: Job, active: _Active) -> None:
        try:
            if job.state == JobState.RESERVED:
                job = await self._submit(job, active)
            if job.state in _FOLLOWING:
                job = await self._follow(job, active)
            if job.state == JobState.COMPLETED:
                await self._complete(job, active)
        except asyncio.CancelledError:
            log.info("job %s: stopped by shutdown (kept for the next start)", job.id)
            raise
        except Exception:
            log.exception("job %s: unexpected error", job.id)
            await self._fail(job.id, f"Something went wrong on our side (job `{job.id}`).")
        finally:
            if active.task is asyncio.current_task():
                active.task = None
            if active.finished or job.state.is_terminal or job.state == JobState.AWAITING_APPROVAL:
                self._forget(job.id)

    async def _submit(self, job: Job, active: _Active) -> Job:
        await self._yield_to_requests()
        async with self._steps:
            if self._closing:
                raise asyncio.CancelledError  # left RESERVED: resumed (submitted) next start
            # The POST and the row that records its request_id are one critical section:
            # shielded from shutdown so a clean stop never leaves a job in SUBMITTING.
            inner = asyncio.ensure_future(self._submit_now(job, active))
            self._submits.add(inner)
            inner.add_done_callback(self._submits.discard)
            return await asyncio.shield(inner)

    async def _submit_now(self, job: Job, active: _Active) -> Job:
        extra = {}
        if active.status_message_id and active.status_message_id != job.status_message_id:
            extra["status_message_id"] = active.status_message_id
        moved = await self._transition(job.id, JobState.SUBMITTING, _BEFORE_SUBMIT, **extra)
        if moved is None:  # cancelled (or failed) while it waited
            active.submitted.set()
            return await self._current(job)
        try:
            request = request_for(moved)
            active.handle = await self._client.submit(request)
        except RunComfyError as err:
            active.submitted.set()
            return await self._fail(job.id, _reason(err)) or await self._current(job)
        try:
            stored = await self._transition(
                job.id,
                JobState.SUBMITTED,
                {JobState.SUBMITTING},
                request_id=active.handle.request_id,
            )
        except Exception:
            # RunComfy has the job but we could not record it: leave its id for an operator.
            log.error(
                "job %s: submitted as RunComfy request %s, but recording it failed",
                job.id,
                active.handle.request_id,
            )
            raise
        finally:
            active.submitted.set()
        if stored is None:
            return await self._current(job)
        await self._push(stored, active, Progress(JobState.SUBMITTED))
        return stored

    async def _follow(self, job: Job, active: _Active) -> Job:
        assert job.request_id is not None
        handle = active.handle
        if handle is None or handle.request_id != job.request_id:  # resumed after a restart
            handle = self._client.job(
                job.request_id, request=request_for(job), submitted_at=job.created_at
            )
        current = job.state

        async def on_status(status: ApiStatus) -> None:
            nonlocal current
            state = _API_TO_STORE.get(status.state)
            if state is None:
                return
            if state != current:
                moved = await self._transition(job.id, state, _FOLLOWING - {state})
                if moved is None:
                    return  # cancelled meanwhile (the winner reports it)
                current = state
            await self._push(job, active, Progress(state, status.queue_position))

        timeout = self._remaining(job)
        try:
            urls = await handle.wait(timeout=timeout, on_status=on_status)
        except JobCancelledError:
            cancelled = await self._transition(job.id, JobState.CANCELLED, _FOLLOWING)
            if cancelled is not None:
                await self._finish(cancelled, active)
            return await self._current(job)
        except JobTimeoutError:
            await self._try_cancel(job)
            failed = await self._fail(job.id, "RunComfy took too long; the job was given up.")
            return failed or await self._current(job)
        except RunComfyError as err:
            return await self._fail(job.id, _reason(err)) or await self._current(job)
        if not urls:
            return await self._fail(job.id, "RunComfy finished without any image.") or (
                await self._current(job)
            )
        done = await self._transition(job.id, JobState.COMPLETED, _FOLLOWING, result_urls=urls)
        return done or await self._current(job)

    def _remaining(self, job: Job) -> float:
        """Seconds left of the job's deadline (counted from creation), with a floor for resumes."""
        age = (self._clock() - job.created_at).total_seconds()
        floor = min(60.0, self._timing.job_timeout)
        return max(self._timing.job_timeout - age, floor)

    async def _try_cancel(self, job: Job) -> None:
        """Best effort: stop a job we gave up on, so it does not cost money for nothing."""
        if job.request_id is None:
            return
        try:
            await self._client.job(job.request_id).cancel()
        except RunComfyError as err:
            log.info("job %s: cancel after timeout failed: %s", job.id, err)

    async def _complete(self, job: Job, active: _Active) -> None:
        gate = self._gate
        if gate is not None and await gate.hold(job):
            held = await self._transition(job.id, JobState.AWAITING_APPROVAL, {JobState.COMPLETED})
            if held is not None:
                active.finished = True
                await self._quiet(active)  # no status edit may overwrite "waiting for approval"
                try:
                    await gate.held(held)
                except Exception:
                    log.exception("job %s: the approval gate failed (the job stays held)", job.id)
            return
        await self._deliver(job, active)

    async def _deliver(
        self, job: Job, active: _Active | None, fallback_urls: Sequence[str] = ()
    ) -> Job | None:
        await self._yield_to_requests()
        async with self._steps:
            return await self._deliver_now(job, active, fallback_urls)

    async def _deliver_now(
        self, job: Job, active: _Active | None, fallback_urls: Sequence[str] = ()
    ) -> Job | None:
        presenter = self._require_presenter()
        images, missing = await self._download(job)
        if not images and fallback_urls:
            # RunComfy's URLs expired (e.g. a result held for approval for days): use the copy
            # the caller has (the moderators' log entry's attachments).
            images, _ = await self.download(job.id, fallback_urls)
        if not images and not missing:
            return await self._fail(job.id, "RunComfy finished without any image.")
        if not images:
            return await self._fail(
                job.id, "The finished images could not be downloaded from RunComfy."
            )
        if active is not None:
            await self._quiet(active)
        try:
            delivery = await presenter.deliver(job, images, missing)
        except Exception:
            log.exception("job %s: delivery failed", job.id)
            return await self._fail(job.id, "The result could not be posted here.")
        requested = max(1, int(job.params.get("num_images", 1)))
        shown = len(images) + len(missing)
        delivered_cost = job.cost if shown >= requested else job.cost * shown // requested
        done = await self._transition(
            job.id,
            JobState.DELIVERED,
            _DELIVERABLE,
            delivered_cost=delivered_cost,
            result_message_id=delivery.message_id,
        )
        if done is None:
            log.warning("job %s: delivered, but the job had already moved on", job.id)
        elif delivery.fallback:
            log.info("job %s: delivered as a channel message (token unusable)", job.id)
        self._forget(job.id)
        if done is not None:
            await self._notify(done)
        return done

    async def _download(self, job: Job) -> tuple[list[DownloadedImage], list[str]]:
        return await self.download(job.id, job.result_urls)

    async def download(
        self, job_id: str, urls: Sequence[str]
    ) -> tuple[list[DownloadedImage], list[str]]:
        """Fetch images (no API token is sent; the client retries what is worth retrying).

        Returns the images fetched and the URLs that failed (shown as links, never dropped).
        """

        async def one(url: str) -> DownloadedImage | None:
            try:
                return await self._client.download(url, max_bytes=DOWNLOAD_LIMIT)
            except RunComfyError as err:  # DownloadError, HTTP trouble
                log.warning("job %s: download of %s failed: %s", job_id, url, err)
                return None

        results = await asyncio.gather(*(one(u) for u in urls))
        images = [r for r in results if r is not None]
        missing = [u for u, r in zip(urls, results, strict=True) if r is None]
        return images, missing

    # -- outcomes ---------------------------------------------------------------------------

    async def _fail(self, job_id: str, reason: str) -> Job | None:
        """FAILED (credits refunded) unless the job already ended; tell the member why."""
        failed = await self._transition(
            job_id,
            JobState.FAILED,
            {s for s in JobState if not s.is_terminal},
            error=reason[:1000],
        )
        if failed is not None:
            await self._finish(failed, self._active.get(job_id))
        return failed

    async def _finish(self, job: Job, active: _Active | None) -> None:
        """Show a job's end (cancel/failure); the winner of the state change calls this once."""
        if active is not None:
            active.finished = True
            await self._quiet(active)
        self._forget(job.id)
        presenter = self._presenter
        if presenter is not None:
            try:
                await presenter.show_outcome(job)
            except Exception:
                log.exception("job %s: could not show the outcome", job.id)
        await self._notify(job)

    async def _current(self, job: Job) -> Job:
        return await self._storage.jobs.get(job.id) or job

    async def _transition(
        self, job_id: str, to: JobState, expected: Collection[JobState] | None, **fields: Any
    ) -> Job | None:
        moved = await self._storage.jobs.transition(job_id, to, expected=expected, **fields)
        if moved is not None:
            suffix = ""
            if to == JobState.FAILED and moved.error:
                suffix = f" ({moved.error})"
            elif to == JobState.SUBMITTED:
                suffix = f" (RunComfy request {moved.request_id})"
            elif to == JobState.DELIVERED:
                suffix = f" ({moved.committed} credits committed)"
            log.info("job %s: -> %s%s", job_id, to.value, suffix)
        return moved

    def _forget(self, job_id: str) -> None:
        active = self._active.pop(job_id, None)
        if active is None:
            return
        self._cancel_flush(active)
        self._in_flight[active.key] -= 1
        if self._in_flight[active.key] <= 0:
            del self._in_flight[active.key]

    # -- status updates, throttled ----------------------------------------------------------

    async def _push(self, job: Job, active: _Active, progress: Progress) -> None:
        """Show ``progress`` now if the last update is old enough, else once the interval ends."""
        if active.finished or self._presenter is None:
            return
        active.pending = progress
        wait = active.last_shown + self._timing.status_interval - time.monotonic()
        if wait <= 0 and (active.showing is None or active.showing.done()):
            self._show_pending(job, active)
        elif active.flush is None:
            loop = asyncio.get_running_loop()
            active.flush = loop.call_later(max(wait, 0.0), self._flush, job, active)

    def _flush(self, job: Job, active: _Active) -> None:
        active.flush = None
        if active.finished or active.pending is None:
            return
        if active.showing is not None and not active.showing.done():
            # the previous edit is still on the wire: try again after it
            active.showing.add_done_callback(lambda _t: self._flush(job, active))
            return
        self._show_pending(job, active)

    def _show_pending(self, job: Job, active: _Active) -> None:
        progress, active.pending = active.pending, None
        if progress is None:
            return
        active.last_shown = time.monotonic()
        active.showing = asyncio.create_task(self._show(job, active, progress))

    async def _show(self, job: Job, active: _Active, progress: Progress) -> None:
        presenter = self._presenter
        if presenter is None or active.finished:
            return
        known = active.status_message_id or job.status_message_id
        await self._yield_to_requests()
        async with self._edits, active.lock:
            if active.finished:
                return
            active.editing = True
            try:
                message_id = await presenter.show_progress(
                    replace(job, status_message_id=known), progress
                )
            except Exception:
                log.exception("job %s: status update failed", job.id)
                return
            finally:
                active.editing = False
        if message_id is not None and known != message_id:
            active.status_message_id = message_id
            await self._storage.jobs.set_fields(job.id, status_message_id=message_id)

    def _cancel_flush(self, active: _Active) -> None:
        active.pending = None
        if active.flush is not None:
            active.flush.cancel()
            active.flush = None

    async def _quiet(self, active: _Active) -> None:
        """No status edit after this: cancel what is pending, wait for one on the wire."""
        self._cancel_flush(active)
        showing = active.showing
        if showing is not None and not showing.done() and showing is not asyncio.current_task():
            if not active.editing:
                showing.cancel()  # still waiting for its turn: no need to send it any more
            await asyncio.wait([showing])

    # -- buttons ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        job = await self._storage.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def cancel(self, job_id: str, *, actor_id: int, may_manage: bool) -> str:
        """Cancel for the requester or a member who may manage messages; a ``CancelResult``."""
        job = await self.get(job_id)
        if actor_id != job.user_id and not may_manage:
            raise NotAllowed("cancel", "Only the member who asked (or a moderator) can cancel.")
        if job.state == JobState.RESERVED:
            cancelled = await self._transition(job_id, JobState.CANCELLED, _BEFORE_SUBMIT)
            if cancelled is not None:
                await self._finish(cancelled, self._active.get(job_id))
                return CancelResult.CANCELLED
            job = await self.get(job_id)
        if job.state == JobState.SUBMITTING:
            active = self._active.get(job_id)
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
            cancelled = await self._transition(job_id, JobState.CANCELLED, _FOLLOWING)
            if cancelled is not None:
                await self._finish(cancelled, self._active.get(job_id))
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
        if job.state not in _DELIVERABLE:
            return None
        done = await self._deliver(job, None, fallback_urls)
        return done if done is not None and done.state == JobState.DELIVERED else None

    # -- start-up and shutdown --------------------------------------------------------------

    async def resume(self) -> dict[str, int]:
        """Pick up every unfinished job (see the module docstring); counts by what was done."""
        counts: Counter[str] = Counter()
        for job in await self._storage.jobs.unfinished():
            if job.id in self._active and self._active[job.id].task is not None:
                continue
            if job.state == JobState.SUBMITTING:
                failed = await self._transition(
                    job.id, JobState.FAILED, {JobState.SUBMITTING}, error=RESTART_LOST_SUBMIT
                )
                if failed is not None:
                    await self._finish(failed, None)
                counts["failed"] += 1
            elif job.state == JobState.AWAITING_APPROVAL:
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
        self._calm.set()
        if self._submits:
            await asyncio.wait(list(self._submits), timeout=self._timing.submit_grace)
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for active in self._active.values():
            self._cancel_flush(active)
            if active.showing is not None:
                active.showing.cancel()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        log.info("job engine stopped (%d unfinished jobs kept for the next start)", len(tasks))

    def _require_presenter(self) -> JobPresenter:
        if self._presenter is None:
            raise RuntimeError("no presenter bound to the job service")
        return self._presenter


def _reason(err: RunComfyError) -> str:
    """What to tell the member about an API error (never the raw body)."""
    if isinstance(err, JobFailedError):
        return f"RunComfy could not make this image ({err.message})."
    return f"RunComfy error: {err.message}."


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
