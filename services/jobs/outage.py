"""What the engine learns from RunComfy's answers: outages, the circuit breaker, metrics.

An outage is an authentication or balance failure, RunComfy being unreachable, or repeated 5xx
answers. An incident starts at the first such failure (the ``threshold``-th for 5xx) and ends at
the next success. It is logged at ERROR once per incident, and each server whose job it broke
gets one notice in its moderators' log per incident. Members only read ``OUTAGE_REASON`` (the
wording is ``reason_for``'s). No discord.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from client.errors import (
    APIConnectionError,
    AuthenticationError,
    InsufficientBalanceError,
    RunComfyError,
    ServerError,
)
from services.jobs.breaker import CircuitBreaker
from services.jobs.runcomfy import reason_for
from services.metrics import Metrics
from services.wording import Wording
from storage.models import Job

log = logging.getLogger("services.jobs")


class OutageKind(enum.Enum):
    AUTH = "auth"  # RunComfy rejects the API token
    BALANCE = "balance"  # the RunComfy account has no balance left
    CONNECTION = "connection"  # RunComfy cannot be reached
    SERVER = "server"  # RunComfy keeps answering with server errors


_LOG_WORDS = {
    OutageKind.AUTH: "RunComfy rejects RUNCOMFY_API_TOKEN (check the API key)",
    OutageKind.BALANCE: "the RunComfy account has no balance left (top it up)",
    OutageKind.CONNECTION: "RunComfy cannot be reached",
    OutageKind.SERVER: "RunComfy keeps answering with server errors",
}


@dataclass
class Outage:
    kind: OutageKind
    started_at: datetime
    guilds: set[int] = field(default_factory=set)  # servers told about it
    failed_jobs: int = 0


class OutageNotices(Protocol):
    def outage(self, guild_id: int, outage: Outage) -> None:
        """Tell the server's moderators (in the background; never raises)."""


def classify(err: RunComfyError) -> OutageKind | None:
    if isinstance(err, AuthenticationError):
        return OutageKind.AUTH
    if isinstance(err, InsufficientBalanceError):
        return OutageKind.BALANCE
    if isinstance(err, ServerError) or (
        isinstance(err, APIConnectionError) and err.status is not None and err.status >= 500
    ):
        return OutageKind.SERVER  # a 5xx, or a submit's 5xx (its outcome unknown)
    if isinstance(err, APIConnectionError):
        return OutageKind.CONNECTION
    return None


class ApiWatch:
    """The engine's one observer of RunComfy's health and of job transitions."""

    def __init__(
        self,
        breaker: CircuitBreaker,
        metrics: Metrics,
        notices: OutageNotices | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.breaker = breaker
        self.metrics = metrics
        self._notices = notices
        self._clock = clock
        self.outage: Outage | None = None
        self._server_errors = 0  # consecutive 5xx failures outside an incident

    # -- the request path ---------------------------------------------------------------------

    def admit(self) -> None:
        """Before charging: raises ``ServiceUnavailable`` while the breaker is open."""
        self.breaker.admit(self._clock())

    def reserved(self, job: Job) -> None:
        self.metrics.reserved(job)

    def moved(self, job: Job) -> None:
        self.metrics.moved(job, self._clock())

    # -- RunComfy's answers -------------------------------------------------------------------

    def submitted(self) -> None:
        self.breaker.succeeded()
        self.recovered()

    def recovered(self) -> None:
        """A call succeeded: an incident ends."""
        self._server_errors = 0
        outage, self.outage = self.outage, None
        if outage is not None:
            took = (self._clock() - outage.started_at).total_seconds()
            log.warning(
                "RunComfy answers again after %d s (%d jobs failed meanwhile)",
                int(took),
                outage.failed_jobs,
            )

    def failed(self, job: Job, err: RunComfyError, *, submit: bool = False) -> Wording:
        """``job`` fails because of ``err``: note it; returns what to tell the member."""
        kind = classify(err)
        if submit and kind in (OutageKind.CONNECTION, OutageKind.SERVER):
            self.breaker.failed(self._clock())
        if kind is not None:
            self._incident(kind, err, job)
        return reason_for(err)

    def _incident(self, kind: OutageKind, err: RunComfyError, job: Job) -> None:
        if self.outage is None:
            if kind is OutageKind.SERVER:
                self._server_errors += 1
                if self._server_errors < self.breaker.threshold:
                    return
            self.outage = Outage(kind, self._clock())
            log.error(
                "RunComfy outage: %s (%s); jobs fail and are refunded until it answers again",
                _LOG_WORDS[kind],
                err,
            )
        outage = self.outage
        outage.failed_jobs += 1
        if job.guild_id is None or job.guild_id in outage.guilds or self._notices is None:
            return
        outage.guilds.add(job.guild_id)
        self._notices.outage(job.guild_id, outage)
