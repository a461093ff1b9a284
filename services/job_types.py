"""What the job engine and the Discord side exchange: requests in, progress out.

No discord imports. ``JobSpec`` is what a member asked for; ``Requester`` who asked and how to
answer them; ``JobPresenter`` is what the cog implements to show a job; ``build_request`` and
``request_for`` turn specs and stored jobs into validated RunComfy requests.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from client.models import (
    MAX_EDIT_IMAGES,
    MAX_PROMPT_LENGTH,
    MAX_SEED,
    DownloadedImage,
    EditRequest,
    GenerationOptions,
    GenerationRequest,
    TextToImageRequest,
)
from services.errors import InvalidInput, NotAllowed
from services.policy import PolicyDecision, PolicyRefusal
from services.prompt_text import has_visible_text
from storage.models import Job, JobKind, JobState

# The GenerationOptions fields stored in a job's params (plus "image_urls" for edits).
OPTION_FIELDS = (
    "num_images",
    "seed",
    "aspect_ratio",
    "resolution",
    "output_format",
    "safety_tolerance",
    "limit_generations",
    "enable_web_search",
)
UPLOAD_LIMIT_PARAM = "upload_limit"  # the interaction's attachment size limit, kept per job
NOTES_PARAM = "notes"  # the policy's notes (e.g. a clamped safety), shown on the status
# Whether the member chose the safety value (else it was the default or the server's ceiling):
# a re-roll asks again only for what was chosen, so a lowered ceiling clamps instead of refusing.
SAFETY_CHOSEN_PARAM = "safety_chosen"
DEFAULT_UPLOAD_LIMIT = 10 * 2**20


# -- what the cogs hand in ---------------------------------------------------------------------


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

    @classmethod
    def from_job(cls, job: Job, **changes: Any) -> JobSpec:
        """The spec ``job`` was made from, with ``changes``.

        Its safety counts as chosen only if the member chose it (jobs from before this was
        recorded: not chosen, so today's ceiling applies).
        """
        p = job.params
        spec = cls(
            kind=job.kind,
            prompt=job.prompt,
            num_images=int(p.get("num_images", 1)),
            seed=p.get("seed"),
            aspect_ratio=str(p.get("aspect_ratio", "auto")),
            resolution=str(p.get("resolution", "1K")),
            output_format=str(p.get("output_format", "png")),
            safety=p.get("safety_tolerance") if p.get(SAFETY_CHOSEN_PARAM) else None,
            web_search=bool(p.get("enable_web_search", False)),
            image_urls=tuple(p.get("image_urls", ())),
            parent_job_id=job.id,
        )
        return replace(spec, **changes)


@dataclass(frozen=True, slots=True)
class Reservation:
    job: Job
    notes: tuple[str, ...]  # from the policy decision, to show the member


# -- what the cogs implement -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    state: JobState
    queue_position: int | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: int | None
    fallback: bool = False  # posted as a channel message (the interaction token was unusable)


class JobPresenter(Protocol):
    """How a job shows itself to people. Implemented by the Discord cog; must not block."""

    async def show_progress(self, job: Job, progress: Progress) -> int | None:
        """Update the job's status message; return its id when known."""

    async def deliver(
        self, job: Job, images: Sequence[DownloadedImage], missing: Sequence[str]
    ) -> Delivery:
        """Post the result (``missing``: URLs that could not be downloaded: link them).

        Must be safe to repeat for the same job (a crash can land between posting and
        recording): rewrite the job's status message, or send with the job id as a nonce.
        """

    async def show_outcome(self, job: Job) -> None:
        """The job ended without a result (CANCELLED / FAILED / REJECTED; ``job.error`` why)."""


class DeliveryGate(Protocol):
    """Approval mode's hook: may divert a completed job instead of posting it."""

    async def hold(self, job: Job) -> bool:
        """True: the gate takes the job (it is moved to AWAITING_APPROVAL); False: deliver now."""

    async def held(self, job: Job) -> None:
        """The job is now AWAITING_APPROVAL (called once the state is stored)."""


JobListener = Callable[[Job], Awaitable[None]]
# Told of every request a policy rule refused (the moderators' log wants blocked prompts).
# Called synchronously on the request path: it must only schedule work, never wait.
RefusalListener = Callable[[JobSpec, Requester, PolicyRefusal], None]


class CancelResult(enum.StrEnum):
    CANCELLED = "cancelled"
    RUNNING = "running"  # already on a GPU: RunComfy cannot stop it
    FINISHED = "finished"  # nothing left to cancel
    PENDING = "pending"  # the submit is still on the wire: ask again in a moment


# -- who may act on a job ---------------------------------------------------------------------


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
        raise NotAllowed("reuse", f"Job `{job.id}` has no posted result to work from.")


# -- requests and params -----------------------------------------------------------------------


def build_request(spec: JobSpec, *, safety: int) -> GenerationRequest:
    """The API request for ``spec``: every field validated (InvalidRequestError / InvalidInput)."""
    if len(spec.prompt) > MAX_PROMPT_LENGTH:
        raise InvalidInput(
            "prompt",
            f"Your prompt is {len(spec.prompt):,} characters; the limit is {MAX_PROMPT_LENGTH:,}.",
        )
    if not has_visible_text(spec.prompt):
        raise InvalidInput("prompt", "The prompt has no visible text. Nothing was charged.")
    options = GenerationOptions(
        num_images=spec.num_images,
        seed=spec.seed,
        aspect_ratio=spec.aspect_ratio,
        resolution=spec.resolution,
        output_format=spec.output_format,
        safety_tolerance=safety,
        enable_web_search=spec.web_search,
    )
    if spec.kind == JobKind.EDIT:
        if not spec.image_urls:
            raise InvalidInput("image_urls", "An edit needs at least one image.")
        if len(spec.image_urls) > MAX_EDIT_IMAGES:
            raise InvalidInput("image_urls", f"An edit takes at most {MAX_EDIT_IMAGES} images.")
        return EditRequest(spec.prompt, tuple(spec.image_urls), options)
    return TextToImageRequest(spec.prompt, options)


def new_seed(rng: random.Random) -> int:
    return rng.randint(0, MAX_SEED)


def make_params(
    request: GenerationRequest,
    decision: PolicyDecision,
    upload_limit: int,
    rng: random.Random,
    *,
    safety_chosen: bool = False,
) -> dict:
    options = request.options
    seed = options.seed if options.seed is not None else new_seed(rng)
    options = replace(options, safety_tolerance=decision.safety_tolerance, seed=seed)
    params: dict[str, Any] = {name: getattr(options, name) for name in OPTION_FIELDS}
    if isinstance(request, EditRequest):
        params["image_urls"] = list(request.image_urls)
    params[UPLOAD_LIMIT_PARAM] = upload_limit
    params[SAFETY_CHOSEN_PARAM] = safety_chosen
    if decision.notes:
        params[NOTES_PARAM] = list(decision.notes)
    return params


def request_for(job: Job) -> GenerationRequest:
    """The API request stored in a job's params."""
    options = GenerationOptions(**{k: job.params[k] for k in OPTION_FIELDS if k in job.params})
    if job.kind == JobKind.EDIT:
        return EditRequest(job.prompt, tuple(job.params.get("image_urls", ())), options)
    return TextToImageRequest(job.prompt, options)
