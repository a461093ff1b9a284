"""Requests first, end to end: no job's background work goes out while a member waits for an
answer (the real bot, the fake Discord and the fake RunComfy, production pacing)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.e2e_harness import studio_env
from tests.fakes.discord import png_bytes


async def test_no_job_is_submitted_while_an_interaction_waits_for_its_answer(
    tmp_path: Path,
) -> None:
    # Burst detection out of reach and no time cap: only the unanswered request holds them.
    timing = {"yield_window": 0.1, "yield_burst": 10_000, "yield_max": 60.0}
    async with studio_env(tmp_path, timing_changes=timing) as env, env.running() as bot:
        guild = env.discord.guild
        slow, quick = (env.discord.add_member(guild, n, roles=[guild.member_role]) for n in "ab")
        # The /edit's answer waits for its images to be checked: hold that check open.
        entered, release = asyncio.Event(), asyncio.Event()
        check = bot.jobs.check_images

        async def held_check(images: Any) -> None:
            entered.set()
            await release.wait()
            await check(images)

        bot.jobs.check_images = held_check  # type: ignore[method-assign]
        image = env.discord.make_attachment(png_bytes(), "one.png")
        editing = asyncio.create_task(
            env.discord.slash_command("edit", {"prompt": "bluer", "image": image}, user=slow)
        )
        await asyncio.wait_for(entered.wait(), timeout=10)
        imagined = await env.discord.slash_command("imagine", {"prompt": "cat"}, user=quick)
        await env.acknowledged(imagined)  # answered and accepted: its job is ready to go
        await asyncio.sleep(0.3)  # (FAST polling: a submit would be out within milliseconds)
        assert env.runcomfy.count("submit") == 0  # it waits: a member still waits for an answer

        release.set()
        edited = await editing
        await env.acknowledged(edited)
        await env.discord.wait_until(
            lambda: env.runcomfy.count("submit") == 2, describe="both submits"
        )
        answered = max(r.received_at for r in env.discord.requests if r.path.endswith("/callback"))
        assert min(r.at for r in env.runcomfy.requests if r.endpoint == "submit") >= answered
