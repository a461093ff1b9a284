"""bot.run(): the same start-up as ``python bot.py``; SIGTERM stops it and keeps the jobs."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from bot import run
from storage import Storage
from storage.models import JobState
from tests.e2e_harness import harness_settings
from tests.fakes.discord import FakeDiscord
from tests.fakes.runcomfy import FakeRunComfy, JobScript


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
        runcomfy.script(JobScript(queue_seconds=0.4, run_seconds=0.05))
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
        try:
            delivered = await sent.wait_for_original(lambda m: bool(m.attachments), timeout=10)
            assert len(delivered.attachments) == 1
            assert runcomfy.count("submit") == 1
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(second, timeout=10)
        async with Storage.open(settings.database_path) as storage:
            assert await storage.jobs.unfinished() == []
            assert (await storage.jobs.get(job.id)).state == JobState.DELIVERED  # type: ignore[union-attr]
