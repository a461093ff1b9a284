"""What the moderators' side works with: its outcomes, errors, and the Discord log it writes to.

No discord imports: the Discord side implements ``ModLogSink`` (cogs/modlog_sink.py).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from client.models import DownloadedImage
from services.errors import NotAllowed, StudioError
from services.wording import N_
from storage.models import Job, JobKind, JobState

if TYPE_CHECKING:
    from services.jobs.outage import Outage

REJECTED_ERROR = N_("Not approved by a moderator.")
CLOSE_GRACE = 2.0  # seconds shutdown waits for log entries being posted
BLOCKED_WINDOW = timedelta(minutes=1)  # one blocked-prompt entry per member per guild per window
REMOVED_MESSAGE = N_("A moderator removed this result, so it can't be used again.")
WRONG_ENTRY = N_("This button is not on the job's log entry, so it does nothing.")


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_removed(job: Job) -> bool:
    """A delivered job whose public result a moderator removed (Remove clears the message id)."""
    return job.state == JobState.DELIVERED and job.result_message_id is None


def ensure_not_removed(job: Job, action: str = "reuse") -> None:
    """Refuse to re-use (show, re-roll, edit) a result a moderator removed."""
    if is_removed(job):
        raise NotAllowed(action, REMOVED_MESSAGE)


class LogUnavailable(Exception):
    """The log channel (or the message to act on) could not be used: deleted, no permission."""

    def __init__(self, channel_id: int | None, problem: str) -> None:
        super().__init__(f"channel {channel_id}: {problem}")
        self.channel_id = channel_id
        self.problem = problem


class ModerationError(StudioError):
    """A moderator action that could not be done; ``str()`` is the message for the moderator."""


@dataclass(frozen=True, slots=True)
class BlockedAttempt:
    """A prompt the blocklist refused: shown to moderators only, in the log."""

    user_id: int
    guild_id: int
    channel_id: int
    kind: JobKind
    prompt: str
    matched: str | None  # the blocklist entry that matched
    num_images: int
    resolution: str
    image_urls: tuple[str, ...] = ()
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Outcome(enum.Enum):
    """What a moderator's click came to."""

    NOT_WAITING = "not waiting"  # approve or reject: the job is no longer held
    STILL_HELD = "still held"  # approved, but Discord refused the result: it waits on
    APPROVED_UNPOSTED = "approved, not posted"  # approved; posting failed for good (job.error)
    APPROVED = "approved"
    REJECTED = "rejected"
    NO_RESULT = "no result"  # remove: nothing was posted
    ALREADY_REMOVED = "already removed"
    GONE = "gone"  # removed, but the message had been deleted already
    REMOVED = "removed"
    NOT_DELIVERED = "not delivered"  # refund: the job refunded itself when it ended
    ALREADY_REFUNDED = "already refunded"
    RESET = "reset"  # refund: a reset of that day gave the credits back already
    REFUNDED = "refunded"
    REFUNDED_TODAY = "refunded today"  # a past day's job: the credits were granted for today


_DONE = frozenset(
    {
        Outcome.APPROVED_UNPOSTED,
        Outcome.APPROVED,
        Outcome.REJECTED,
        Outcome.GONE,
        Outcome.REMOVED,
        Outcome.REFUNDED,
        Outcome.REFUNDED_TODAY,
    }
)


class Notice(enum.Enum):
    """How the requester of a rejected job was told (``ModLogSink.show_rejected``)."""

    PRIVATE = "private"  # an ephemeral message on their own interaction
    DM = "dm"
    CHANNEL = "channel"  # a short notice in the channel, without the prompt
    NONE = "none"  # no way to reach them


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What a moderator's click did; ``done`` False means nothing changed (``outcome``: why)."""

    job: Job
    outcome: Outcome
    amount: int = 0  # refunds: the credits given back
    day: date | None = None  # REFUNDED_TODAY: the job's (UTC) day
    notice: Notice | None = None  # REJECTED: how the requester was told

    @property
    def done(self) -> bool:
        return self.outcome in _DONE


class ModLogSink(Protocol):
    """The Discord side of the log. Raises ``LogUnavailable`` when Discord refuses."""

    async def post_job(self, channel_id: int, job: Job) -> int:
        """Post the entry of a job that ended; returns the log message id."""

    async def post_approval(
        self,
        channel_id: int,
        job: Job,
        images: Sequence[DownloadedImage],
        missing: Sequence[str],
    ) -> int:
        """Post a held job with its images and Approve / Reject; returns the message id."""

    async def post_blocked(self, channel_id: int, attempt: BlockedAttempt) -> int:
        """Post a blocked prompt (spoilered) with the matched entry; returns the message id."""

    async def count_blocked(
        self, channel_id: int, message_id: int, attempt: BlockedAttempt, more: int
    ) -> bool:
        """Show ``more`` further attempts on a blocked-prompt entry; False if it is gone."""

    async def entry_exists(self, channel_id: int, message_id: int) -> bool:
        """Whether a log entry is still there (False: deleted, or not in that channel)."""

    async def show_rejected(self, job: Job, *, dm: bool) -> Notice:
        """Tell the requester privately that the result was not approved (``dm``: allowed);
        returns how they were told (for the moderator)."""

    async def remove_result(self, job: Job) -> bool:
        """Delete the job's public result message; False if it was already gone."""

    async def post_outage(self, channel_id: int, guild_id: int, outage: Outage) -> int:
        """Post that RunComfy is failing (one per incident and server); returns the message id."""
