"""The RunComfy client: submit jobs, follow them through a ``JobHandle``, download outputs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp

from client.errors import (
    APIConnectionError,
    InvalidRequestError,
    JobCancelledError,
    JobFailedError,
    JobNotFinishedError,
    JobTimeoutError,
    RunComfyError,
    ServerError,
    SubmitOutcomeUnknownError,
)
from client.http import ApiTransport, Downloader, OnRequest, submit_may_retry
from client.models import (
    CancelOutcome,
    DownloadedImage,
    EditRequest,
    GenerationRequest,
    JobState,
    JobStatus,
)
from client.parsing import parse_cancel, parse_result, parse_status, parse_submit
from client.polling import DurationEstimator, JobTimeline, PollingPolicy
from client.retry import RetryPolicy, Sleep, is_retryable, retry_after_of
from client.settings import ClientSettings

StatusCallback = Callable[[JobStatus], Awaitable[None]]
DEFAULT_MAX_DOWNLOAD = 64 * 2**20  # a 4K PNG is ~24 MB
log = logging.getLogger(__name__)


class RunComfyClient:
    """One per process: holds the shared session, the retry rules and what it learned of timings.

    The session is the caller's (opened and closed by them) and must not carry the API token
    as a default header, so downloads from output hosts go without it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: ClientSettings,
        *,
        retry: RetryPolicy | None = None,
        polling: PollingPolicy | None = None,
        request_timeout: float = 30.0,
        download_timeout: float = 120.0,
        sleep: Sleep = asyncio.sleep,  # every pause between requests goes through it (tests)
        on_request: OnRequest | None = None,  # told (endpoint, outcome) of every API attempt
    ) -> None:
        self._settings = settings
        retry = retry or RetryPolicy()
        self._transport = ApiTransport(
            session, settings, retry, timeout=request_timeout, sleep=sleep, on_request=on_request
        )
        self._downloader = Downloader(session, retry, timeout=download_timeout, sleep=sleep)
        self._durations = DurationEstimator(polling or PollingPolicy())

    def model_for(self, request: GenerationRequest) -> str:
        if isinstance(request, EditRequest):
            return self._settings.edit_model
        return self._settings.text_to_image_model

    @property
    def durations(self) -> DurationEstimator:
        """What the client learned of job durations (export / load it to keep it)."""
        return self._durations

    def _timing_keys(self, request: GenerationRequest) -> tuple[str, ...]:
        """Durations are learned per model (edit or not), resolution and image count, falling
        back to the same resolution with another count; never to another resolution (a 4K job
        runs far longer than a 1K one: the resolution's prior is the better guess)."""
        at = f"{self.model_for(request)}@{request.options.resolution}"
        return (f"{at}x{request.options.num_images}", at)

    async def submit(self, request: GenerationRequest) -> JobHandle:
        """Send the job. The POST is repeated only if it certainly never reached the server.

        Raises ``SubmitOutcomeUnknownError`` (an ``APIConnectionError``) when the job may exist
        and be billed even though no request id came back: the connection was lost after
        sending, the answer timed out, or the API answered 408 or 5xx. Never re-submit on it.
        """
        model = self.model_for(request)
        try:
            body = await self._transport.call(
                "POST", f"/v1/models/{model}", json=request.to_payload(), retry_if=submit_may_retry
            )
        except (APIConnectionError, ServerError) as err:
            if submit_may_retry(err):  # it never left: nothing was created
                raise
            raise SubmitOutcomeUnknownError(
                f"{err}; the job may have been created anyway (a submit is never repeated, "
                "so it cannot be paid twice)",
                status=err.status,
                error_code=err.error_code,
                request_id=err.request_id,
                body=err.body,
            ) from err
        request_id = parse_submit(body)
        submitted_at = asyncio.get_running_loop().time()
        return self._handle(request_id, request, submitted_at)

    def job(
        self,
        request_id: str,
        *,
        request: GenerationRequest | None = None,
        submitted_at: datetime | None = None,
    ) -> JobHandle:
        """Rebuild a handle from a stored request id (after a restart, or from the CLI).

        ``request`` and ``submitted_at`` (aware datetime), when known, let ``wait()`` time its
        polls from what was learned instead of starting from scratch.
        """
        started: float | None = None
        if submitted_at is not None:
            age = (datetime.now(UTC) - submitted_at).total_seconds()
            started = asyncio.get_running_loop().time() - max(0.0, age)
        return self._handle(request_id, request, started)

    def _handle(
        self, request_id: str, request: GenerationRequest | None, submitted_at: float | None
    ) -> JobHandle:
        return JobHandle(
            request_id,
            transport=self._transport,
            durations=self._durations,
            keys=self._timing_keys(request) if request is not None else (),
            resolution=request.options.resolution if request is not None else None,
            submitted_at=submitted_at,
        )

    async def download(self, url: str, *, max_bytes: int = DEFAULT_MAX_DOWNLOAD) -> DownloadedImage:
        """Fetch an output image (PNG, JPEG or WebP, at most ``max_bytes``), without the token."""
        return await self._downloader.download(url, max_bytes=max_bytes)

    async def sniff(self, url: str, *, timeout: float = 5.0) -> str | None:  # noqa: ASYNC109
        """The image type of the file at ``url`` from its first bytes (None: not an image)."""
        return await self._downloader.sniff(url, timeout=timeout)


class JobHandle:
    """A submitted job, known by its ``request_id``."""

    def __init__(
        self,
        request_id: str,
        *,
        transport: ApiTransport,
        durations: DurationEstimator,
        keys: tuple[str, ...],
        submitted_at: float | None,
        resolution: str | None = None,  # its prior, while nothing was learned for the keys
    ) -> None:
        if not request_id or any(ch.isspace() for ch in request_id):
            raise InvalidRequestError("request_id", "must be a non-empty id without spaces")
        self.request_id = request_id
        self._transport = transport
        self._durations = durations  # shared by the client's handles: what jobs have taken
        self._keys = keys
        self._resolution = resolution
        self._submitted_at = submitted_at
        self._sleep = transport.sleep
        self._path = f"/v1/requests/{quote(request_id, safe='')}"

    def __repr__(self) -> str:
        return f"JobHandle({self.request_id!r})"

    async def status(self, *, deadline: float | None = None) -> JobStatus:
        """The job's state now. ``deadline`` (loop time) stops retries from running past it."""
        body = await self._call("GET", "status", deadline)
        return parse_status(body)

    async def _call(self, method: str, endpoint: str, deadline: float | None) -> object:
        return await self._transport.call(
            method,
            f"{self._path}/{endpoint}",
            request_id=self.request_id,
            deadline=deadline,
            deadline_floor=self._durations.policy.last_poll_timeout,
        )

    async def result(self) -> tuple[str, ...]:
        """The image URLs of a completed job.

        Raises JobFailedError or JobCancelledError if it ended so, JobNotFinishedError if not yet.
        """
        status, urls = await self._fetch_result()
        if not status.state.is_terminal:
            raise JobNotFinishedError(
                f"request {self.request_id} has not finished yet",
                job_status=status,
                request_id=self.request_id,
            )
        self._raise_if_unsuccessful(status)
        return urls

    async def cancel(self) -> CancelOutcome:
        """CANCELLED if the job will not run (it was queued, or already cancelled)."""
        body = await self._call("POST", "cancel", None)
        outcome = parse_cancel(body)
        if outcome is CancelOutcome.CANCELLED:
            return outcome
        # A retried cancel whose first attempt worked (its answer lost) answers "not
        # cancellable" too, so every refusal is checked against the job's state: one extra
        # status request per refused cancel (a running or finished job). If that check fails,
        # the API's answer stands.
        try:
            state = (await self.status()).state
        except RunComfyError as err:
            log.info("request %s: cancel refused; its state is unknown: %s", self.request_id, err)
            return outcome
        return CancelOutcome.CANCELLED if state is JobState.CANCELLED else outcome

    # The deadline is ours rather than asyncio.timeout(): it bounds sleeps, retries and each
    # request's timeout, and still allows a last poll, instead of cancelling a request half-way.
    async def wait(
        self,
        *,
        timeout: float,  # noqa: ASYNC109
        on_status: StatusCallback | None = None,
    ) -> tuple[str, ...]:
        """Poll until the job ends; return its image URLs.

        ``on_status`` is awaited on each change of (state, queue position). Transient failures
        (``is_retryable``: 408, 429, 5xx, timeouts, lost connections) do not end the wait: it
        keeps polling, backing off and honouring any Retry-After, until the deadline. Raises
        JobFailedError, JobCancelledError, JobTimeoutError after ``timeout`` seconds (the job
        may still run; its ``__cause__`` is the last failure, if the API was failing), or, at
        once, any other RunComfyError (authentication, not found, unexpected answers).
        Exceptions from ``on_status`` propagate.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        known_start = self._submitted_at is not None
        estimate = self._durations.estimate(self._keys)
        if estimate is None and self._resolution is not None:
            estimate = self._durations.prior(self._resolution)
        timeline = JobTimeline(
            self._durations.policy,
            estimate,
            self._submitted_at if known_start else loop.time(),
        )
        last: tuple[JobState, int | None] | None = None
        retry_at = loop.time()  # no poll before this, after a transient failure
        failures = 0  # transient failures in a row
        error: RunComfyError | None = None  # the latest of them
        while True:
            now = loop.time()
            poll_at = min(max(timeline.next_poll_at(now), retry_at), deadline)
            await self._sleep(max(0.0, poll_at - now))
            try:
                status, urls = await self._poll(timeline, deadline)
            except RunComfyError as err:
                if not is_retryable(err):
                    raise
                failures, error = failures + 1, err
                retry_at = loop.time() + self._pause_after(failures, err)
            else:
                failures, error = 0, None
                if status is not None and (status.state, status.queue_position) != last:
                    last = (status.state, status.queue_position)
                    if on_status is not None:
                        await on_status(status)
                if status is not None and status.state.is_terminal:
                    self._raise_if_unsuccessful(status)
                    if urls:
                        sample = timeline.sample() if known_start and self._keys else None
                        if sample is not None:
                            self._durations.record(self._keys, sample)
                        return urls
            if loop.time() >= deadline:
                message = f"request {self.request_id} did not finish within {timeout:g} s"
                if error is not None:
                    message += f" (RunComfy kept failing: {error})"
                raise JobTimeoutError(message, request_id=self.request_id) from error

    def _pause_after(self, failures: int, error: RunComfyError) -> float:
        """The pause after ``failures`` polls in a row failed (each after its own retries).

        It carries on the retry policy's backoff where a poll's retries stopped, and is never
        shorter than a Retry-After, even one the policy would not wait out for a single call.
        """
        retry = self._transport.retry
        pause = retry.pause(retry.max_attempts - 1 + failures, retry_after_of(error))
        log.info(
            "request %s: polling failed (%s); trying again in %.2f s",
            self.request_id,
            error,
            pause,
        )
        return pause

    async def _poll(
        self, timeline: JobTimeline, deadline: float
    ) -> tuple[JobStatus | None, tuple[str, ...]]:
        """One look at the job (status, or result, or both), recorded in ``timeline``."""
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        if timeline.prefers_result(sent_at):
            status, urls = await self._poll_result(deadline=deadline)
        else:
            status, urls = await self.status(deadline=deadline), ()
            if status.state is JobState.COMPLETED:
                try:
                    _, urls = await self._poll_result(deadline=deadline)
                except RunComfyError:
                    # Keep what the status said: the next poll goes straight to /result.
                    timeline.observe(status, sent_at, loop.time())
                    raise
        timeline.observe(status, sent_at, loop.time())
        return status, urls

    async def _fetch_result(
        self, *, deadline: float | None = None
    ) -> tuple[JobStatus, tuple[str, ...]]:
        body = await self._call("GET", "result", deadline)
        return parse_result(body)

    async def _poll_result(
        self, *, deadline: float | None = None
    ) -> tuple[JobStatus | None, tuple[str, ...]]:
        """Like ``_fetch_result``, with state None when the API only said "too early"."""
        try:
            return await self._fetch_result(deadline=deadline)
        except JobNotFinishedError:
            return None, ()

    def _raise_if_unsuccessful(self, status: JobStatus) -> None:
        if status.state is JobState.FAILED:
            raise JobFailedError(
                f"the job failed: {status.error}", request_id=self.request_id, body=status.raw
            )
        if status.state is JobState.CANCELLED:
            raise JobCancelledError(
                f"request {self.request_id} was cancelled",
                request_id=self.request_id,
                body=status.raw,
            )
