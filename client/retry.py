"""When and how long to wait before trying a request again.

Only requests that are safe to repeat go through ``with_retries`` with ``retry_if=is_retryable``;
the submit POST uses a narrower rule (see ``client.http``), because a repeated submit is paid twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from client.errors import APIConnectionError, RateLimitedError, RunComfyError, ServerError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4  # including the first
    base_delay: float = 0.5  # the first backoff, doubled on each retry...
    max_delay: float = 8.0  # ...up to this
    # A server asking for a longer pause than this is not waited out: the error goes to the caller.
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
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        # "Equal jitter": at least half the backoff, so retries never bunch up at zero.
        jittered = backoff / 2 + rng() * backoff / 2
        return max(jittered, retry_after or 0.0)


def is_retryable(error: RunComfyError) -> bool:
    """408, 429, 5xx and connection failures: the same request may well succeed later."""
    return isinstance(error, RateLimitedError | ServerError | APIConnectionError)


def retry_after_of(error: RunComfyError) -> float | None:
    return getattr(error, "retry_after", None)


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retry_if: Callable[[RunComfyError], bool],
    deadline: float | None = None,
    what: str,
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
            await asyncio.sleep(pause)
