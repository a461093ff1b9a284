"""Running one job: submit, follow, deliver (or fail), each step recorded first. No discord.

``JobRunner`` is the background half of the job engine (``services/jobs.py`` is the public
half: reserve, start, cancel, release, resume, close). ``ActiveJobs`` is the in-memory side of
the unfinished jobs both halves share: their tasks and the in-flight counts (held jobs too).
The rules each step follows are in ``services/jobs.py``'s docstring.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from client import JobHandle, RunComfyClient
from client.errors import (
    JobCancelledError,
    JobFailedError,
    JobTimeoutError,
    RunComfyError,
    SubmitOutcomeUnknownError,
)
from client.models import CancelOutcome, DownloadedImage
from client.models import JobState as ApiState
from client.models import JobStatus as ApiStatus
from client.retry import is_retryable
from services.job_types import DeliveryGate, JobPresenter, Progress, request_for
from services.pacing import Pacing
from services.settings import JobTiming
from services.status_feed import StatusFeed, StatusFeeds
from storage import Storage
from storage.models import Job, JobState

log = logging.getLogger("services.jobs")  # one logger for the whole engine

DOWNLOAD_LIMIT = 64 * 2**20

BEFORE_SUBMIT = frozenset({JobState.RESERVED})
FOLLOWING = frozenset({JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING})
DELIVERABLE = frozenset({JobState.COMPLETED, JobState.AWAITING_APPROVAL})
_API_TO_STORE = {ApiState.QUEUED: JobState.QUEUED, ApiState.RUNNING: JobState.RUNNING}

SUBMIT_UNKNOWN = (
    "The connection to RunComfy broke while sending this job, so the bot can't follow it."
    " Your credits are back; please try again."
)
# After a transient API error that escaped the client's own retries: wait this long (capped by
# the job's deadline) before following the job again.
FOLLOW_PAUSE = 1.0

Key = tuple[int, int | None]  # (user, guild)


@dataclass(slots=True, eq=False)
class ActiveJob(StatusFeed):
    """In-memory companion of an unfinished job (its status feed, and its run)."""

    key: Key = (0, None)  # for the in-flight count
    task: asyncio.Task[None] | None = None
    submitted: asyncio.Event = field(default_factory=asyncio.Event)
    handle: JobHandle | None = None  # from the submit; rebuilt from request_id after a restart
    delivery_attempts: int = 0  # failed attempts to post the finished result (this run)
    retry: asyncio.TimerHandle | None = None  # the next delivery attempt


class ActiveJobs:
    """Unfinished jobs in memory, and how many each member has in flight (held ones too)."""

    def __init__(self, feeds: StatusFeeds) -> None:
        self._feeds = feeds
        self._jobs: dict[str, ActiveJob] = {}
        self._in_flight: Counter[Key] = Counter()
        # Jobs held for approval (no task, but they count as in flight): job id -> key.
        self._held: dict[str, Key] = {}
        self._held_count: Counter[Key] = Counter()

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[ActiveJob]:
        return iter(list(self._jobs.values()))

    def get(self, job_id: str) -> ActiveJob | None:
        return self._jobs.get(job_id)

    def count(self, key: Key) -> int:
        return self._in_flight[key] + self._held_count[key]

    def claim(self, key: Key) -> None:
        """Count a job about to be reserved (before the first await: concurrent requests of
        one member see each other)."""
        self._in_flight[key] += 1

    def unclaim(self, key: Key) -> None:
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]

    def add(self, job_id: str, key: Key, *, claimed: bool, **fields: Any) -> ActiveJob:
        if not claimed:
            self.claim(key)
        active = self._jobs[job_id] = ActiveJob(job_id, key=key, **fields)
        return active

    def forget(self, job_id: str) -> None:
        active = self._jobs.pop(job_id, None)
        if active is None:
            return
        self._feeds.cancel_pending(active)
        if active.retry is not None:
            active.retry.cancel()
        self.unclaim(active.key)

    def hold(self, job: Job) -> None:
        if job.id not in self._held:
            key = (job.user_id, job.guild_id)
            self._held[job.id] = key
            self._held_count[key] += 1

    def settled(self, job_id: str) -> None:
        """A held job ended: stop counting it."""
        key = self._held.pop(job_id, None)
        if key is not None:
            self._held_count[key] -= 1
            if self._held_count[key] <= 0:
                del self._held_count[key]


class Owner(Protocol):
    """What the runner needs from the service that owns it."""

    @property
    def presenter(self) -> JobPresenter | None: ...
    @property
    def gate(self) -> DeliveryGate | None: ...
    @property
    def closing(self) -> bool: ...
    async def notify(self, job: Job) -> None: ...
    def start(self, job: Job, *, status_message_id: int | None = None) -> None: ...


class JobRunner:
    def __init__(
        self,
        owner: Owner,
        storage: Storage,
        client: RunComfyClient,
        jobs: ActiveJobs,
        *,
        timing: JobTiming,
        pacing: Pacing,
        feeds: StatusFeeds,
        clock: Callable[[], datetime],
    ) -> None:
        self._owner = owner
        self._storage = storage
        self._client = client
        self._jobs = jobs
        self._timing = timing
        self._pacing = pacing
        self._feeds = feeds
        self._clock = clock
        self._submits: set[asyncio.Future[Any]] = set()  # POSTs on the wire (shielded)
        self._retries: set[asyncio.Task[None]] = set()  # delivery retries starting

    async def stop(self) -> list[asyncio.Task[None]]:
        """Shutdown: let submits on the wire record their request_id; stop delivery retries.

        Returns the retry tasks (cancelled) for the caller to wait on with the job tasks.
        """
        if self._submits:
            await asyncio.wait(list(self._submits), timeout=self._timing.submit_grace)
        retries = list(self._retries)
        for task in retries:
            task.cancel()
        return retries

    def _require_presenter(self) -> JobPresenter:
        presenter = self._owner.presenter
        if presenter is None:
            raise RuntimeError("no presenter bound to the job service")
        return presenter

    # -- the background task ----------------------------------------------------------------

    async def run(self, job: Job, active: ActiveJob) -> None:
        try:
            if job.state == JobState.RESERVED:
                job = await self._submit(job, active)
            if job.state in FOLLOWING:
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
                self._jobs.forget(job.id)

    async def _submit(self, job: Job, active: ActiveJob) -> Job:
        await self._pacing.yield_to_requests()
        async with self._pacing.submits:
            if self._owner.closing:
                raise asyncio.CancelledError  # left RESERVED: resumed (submitted) next start
            # The POST and the row that records its request_id are one critical section:
            # shielded from shutdown so a clean stop never leaves a job in SUBMITTING.
            inner = asyncio.ensure_future(self._submit_now(job, active))
            self._submits.add(inner)
            inner.add_done_callback(self._submits.discard)
            return await asyncio.shield(inner)

    async def _submit_now(self, job: Job, active: ActiveJob) -> Job:
        extra = {}
        if active.status_message_id and active.status_message_id != job.status_message_id:
            extra["status_message_id"] = active.status_message_id
        moved = await self.transition(job.id, JobState.SUBMITTING, BEFORE_SUBMIT, **extra)
        if moved is None:  # cancelled (or failed) while it waited
            active.submitted.set()
            return await self._current(job)
        try:
            request = request_for(moved)
            active.handle = await self._client.submit(request)
        except SubmitOutcomeUnknownError as err:
            active.submitted.set()
            log.warning("job %s: the submit's outcome is unknown (%s)", job.id, err)
            return await self._fail_or_current(job, SUBMIT_UNKNOWN)
        except RunComfyError as err:
            active.submitted.set()
            return await self._fail_or_current(job, _reason(err))
        try:
            stored = await self.transition(
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
        self._feeds.push(stored, active, Progress(JobState.SUBMITTED))
        return stored

    async def _follow(self, job: Job, active: ActiveJob) -> Job:
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
                moved = await self.transition(job.id, state, FOLLOWING - {state})
                if moved is None:
                    return  # cancelled meanwhile (the winner reports it)
                current = state
            self._feeds.push(job, active, Progress(state, status.queue_position))

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._remaining(job)
        while True:
            try:
                urls = await handle.wait(
                    timeout=max(0.0, deadline - loop.time()), on_status=on_status
                )
                break
            except JobCancelledError:
                cancelled = await self.transition(job.id, JobState.CANCELLED, FOLLOWING)
                if cancelled is not None:
                    await self.finish(cancelled, active)
                return await self._current(job)
            except JobTimeoutError as err:
                log.warning("job %s: %s", job.id, err)
                return await self._give_up(job)
            except RunComfyError as err:
                if not is_retryable(err):  # not found, auth, failed, unexpected answers
                    return await self._fail_or_current(job, _reason(err))
                # Transient trouble the client gave up on: the job may well still run.
                if loop.time() >= deadline:
                    return await self._give_up(job)
                log.warning("job %s: RunComfy trouble (%s); still following", job.id, err)
                await asyncio.sleep(min(FOLLOW_PAUSE, max(0.0, deadline - loop.time())))
        if not urls:
            return await self._fail_or_current(job, "RunComfy finished without any image.")
        done = await self.transition(job.id, JobState.COMPLETED, FOLLOWING, result_urls=urls)
        return done or await self._current(job)

    async def _give_up(self, job: Job) -> Job:
        """The job's deadline passed: cancel it at RunComfy where possible, fail and refund."""
        minutes = self._timing.job_timeout / 60
        took = f"{minutes:g} minutes" if minutes >= 1 else f"{self._timing.job_timeout:g} s"
        if await self._try_cancel(job):
            reason = f"RunComfy didn't finish this job within {took}, so it was cancelled there."
        else:
            reason = f"RunComfy didn't finish this job within {took}, so the bot gave up on it."
        return await self._fail_or_current(job, reason)

    async def _fail_or_current(self, job: Job, reason: str) -> Job:
        """Fail the job (refund, tell the member); the job as it now is either way."""
        return await self._fail(job.id, reason) or await self._current(job)

    def _remaining(self, job: Job) -> float:
        """Seconds left of the job's deadline (counted from creation), with a floor for resumes."""
        age = (self._clock() - job.created_at).total_seconds()
        floor = min(60.0, self._timing.job_timeout)
        return max(self._timing.job_timeout - age, floor)

    async def _try_cancel(self, job: Job) -> bool:
        """Best effort: stop a job we gave up on, so it does not cost money for nothing."""
        if job.request_id is None:
            return False
        try:
            outcome = await self._client.job(job.request_id).cancel()
        except RunComfyError as err:
            log.info("job %s: cancel after timeout failed: %s", job.id, err)
            return False
        log.info("job %s: cancel after timeout: %s", job.id, outcome.value)
        return outcome is CancelOutcome.CANCELLED

    async def _complete(self, job: Job, active: ActiveJob) -> None:
        gate = self._owner.gate
        if gate is not None and await gate.hold(job):
            held = await self.transition(job.id, JobState.AWAITING_APPROVAL, {JobState.COMPLETED})
            if held is not None:
                self._jobs.hold(held)
                active.finished = True
                await self._feeds.quiet(
                    active
                )  # no status edit may overwrite "waiting for approval"
                try:
                    await gate.held(held)
                except Exception:
                    log.exception("job %s: the approval gate failed (the job stays held)", job.id)
            return
        await self.deliver(job, active)

    async def deliver(
        self, job: Job, active: ActiveJob | None, fallback_urls: Sequence[str] = ()
    ) -> Job | None:
        await self._pacing.yield_to_requests()
        async with self._pacing.deliveries:
            return await self._deliver_now(job, active, fallback_urls)

    async def _deliver_now(
        self, job: Job, active: ActiveJob | None, fallback_urls: Sequence[str] = ()
    ) -> Job | None:
        presenter = self._require_presenter()
        images, missing = await self._download(job)
        if not images and fallback_urls:
            # RunComfy's URLs expired (e.g. a result held for approval for days): use the copy
            # the caller has (the moderators' log entry's attachments).
            images, missing = await self.download(job.id, fallback_urls)
        if not images and not missing:
            return await self._fail(job.id, "RunComfy finished without any image.")
        # No image could be fetched: the presenter posts the URLs as links (never dropped).
        if active is not None:
            await self._feeds.quiet(active)
        try:
            delivery = await presenter.deliver(job, images, missing)
        except Exception:
            # The result exists: never fail or refund it for a posting problem. It stays
            # COMPLETED (or held) and is posted later: by a retry timer, or at the next start.
            log.exception("job %s: the result could not be posted; it will be tried again", job.id)
            self._postpone(job, active)
            return None
        requested = max(1, int(job.params.get("num_images", 1)))
        shown = len(images) + len(missing)
        delivered_cost = job.cost if shown >= requested else job.cost * shown // requested
        done = await self.transition(
            job.id,
            JobState.DELIVERED,
            DELIVERABLE,
            delivered_cost=delivered_cost,
            result_message_id=delivery.message_id,
        )
        if done is None:
            log.warning("job %s: delivered, but the job had already moved on", job.id)
        elif delivery.fallback:
            log.info("job %s: delivered as a channel message (token unusable)", job.id)
        self._jobs.forget(job.id)
        if done is not None:
            await self._owner.notify(done)
        return done

    def _postpone(self, job: Job, active: ActiveJob | None) -> None:
        """Try the delivery again later, backing off; after the last try, at the next start."""
        if active is None or self._owner.closing:
            return  # approval: the moderator's button can be clicked again
        active.delivery_attempts += 1
        if active.delivery_attempts >= self._timing.delivery_attempts:
            log.warning(
                "job %s: not posted after %d attempts; it stays finished for the next start",
                job.id,
                active.delivery_attempts,
            )
            return
        delay = min(
            self._timing.delivery_retry * 2 ** (active.delivery_attempts - 1),
            self._timing.delivery_retry_max,
        )
        loop = asyncio.get_running_loop()
        active.retry = loop.call_later(delay, self._retry_delivery, job.id)

    def _retry_delivery(self, job_id: str) -> None:
        active = self._jobs.get(job_id)
        if active is None or self._owner.closing:
            return
        active.retry = None
        task = asyncio.create_task(self._redeliver(job_id), name=f"redeliver-{job_id}")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _redeliver(self, job_id: str) -> None:
        job = await self._storage.jobs.get(job_id)
        if job is None or job.state != JobState.COMPLETED:
            return
        log.info("job %s: trying to post the result again", job_id)
        self._owner.start(job)

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
        failed = await self.transition(
            job_id,
            JobState.FAILED,
            {s for s in JobState if not s.is_terminal},
            error=reason[:1000],
        )
        if failed is not None:
            await self.finish(failed, self._jobs.get(job_id))
        return failed

    async def finish(self, job: Job, active: ActiveJob | None) -> None:
        """Show a job's end (cancel/failure); the winner of the state change calls this once."""
        if active is not None:
            active.finished = True
            await self._feeds.quiet(active)
        self._jobs.forget(job.id)
        presenter = self._owner.presenter
        if presenter is not None:
            try:
                await presenter.show_outcome(job)
            except Exception:
                log.exception("job %s: could not show the outcome", job.id)
        await self._owner.notify(job)

    async def _current(self, job: Job) -> Job:
        return await self._storage.jobs.get(job.id) or job

    async def transition(
        self, job_id: str, to: JobState, expected: Collection[JobState] | None, **fields: Any
    ) -> Job | None:
        moved = await self._storage.jobs.transition(job_id, to, expected=expected, **fields)
        if moved is not None and (to.is_terminal or to == JobState.DELIVERED):
            self._jobs.settled(job_id)
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


def _reason(err: RunComfyError) -> str:
    """What to tell the member about an API error (never the raw body)."""
    if isinstance(err, JobFailedError):
        return f"RunComfy could not make this image ({err.message})."
    return f"RunComfy error: {err.message}."
