"""End to end: what members and moderators read is plain (issue 12).

No internal terms ("guild", "global"), plurals right, no Python reprs; /quota names the caps that
bind; the safety default is warned about; commands are offered where they work; Cancel goes once
a job is generating and a cancel says it once. The real bot against the fakes on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot import run
from services.policy import DEFAULT_CEILING, default_safety_warning
from storage.models import JobState
from tests.e2e_harness import StudioEnv, harness_settings, studio_env
from tests.fakes.discord import FakeDiscord, SentInteraction
from tests.fakes.runcomfy import FakeRunComfy, JobScript
from tests.helpers import FOREVER, finish_now

INTERNAL = re.compile(r"guild|global|\b1 credits\b|\b1 entries\b|<[A-Z][A-Za-z]+ |object at 0x")


def texts(sent: SentInteraction) -> str:
    """Everything the answer shows: content, and each embed's title, description and fields."""
    data = sent.callback_data or {}
    parts = [data.get("content") or ""]
    for embed in data.get("embeds", []):
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']} {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


def assert_plain(text: str) -> None:
    found = INTERNAL.search(text)
    assert found is None, f"{found.group(0)!r} in {text!r}"


async def answer(env: StudioEnv, command: str, options: dict[str, Any] | None = None) -> str:
    user = env.discord.guild.admin if command.startswith("admin") else None
    sent = await env.discord.slash_command(command, options or {}, user=user)
    await sent.wait_for_callback()
    assert sent.ephemeral, sent.callback_data
    return texts(sent)


async def test_member_and_moderator_texts_use_no_internal_terms(tmp_path: Path) -> None:
    async with studio_env(tmp_path, daily_credits=1) as env, env.running():
        guild = env.discord.guild
        quota = await answer(env, "quota")
        assert "**1** of 1 credit left today (from the bot-wide default)" in quota
        refusal = await answer(env, "imagine", {"prompt": "two please", "count": 2})
        assert "this needs 2 credits, 1 of 1 left (the daily allowance)" in refusal
        answers = [quota, refusal]
        answers.append(await answer(env, "admin quota cap", {"credits": 1}))
        answers.append(await answer(env, "admin blocklist add", {"pattern": "dragon"}))
        blocklist = await answer(env, "admin blocklist list")
        assert "(1 entry)" in blocklist
        settings = await answer(env, "admin settings")
        assert "**Blocklist:** 1 entry" in settings
        ledger = await answer(env, "admin quota ledger", {"member": guild.member})
        assert "from the bot-wide default" in ledger and "daily cap has 1 credit left" in ledger
        log_channel = await answer(env, "admin log-channel", {"channel": guild.text_channel})
        assert f"<#{guild.text_channel.id}>" in log_channel
        grant = await answer(env, "admin quota grant", {"member": guild.member, "amount": 1})
        assert "1 extra credit for today" in grant
        answers += [blocklist, settings, ledger, log_channel, grant]
        for text in answers:
            assert_plain(text)


async def test_the_server_cap_refusal_says_server(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        await answer(env, "admin quota cap", {"credits": 1})
        refusal = await answer(env, "imagine", {"prompt": "two please", "count": 2})
        assert "This server's daily credits are used up" in refusal
        assert "(the server's daily cap)" in refusal
        assert_plain(refusal)


async def test_quota_shows_the_server_cap_when_it_binds(tmp_path: Path) -> None:
    async with studio_env(tmp_path, daily_credits=10) as env, env.running():
        await answer(env, "admin quota cap", {"credits": 2})
        quota = await answer(env, "quota")
        assert "You have **2** of 10 credits left today" in quota
        assert "This server has 2 credits left today." in quota
        await answer(env, "admin quota cap", {"credits": 50})  # a cap that does not bind
        quota = await answer(env, "quota")
        assert "You have **10** of 10 credits" in quota and "This server has" not in quota


async def test_quota_shows_the_bot_wide_cap_when_it_binds(tmp_path: Path) -> None:
    async with studio_env(tmp_path, daily_credits=10) as env:
        env.settings = replace(env.settings, quota=replace(env.settings.quota, global_daily_cap=1))
        async with env.running():
            quota = await answer(env, "quota")
            assert "You have **1** of 10 credits left today" in quota
            assert "The bot has 1 credit left today." in quota
            assert_plain(quota)


@pytest.mark.parametrize("allow_dms", [False, True])
async def test_generation_commands_are_offered_in_dms_only_when_allowed(
    tmp_path: Path, allow_dms: bool
) -> None:
    async with studio_env(tmp_path, allow_dms=allow_dms) as env, env.running():
        commands = {c["name"]: c for c in env.discord.commands(env.discord.guild.id)}
        for name in ("imagine", "edit", "Edit image"):
            contexts = commands[name]["contexts"]
            assert 0 in contexts and (1 in contexts) is allow_dms, (name, contexts)


def test_default_safety_above_the_ceiling_is_a_warning() -> None:
    assert default_safety_warning(DEFAULT_CEILING) is None
    warning = default_safety_warning(6)
    assert warning is not None
    assert "DEFAULT_SAFETY=6" in warning and f"ceiling of {DEFAULT_CEILING}" in warning


@pytest.mark.filterwarnings("ignore:coroutine 'Client._run_event' was never awaited")
async def test_start_up_warns_once_about_default_safety(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord() as discord_fake, FakeRunComfy(token="test-token") as runcomfy:
        settings = harness_settings(
            tmp_path, runcomfy_base=runcomfy.base_url, guild_id=discord_fake.guild.id
        )
        settings = replace(settings, default_safety=6)
        with caplog.at_level(logging.WARNING):
            task = asyncio.create_task(run(settings, guild_ready_timeout=0.05))
            try:
                await discord_fake.wait_until_connected()
            finally:
                if not task.done():
                    os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.wait_for(task, timeout=10)
        (line,) = [r for r in caplog.records if "DEFAULT_SAFETY" in r.getMessage()]
        assert line.levelno == logging.WARNING
        assert "DEFAULT_SAFETY=6" in line.getMessage() and "ceiling of 4" in line.getMessage()


async def test_cancel_goes_once_generating_and_a_cancel_says_it_once(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        env.runcomfy.script(JobScript(queue_seconds=0, run_seconds=FOREVER))
        running = await env.acknowledged(await env.imagine("generating"))
        running_id = env.job_id_of(running)
        assert [b["label"] for b in running.buttons()] == ["Cancel"]
        job = await env.wait_state(running_id, JobState.RUNNING)
        shown = await env.wait_message(running.id, lambda m: "Generating" in m.content)
        assert shown.buttons() == []

        env.runcomfy.script(JobScript(queue_seconds=FOREVER))
        queued = await env.acknowledged(await env.imagine("waiting"))
        queued_id = env.job_id_of(queued)
        await env.wait_state(queued_id, JobState.QUEUED, JobState.SUBMITTED)
        click = await env.discord.click_button(queued, f"studio:cancel:{queued_id}")
        await click.wait_for_callback()
        await env.wait_state(queued_id, JobState.CANCELLED)
        final = await env.wait_message(queued.id, lambda m: "Cancelled" in m.content)
        assert "Your 1 credit is back." in final.content and final.buttons() == []
        await asyncio.sleep(0.2)  # a followup would have been sent by now
        assert click.followups == []
        cancelled_edits = [
            r
            for r in env.discord.requests_to("PATCH /webhooks/*")
            if "Cancelled" in str((r.json or {}).get("content"))
        ]
        assert len(cancelled_edits) == 1

        finish_now(env.runcomfy, job.request_id)
        await env.wait_state(running_id, JobState.DELIVERED)
