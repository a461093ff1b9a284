"""The specs of the per-image actions (services/jobs/derive.py): pure functions of a job."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from client.models import ASPECT_RATIOS, MAX_PROMPT_LENGTH
from services.errors import InvalidInput, NotAllowed, RepeatedRequest
from services.jobs import Requester
from services.jobs.derive import (
    REFRAME_INSTRUCTION,
    edit_base,
    image_url,
    reframe_prompt,
    reframed,
    rerendered,
    varied,
)
from services.jobs.repeats import RepeatGuard
from services.jobs.request import validated
from storage.models import Job, JobKind, JobState

URLS = tuple(f"https://runcomfy.example/out/{n}.png" for n in range(1, 5))
SHOWN = tuple(f"https://cdn.discordapp.example/att/{n}.png?ex=1" for n in range(1, 5))


def parent(**params: object) -> Job:
    now = datetime.now(UTC)
    stored = {
        "num_images": 4,
        "seed": 77,
        "aspect_ratio": "16:9",
        "resolution": "1K",
        "output_format": "webp",
        "safety_tolerance": 2,
        "safety_chosen": True,
        **params,
    }
    return Job(
        id="job1",
        kind=JobKind.IMAGINE,
        state=JobState.DELIVERED,
        user_id=1,
        guild_id=2,
        channel_id=3,
        prompt="a lighthouse at dusk",
        params=stored,
        cost=4,
        created_at=now,
        updated_at=now,
        result_urls=URLS,
    )


def test_vary_keeps_the_prompt_count_resolution_and_shape_with_a_new_seed() -> None:
    spec = varied(parent(), URLS[2])
    assert spec.kind == JobKind.EDIT and spec.image_urls == (URLS[2],)
    assert spec.prompt == "a lighthouse at dusk" and spec.seed is None
    assert (spec.num_images, spec.resolution, spec.aspect_ratio) == (4, "1K", "16:9")
    assert spec.output_format == "webp" and spec.safety == 2  # chosen by the member: kept
    assert spec.parent_job_id == "job1"
    validated(spec)  # a request the API takes


def test_an_edit_of_an_edit_uses_only_the_chosen_image() -> None:
    job = parent(image_urls=["https://cdn.example/in-1.png", "https://cdn.example/in-2.png"])
    job = replace(job, kind=JobKind.EDIT)
    assert varied(job, URLS[0]).image_urls == (URLS[0],)


def test_edit_makes_one_image_from_the_chosen_one() -> None:
    spec = edit_base(parent(), URLS[1])
    assert spec.kind == JobKind.EDIT and spec.image_urls == (URLS[1],)
    assert spec.num_images == 1 and spec.seed is None and spec.resolution == "1K"


@pytest.mark.parametrize("resolution", ["2K", "4K"])
def test_rerender_is_one_new_image_at_the_resolution(resolution: str) -> None:
    spec = rerendered(parent(), URLS[3], resolution)
    assert spec.kind == JobKind.EDIT and spec.image_urls == (URLS[3],)
    assert spec.prompt == "a lighthouse at dusk" and spec.seed is None
    assert (spec.num_images, spec.resolution, spec.aspect_ratio) == (1, resolution, "16:9")
    validated(spec)


@pytest.mark.parametrize("resolution", ["0.5K", "1K", "8K", ""])
def test_rerender_only_goes_up_to_2k_or_4k(resolution: str) -> None:
    with pytest.raises(InvalidInput):
        rerendered(parent(), URLS[0], resolution)


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_reframe_asks_to_extend_the_scene_at_the_new_shape(ratio: str) -> None:
    spec = reframed(parent(), URLS[0], ratio)
    assert spec.kind == JobKind.EDIT and spec.image_urls == (URLS[0],)
    assert spec.aspect_ratio == ratio and spec.num_images == 1 and spec.seed is None
    assert spec.resolution == "1K"
    assert spec.prompt == REFRAME_INSTRUCTION + "a lighthouse at dusk"
    validated(spec)


def test_reframe_refuses_an_unknown_ratio() -> None:
    with pytest.raises(InvalidInput):
        reframed(parent(), URLS[0], "7:1")


def test_the_reframe_prompt_fits_the_api_limit() -> None:
    prompt = reframe_prompt("x" * MAX_PROMPT_LENGTH)
    assert len(prompt) == MAX_PROMPT_LENGTH and prompt.startswith(REFRAME_INSTRUCTION)


def test_the_image_is_the_shown_attachment_when_every_image_is_shown() -> None:
    job = parent()
    assert image_url(job, 1, SHOWN) == SHOWN[1]
    # some images were linked, not attached: the attachments no longer line up
    assert image_url(job, 1, SHOWN[:3]) == URLS[1]
    assert image_url(job, 3) == URLS[3]


@pytest.mark.parametrize("index", [-1, 4])
def test_an_image_the_result_does_not_have_is_refused(index: int) -> None:
    with pytest.raises(NotAllowed):
        image_url(parent(), index, SHOWN)


def test_actions_on_different_images_are_not_taken_for_a_double_click() -> None:
    guard = RepeatGuard(window=60.0)
    who = Requester(user_id=1, guild_id=2, channel_id=3)
    job = parent()
    for spec in (
        varied(job, URLS[0]),
        varied(job, URLS[1]),
        rerendered(job, URLS[1], "2K"),
        rerendered(job, URLS[1], "4K"),
        reframed(job, URLS[1], "1:1"),
        reframed(job, URLS[1], "9:16"),
    ):
        with guard.once(spec, who):
            pass
    with pytest.raises(RepeatedRequest), guard.once(varied(job, URLS[0]), who):
        pass  # the same pick again within the window: a double click
