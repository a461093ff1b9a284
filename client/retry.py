"""When and how long to wait before trying a request again.

Only requests that are safe to repeat go through ``with_retries`` with ``retry_if=is_retryable``;
the submit POST uses a narrower rule (see ``client.http``), because a repeated submit is paid twice.
Which failures are transient is defined once, here: ``is_retryable`` for typed API errors and
``is_retryable_status`` (the same rule, through the same status mapping) for downloads.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from client.errors import (
    APIConnectionError,
    RateLimitedError,
    RunComfyError,
    ServerError,
    SubmitOutcomeUnknownError,
)
from client.parsing import error_class

log = logging.getLogger(__name__)
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
# 408 (mapped to APIConnectionError), 429, 5xx and connection failures.
_TRANSIENT: tuple[type[RunComfyError], ...] = (RateLimitedError, ServerError, APIConnectionError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4  # including the first
    base_delay: float = 0.5  # the first backoff, doubled on each retry...
    max_delay: float = 8.0  # ...up to this
    # A server asking for a longer pause than this is not waited out: the error goes to the caller
    # (``JobHandle.wait`` still waits it out, within its own deadline).
    max_retry_after: float = 60.0

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        *,
        rng: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); None: give up."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        return self.pause(attempt, retry_after, rng=rng)

    def pause(
        self,
        attempt: int,
        retry_after: float | None = None,
        *,
        rng: Callable[[], float] = random.random,
    ) -> float:
        """The backoff after failure number ``attempt``, never shorter than ``retry_after``."""
        backoff = min(self.max_delay, self.base_delay * 2 ** min(attempt - 1, 62))
        # "Equal jitter": at least half the backoff, so retries never bunch up at zero.
        jittered = backoff / 2 + rng() * backoff / 2
        return max(jittered, retry_after or 0.0)


def is_retryable(error: RunComfyError) -> bool:
    """408, 429, 5xx and connection failures: the same request may well succeed later.

    Not a submit whose outcome is unknown: repeating it could create (and bill) a second job.
    """
    return isinstance(error, _TRANSIENT) and not isinstance(error, SubmitOutcomeUnknownError)


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP error status is worth another attempt: the rule of ``is_retryable``."""
    return issubclass(error_class(status), _TRANSIENT)


def retry_after_of(error: RunComfyError) -> float | None:
    return getattr(error, "retry_after", None)


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retry_if: Callable[[RunComfyError], bool],
    deadline: float | None = None,
    what: str,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """Run ``operation``, retrying errors ``retry_if`` accepts, never sleeping past ``deadline``."""
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await operation()
        except RunComfyError as err:
            pause = policy.delay(attempt, retry_after_of(err)) if retry_if(err) else None
            if pause is None or (deadline is not None and loop.time() + pause > deadline):
                raise
            log.info("%s failed (%s); attempt %d in %.2f s", what, err, attempt + 1, pause)
            await sleep(pause)
