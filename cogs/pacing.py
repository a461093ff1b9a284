"""Requests first: how the bot keeps Discord's 3 seconds while jobs run in the background.

One event loop serves both the interactions (which must be answered within 3 s) and the jobs'
background work; asyncio has no priorities. So background steps wait while requests arrive in
a burst (for at most ``yield_max`` seconds each, so they cannot starve), and at most so many
submits, deliveries and status edits are in progress at once, each with its own limit (slow
uploads never hold back the submits of newer jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator

from services.settings import JobTiming


class Pacing:
    def __init__(self, timing: JobTiming) -> None:
        self._timing = timing
        self.submits = asyncio.Semaphore(timing.parallel_steps)
        self.deliveries = asyncio.Semaphore(timing.parallel_deliveries)
        self.edits = asyncio.Semaphore(timing.parallel_edits)
        # When the latest requests arrived (monotonic), to tell a burst; trimmed as it is read.
        self._recent: deque[float] = deque(maxlen=max(1, timing.yield_burst))
        self._calm = asyncio.Event()  # cleared during a burst of requests
        self._calm.set()
        self._stopped = False

    @contextlib.asynccontextmanager
    async def step(self, step: str) -> AsyncIterator[None]:
        """Around a background step ("submit", "deliver"): requests first, then a free slot."""
        await self.yield_to_requests()
        async with self.submits if step == "submit" else self.deliveries:
            yield

    async def yield_to_requests(self) -> None:
        """Before a background step: let a burst of interactions be acknowledged first."""
        if self._calm.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._calm.wait(), timeout=self._timing.yield_max)

    def note_request(self) -> None:
        """Record a request; a burst clears ``_calm`` until one timer sees it has passed."""
        if self._timing.yield_window <= 0:
            return
        self._recent.append(time.monotonic())
        if self._calm.is_set() and self._in_burst():
            self._calm.clear()
            loop = asyncio.get_running_loop()
            loop.call_later(self._timing.yield_window / 4, self._check_quiet)

    def stop(self) -> None:
        """Shutting down: nothing waits for calm any more."""
        self._stopped = True
        self._calm.set()

    def _in_burst(self) -> bool:
        recent = self._recent
        cutoff = time.monotonic() - self._timing.yield_window
        while recent and recent[0] < cutoff:
            recent.popleft()
        return len(recent) >= self._timing.yield_burst

    def _check_quiet(self) -> None:
        if self._in_burst() and not self._stopped:
            asyncio.get_running_loop().call_later(self._timing.yield_window / 4, self._check_quiet)
        else:
            self._calm.set()
