"""Table tests: which failures are retried, and how long the client waits between attempts."""

from __future__ import annotations

import asyncio

import pytest

from client.errors import (
    APIConnectionError,
    AuthenticationError,
    DownloadError,
    InsufficientBalanceError,
    JobFailedError,
    NotFoundError,
    RateLimitedError,
    RunComfyError,
    ServerError,
    SubmitOutcomeUnknownError,
    UnexpectedResponseError,
    ValidationError,
)
from client.parsing import error_for_response
from client.retry import RetryPolicy, is_retryable, is_retryable_status, with_retries

POLICY = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=4.0, max_retry_after=30.0)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (RateLimitedError("slow down", retry_after=1), True),
        (ServerError("boom", status=503), True),
        (APIConnectionError("reset"), True),
        (error_for_response(408, "", {}), True),
        (error_for_response(429, {}, {}), True),
        (error_for_response(500, {}, {}), True),
        (error_for_response(502, {}, {}), True),
        (error_for_response(504, {}, {}), True),
        (error_for_response(200, {"error_code": 500001}, {}), True),
        (AuthenticationError("bad token"), False),
        (InsufficientBalanceError("broke"), False),
        (ValidationError("bad input"), False),
        (NotFoundError("gone"), False),
        (UnexpectedResponseError("weird"), False),
        (JobFailedError("nsfw"), False),
        (DownloadError("too large"), False),
        (error_for_response(400, {}, {}), False),
        (error_for_response(422, {"detail": []}, {}), False),
        # The job may exist: repeating the submit could pay twice.
        (SubmitOutcomeUnknownError("lost after sending", status=503), False),
    ],
)
def test_which_errors_are_retried(error: RunComfyError | None, retryable: bool) -> None:
    assert error is not None
    assert is_retryable(error) is retryable


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (4, 2.0, 4.0)],  # doubling, capped at 4 s
)
def test_backoff_doubles_with_jitter_and_is_capped(attempt: int, low: float, high: float) -> None:
    assert POLICY.delay(attempt, rng=lambda: 0.0) == low
    assert POLICY.delay(attempt, rng=lambda: 1.0) == high


def test_retry_after_is_honoured_as_a_minimum() -> None:
    assert POLICY.delay(1, retry_after=7.0, rng=lambda: 1.0) == 7.0
    assert POLICY.delay(3, retry_after=0.1, rng=lambda: 0.0) == 2.0  # backoff still applies


def test_gives_up_after_max_attempts_or_an_excessive_retry_after() -> None:
    assert POLICY.delay(5) is None
    assert POLICY.delay(1, retry_after=31.0) is None
    assert RetryPolicy(max_attempts=1).delay(1) is None


@pytest.mark.parametrize("status", range(400, 600))
def test_downloads_and_api_calls_share_one_rule(status: int) -> None:
    """Every HTTP error status: a download retries exactly what an API call retries."""
    error = error_for_response(status, {}, {})
    assert error is not None
    assert is_retryable_status(status) is is_retryable(error)
    assert is_retryable_status(status) is (status in (408, 429) or status >= 500)


def test_long_retry_sequences_do_not_overflow() -> None:
    assert POLICY.pause(10_000, rng=lambda: 1.0) == 4.0


async def test_with_retries_sleeps_the_servers_retry_after() -> None:
    answers: list[Exception | str] = [RateLimitedError("slow down", retry_after=0.25), "ok"]
    pauses: list[float] = []

    async def operation() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    policy = RetryPolicy(base_delay=0.001, max_delay=0.001)
    result = await with_retries(operation, policy, retry_if=is_retryable, what="test", sleep=sleep)
    assert result == "ok"
    assert pauses == [0.25]


async def test_with_retries_never_sleeps_past_the_deadline() -> None:
    attempts = 0

    async def operation() -> str:
        nonlocal attempts
        attempts += 1
        raise ServerError("down", status=503)

    deadline = asyncio.get_running_loop().time() + 0.4
    with pytest.raises(ServerError):
        await with_retries(operation, POLICY, retry_if=is_retryable, deadline=deadline, what="test")
    assert attempts == 1  # the first backoff (at least 0.5 s) would pass the deadline
