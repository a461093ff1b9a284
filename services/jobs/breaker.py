"""A circuit breaker for submits: after repeated connection or 5xx failures, stop sending jobs.

closed: submits go out; ``threshold`` consecutive failures open it.
open: new jobs are refused (``ServiceUnavailable``, before anything is charged) until the pause
  has passed; each failed trial doubles the pause, up to ``max_pause``.
half-open: after the pause, one job is let through as a trial; its submit succeeding closes the
  breaker, failing opens it again. A trial that never reports (refused or cancelled before its
  submit) frees the way for another after one more pause.

Time is passed in by the caller (the engine's injected clock), so tests move it by hand.
No discord.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime, timedelta

from services.errors import ServiceUnavailable

log = logging.getLogger("services.jobs")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 3,
        pause: float = 60.0,
        max_pause: float = 600.0,
    ) -> None:
        if threshold < 1 or pause <= 0 or max_pause < pause:
            raise ValueError("threshold >= 1 and 0 < pause <= max_pause")
        self.threshold = threshold
        self._base = timedelta(seconds=pause)
        self._max = timedelta(seconds=max_pause)
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._pause = self._base
        self._until: datetime | None = None  # open: refuse until then; half-open: trial deadline

    @property
    def retry_at(self) -> datetime | None:
        return self._until if self.state is not BreakerState.CLOSED else None

    def admit(self, now: datetime) -> None:
        """May a new job be sent? Raises ``ServiceUnavailable`` while open (or a trial runs)."""
        if self.state is BreakerState.CLOSED:
            return
        assert self._until is not None
        if now < self._until:
            raise ServiceUnavailable(self._until)
        # The pause (or a silent trial's grace) is over: this job is the trial.
        self.state = BreakerState.HALF_OPEN
        self._until = now + self._pause
        log.info("RunComfy: pause over; letting one job through to try again")

    def succeeded(self) -> None:
        """A submit went through: close (and forget the failures)."""
        if self.state is not BreakerState.CLOSED:
            log.warning("RunComfy: a job went through again; sending jobs as usual")
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._pause = self._base
        self._until = None

    def failed(self, now: datetime) -> None:
        """A submit failed with a connection error or a 5xx."""
        if self.state is BreakerState.HALF_OPEN:
            self._pause = min(self._pause * 2, self._max)
            self._open(now)
            return
        if self.state is BreakerState.OPEN:
            return  # jobs sent before it opened: the pause stands
        self._failures += 1
        if self._failures >= self.threshold:
            self._open(now)

    def _open(self, now: datetime) -> None:
        self.state = BreakerState.OPEN
        self._failures = 0
        self._until = now + self._pause
        log.warning(
            "RunComfy: submits keep failing; not sending new jobs for %d s",
            int(self._pause.total_seconds()),
        )
