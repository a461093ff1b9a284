"""One linear coroutine per job: submit -> follow -> gate -> deliver -> finished.

Each step writes the row that lets a restart tell what happened before its side effect (rules:
``services/jobs/engine.py``). Progress goes to the presenter, held and ended jobs to the events
(the moderators' log). No discord imports."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from client import RunComfyClient
from client.errors import (
    JobCancelledError,
    JobTimeoutError,
    RunComfyError,
    SubmitOutcomeUnknownError,
)
from client.models import JobState as ApiState
from client.models import JobStatus as ApiStatus
from client.retry import is_retryable
from services.jobs import notes
from services.jobs.notes import SUBMIT_UNKNOWN
from services.jobs.outage import ApiWatch
from services.jobs.request import JobRequest
from services.jobs.runcomfy import cancel_quietly, download
from services.jobs.running import RunningJob, RunningJobs
from services.jobs.types import JobEvents, JobPresenter, Progress
from services.policy import PolicyService
from services.settings import JobTiming
from services.wording import Wording
from storage import Storage
from storage.models import Job, JobState

log = logging.getLogger("services.jobs")  # one logger for the whole engine

BEFORE_SUBMIT = frozenset({JobState.RESERVED})
FOLLOWING = frozenset({JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING})
DELIVERABLE = frozenset({JobState.COMPLETED, JobState.AWAITING_APPROVAL})
UNFINISHED = frozenset(s for s in JobState if not s.is_terminal)
_API_TO_STORE = {ApiState.QUEUED: JobState.QUEUED, ApiState.RUNNING: JobState.RUNNING}

# After a transient API error the client's retries gave up on: the wait before following again.
FOLLOW_PAUSE = 1.0


class JobPipeline:
    def __init__(
        self,
        storage: Storage,
        client: RunComfyClient,
        presenter: JobPresenter,
        policy: PolicyService,
        events: JobEvents,
        watch: ApiWatch,
        *,
        timing: JobTiming,
        clock: Callable[[], datetime],
    ) -> None:
        self._storage = storage
        self._client = client
        self._presenter = presenter
        self._policy = policy
        self._events = events
        self._watch = watch  # outages, the circuit breaker, metrics
        self._timing = timing
        self._clock = clock
        self.running = RunningJobs()
        self._submits: set[asyncio.Future[Any]] = set()  # POSTs on the wire (shielded)
        self._retries: set[asyncio.Task[None]] = set()  # delivery retries starting
        self.closing = False

    # -- tasks ------------------------------------------------------------------------------

    def start(self, job: Job) -> None:
        """Run ``job`` in the background from wherever it is (once at a time)."""
        if self.closing:
            return  # it stays in the database; the next start resumes it
        running = self.running.add(job.id)
        if running.task is None:
            running.task = asyncio.create_task(self._run(job, running), name=f"job-{job.id}")

    async def stop(self) -> int:
        """Shutdown: let submits on the wire record their request_id, stop everything else."""
        self.closing = True
        if self._submits:
            _, late = await asyncio.wait(list(self._submits), timeout=self._timing.submit_grace)
            for submit in late:  # still on the wire: the next start fails and refunds it
                submit.add_done_callback(notes.late_submit)
        tasks: list[asyncio.Task[None]] = list(self._retries)
        for running in self.running:
            if running.retry is not None:
                running.retry.cancel()
            if running.task is not None:
                tasks.append(running.task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    async def _run(self, job: Job, running: RunningJob) -> None:
        try:
            if job.state == JobState.RESERVED:
                job = await self._submit(job, running)
            if job.state in FOLLOWING:
                job = await self._follow(job, running)
            if job.state == JobState.COMPLETED:
                job = await self._gated(job)
            if job.state == JobState.COMPLETED:
                await self.deliver(job, running)
        except asyncio.CancelledError:
            if not running.elsewhere:  # else another process ended it or holds it: nothing to do
                log.info("job %s: stopped by shutdown (kept for the next start)", job.id)
                raise
        except Exception:
            log.exception("job %s: unexpected error", job.id)
            current = await self.current(job)
            if current.state in DELIVERABLE:
                # A result exists: never fail or refund it; post it later (or at the next start).
                self._postpone(current, running)
            else:
                await self.fail(job.id, notes.unexpected(job.id))
        finally:
            if running.task is asyncio.current_task():
                running.task = None
            if running.retry is None:
                self.running.forget(job.id)

    # -- submit -------------------------------------------------------------------------------

    async def _submit(self, job: Job, running: RunningJob) -> Job:
        async with self._presenter.pace("submit"):
            if self.closing:
                raise asyncio.CancelledError  # left RESERVED: resumed (submitted) next start
            # The POST and the row that records its request_id are one critical section:
            # shielded from shutdown so a clean stop never leaves a job in SUBMITTING.
            inner = asyncio.ensure_future(self._submit_now(job, running))
            self._submits.add(inner)
            inner.add_done_callback(self._submits.discard)
            return await asyncio.shield(inner)

    async def _submit_now(self, job: Job, running: RunningJob) -> Job:
        moved = await self.transition(job.id, JobState.SUBMITTING, BEFORE_SUBMIT)
        if moved is None:  # cancelled (or failed) while it waited
            running.submitted.set()
            return await self.current(job)
        try:
            running.handle = await self._client.submit(JobRequest.of(moved).api)
        except SubmitOutcomeUnknownError as err:
            running.submitted.set()
            log.warning("job %s: the submit's outcome is unknown (%s)", job.id, err)
            self._watch.failed(job, err, submit=True)
            return await self._fail_or_current(job, SUBMIT_UNKNOWN)
        except RunComfyError as err:
            running.submitted.set()
            return await self._fail_or_current(job, self._watch.failed(job, err, submit=True))
        self._watch.submitted()
        try:
            request_id = running.handle.request_id
            stored = await self.transition(
                job.id, JobState.SUBMITTED, {JobState.SUBMITTING}, request_id=request_id
            )
        except Exception:
            # RunComfy has the job but we could not record it: leave its id for an operator.
            log.error(
                "job %s: submitted as RunComfy request %s, but recording it failed",
                job.id,
                running.handle.request_id,
            )
            raise
        finally:
            running.submitted.set()
        if stored is None:
            return await self.current(job)
        self._presenter.show_progress(stored, Progress(JobState.SUBMITTED))
        return stored

    # -- follow -------------------------------------------------------------------------------

    async def _follow(self, job: Job, running: RunningJob) -> Job:
        assert job.request_id is not None
        handle = running.handle
        if handle is None or handle.request_id != job.request_id:  # resumed after a restart
            handle = self._client.job(
                job.request_id, request=JobRequest.of(job).api, submitted_at=job.created_at
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
            self._presenter.show_progress(job, Progress(state, status.queue_position))

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._remaining(job)
        while True:
            try:
                with running.waiting():  # another process's Cancel may stop this wait
                    urls = await handle.wait(
                        timeout=max(0.0, deadline - loop.time()), on_status=on_status
                    )
                break
            except JobCancelledError:
                cancelled = await self.transition(job.id, JobState.CANCELLED, FOLLOWING)
                if cancelled is not None:
                    await self.finish(cancelled)
                return await self.current(job)
            except JobTimeoutError as err:
                log.warning("job %s: %s", job.id, err)
                return await self._give_up(job)
            except RunComfyError as err:
                if not is_retryable(err):  # not found, auth, failed, unexpected answers
                    return await self._fail_or_current(job, self._watch.failed(job, err))
                # Transient trouble the client gave up on: the job may well still run.
                if loop.time() >= deadline:
                    return await self._give_up(job)
                log.warning("job %s: RunComfy trouble (%s); still following", job.id, err)
                with running.waiting():
                    await asyncio.sleep(min(FOLLOW_PAUSE, max(0.0, deadline - loop.time())))
        self._watch.recovered()
        if not urls:
            return await self._fail_or_current(job, notes.NO_IMAGE)
        done = await self.transition(job.id, JobState.COMPLETED, FOLLOWING, result_urls=urls)
        return done or await self.current(job)

    def _remaining(self, job: Job) -> float:
        """Seconds left of the job's deadline (counted from creation), with a floor for resumes."""
        age = (self._clock() - job.created_at).total_seconds()
        floor = min(60.0, self._timing.job_timeout)
        return max(self._timing.job_timeout - age, floor)

    async def _give_up(self, job: Job) -> Job:
        """The job's deadline passed: cancel it at RunComfy where possible, fail and refund."""
        cancelled = await cancel_quietly(self._client, job)
        return await self._fail_or_current(
            job, notes.timeout_reason(self._timing.job_timeout, cancelled)
        )

    # -- gate and deliver ---------------------------------------------------------------------

    async def _gated(self, job: Job) -> Job:
        """Approval mode: the finished job waits for a moderator instead of being posted."""
        if job.guild_id is None:
            return job
        policy = await self._policy.policy(job.guild_id)
        if not policy.approval_mode:
            return job
        if policy.log_channel_id is None:
            log.warning(
                "job %s: approval mode is on in guild %s but no log channel is set;"
                " delivering without approval",
                job.id,
                job.guild_id,
            )
            return job
        held = await self.transition(job.id, JobState.AWAITING_APPROVAL, {JobState.COMPLETED})
        if held is None:
            return await self.current(job)
        try:
            await self._presenter.show_held(held)
        except Exception:
            log.exception("job %s: could not show that it waits for approval", job.id)
        try:
            await self._events.held(held)
        except Exception:
            log.exception("job %s: the moderators' log could not take it (it stays held)", job.id)
        return held

    async def deliver(
        self, job: Job, running: RunningJob | None, fallback_urls: Sequence[str] = ()
    ) -> Job | None:
        """Post the result and commit its credits (DELIVERED); None if it was not posted."""
        async with self._presenter.pace("deliver"):
            images, missing = await download(self._client, job.id, job.result_urls)
            if not images and fallback_urls:
                # RunComfy's URLs expired (e.g. a result held for approval for days): use the
                # copy the caller has (the moderators' log entry's attachments).
                images, missing = await download(self._client, job.id, fallback_urls)
            if not images and not missing:
                return await self.fail(job.id, notes.NO_IMAGE)
            try:
                # No image could be fetched: the presenter posts the URLs as links.
                delivery = await self._presenter.deliver(job, images, missing)
            except Exception:
                # The result exists: never fail or refund it for a posting problem. It stays
                # COMPLETED (or held) and is posted later: by a retry, or at the next start.
                log.exception("job %s: the result could not be posted; tried again later", job.id)
                self._postpone(job, running)
                return None
        requested = max(1, JobRequest.of(job).options.num_images)
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
            return None
        if delivery.fallback:
            log.info("job %s: delivered as a channel message (token unusable)", job.id)
        await self.ended(done)
        return done

    def _postpone(self, job: Job, running: RunningJob | None) -> None:
        """Try the delivery again later, backing off; after the last try, at the next start."""
        if running is None or self.closing:
            return  # approval: the moderator's button can be clicked again
        running.delivery_attempts += 1
        if running.delivery_attempts >= self._timing.delivery_attempts:
            log.warning(
                "job %s: not posted after %d attempts; it stays finished for the next start",
                job.id,
                running.delivery_attempts,
            )
            return
        delay = min(
            self._timing.delivery_retry * 2 ** (running.delivery_attempts - 1),
            self._timing.delivery_retry_max,
        )
        running.retry = asyncio.get_running_loop().call_later(delay, self._redeliver, job.id)

    def _redeliver(self, job_id: str) -> None:
        running = self.running.get(job_id)
        if running is None or self.closing:
            return
        running.retry = None

        async def again() -> None:
            job = await self._storage.jobs.get(job_id)
            if job is not None and job.state == JobState.COMPLETED:
                log.info("job %s: trying to post the result again", job_id)
                self.start(job)
            else:
                self.running.forget(job_id)

        task = asyncio.create_task(again(), name=f"redeliver-{job_id}")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    # -- endings ------------------------------------------------------------------------------

    async def fail(self, job_id: str, reason: Wording) -> Job | None:
        """FAILED (credits refunded) unless the job already ended; tell the member why."""
        failed = await self.transition(job_id, JobState.FAILED, UNFINISHED, error=reason.stored())
        if failed is not None:
            await self.finish(failed)
        return failed

    async def _fail_or_current(self, job: Job, reason: Wording) -> Job:
        return await self.fail(job.id, reason) or await self.current(job)

    async def finish(self, job: Job) -> None:
        """Show a job's end (cancel/failure); the winner of the state change calls this once."""
        try:
            await self._presenter.show_outcome(job)
        except Exception:
            log.exception("job %s: could not show the outcome", job.id)
        await self.ended(job)

    async def withdraw(self, job: Job) -> None:
        """A job that may never have been shown ended: say so where it was shown, if anywhere."""
        try:
            await self._presenter.withdraw(job)
        except Exception:
            log.exception("job %s: could not withdraw its status message", job.id)
        await self.ended(job)

    async def ended(self, job: Job) -> None:
        """Tell the moderators' log that ``job`` ended; its trouble is never the job's."""
        try:
            await self._events.ended(job)
        except Exception:
            log.exception("job %s: the moderators' log failed", job.id)

    async def current(self, job: Job) -> Job:
        return await self._storage.jobs.get(job.id) or job

    async def transition(
        self, job_id: str, to: JobState, expected: Collection[JobState] | None, **fields: Any
    ) -> Job | None:
        moved = await self._storage.jobs.transition(job_id, to, expected=expected, **fields)
        if moved is not None:
            self._watch.moved(moved)
            log.info("job %s: -> %s%s", job_id, to.value, notes.moved_note(moved))
        return moved
