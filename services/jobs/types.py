"""What the job engine and the Discord side exchange: requests in, progress and results out.

No discord imports. ``JobSpec`` is what a member asked for; ``Requester`` who asked and how to
answer them; ``JobPresenter`` is what the Discord side implements to show a job (and to pace
background work around Discord's 3-second answers); ``JobEvents`` is what the moderators' log
hears.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from client.models import DownloadedImage
from services.errors import NotAllowed
from services.policy import PolicyRefusal
from services.wording import Wording
from storage.models import Job, JobKind, JobState

DEFAULT_UPLOAD_LIMIT = 10 * 2**20


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, where, and how to answer them (from the interaction)."""

    user_id: int
    guild_id: int | None
    channel_id: int  # where the job's messages go (a thread's own id)
    role_ids: frozenset[int] = frozenset()
    is_moderator: bool = False  # Manage Server, or Manage Messages in the channel
    age_restricted_channel: bool = False  # a thread is age-restricted when its parent is
    interaction_token: str | None = field(default=None, repr=False)
    token_expires_at: datetime | None = None
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    # The channel the guild's channel rules apply to: a thread's parent; None: ``channel_id``.
    rules_channel_id: int | None = None
    locale: str | None = None  # the member's Discord locale, kept with the job for later posts


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What the member asked for, before policy (safety None: they did not choose one)."""

    kind: JobKind
    prompt: str
    num_images: int = 1
    seed: int | None = None  # None: we pick one, so it can be shown and re-rolled
    aspect_ratio: str = "auto"
    resolution: str = "1K"
    output_format: str = "png"
    safety: int | None = None
    web_search: bool = False
    image_urls: tuple[str, ...] = ()
    parent_job_id: str | None = None
    form_id: str | None = None  # the form it came from: one job per form, however often sent
    private: bool = False  # only the member sees its status and result (where the server allows)


@dataclass(frozen=True, slots=True)
class Reservation:
    job: Job
    notes: tuple[Wording, ...]  # from the policy decision, to show the member


@dataclass(frozen=True, slots=True)
class Progress:
    state: JobState
    queue_position: int | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: int | None
    fallback: bool = False  # posted as a channel message (the interaction token was unusable)


Step = Literal["submit", "deliver"]


class JobPresenter(Protocol):
    """How a job shows itself to people; implemented by the Discord side."""

    def pace(self, step: Step) -> AbstractAsyncContextManager[None]:
        """Around a background step: waits while interactions need answering first."""

    def show_progress(self, job: Job, progress: Progress) -> None:
        """Show progress on the job's status message (when and how often is the presenter's
        business); must not block."""

    async def show_held(self, job: Job) -> None:
        """The result waits for a moderator."""

    async def deliver(
        self, job: Job, images: Sequence[DownloadedImage], missing: Sequence[str]
    ) -> Delivery:
        """Post the result (``missing``: URLs that could not be downloaded: link them).

        Must be safe to repeat for the same job (a crash can land between posting and
        recording): rewrite the job's status message, or send with the job id as a nonce.
        """

    async def show_outcome(self, job: Job) -> None:
        """The job ended without a result (CANCELLED / FAILED / REJECTED; ``job.error`` why)."""

    async def withdraw(self, job: Job) -> None:
        """A job whose acknowledgement may never have reached Discord ended: if Discord has its
        status message, show the outcome there; post nothing else."""


class JobEvents(Protocol):
    """What the moderators' log hears of jobs (the engine calls these; they must not raise)."""

    async def ended(self, job: Job) -> None:
        """The job ended: DELIVERED, FAILED or CANCELLED."""

    async def held(self, job: Job) -> None:
        """The job's result waits for a moderator's approval (AWAITING_APPROVAL is stored)."""

    def refused(self, spec: JobSpec, who: Requester, refusal: PolicyRefusal) -> None:
        """A policy rule refused a request. Called on the request path: only schedule work."""


class NoEvents:
    """Nobody listens (tests of the engine alone)."""

    async def ended(self, job: Job) -> None:
        return None

    async def held(self, job: Job) -> None:
        return None

    def refused(self, spec: JobSpec, who: Requester, refusal: PolicyRefusal) -> None:
        return None


class CancelResult(enum.StrEnum):
    CANCELLED = "cancelled"
    RUNNING = "running"  # already on a GPU: RunComfy cannot stop it
    FINISHED = "finished"  # nothing left to cancel
    PENDING = "pending"  # the submit is still on the wire: ask again in a moment


def may_act_on(job: Job, *, actor_id: int, guild_id: int | None, manages_messages: bool) -> bool:
    """Cancel, Delete, /show: the requester, or a member with Manage Messages in the job's own
    server (``guild_id``: where they act; never another server's moderator; DM jobs: nobody)."""
    if actor_id == job.user_id:
        return True
    return manages_messages and job.guild_id is not None and guild_id == job.guild_id


def ensure_reusable(job: Job, *, actor_id: int, guild_id: int | None) -> None:
    """Re-roll, Edit: only a posted result, and only in its own server (a DM job: only by its
    requester). Raises NotAllowed: a crafted button must not carry a job across servers, nor
    re-run what a moderator rejected or is still reviewing."""
    if job.guild_id != guild_id or (job.guild_id is None and actor_id != job.user_id):
        raise NotAllowed("reuse", "That result belongs to another server.")
    if job.state != JobState.DELIVERED:
        raise NotAllowed(
            "reuse", "Job `{job_id}` has no posted result to work from.", job_id=job.id
        )
