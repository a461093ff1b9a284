"""Requests first: how the bot keeps Discord's 3 seconds while jobs run in the background.

One event loop serves both the interactions (which must be answered within 3 s) and the jobs'
background work; asyncio has no priorities. So background steps wait while any interaction is
still unanswered, and while requests arrive in a burst (for at most ``yield_max`` seconds each,
so they cannot starve), and at most so many submits, deliveries and status edits are in progress
at once, each with its own limit (slow uploads never hold back the submits of newer jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator

from services.settings import JobTiming


class Pacing:
    def __init__(self, timing: JobTiming) -> None:
        self._timing = timing
        self.submits = asyncio.Semaphore(timing.parallel_steps)
        self.deliveries = asyncio.Semaphore(timing.parallel_deliveries)
        self.edits = asyncio.Semaphore(timing.parallel_edits)
        # When the latest requests arrived (monotonic), to tell a burst; trimmed as it is read.
        self._recent: deque[float] = deque(maxlen=max(1, timing.yield_burst))
        self._unanswered = 0  # requests being prepared whose answer has not gone out yet
        self._quiet_check: asyncio.TimerHandle | None = None  # watches a burst end
        self._calm = asyncio.Event()  # cleared while a request waits for its answer or in a burst
        self._calm.set()
        self._stopped = False

    @contextlib.asynccontextmanager
    async def step(self, step: str) -> AsyncIterator[None]:
        """Around a background step ("submit", "deliver"): requests first, then a free slot."""
        await self.yield_to_requests()
        async with self.submits if step == "submit" else self.deliveries:
            yield

    async def yield_to_requests(self) -> None:
        """Before a background step: let waiting interactions be acknowledged first."""
        if self._calm.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._calm.wait(), timeout=self._timing.yield_max)

    @contextlib.contextmanager
    def request(self) -> Iterator[Callable[[], None]]:
        """Around a request's work until its answer: background steps wait meanwhile.

        Yields ``answered``, to call as soon as the answer went out (the rest of the request's
        work is background); leaving the block counts as answered too (a refusal, an error).
        """
        if self._timing.yield_window <= 0:  # requests-first is off
            yield _nothing
            return
        self._unanswered += 1
        self._recent.append(time.monotonic())
        if not self._stopped:
            self._calm.clear()
        done = False

        def answered() -> None:
            nonlocal done
            if not done:
                done = True
                self._unanswered -= 1
                self._settle()

        try:
            yield answered
        finally:
            answered()

    def stop(self) -> None:
        """Shutting down: nothing waits for calm any more."""
        self._stopped = True
        self._calm.set()

    def _settle(self) -> None:
        """Calm again once no request waits for its answer and no burst is under way."""
        if self._stopped or self._unanswered > 0 or self._quiet_check is not None:
            return
        if self._in_burst():
            loop = asyncio.get_running_loop()
            self._quiet_check = loop.call_later(self._timing.yield_window / 4, self._check_quiet)
        else:
            self._calm.set()

    def _in_burst(self) -> bool:
        recent = self._recent
        cutoff = time.monotonic() - self._timing.yield_window
        while recent and recent[0] < cutoff:
            recent.popleft()
        return len(recent) >= self._timing.yield_burst

    def _check_quiet(self) -> None:
        self._quiet_check = None
        self._settle()


def _nothing() -> None:
    return None
