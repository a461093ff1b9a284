"""What the client learns of job durations, through the fake: request counts, never timings."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from client import ClientSettings, RunComfyClient
from client.models import GenerationOptions, TextToImageRequest
from client.polling import DurationEstimate, DurationEstimator, PollingPolicy
from tests.conftest import FAST_POLLING, FAST_RETRY
from tests.fakes.runcomfy import TEXT_TO_IMAGE_MODEL, FakeRunComfy, JobScript

CAT = TextToImageRequest("a cat in a hat")
# Long against FAST_POLLING's gaps (0.005-0.02 s), so a cold client polls it many times.
JOB = JobScript(queue_seconds=0.1, run_seconds=0.3, queue_position=2)


def client_for(session: aiohttp.ClientSession, fake: FakeRunComfy) -> RunComfyClient:
    settings = ClientSettings(api_token="test-token", api_base=fake.base_url)
    return RunComfyClient(session, settings, retry=FAST_RETRY, polling=FAST_POLLING)


def polls_of(fake: FakeRunComfy, request_id: str) -> list[str]:
    """The endpoints the client asked about one job, in order."""
    return [
        r.endpoint
        for r in fake.requests
        if r.endpoint in ("status", "result") and f"/{request_id}/" in r.path
    ]


async def run_one(client: RunComfyClient, fake: FakeRunComfy, request: Any = CAT) -> list[str]:
    fake.script(JOB)
    handle = await client.submit(request)
    assert len(await handle.wait(timeout=30)) == 1
    return polls_of(fake, handle.request_id)


async def test_a_poll_is_the_result_call_so_no_request_follows_completion(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    client = client_for(http_session, fake_runcomfy)
    for _ in range(3):
        polls = await run_one(client, fake_runcomfy)
        # /status only for the first look (the queue position); every later poll is /result,
        # and the one that sees the end brings the images: no /status "completed" + /result.
        assert polls[-1] == "result"
        assert "status" not in polls[1:]


async def test_a_restarted_client_polls_like_a_learned_one(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    learned = client_for(http_session, fake_runcomfy)
    cold_polls = len(await run_one(learned, fake_runcomfy))  # a new install: the prior only
    for _ in range(4):
        await run_one(learned, fake_runcomfy)
    stored = json.loads(json.dumps(learned.durations.export()))  # as the database keeps it

    restarted = client_for(http_session, fake_runcomfy)
    assert restarted.durations.load(stored) == len(stored)
    after_restart = len(await run_one(restarted, fake_runcomfy))
    cold = client_for(http_session, fake_runcomfy)
    cold_again = len(await run_one(cold, fake_runcomfy))
    assert after_restart * 3 <= min(cold_polls, cold_again)


async def test_estimates_are_kept_per_resolution_and_image_count(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    client = client_for(http_session, fake_runcomfy)
    await run_one(client, fake_runcomfy)
    big = TextToImageRequest("a cat in a hat", GenerationOptions(resolution="4K", num_images=2))
    fake_runcomfy.script(JOB)
    handle = await client.submit(big)
    await handle.wait(timeout=30)
    model = TEXT_TO_IMAGE_MODEL
    assert set(client.durations.export()) == {
        f"{model}@1Kx1",
        f"{model}@1K",
        f"{model}@4Kx2",
        f"{model}@4K",
    }


def test_export_and_load_round_trip_and_bad_entries_are_skipped() -> None:
    policy = PollingPolicy()
    source = DurationEstimator(policy)
    estimate = DurationEstimate(2.0, 18.0, 0.3, 2.1, 1.5, jobs=7)
    source.load({"m@1Kx1": {**_fields(estimate)}})
    state = json.loads(json.dumps(source.export()))

    target = DurationEstimator(policy)
    bad: dict[str, Any] = {
        "nan": {**_fields(estimate), "run": float("nan")},
        "negative": {**_fields(estimate), "queue": -1},
        "no jobs": {**_fields(estimate), "jobs": 0},
        "missing": {"queue": 1.0},
        "not a mapping": [1, 2],
        "text": {**_fields(estimate), "run": "18"},
    }
    assert target.load({**state, **bad}) == 1
    assert target.estimate(("m@1Kx1",)) == estimate
    assert target.estimate(tuple(bad)) is None


def _fields(estimate: DurationEstimate) -> dict[str, Any]:
    return {
        "queue": estimate.queue,
        "run": estimate.run,
        "uncertainty": estimate.uncertainty,
        "variability": estimate.variability,
        "queue_step": estimate.queue_step,
        "jobs": estimate.jobs,
    }
