"""The client against the fake RunComfy over loopback: states, errors, retries, cancel, deadline."""

from __future__ import annotations

import asyncio
import io
import socket
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from PIL import Image

from client import ClientSettings, RetryPolicy, RunComfyClient
from client.errors import (
    APIConnectionError,
    AuthenticationError,
    DownloadError,
    InsufficientBalanceError,
    JobCancelledError,
    JobFailedError,
    JobNotFinishedError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    SubmitOutcomeUnknownError,
    UnexpectedResponseError,
    ValidationError,
)
from client.models import (
    CancelOutcome,
    EditRequest,
    GenerationOptions,
    JobState,
    JobStatus,
    TextToImageRequest,
)
from tests.conftest import FAST_POLLING, FAST_RETRY
from tests.fakes.runcomfy import EDIT_MODEL, TEXT_TO_IMAGE_MODEL, FakeRunComfy, JobScript
from tests.helpers import FOREVER, finish_now

CAT = TextToImageRequest("a cat in a hat")
# Queued (at 4) or running for longer than any test runs, however slow the machine.
LONG_QUEUE = JobScript(queue_seconds=FOREVER, run_seconds=1, queue_position=4)
LONG_RUN = JobScript(queue_seconds=0, run_seconds=FOREVER)


async def wait_until(predicate: Any, what: str) -> None:
    """Until the fake's state says so; the bound only stops a broken test from hanging."""
    for _ in range(6000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


class RecordingSleep:
    """An ``asyncio.sleep`` that remembers every pause the client asked for."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await asyncio.sleep(seconds)


def client_for(session: aiohttp.ClientSession, fake: FakeRunComfy, **kwargs: Any) -> RunComfyClient:
    settings = ClientSettings(api_token="test-token", api_base=fake.base_url)
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("polling", FAST_POLLING)
    return RunComfyClient(session, settings, **kwargs)


# -- the happy paths --------------------------------------------------------------------------


async def test_text_to_image_from_submit_to_images(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    # The fake moves on only once the client reported the current state, so no state can be
    # missed on a slow machine: queued at 2, 1, 0, then running, then done.
    fake_runcomfy.script(JobScript(queue_seconds=FOREVER, run_seconds=FOREVER, queue_position=2))
    options = GenerationOptions(num_images=3, seed=7, aspect_ratio="16:9", output_format="jpeg")
    handle = await runcomfy_client.submit(TextToImageRequest("a lighthouse", options))
    seen: list[JobStatus] = []

    async def on_status(status: JobStatus) -> None:
        seen.append(status)
        fake_job = fake_runcomfy.jobs[handle.request_id]
        if status.state is JobState.QUEUED and status.queue_position:
            fake_job.script = replace(fake_job.script, queue_position=status.queue_position - 1)
        elif status.state is JobState.QUEUED:
            fake_job.script = replace(fake_job.script, queue_seconds=0.0)
        elif status.state is JobState.RUNNING:
            finish_now(fake_runcomfy, handle.request_id)

    urls = await handle.wait(timeout=30, on_status=on_status)

    job = fake_runcomfy.jobs[handle.request_id]
    assert job.model == TEXT_TO_IMAGE_MODEL
    assert job.payload == {"prompt": "a lighthouse", **options.to_payload()}
    assert len(urls) == 3
    # each change reported once (the client may poll a state many times), counting down
    states = [s.state for s in seen]
    assert states == [JobState.QUEUED] * 3 + [JobState.RUNNING, JobState.COMPLETED]
    positions = [s.queue_position for s in seen if s.state is JobState.QUEUED]
    assert positions == [2, 1, 0]
    for url in urls:
        image = await runcomfy_client.download(url)
        assert image.content_type == "image/jpeg"
        assert image.extension == "jpg"
        assert Image.open(io.BytesIO(image.data)).format == "JPEG"
    api_calls = [r for r in fake_runcomfy.requests if r.endpoint != "image"]
    assert all(r.headers["Authorization"] == "Bearer test-token" for r in api_calls)


async def test_edit_sends_its_images_to_the_edit_model(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    sources = ("https://cdn.example/a.png", "https://cdn.example/b.webp")
    handle = await runcomfy_client.submit(EditRequest("make it night", sources))
    (url,) = await handle.wait(timeout=30)
    job = fake_runcomfy.jobs[handle.request_id]
    assert job.model == EDIT_MODEL
    assert job.payload["image_urls"] == list(sources)
    assert (await runcomfy_client.download(url)).content_type == "image/png"


async def test_status_reports_every_state(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(
        LONG_QUEUE,
        LONG_RUN,
        JobScript(queue_seconds=0, run_seconds=0),
        JobScript(queue_seconds=0, run_seconds=0, outcome="fail", error="NSFW content detected"),
        LONG_QUEUE,
    )
    queued, running, completed, failed, cancelled = [
        await runcomfy_client.submit(CAT) for _ in range(5)
    ]
    await cancelled.cancel()
    assert await queued.status() == JobStatus(JobState.QUEUED, queue_position=4)
    assert await running.status() == JobStatus(JobState.RUNNING)
    assert await completed.status() == JobStatus(JobState.COMPLETED)
    assert await failed.status() == JobStatus(JobState.FAILED, error="NSFW content detected")
    assert await cancelled.status() == JobStatus(JobState.CANCELLED)


async def test_result_of_each_kind_of_job(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(
        JobScript(queue_seconds=0, run_seconds=0),
        LONG_RUN,
        JobScript(queue_seconds=0, run_seconds=0, outcome="fail", error={"message": "GPU lost"}),
        LONG_QUEUE,
    )
    done, running, failed, cancelled = [await runcomfy_client.submit(CAT) for _ in range(4)]
    await cancelled.cancel()

    (url,) = await done.result()  # one image: the API says output.image
    assert url.endswith(".png")
    with pytest.raises(JobNotFinishedError) as not_yet:
        await running.result()
    assert not_yet.value.job_status == JobStatus(JobState.RUNNING)
    with pytest.raises(JobFailedError, match="GPU lost"):
        await failed.result()
    with pytest.raises(JobCancelledError):
        await cancelled.result()


async def test_a_too_early_result_answered_with_400005(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=0, run_seconds=FOREVER, result_too_early=True))
    handle = await runcomfy_client.submit(CAT)
    with pytest.raises(JobNotFinishedError) as caught:
        await handle.result()
    assert caught.value.job_status is None
    assert caught.value.error_code == 400005
    # wait() takes it as "not finished" and carries on
    waiting = asyncio.create_task(handle.wait(timeout=30))
    await wait_until(lambda: fake_runcomfy.count("result") >= 2, "wait() to ask for the result")
    assert not waiting.done()
    finish_now(fake_runcomfy, handle.request_id)
    assert len(await waiting) == 1


async def test_alternative_state_spellings(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    spellings = {"completed": "succeeded", "cancelled": "canceled", "in_progress": "running"}
    fake_runcomfy.script(
        JobScript(queue_seconds=0, run_seconds=0.03, state_names=spellings),
        JobScript(queue_seconds=30, state_names=spellings),
    )
    done = await runcomfy_client.submit(CAT)
    assert len(await done.wait(timeout=30)) == 1
    queued = await runcomfy_client.submit(CAT)
    assert await queued.cancel() is CancelOutcome.CANCELLED
    assert (await queued.status()).state is JobState.CANCELLED


async def test_an_unknown_state_is_a_typed_error_with_the_body(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=30, state_names={"in_queue": "warming_up"}))
    handle = await runcomfy_client.submit(CAT)
    with pytest.raises(UnexpectedResponseError) as caught:
        await handle.wait(timeout=30)
    assert caught.value.body["status"] == "warming_up"


async def test_a_handle_rebuilt_from_a_stored_request_id(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=0.02, run_seconds=0.05))
    request_id = (await runcomfy_client.submit(CAT)).request_id
    rebuilt = runcomfy_client.job(request_id)  # e.g. after a restart
    assert rebuilt.request_id == request_id
    assert len(await rebuilt.wait(timeout=30)) == 1
    assert (await rebuilt.status()).state is JobState.COMPLETED


# -- endings other than success ---------------------------------------------------------------


async def test_a_failed_job_raises_with_the_api_message(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(JobScript(outcome="fail", error="prompt was flagged"))
    handle = await runcomfy_client.submit(CAT)
    with pytest.raises(JobFailedError) as caught:
        await handle.wait(timeout=30)
    assert str(caught.value) == "the job failed: prompt was flagged"
    assert caught.value.request_id == handle.request_id


async def test_an_error_body_with_http_200_while_polling(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(JobScript(outcome="error_body", error_code=404001, error="expired"))
    handle = await runcomfy_client.submit(CAT)
    with pytest.raises(NotFoundError) as caught:
        await handle.wait(timeout=30)
    assert caught.value.status == 200
    assert caught.value.error_code == 404001


async def test_cancel_a_queued_job(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(LONG_QUEUE)
    handle = await runcomfy_client.submit(CAT)
    waiting = asyncio.create_task(handle.wait(timeout=30))
    assert await handle.cancel() is CancelOutcome.CANCELLED
    with pytest.raises(JobCancelledError):
        await waiting
    assert fake_runcomfy.jobs[handle.request_id].cancelled_at is not None


async def test_a_running_job_is_not_cancellable(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(LONG_RUN)
    handle = await runcomfy_client.submit(CAT)
    assert await handle.cancel() is CancelOutcome.NOT_CANCELLABLE
    assert (await handle.status()).state is JobState.RUNNING


async def test_a_cancel_whose_answer_was_lost_is_still_reported_cancelled(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(LONG_QUEUE)
    handle = await runcomfy_client.submit(CAT)
    fake_runcomfy.inject("cancel", drop=True)  # cancelled, but the answer never arrives
    fake_runcomfy.inject("cancel", status=200, body={"outcome": "not_cancellable"})
    assert await handle.cancel() is CancelOutcome.CANCELLED
    assert fake_runcomfy.count("cancel") == 2


async def test_a_refused_cancel_stands_when_the_state_check_fails(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(LONG_RUN)
    handle = await runcomfy_client.submit(CAT)
    fake_runcomfy.inject("status", status=404, body={"error_code": 404001, "message": "gone"})
    assert await handle.cancel() is CancelOutcome.NOT_CANCELLABLE
    assert fake_runcomfy.count("status") == 1


async def test_wait_gives_up_at_its_deadline(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(LONG_QUEUE)
    handle = await runcomfy_client.submit(CAT)
    with pytest.raises(JobTimeoutError) as caught:
        await handle.wait(timeout=0.1)
    assert caught.value.request_id == handle.request_id
    assert (await handle.status()).state is JobState.QUEUED  # the job itself goes on


async def test_wait_rides_out_a_short_outage(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    # More failures in a row than one call's retries (FAST_RETRY: 3 attempts), on both the
    # status and the result endpoint, while the job runs.
    fake_runcomfy.script(JobScript(queue_seconds=0, run_seconds=0.1))
    handle = await runcomfy_client.submit(CAT)
    fake_runcomfy.inject("status", status=503, times=4)
    fake_runcomfy.inject("result", status=503, times=4)
    seen: list[JobState] = []

    async def on_status(status: JobStatus) -> None:
        seen.append(status.state)

    assert len(await handle.wait(timeout=30, on_status=on_status)) == 1
    assert seen[-1] is JobState.COMPLETED
    # every injected failure was met, and a success followed on each endpoint
    assert fake_runcomfy.count("status") >= 5
    assert fake_runcomfy.count("result") >= 5


async def test_wait_honours_a_retry_after_longer_than_one_call_would_wait(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    retry = replace(FAST_RETRY, max_retry_after=0.05)  # a single call gives up on 0.3 s
    sleep = RecordingSleep()
    client = client_for(http_session, fake_runcomfy, retry=retry, sleep=sleep)
    fake_runcomfy.script(JobScript(queue_seconds=0, run_seconds=0.05))
    handle = await client.submit(CAT)
    fake_runcomfy.inject("status", status=429, headers={"Retry-After": "0.3"})
    fake_runcomfy.inject("result", status=429, headers={"Retry-After": "0.3"})
    assert len(await handle.wait(timeout=30)) == 1
    # Polling alone never pauses longer than FAST_POLLING.max_interval (0.02 s).
    assert max(sleep.pauses) == pytest.approx(0.3, abs=0.02)
    assert fake_runcomfy.count("status") >= 2


async def test_wait_keeps_failing_until_its_deadline_then_times_out(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(LONG_RUN)
    handle = await runcomfy_client.submit(CAT)
    fake_runcomfy.inject("status", status=503, times=10_000)
    fake_runcomfy.inject("result", status=503, times=10_000)
    with pytest.raises(JobTimeoutError) as caught:
        await handle.wait(timeout=0.2)
    assert isinstance(caught.value.__cause__, ServerError)
    assert "RunComfy kept failing: RunComfy server error (HTTP 503)" in str(caught.value)
    assert caught.value.request_id == handle.request_id
    assert fake_runcomfy.count("status") > FAST_RETRY.max_attempts  # more than one call's worth


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error_code": 400004, "message": "token expired"}, AuthenticationError),
        (200, {"error_code": 404001, "message": "expired"}, NotFoundError),
        (200, {"status": "thinking"}, UnexpectedResponseError),
    ],
)
async def test_wait_raises_other_errors_at_once(
    runcomfy_client: RunComfyClient,
    fake_runcomfy: FakeRunComfy,
    status: int,
    body: dict[str, Any],
    error: type[Exception],
) -> None:
    fake_runcomfy.script(LONG_RUN)
    handle = await runcomfy_client.submit(CAT)
    fake_runcomfy.inject("status", status=status, body=body)
    with pytest.raises(error):
        await handle.wait(timeout=30)
    assert fake_runcomfy.count("status") == 1


async def test_wait_does_not_overrun_its_deadline_by_a_request_timeout(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    polling = replace(FAST_POLLING, last_poll_timeout=0.05)
    client = client_for(http_session, fake_runcomfy, polling=polling, request_timeout=60)
    fake_runcomfy.script(LONG_RUN)
    handle = await client.submit(CAT)
    fake_runcomfy.inject("status", delay=3600, times=100)  # never answers
    fake_runcomfy.inject("result", delay=3600, times=100)
    with pytest.raises(JobTimeoutError) as caught:
        # a guard only: without the cut, the first request alone would wait its 60 s
        await asyncio.wait_for(handle.wait(timeout=0.2), 20)
    assert isinstance(caught.value.__cause__, APIConnectionError)


# -- API errors -------------------------------------------------------------------------------


async def test_a_bad_token_is_an_authentication_error(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    settings = ClientSettings(api_token="wrong", api_base=fake_runcomfy.base_url)
    client = RunComfyClient(http_session, settings, retry=FAST_RETRY, polling=FAST_POLLING)
    with pytest.raises(AuthenticationError) as caught:
        await client.submit(CAT)
    assert (caught.value.status, caught.value.error_code) == (401, 400004)
    assert fake_runcomfy.count("submit") == 1  # not retried
    assert fake_runcomfy.jobs == {}


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (402, {"error_code": 400002, "message": "insufficient balance"}, InsufficientBalanceError),
        (200, {"error_code": 400002, "message": "insufficient balance"}, InsufficientBalanceError),
        (403, {"error_code": 403001, "message": "not yours"}, PermissionDeniedError),
        (422, {"detail": [{"loc": ["body", "prompt"], "msg": "bad"}]}, ValidationError),
    ],
)
async def test_submit_errors_are_typed_and_never_retried(
    runcomfy_client: RunComfyClient,
    fake_runcomfy: FakeRunComfy,
    status: int,
    body: dict[str, Any],
    error: type[Exception],
) -> None:
    fake_runcomfy.inject("submit", status=status, body=body, times=3)
    with pytest.raises(error) as caught:
        await runcomfy_client.submit(CAT)
    assert fake_runcomfy.count("submit") == 1
    if isinstance(caught.value, ValidationError):
        assert caught.value.detail == body["detail"]
        assert str(caught.value) == "RunComfy rejected the request: prompt: bad"


async def test_an_unknown_request_id_is_not_found(runcomfy_client: RunComfyClient) -> None:
    handle = runcomfy_client.job("no-such-request")
    with pytest.raises(NotFoundError) as caught:
        await handle.status()
    assert caught.value.error_code == 404001
    with pytest.raises(NotFoundError):
        await handle.wait(timeout=30)


# -- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503},
        {"status": 500},
        {"status": 502, "body": "<html>bad gateway</html>"},
        {"status": 408},
        {"status": 429, "headers": {"Retry-After": "0.01"}},
        {"status": 200, "body": {"error_code": 500001, "message": "try later"}},
        {"drop": True},
    ],
)
async def test_polling_requests_are_retried_after_transient_failures(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy, fault: dict[str, Any]
) -> None:
    fake_runcomfy.script(LONG_RUN)
    handle = await runcomfy_client.submit(CAT)
    # two in a row: also past aiohttp's own single retry of a GET on a dropped connection
    fake_runcomfy.inject("status", times=2, **fault)
    assert (await handle.status()).state is JobState.RUNNING
    assert fake_runcomfy.count("status") == 3


async def test_a_slow_answer_times_out_and_is_retried(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    # The first status is never answered. Later ones are instant, and there are several
    # attempts, so a loaded machine cannot make them all miss the short timeout.
    retry = replace(FAST_RETRY, max_attempts=6)
    client = client_for(http_session, fake_runcomfy, retry=retry, request_timeout=0.25)
    fake_runcomfy.script(LONG_RUN)
    handle = await client.submit(CAT)
    fake_runcomfy.inject("status", delay=3600)  # "never" (the fake cuts it short when it closes)
    assert (await handle.status()).state is JobState.RUNNING
    assert fake_runcomfy.count("status") >= 2


async def test_retries_give_up_with_the_last_error(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(LONG_RUN)
    handle = await runcomfy_client.submit(CAT)
    fake_runcomfy.inject("result", status=503, times=10)
    with pytest.raises(ServerError) as caught:
        await handle.result()
    assert caught.value.status == 503
    assert fake_runcomfy.count("result") == FAST_RETRY.max_attempts


async def test_retry_after_longer_than_the_policy_allows_is_not_waited_out(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(LONG_RUN)
    handle = await runcomfy_client.submit(CAT)
    fake_runcomfy.inject("status", status=429, headers={"Retry-After": "120"})
    with pytest.raises(RateLimitedError) as caught:
        await handle.status()
    assert caught.value.retry_after == 120
    assert fake_runcomfy.count("status") == 1


async def test_retry_after_is_waited_before_the_next_attempt(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    # A policy whose own backoff is negligible: only Retry-After can space the attempts.
    retry = RetryPolicy(max_attempts=2, base_delay=0.0001, max_delay=0.0001, max_retry_after=1)
    sleep = RecordingSleep()
    client = client_for(http_session, fake_runcomfy, retry=retry, sleep=sleep)
    fake_runcomfy.script(LONG_RUN)
    handle = await client.submit(CAT)
    fake_runcomfy.inject("status", status=429, headers={"Retry-After": "0.2"})
    assert (await handle.status()).state is JobState.RUNNING
    assert fake_runcomfy.count("status") == 2
    assert sleep.pauses == [0.2]  # the server's pause, not the policy's 0.1 ms


async def test_cancel_is_retried(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(LONG_QUEUE)
    handle = await runcomfy_client.submit(CAT)
    fake_runcomfy.inject("cancel", status=502)
    assert await handle.cancel() is CancelOutcome.CANCELLED
    assert fake_runcomfy.count("cancel") == 2


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"status": 500}, SubmitOutcomeUnknownError),
        (
            {"status": 503, "body": {"error_code": 503001, "message": "overloaded"}},
            SubmitOutcomeUnknownError,
        ),
        ({"status": 408}, SubmitOutcomeUnknownError),
        (
            {"status": 200, "body": {"error_code": 500001, "message": "oops"}},
            SubmitOutcomeUnknownError,
        ),
        ({"status": 429, "headers": {"Retry-After": "0"}}, RateLimitedError),
        ({"drop": True}, SubmitOutcomeUnknownError),
        ({"delay": 0.5}, SubmitOutcomeUnknownError),  # answered after the 0.2 s timeout
    ],
)
async def test_submit_is_never_retried_once_it_may_have_reached_the_server(
    http_session: aiohttp.ClientSession,
    fake_runcomfy: FakeRunComfy,
    fault: dict[str, Any],
    error: type[Exception],
) -> None:
    client = client_for(http_session, fake_runcomfy, request_timeout=0.2)
    fake_runcomfy.inject("submit", times=3, **fault)
    with pytest.raises(error) as caught:
        await client.submit(CAT)
    if fault.get("delay"):  # the slow submit still creates its job, on the server's side
        await wait_until(lambda: fake_runcomfy.jobs, "the delayed submit to be handled")
    assert fake_runcomfy.count("submit") == 1
    if fault.get("drop") or fault.get("delay"):
        assert len(fake_runcomfy.jobs) == 1  # the job exists: a retry would have paid twice
    if error is SubmitOutcomeUnknownError:
        unknown = caught.value
        assert isinstance(unknown, APIConnectionError)  # what callers caught before
        assert "may have been created" in str(unknown)
        assert isinstance(unknown.__cause__, APIConnectionError | ServerError)
        if "status" in fault:  # the original answer is kept
            assert unknown.status == fault["status"]
            assert unknown.body == fault.get(
                "body", {"message": f"injected HTTP {fault['status']}"}
            )
        if "error_code" in fault.get("body", {}):
            assert unknown.error_code == fault["body"]["error_code"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_refused_connection_is_retried_even_for_submit() -> None:
    port = _free_port()
    refused = asyncio.Event()

    async def on_request_exception(*_: object) -> None:
        refused.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_exception.append(on_request_exception)
    settings = ClientSettings(api_token="test-token", api_base=f"http://127.0.0.1:{port}")
    # Many quick attempts: the fake starts only once one was refused, however slow the machine.
    retry = RetryPolicy(max_attempts=2000, base_delay=0.005, max_delay=0.01)
    fake = FakeRunComfy(port=port)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = RunComfyClient(session, settings, retry=retry)
        submitting = asyncio.create_task(client.submit(CAT))
        try:
            await asyncio.wait_for(refused.wait(), 30)  # the first attempts find nobody listening
            await fake.start()
            handle = await submitting
            assert fake.count("submit") == 1
            assert handle.request_id in fake.jobs
        finally:
            submitting.cancel()
            await fake.close()


async def test_a_refused_connection_ends_as_a_connection_error(
    http_session: aiohttp.ClientSession,
) -> None:
    settings = ClientSettings(api_token="test-token", api_base=f"http://127.0.0.1:{_free_port()}")
    client = RunComfyClient(http_session, settings, retry=FAST_RETRY)
    with pytest.raises(APIConnectionError, match="could not connect"):
        await client.submit(CAT)


# -- downloads --------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "pil_format"), [("png", "PNG"), ("webp", "WEBP")])
async def test_downloads_are_real_images_fetched_without_the_token(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy, fmt: str, pil_format: str
) -> None:
    request = TextToImageRequest("x", GenerationOptions(num_images=2, output_format=fmt))
    urls = await (await runcomfy_client.submit(request)).wait(timeout=30)
    images = [await runcomfy_client.download(url) for url in urls]
    assert [Image.open(io.BytesIO(i.data)).format for i in images] == [pil_format] * 2
    downloads = [r for r in fake_runcomfy.requests if r.endpoint == "image"]
    assert len(downloads) == 2
    assert all("Authorization" not in r.headers for r in downloads)


async def test_an_oversized_image_is_refused(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(JobScript(image_bytes=300_000))
    (url,) = await (await runcomfy_client.submit(CAT)).wait(timeout=30)
    with pytest.raises(DownloadError, match="too large"):
        await runcomfy_client.download(url, max_bytes=100_000)
    assert len((await runcomfy_client.download(url, max_bytes=400_000)).data) >= 300_000


async def test_a_non_image_is_refused(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(JobScript(image_content_type="text/html"))
    (url,) = await (await runcomfy_client.submit(CAT)).wait(timeout=30)
    with pytest.raises(DownloadError, match="not an image"):
        await runcomfy_client.download(url)


async def test_downloads_are_retried_on_transient_failures_only(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    (url,) = await (await runcomfy_client.submit(CAT)).wait(timeout=30)
    fake_runcomfy.inject("image", status=503)
    assert (await runcomfy_client.download(url)).content_type == "image/png"
    assert fake_runcomfy.count("image") == 2
    with pytest.raises(DownloadError) as caught:
        await runcomfy_client.download(url.replace("/0.png", "/5.png"))
    assert caught.value.status == 404
    assert fake_runcomfy.count("image") == 3  # a 404 is not retried


async def test_the_size_cap_holds_without_a_content_length(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(JobScript(image_bytes=300_000, image_chunked=True))
    (url,) = await (await runcomfy_client.submit(CAT)).wait(timeout=30)
    with pytest.raises(DownloadError, match=r"too large \(over the 0\.1 MiB limit\)"):
        await runcomfy_client.download(url, max_bytes=100_000)
    assert len((await runcomfy_client.download(url, max_bytes=400_000)).data) >= 300_000


@pytest.mark.parametrize("status", [429, 501, 507])
async def test_downloads_retry_what_api_calls_retry(
    runcomfy_client: RunComfyClient, fake_runcomfy: FakeRunComfy, status: int
) -> None:
    (url,) = await (await runcomfy_client.submit(CAT)).wait(timeout=30)
    fake_runcomfy.inject("image", status=status, headers={"Retry-After": "0"})
    assert (await runcomfy_client.download(url)).content_type == "image/png"
    assert fake_runcomfy.count("image") == 2
