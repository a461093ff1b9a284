"""The fake RunComfy itself, over raw HTTP: shapes, validation, auth, timelines, faults, images."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.fakes.runcomfy import EDIT_MODEL, TEXT_TO_IMAGE_MODEL, FakeRunComfy, JobScript

AUTH = {"Authorization": "Bearer test-token"}
REPO = Path(__file__).resolve().parents[1]


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with session.request(
        method, url, json=json, headers=AUTH if headers is None else headers
    ) as r:
        return r.status, await r.json()


async def submit(
    session: aiohttp.ClientSession,
    fake: FakeRunComfy,
    payload: Any,
    model: str = TEXT_TO_IMAGE_MODEL,
) -> tuple[int, Any]:
    return await call(session, "POST", f"{fake.base_url}/v1/models/{model}", json=payload)


async def test_submit_answers_with_the_documented_urls(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    status, body = await submit(http_session, fake_runcomfy, {"prompt": "a cat"})
    assert status == 200
    base = f"{fake_runcomfy.base_url}/v1/requests/{body['request_id']}"
    assert body == {
        "request_id": body["request_id"],
        "status_url": f"{base}/status",
        "result_url": f"{base}/result",
        "cancel_url": f"{base}/cancel",
    }


@pytest.mark.parametrize(
    ("model", "payload", "loc", "msg"),
    [
        (TEXT_TO_IMAGE_MODEL, {}, ["body", "prompt"], "Field required"),
        (TEXT_TO_IMAGE_MODEL, {"prompt": 3}, ["body", "prompt"], "Input should be a valid string"),
        (TEXT_TO_IMAGE_MODEL, {"prompt": "p", "num_images": 5}, ["body", "num_images"], "between"),
        (
            TEXT_TO_IMAGE_MODEL,
            {"prompt": "p", "num_images": True},
            ["body", "num_images"],
            "integer",
        ),
        (
            TEXT_TO_IMAGE_MODEL,
            {"prompt": "p", "aspect_ratio": "7:3"},
            ["body", "aspect_ratio"],
            "'auto'",
        ),
        (
            TEXT_TO_IMAGE_MODEL,
            {"prompt": "p", "safety_tolerance": 7},
            ["body", "safety_tolerance"],
            "6",
        ),
        (
            TEXT_TO_IMAGE_MODEL,
            {"prompt": "p", "enable_web_search": 1},
            ["body", "enable_web_search"],
            "boolean",
        ),
        (TEXT_TO_IMAGE_MODEL, {"prompt": "p", "steps": 30}, ["body", "steps"], "Extra inputs"),
        (EDIT_MODEL, {"prompt": "p"}, ["body", "image_urls"], "Field required"),
        (EDIT_MODEL, {"prompt": "p", "image_urls": []}, ["body", "image_urls"], "between 1 and 20"),
        (
            EDIT_MODEL,
            {"prompt": "p", "image_urls": ["u"] * 21},
            ["body", "image_urls"],
            "between 1 and 20",
        ),
        (EDIT_MODEL, {"prompt": "p", "image_urls": [1]}, ["body", "image_urls"], "list of strings"),
    ],
)
async def test_invalid_inputs_get_a_422_detail_list(
    http_session: aiohttp.ClientSession,
    fake_runcomfy: FakeRunComfy,
    model: str,
    payload: dict[str, Any],
    loc: list[str],
    msg: str,
) -> None:
    status, body = await submit(http_session, fake_runcomfy, payload, model)
    assert status == 422
    (problem,) = body["detail"]
    assert problem["loc"] == loc
    assert msg in problem["msg"]
    assert fake_runcomfy.jobs == {}


async def test_an_unknown_model_is_404(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    status, _ = await submit(http_session, fake_runcomfy, {"prompt": "p"}, "acme/unknown")
    assert status == 404


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "test-token"}]
)
async def test_the_token_is_checked(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy, headers: dict[str, str]
) -> None:
    url = f"{fake_runcomfy.base_url}/v1/models/{TEXT_TO_IMAGE_MODEL}"
    status, body = await call(http_session, "POST", url, json={"prompt": "p"}, headers=headers)
    assert status == 401
    assert body["error_code"] == 400004


async def test_without_a_configured_token_any_bearer_token_is_accepted(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeRunComfy(token=None) as fake:
        url = f"{fake.base_url}/v1/models/{TEXT_TO_IMAGE_MODEL}"
        ok, _ = await call(
            http_session, "POST", url, json={"prompt": "p"}, headers={"Authorization": "Bearer x"}
        )
        missing, _ = await call(http_session, "POST", url, json={"prompt": "p"}, headers={})
    assert (ok, missing) == (200, 401)


async def test_a_job_walks_its_timeline_and_counts_its_queue_position_down(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    # 100 s per queue position, 100 s running. The fake's clock is the event loop's, so moving
    # the job's creation back is time passing: each look lands mid-step (50 s either side), and
    # a slow machine cannot skip a step.
    fake_runcomfy.script(JobScript(queue_seconds=300, run_seconds=100, queue_position=2))
    _, body = await submit(http_session, fake_runcomfy, {"prompt": "p", "num_images": 2})
    job = fake_runcomfy.jobs[body["request_id"]]
    created_at = job.created_at
    seen: list[tuple[str, int | None]] = []
    for elapsed in (50, 150, 250, 350, 450):
        job.created_at = created_at - elapsed
        _, status = await call(http_session, "GET", body["status_url"])
        seen.append((status["status"], status.get("queue_position")))
    assert seen == [
        ("in_queue", 2),
        ("in_queue", 1),
        ("in_queue", 0),
        ("in_progress", None),
        ("completed", None),
    ]
    _, result = await call(http_session, "GET", body["result_url"])
    assert result["status"] == "completed"
    assert len(result["output"]["images"]) == 2


async def test_result_before_the_end_gives_the_state_or_400005(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(
        JobScript(queue_seconds=600), JobScript(queue_seconds=600, result_too_early=True)
    )
    _, first = await submit(http_session, fake_runcomfy, {"prompt": "p"})
    _, second = await submit(http_session, fake_runcomfy, {"prompt": "p"})
    assert await call(http_session, "GET", first["result_url"]) == (
        200,
        {"request_id": first["request_id"], "status": "in_queue", "queue_position": 0},
    )
    status, body = await call(http_session, "GET", second["result_url"])
    assert (status, body["error_code"]) == (400, 400005)


async def test_cancel_only_while_queued(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=600), JobScript(queue_seconds=0, run_seconds=600))
    _, queued = await submit(http_session, fake_runcomfy, {"prompt": "p"})
    _, running = await submit(http_session, fake_runcomfy, {"prompt": "p"})
    _, cancelled = await call(http_session, "POST", queued["cancel_url"])
    _, again = await call(http_session, "POST", queued["cancel_url"])
    _, refused = await call(http_session, "POST", running["cancel_url"])
    assert (cancelled["outcome"], again["outcome"]) == ("cancelled", "cancelled")
    assert (refused["outcome"], refused["status"]) == ("not_cancellable", "in_progress")
    _, status = await call(http_session, "GET", queued["status_url"])
    assert status["status"] == "cancelled"


async def test_failed_and_http_200_error_outcomes(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(
        JobScript(queue_seconds=0, run_seconds=0, outcome="fail", error="flagged"),
        JobScript(
            queue_seconds=0, run_seconds=0, outcome="error_body", error_code=500002, error="db"
        ),
    )
    _, failed = await submit(http_session, fake_runcomfy, {"prompt": "p"})
    _, broken = await submit(http_session, fake_runcomfy, {"prompt": "p"})
    _, status = await call(http_session, "GET", failed["status_url"])
    assert (status["status"], status["error"]) == ("failed", "flagged")
    assert await call(http_session, "GET", broken["result_url"]) == (
        200,
        {"message": "db", "error_code": 500002},
    )


async def test_an_unknown_request_is_404001(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    status, body = await call(http_session, "GET", f"{fake_runcomfy.base_url}/v1/requests/x/status")
    assert (status, body["error_code"]) == (404, 404001)


@pytest.mark.parametrize(
    ("fmt", "content_type", "pil_format"),
    [("png", "image/png", "PNG"), ("jpeg", "image/jpeg", "JPEG"), ("webp", "image/webp", "WEBP")],
)
async def test_images_are_real_in_the_requested_format_and_count(
    http_session: aiohttp.ClientSession,
    fake_runcomfy: FakeRunComfy,
    fmt: str,
    content_type: str,
    pil_format: str,
) -> None:
    fake_runcomfy.default_script = JobScript(queue_seconds=0, run_seconds=0)
    for count in (1, 4):
        _, body = await submit(
            http_session, fake_runcomfy, {"prompt": "p", "num_images": count, "output_format": fmt}
        )
        _, result = await call(http_session, "GET", body["result_url"])
        output = result["output"]
        urls = [output["image"]] if count == 1 else output["images"]
        assert len(urls) == count and ("images" in output) == (count > 1)
        for url in urls:
            async with http_session.get(url) as response:  # no token needed
                assert response.content_type == content_type
                assert Image.open(io.BytesIO(await response.read())).format == pil_format


async def test_large_images_on_request(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=0, run_seconds=0, image_bytes=2_000_000))
    _, body = await submit(http_session, fake_runcomfy, {"prompt": "p"})
    _, result = await call(http_session, "GET", body["result_url"])
    async with http_session.get(result["output"]["image"]) as response:
        data = await response.read()
    assert len(data) >= 2_000_000
    assert Image.open(io.BytesIO(data)).format == "PNG"


async def test_faults_hit_the_named_endpoint_the_given_number_of_times(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.inject("submit", status=429, headers={"Retry-After": "3"}, times=2)
    answers = []
    for _ in range(3):
        url = f"{fake_runcomfy.base_url}/v1/models/{TEXT_TO_IMAGE_MODEL}"
        async with http_session.post(url, json={"prompt": "p"}, headers=AUTH) as response:
            answers.append((response.status, response.headers.get("Retry-After")))
    assert answers == [(429, "3"), (429, "3"), (200, None)]
    assert len(fake_runcomfy.jobs) == 1  # an injected error answer creates no job
    assert [r.endpoint for r in fake_runcomfy.requests] == ["submit"] * 3
    assert fake_runcomfy.requests[0].json == {"prompt": "p"}


async def test_a_dropped_submit_still_creates_its_job(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.inject("submit", drop=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await submit(http_session, fake_runcomfy, {"prompt": "p"})
    assert len(fake_runcomfy.jobs) == 1


async def test_runs_standalone_and_prints_its_base_url() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.runcomfy", "--port", "0", "--token", "T",
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        base_url = line.split(" on ")[1].split()[0]
        assert base_url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as session:
            status, body = await call(
                session, "POST", f"{base_url}/v1/models/{TEXT_TO_IMAGE_MODEL}",
                json={"prompt": "p"}, headers={"Authorization": "Bearer T"},
            )  # fmt: skip
        assert status == 200 and body["request_id"]
    finally:
        process.terminate()
        await process.wait()


async def test_malformed_json_is_logged_and_faults_still_apply(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    url = f"{fake_runcomfy.base_url}/v1/models/{TEXT_TO_IMAGE_MODEL}"
    headers = {**AUTH, "Content-Type": "application/json"}
    fake_runcomfy.inject("submit", status=503)
    answers = []
    for _ in range(2):
        async with http_session.post(url, data=b'{"prompt": ', headers=headers) as response:
            answers.append(response.status)
    assert answers == [503, 422]  # the fault first, then the JSON error
    assert [(r.endpoint, r.json, r.text) for r in fake_runcomfy.requests] == [
        ("submit", None, '{"prompt": ')
    ] * 2
    assert fake_runcomfy.jobs == {}


def test_a_fault_cannot_both_answer_and_drop(fake_runcomfy: FakeRunComfy) -> None:
    with pytest.raises(ValueError, match="status or drops"):
        fake_runcomfy.inject("status", status=503, drop=True)


async def test_a_delayed_answer_is_cut_short_when_the_fake_closes(
    http_session: aiohttp.ClientSession,
) -> None:
    fake = FakeRunComfy()
    await fake.start()
    fake.inject("submit", delay=3600)  # "never answers"
    url = f"{fake.base_url}/v1/models/{TEXT_TO_IMAGE_MODEL}"
    pending = asyncio.create_task(http_session.post(url, json={"prompt": "p"}, headers=AUTH))
    for _ in range(1000):
        if fake.count("submit"):
            break
        await asyncio.sleep(0.005)
    await asyncio.wait_for(fake.close(), 30)  # would hang for a minute or more without the cut
    with contextlib.suppress(aiohttp.ClientError):  # answered or cut off: either way, it ended
        (await asyncio.wait_for(pending, 30)).release()


async def test_chunked_images_have_no_content_length(
    http_session: aiohttp.ClientSession, fake_runcomfy: FakeRunComfy
) -> None:
    fake_runcomfy.script(
        JobScript(queue_seconds=0, run_seconds=0, image_bytes=100_000, image_chunked=True)
    )
    _, body = await submit(http_session, fake_runcomfy, {"prompt": "p"})
    _, result = await call(http_session, "GET", body["result_url"])
    async with http_session.get(result["output"]["image"]) as response:
        assert response.content_length is None
        assert response.headers.get("Transfer-Encoding") == "chunked"
        data = await response.read()
    assert Image.open(io.BytesIO(data)).format == "PNG"
