"""Table tests: which failures are retried, and how long the client waits between attempts."""

from __future__ import annotations

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
    UnexpectedResponseError,
    ValidationError,
)
from client.parsing import error_for_response
from client.retry import RetryPolicy, is_retryable

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
