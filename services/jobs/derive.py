"""New jobs made from one image of a result: Vary, Edit, Re-render, Reframe.

Pure functions from the parent job and the chosen image to the ``JobSpec`` to launch. Every one
goes through the edit model with that image as its only reference and a new seed; what else
carries over from the parent is each action's own rule (see each function).
"""

from __future__ import annotations

from collections.abc import Sequence

from client.models import ASPECT_RATIOS, MAX_PROMPT_LENGTH
from services.errors import InvalidInput, NotAllowed
from services.jobs.request import spec_of
from services.jobs.types import JobSpec
from storage.models import Job, JobKind

# The instruction sent to the model (English: it is the model's language, not the member's).
REFRAME_INSTRUCTION = (
    "Extend this image to fill the new frame: keep everything already in it unchanged and"
    " continue the scene naturally into the added space. The scene: "
)
RERENDER_RESOLUTIONS = ("2K", "4K")
MAX_IMAGE_ACTIONS = 4  # Discord's 5 rows: one select per image, plus the button row


def image_url(job: Job, index: int, shown: Sequence[str] = ()) -> str:
    """Image ``index`` (0-based) of ``job``'s result: the clicked message's own attachment when
    the message shows them all (a fresh signed URL), else the stored result URL."""
    urls = job.result_urls
    if not 0 <= index < len(urls):
        raise NotAllowed(
            "image_action",
            "Job `{job_id}` has no image {number}.",
            job_id=job.id,
            number=index + 1,
        )
    # Only when every image is attached do the attachments line up with the result's order.
    if len(shown) == len(urls):
        return shown[index]
    return urls[index]


def _from_image(job: Job, url: str, **changes: object) -> JobSpec:
    """The parent's request through the edit model on ``url`` alone, with a new seed."""
    return spec_of(job, kind=JobKind.EDIT, image_urls=(url,), seed=None, **changes)


def varied(job: Job, url: str) -> JobSpec:
    """Vary: the original prompt, count, resolution and aspect ratio on this image."""
    return _from_image(job, url)


def edit_base(job: Job, url: str) -> JobSpec:
    """Edit: one image from this one; the prompt is the member's (filled in by the form)."""
    return _from_image(job, url, num_images=1)


def rerendered(job: Job, url: str, resolution: str) -> JobSpec:
    """Re-render: a new generation of this image at ``resolution`` (not an upscale)."""
    if resolution not in RERENDER_RESOLUTIONS:
        raise InvalidInput("resolution", "Images can be re-rendered at 2K or 4K only.")
    return _from_image(job, url, num_images=1, resolution=resolution)


def reframed(job: Job, url: str, aspect_ratio: str) -> JobSpec:
    """Reframe: this image at ``aspect_ratio``, the model asked to extend the scene."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise InvalidInput(
            "aspect_ratio", "`{ratio}` is not an aspect ratio.", ratio=aspect_ratio[:20]
        )
    return _from_image(
        job, url, num_images=1, aspect_ratio=aspect_ratio, prompt=reframe_prompt(job.prompt)
    )


def reframe_prompt(prompt: str) -> str:
    """The reframe instruction and the original prompt, cut to the API's prompt limit."""
    room = MAX_PROMPT_LENGTH - len(REFRAME_INSTRUCTION)
    return REFRAME_INSTRUCTION + prompt[:room]
