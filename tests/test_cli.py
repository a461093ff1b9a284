"""``python -m client`` as a user runs it: a subprocess against the fake RunComfy on loopback.

The fake serves from this test's event loop, so the subprocess is started with
asyncio.create_subprocess_exec and awaited, never waited for in a blocking way.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from client import RunComfyClient
from client.cli import EXIT_BROKEN_PIPE, describe, main
from client.models import GenerationOptions, JobState, JobStatus, TextToImageRequest
from tests.fakes.runcomfy import EDIT_MODEL, FakeRunComfy, JobScript
from tests.helpers import FOREVER

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    code: int
    stdout: list[str]
    stderr: list[str]


def cli_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    return {**env, "PYTHONPATH": str(REPO), **settings}


async def start_cli(*args: str, cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", *args,
        cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(process: asyncio.subprocess.Process) -> Run:
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return Run(process.returncode, out.decode().splitlines(), err.decode().splitlines())


@pytest.fixture
def env(fake_runcomfy: FakeRunComfy) -> dict[str, str]:
    return cli_env(RUNCOMFY_API_TOKEN="test-token", RUNCOMFY_API_BASE=fake_runcomfy.base_url)


async def cli(*args: str, cwd: Path, env: dict[str, str]) -> Run:
    return await finish(await start_cli(*args, cwd=cwd, env=env))


async def wait_until(predicate: Callable[[], object], what: str) -> None:
    """Until the fake's state says so; the bound only stops a broken test from hanging."""
    for _ in range(3000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def read_until(process: asyncio.subprocess.Process, fragment: str) -> str:
    """The first stderr line containing ``fragment`` (earlier lines are skipped)."""
    assert process.stderr is not None
    while line := (await asyncio.wait_for(process.stderr.readline(), 30)).decode():
        if fragment in line:
            return line
    raise AssertionError(f"stderr ended without {fragment!r}")


def assert_one_error_line(run: Run, code: int, *fragments: str) -> None:
    assert run.code == code
    assert len(run.stderr) == 1, run.stderr
    assert run.stderr[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in run.stderr[0]
    assert run.stdout == []


async def test_imagine_saves_the_images_and_prints_their_paths(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=0.05, run_seconds=0.05, queue_position=1))
    run = await cli(
        "imagine", "a fox in the snow", "--count", "2", "--aspect-ratio", "16:9",
        "--resolution", "2K", "--seed", "42", "--safety", "2", "--web-search", "--out", "out",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert len(run.stdout) == 2
    for line in run.stdout:
        path = tmp_path / line
        assert path.parent == tmp_path / "out" and path.suffix == ".png"
        with Image.open(path) as image:  # closed: no ResourceWarning
            assert image.format == "PNG"
    assert any("submitted request" in line for line in run.stderr)
    assert "completed" in run.stderr[-1]
    (job,) = fake_runcomfy.jobs.values()
    assert job.payload == {
        "prompt": "a fox in the snow",
        "num_images": 2,
        "seed": 42,
        "aspect_ratio": "16:9",
        "resolution": "2K",
        "output_format": "png",
        "safety_tolerance": 2,
        "limit_generations": True,
        "enable_web_search": True,
    }


async def test_edit_sends_every_image_and_keeps_the_format(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    run = await cli(
        "edit", "make it night", "--image", "https://cdn.example/a.png",
        "--image", "https://cdn.example/b.png", "--format", "webp", "--out", str(tmp_path / "o"),
        "--quiet", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert run.stderr == []  # --quiet
    (line,) = run.stdout
    with Image.open(line) as image:
        assert image.format == "WEBP" and line.endswith(".webp")
    (job,) = fake_runcomfy.jobs.values()
    assert job.model == EDIT_MODEL
    assert job.payload["image_urls"] == ["https://cdn.example/a.png", "https://cdn.example/b.png"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--aspect-ratio", "7:3"], "--aspect-ratio: must be one of auto, 21:9"),
        (["--count", "9"], "--count: must be a whole number from 1 to 4"),
        (["--count", "two"], "--count: invalid int value"),
        (["--format", "gif"], "--format: must be one of jpeg, png, webp"),
        (["--safety", "0"], "--safety: must be one of 1, 2, 3, 4, 5, 6"),
        (["--timeout", "0"], "--timeout: must be a positive number"),
        (["--timeout", "nan"], "--timeout: must be a positive number"),
        (["--timeout", "inf"], "--timeout: must be a positive number"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
async def test_an_invalid_option_is_one_line_and_sends_nothing(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path, args: list[str], fragment: str
) -> None:
    run = await cli("imagine", "a fox", "--out", "out", *args, cwd=tmp_path, env=env)
    assert_one_error_line(run, 2, fragment)
    assert fake_runcomfy.requests == []


async def test_a_missing_required_option_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    run = await cli("edit", "a fox", "--out", "out", cwd=tmp_path, env=env)
    assert_one_error_line(run, 2, "--image")


async def test_a_bad_token_is_one_line(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    run = await cli(
        "imagine", "a fox", "--out", "out", cwd=tmp_path, env={**env, "RUNCOMFY_API_TOKEN": "bad"}
    )
    assert_one_error_line(run, 1, "RunComfy rejected the API token")
    assert fake_runcomfy.count("submit") == 1


async def test_a_missing_token_names_the_setting(tmp_path: Path) -> None:
    run = await cli("imagine", "a fox", "--out", "out", cwd=tmp_path, env=cli_env())
    assert_one_error_line(run, 2, "RUNCOMFY_API_TOKEN: is required")


async def test_a_connection_lost_during_submit_is_one_line(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.inject("submit", drop=True)
    run = await cli("imagine", "a fox", "--out", "out", cwd=tmp_path, env=env)
    assert_one_error_line(run, 1, "connection to RunComfy failed", "may have been created")
    assert fake_runcomfy.count("submit") == 1


async def test_a_failed_job_ends_with_its_reason(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.script(JobScript(outcome="fail", error="prompt was flagged by moderation"))
    run = await cli("imagine", "a fox", "--out", "out", cwd=tmp_path, env=env)
    assert run.code == 1
    assert run.stdout == []
    assert run.stderr[-1] == "error: the job failed: prompt was flagged by moderation"
    assert not any("Traceback" in line for line in run.stderr)
    assert list((tmp_path / "out").iterdir()) == []


async def test_the_timeout_cancels_a_job_still_queued(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=60))
    run = await cli("imagine", "a fox", "--out", "o", "--timeout", "0.2", cwd=tmp_path, env=env)
    assert run.code == 1
    (request_id,) = fake_runcomfy.jobs
    assert run.stderr[-1] == (
        f"error: request {request_id} did not finish within 0.2 s; "
        "it was still queued, so it was cancelled"
    )
    assert fake_runcomfy.jobs[request_id].cancelled_at is not None


async def test_the_timeout_on_a_running_job_says_how_to_fetch_it_later(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=0, run_seconds=60))
    run = await cli("imagine", "a fox", "--out", "o", "--timeout", "0.2", cwd=tmp_path, env=env)
    assert run.code == 1
    (request_id,) = fake_runcomfy.jobs
    assert run.stderr[-1] == (
        f"error: request {request_id} did not finish within 0.2 s; "
        f"it may still finish: python -m client status {request_id} --out DIR"
    )
    assert fake_runcomfy.jobs[request_id].cancelled_at is None


async def test_status_out_saves_a_finished_jobs_images_as_imagine_does(
    runcomfy_client: RunComfyClient,
    fake_runcomfy: FakeRunComfy,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    fake_runcomfy.script(
        JobScript(queue_seconds=0, run_seconds=0),
        JobScript(queue_seconds=FOREVER, queue_position=2),
    )
    two = TextToImageRequest("x", GenerationOptions(num_images=2, output_format="webp"))
    done = (await runcomfy_client.submit(two)).request_id
    queued = (await runcomfy_client.submit(TextToImageRequest("y"))).request_id
    saved, waiting = await asyncio.gather(
        cli("status", done, "--out", "saved", cwd=tmp_path, env=env),
        cli("status", queued, "--out", "later", cwd=tmp_path, env=env),
    )
    assert saved.code == 0, saved.stderr
    assert saved.stdout == ["completed", f"saved/{done}-1.webp", f"saved/{done}-2.webp"]
    for line in saved.stdout[1:]:
        with Image.open(tmp_path / line) as image:
            assert image.format == "WEBP"
    assert waiting.code == 1
    assert waiting.stdout == ["queued (position 2)"]
    assert waiting.stderr == [f"error: request {queued} has not finished yet; nothing saved"]
    assert not (tmp_path / "later").exists()


async def test_status_and_cancel(
    runcomfy_client: RunComfyClient,
    fake_runcomfy: FakeRunComfy,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    fake_runcomfy.script(
        JobScript(queue_seconds=FOREVER, queue_position=3),  # at 3 however slow the CLI starts
        JobScript(queue_seconds=FOREVER),
        JobScript(queue_seconds=0, run_seconds=FOREVER),
        JobScript(queue_seconds=0, run_seconds=0),
    )
    queued, to_cancel, running, done = [
        (await runcomfy_client.submit(TextToImageRequest("x"))).request_id for _ in range(4)
    ]
    # concurrently: each is a process start-up, and the fake serves them all from this loop
    status_queued, status_done, cancel_queued, cancel_running = await asyncio.gather(
        cli("status", queued, cwd=tmp_path, env=env),
        cli("status", done, cwd=tmp_path, env=env),
        cli("cancel", to_cancel, cwd=tmp_path, env=env),
        cli("cancel", running, cwd=tmp_path, env=env),
    )
    assert (status_queued.code, status_queued.stdout) == (0, ["queued (position 3)"])
    assert status_done.code == 0
    assert status_done.stdout[0] == "completed"
    assert status_done.stdout[1].startswith(f"{fake_runcomfy.base_url}/files/{done}/")
    assert (cancel_queued.code, cancel_queued.stdout) == (0, ["cancelled"])
    assert fake_runcomfy.jobs[to_cancel].cancelled_at is not None
    assert_one_error_line(cancel_running, 1, f"request {running} cannot be cancelled")


async def test_ctrl_c_while_queued_cancels_the_job(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=60, queue_position=5))
    process = await start_cli("imagine", "a fox", "--out", "out", cwd=tmp_path, env=env)
    assert process.stderr is not None
    first = await asyncio.wait_for(process.stderr.readline(), 30)
    assert b"submitted request" in first
    process.send_signal(signal.SIGINT)
    run = await finish(process)
    (request_id,) = fake_runcomfy.jobs
    assert run.code == 130
    assert run.stderr[-1] == f"error: interrupted: cancelled request {request_id}"
    assert fake_runcomfy.jobs[request_id].cancelled_at is not None


async def test_sigterm_while_queued_cancels_the_job_as_ctrl_c_does(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=60, queue_position=5))
    process = await start_cli("imagine", "a fox", "--out", "out", cwd=tmp_path, env=env)
    assert process.stderr is not None
    first = await asyncio.wait_for(process.stderr.readline(), 30)
    assert b"submitted request" in first
    process.send_signal(signal.SIGTERM)
    run = await finish(process)
    (request_id,) = fake_runcomfy.jobs
    assert run.code == 128 + signal.SIGTERM
    assert run.stderr[-1] == f"error: terminated: cancelled request {request_id}"
    assert fake_runcomfy.jobs[request_id].cancelled_at is not None


async def test_ctrl_c_during_the_submit_still_cancels_the_job(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=60))
    fake_runcomfy.inject("submit", delay=0.3)  # the answer is on its way when Ctrl-C comes
    process = await start_cli("imagine", "a fox", "--out", "out", cwd=tmp_path, env=env)
    for _ in range(1000):
        if fake_runcomfy.count("submit"):
            break
        await asyncio.sleep(0.01)
    process.send_signal(signal.SIGINT)
    run = await finish(process)
    (request_id,) = fake_runcomfy.jobs
    assert run.code == 130
    assert run.stderr[-1] == f"error: interrupted: cancelled request {request_id}"
    assert fake_runcomfy.jobs[request_id].cancelled_at is not None


async def test_ctrl_c_while_running_says_the_job_goes_on(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=0, run_seconds=60))
    process = await start_cli("imagine", "a fox", "--out", "out", cwd=tmp_path, env=env)
    assert process.stderr is not None
    await asyncio.wait_for(process.stderr.readline(), 30)
    process.send_signal(signal.SIGINT)
    run = await finish(process)
    (request_id,) = fake_runcomfy.jobs
    assert run.code == 130
    assert f"request {request_id} is already running and cannot be cancelled" in run.stderr[-1]
    assert fake_runcomfy.jobs[request_id].cancelled_at is None


async def test_settings_come_from_dotenv_and_the_environment_wins(
    fake_runcomfy: FakeRunComfy, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        f"RUNCOMFY_API_BASE={fake_runcomfy.base_url}\nRUNCOMFY_API_TOKEN=stale-token\n"
    )
    env = cli_env(RUNCOMFY_API_TOKEN="test-token")
    run = await cli("imagine", "a fox", "--out", "out", "--quiet", cwd=tmp_path, env=env)
    assert run.code == 0, run.stderr
    assert fake_runcomfy.requests[0].headers["Authorization"] == "Bearer test-token"


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (JobStatus(JobState.QUEUED, queue_position=0), "queued (position 0)"),
        (JobStatus(JobState.QUEUED), "queued"),
        (JobStatus(JobState.RUNNING), "running"),
        (JobStatus(JobState.FAILED, error="flagged"), "failed: flagged"),
        (JobStatus(JobState.CANCELLED), "cancelled"),
    ],
)
def test_status_lines(status: JobStatus, line: str) -> None:
    assert describe(status) == line


async def test_an_unusable_output_folder_is_refused_before_anything_is_paid(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    run = await cli("imagine", "a fox", "--out", "taken/out", cwd=tmp_path, env=env)
    assert_one_error_line(run, 1, "cannot save images there", "taken/out")
    assert fake_runcomfy.requests == []


async def test_a_second_ctrl_c_during_the_submit_gives_up_at_once(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.inject("submit", delay=3600)  # the submit never answers
    process = await start_cli("imagine", "a fox", "--out", "out", cwd=tmp_path, env=env)
    await wait_until(lambda: fake_runcomfy.count("submit"), "the submit to arrive")
    process.send_signal(signal.SIGINT)
    await read_until(process, "Ctrl-C again to give up")  # the first press was taken
    process.send_signal(signal.SIGINT)
    run = await finish(process)
    assert run.code == 130
    assert run.stderr[-1] == (
        "error: interrupted again: gave up during the submit; the job may have been created "
        "and may still run (its request id never arrived)"
    )


async def test_a_second_ctrl_c_during_the_cancel_gives_up_at_once(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    fake_runcomfy.script(JobScript(queue_seconds=60))
    fake_runcomfy.inject("cancel", delay=3600)  # the cancel never answers
    process = await start_cli("imagine", "a fox", "--out", "out", cwd=tmp_path, env=env)
    await read_until(process, "submitted request")
    process.send_signal(signal.SIGINT)
    await read_until(process, "Ctrl-C again to give up")
    await wait_until(lambda: fake_runcomfy.count("cancel"), "the cancel to arrive")
    process.send_signal(signal.SIGINT)
    run = await finish(process)
    (request_id,) = fake_runcomfy.jobs
    assert run.code == 130
    assert run.stderr[-1] == (
        f"error: interrupted again: gave up; request {request_id} may still be running; "
        f"check it with: python -m client status {request_id}"
    )


async def test_a_closed_stdout_still_saves_the_images_and_exits_quietly(
    fake_runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    # like `python -m client imagine ... | true`: nobody reads the paths
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "client", "imagine", "a fox", "--count", "2", "--out", "out",
            "--quiet", cwd=tmp_path, env=env, stdout=write_end, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == EXIT_BROKEN_PIPE == 141
    assert err.decode() == ""
    assert len(list((tmp_path / "out").iterdir())) == 2


def test_an_undecodable_dotenv_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".env").write_bytes(b"RUNCOMFY_API_TOKEN=caf\xe9\n")  # Latin-1, not UTF-8
    monkeypatch.chdir(tmp_path)
    assert main(["status", "some-request"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: cannot read the settings: 'utf-8' codec can't decode")


def test_a_deleted_working_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert main(["status", "some-request"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: cannot read the settings: ")
