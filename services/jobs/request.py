"""The request stored with each job: the client's own request type plus the bot's extras.

One place turns a member's ``JobSpec`` into a validated request, writes it to the job row
(``params``, a flat JSON object, the same shape rows have always had) and reads it back. Every
default comes from ``client.models`` (the API's own types); a row missing a key gets that default.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from client.models import (
    MAX_EDIT_IMAGES,
    MAX_PROMPT_LENGTH,
    MAX_SEED,
    EditRequest,
    GenerationOptions,
    GenerationRequest,
    TextToImageRequest,
)
from services.errors import InvalidInput
from services.jobs.types import DEFAULT_UPLOAD_LIMIT, JobSpec, Requester
from services.policy import PolicyDecision, RequestContext
from services.prompt_text import has_visible_text
from services.wording import Wording
from storage.models import Job, JobKind

OPTION_FIELDS = tuple(f.name for f in fields(GenerationOptions))


@dataclass(frozen=True, slots=True)
class JobRequest:
    api: GenerationRequest
    # Whether the member chose the safety value (else it was the default or the server's
    # ceiling): a re-roll asks again only for what was chosen, so a lowered ceiling clamps.
    safety_chosen: bool = False
    upload_limit: int = DEFAULT_UPLOAD_LIMIT  # the interaction's attachment size limit
    notes: tuple[Wording, ...] = ()  # the policy's notes (a clamped safety), shown on the status
    private: bool = False  # never posted publicly: shown ephemerally, else sent by DM

    @property
    def options(self) -> GenerationOptions:
        return self.api.options

    @property
    def image_urls(self) -> tuple[str, ...]:
        return self.api.image_urls if isinstance(self.api, EditRequest) else ()

    def to_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {name: getattr(self.options, name) for name in OPTION_FIELDS}
        if isinstance(self.api, EditRequest):
            params["image_urls"] = list(self.api.image_urls)
        params["upload_limit"] = self.upload_limit
        params["safety_chosen"] = self.safety_chosen
        if self.notes:
            params["notes"] = [n.stored() for n in self.notes]
        if self.private:
            params["private"] = True
        return params

    @classmethod
    def of(cls, job: Job) -> JobRequest:
        """The request stored in ``job`` (older rows: what they lack takes the default)."""
        p = job.params
        options = GenerationOptions(**{k: p[k] for k in OPTION_FIELDS if k in p})
        api: GenerationRequest
        if job.kind == JobKind.EDIT:
            api = EditRequest(job.prompt, tuple(p.get("image_urls", ())), options)
        else:
            api = TextToImageRequest(job.prompt, options)
        return cls(
            api,
            safety_chosen=bool(p.get("safety_chosen", False)),
            upload_limit=int(p.get("upload_limit") or DEFAULT_UPLOAD_LIMIT),
            notes=tuple(Wording.parse(str(n)) for n in p.get("notes", ())),
            private=bool(p.get("private", False)),
        )


def spec_of(job: Job, **changes: Any) -> JobSpec:
    """The spec ``job`` was made from, with ``changes`` (a re-roll, an edit of its result).

    Its safety counts as chosen only if the member chose it.
    """
    request = JobRequest.of(job)
    options = request.options
    spec = JobSpec(
        kind=job.kind,
        prompt=job.prompt,
        num_images=options.num_images,
        seed=options.seed,
        aspect_ratio=options.aspect_ratio,
        resolution=options.resolution,
        output_format=options.output_format,
        safety=options.safety_tolerance if request.safety_chosen else None,
        web_search=options.enable_web_search,
        image_urls=request.image_urls,
        parent_job_id=job.id,
        private=request.private,  # what is made from a private result stays private
    )
    return replace(spec, **changes)


def validated(spec: JobSpec) -> GenerationRequest:
    """The API request for ``spec``, every field checked (InvalidRequestError / InvalidInput).

    Safety is checked at the default level here; the policy decides the level sent.
    """
    if len(spec.prompt) > MAX_PROMPT_LENGTH:
        raise InvalidInput(
            "prompt",
            "Your prompt is {length} characters; the limit is {limit}.",
            length=len(spec.prompt),
            limit=MAX_PROMPT_LENGTH,
        )
    if not has_visible_text(spec.prompt):
        raise InvalidInput("prompt", "The prompt has no visible text. Nothing was charged.")
    defaults = GenerationOptions()
    options = GenerationOptions(
        num_images=spec.num_images,
        seed=spec.seed,
        aspect_ratio=spec.aspect_ratio,
        resolution=spec.resolution,
        output_format=spec.output_format,
        safety_tolerance=spec.safety or defaults.safety_tolerance,
        enable_web_search=spec.web_search,
    )
    if spec.kind == JobKind.EDIT:
        if not spec.image_urls:
            raise InvalidInput("image_urls", "An edit needs at least one image.")
        if len(spec.image_urls) > MAX_EDIT_IMAGES:
            raise InvalidInput(
                "image_urls", "An edit takes at most {limit} images.", limit=MAX_EDIT_IMAGES
            )
        return EditRequest(spec.prompt, tuple(spec.image_urls), options)
    return TextToImageRequest(spec.prompt, options)


def decided(
    api: GenerationRequest,
    decision: PolicyDecision,
    *,
    upload_limit: int,
    rng: random.Random,
    safety_chosen: bool,
    private: bool = False,
) -> JobRequest:
    """The request as it will be sent: the policy's safety level and a seed picked if none."""
    options = api.options
    seed = options.seed if options.seed is not None else rng.randint(0, MAX_SEED)
    options = replace(options, safety_tolerance=decision.safety_tolerance, seed=seed)
    return JobRequest(
        replace(api, options=options),
        safety_chosen=safety_chosen,
        upload_limit=upload_limit,
        notes=tuple(decision.notes),
        private=private,
    )


def request_context(
    who: Requester,
    *,
    prompt: str,
    safety: int | None,
    in_flight: int = 0,
    last: datetime | None = None,
) -> RequestContext:
    """What the policy checks of a member's request."""
    return RequestContext(
        user_id=who.user_id,
        guild_id=who.guild_id,
        channel_id=who.channel_id,
        parent_channel_id=who.rules_channel_id,
        role_ids=who.role_ids,
        is_moderator=who.is_moderator,
        age_restricted_channel=who.age_restricted_channel,
        prompt=prompt,
        safety=safety,
        in_flight=in_flight,
        last_job_at=last,
    )
