"""bot.run(): the same start-up as ``python bot.py``; SIGTERM stops it and keeps the jobs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from bot import StartupError, run, sync_only
from storage import Storage
from storage.models import JobState
from tests.e2e_harness import harness_settings, studio_env
from tests.fakes.discord import FakeDiscord
from tests.fakes.runcomfy import FakeRunComfy, JobScript
from tests.helpers import FOREVER, finish_now


async def stop(task: asyncio.Task[None]) -> None:
    """SIGTERM the bot started by ``run()``, but only while it runs (the signal goes to this
    process: with no handler installed any more, it would end pytest itself)."""
    if not task.done():
        os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, timeout=10)


# discord.py dispatches one last event after close() has cleared its loop (a library quirk,
# harmless: the event has no listener); the coroutine it made is then never awaited.
@pytest.mark.filterwarnings("ignore:coroutine 'Client._run_event' was never awaited")
async def test_sigterm_stops_taking_commands_keeps_jobs_and_the_next_start_delivers(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as discord_fake, FakeRunComfy(token="test-token") as runcomfy:
        settings = harness_settings(
            tmp_path, runcomfy_base=runcomfy.base_url, guild_id=discord_fake.guild.id
        )
        runcomfy.script(JobScript(queue_seconds=FOREVER))
        first = asyncio.create_task(run(settings, guild_ready_timeout=0.05))
        await discord_fake.wait_until_connected()
        await discord_fake.wait_until(lambda: discord_fake.commands(discord_fake.guild.id))
        sent = await discord_fake.slash_command("imagine", {"prompt": "across a restart"})
        await sent.wait_for_callback()
        await discord_fake.wait_until(lambda: runcomfy.count("submit") == 1)

        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(first, timeout=10)  # run() returns: a clean stop
        async with Storage.open(settings.database_path) as storage:
            (job,) = await storage.jobs.unfinished()
            assert job.state in (JobState.SUBMITTED, JobState.QUEUED)
        assert sent.original is not None and not sent.original.attachments

        second = asyncio.create_task(run(settings, guild_ready_timeout=0.05))
        finish_now(runcomfy, job.request_id)
        try:
            delivered = await sent.wait_for_original(lambda m: bool(m.attachments), timeout=10)
            assert len(delivered.attachments) == 1
            assert runcomfy.count("submit") == 1
        finally:
            await stop(second)
        async with Storage.open(settings.database_path) as storage:
            assert await storage.jobs.unfinished() == []
            assert (await storage.jobs.get(job.id)).state == JobState.DELIVERED  # type: ignore[union-attr]


@pytest.mark.filterwarnings("ignore:coroutine 'Client._run_event' was never awaited")
async def test_a_second_instance_on_the_same_database_refuses_and_sync_only_leaves_jobs_alone(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as discord_fake, FakeRunComfy(token="test-token") as runcomfy:
        settings = harness_settings(
            tmp_path, runcomfy_base=runcomfy.base_url, guild_id=discord_fake.guild.id
        )
        runcomfy.script(JobScript(queue_seconds=FOREVER))
        first = asyncio.create_task(run(settings, guild_ready_timeout=0.05))
        try:
            await discord_fake.wait_until_connected()
            sent = await discord_fake.slash_command("imagine", {"prompt": "in flight"})
            await sent.wait_for_callback()
            await discord_fake.wait_until(lambda: runcomfy.count("submit") == 1)

            with pytest.raises(StartupError, match="another bot is already running"):
                await run(settings, guild_ready_timeout=0.05)

            identifies = len(discord_fake.identifies)
            syncs = len(discord_fake.requests_to("PUT /applications/*/guilds/*/commands"))
            assert await sync_only(settings) is True
            assert len(discord_fake.identifies) == identifies  # no second gateway session
            assert len(discord_fake.requests_to("PUT /applications/*/guilds/*/commands")) == (
                syncs + 1
            )
            async with Storage.open(settings.database_path) as storage:
                (job,) = await storage.jobs.unfinished()
                assert job.state in (JobState.SUBMITTED, JobState.QUEUED)  # not failed
        finally:
            await stop(first)


@pytest.mark.expect_errors(logger="studio", match="command sync failed")
async def test_a_failed_command_sync_is_one_line_and_jobs_still_resume(
    db_target: Path | str, caplog: pytest.LogCaptureFixture
) -> None:
    async with studio_env(db_target) as env:
        async with env.running(sync_commands=True):
            env.runcomfy.script(JobScript(queue_seconds=FOREVER))
            sent = await env.imagine("across a failed sync")
            status = await sent.wait_for_original()
            job_id = env.job_id_of(status)
            queued = await env.wait_state(job_id, JobState.SUBMITTED, JobState.QUEUED)
        finish_now(env.runcomfy, queued.request_id)
        env.discord.fail(
            "PUT /applications/*/guilds/*/commands",
            status=403,
            code=50001,
            message="Missing Access",
        )
        with caplog.at_level(logging.ERROR, logger="studio"):
            async with env.running(sync_commands=True) as bot:
                assert bot.synced is False
                await env.wait_state(job_id, JobState.DELIVERED)  # resumed all the same
        (line,) = [r for r in caplog.records if "command sync failed" in r.getMessage()]
        assert f"DISCORD_GUILD_ID={env.discord.guild.id}" in line.getMessage()
        assert line.exc_info is None  # one line, no traceback
