"""End to end: buttons whose custom_id names another job, another server, or an unposted result.

A modified client can send any custom_id on any message; every click is checked on the server
side against the job it names. The real bot and discord.py against the fakes on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storage.models import Job, JobState, NewJob
from tests.e2e_harness import StudioEnv, studio_env
from tests.fakes.discord import StoredMessage


def craft(message: StoredMessage, custom_id: str) -> None:
    """Put a button the bot never sent on ``message``, as a modified client could claim."""
    button = {"type": 2, "style": 1, "label": "crafted", "custom_id": custom_id}
    message.components.append({"type": 1, "components": [button]})


async def delivered(env: StudioEnv, prompt: str, **options: Any) -> tuple[StoredMessage, str]:
    status = await env.acknowledged(await env.imagine(prompt, **options))
    job_id = env.job_id_of(status)
    await env.wait_state(job_id, JobState.DELIVERED)
    return await env.wait_message(status.id, lambda m: bool(m.attachments)), job_id


async def refusal(env: StudioEnv, message: StoredMessage, custom_id: str, **who: Any) -> str:
    craft(message, custom_id)
    click = await env.discord.click_button(message, custom_id, **who)
    await click.wait_for_callback()
    if click.ephemeral:
        return str(click.callback_data["content"])
    (followup,) = await click.wait_for_followups()
    assert followup.ephemeral, followup.content
    return followup.content


async def test_reroll_and_edit_of_another_servers_job_are_refused(tmp_path: Path) -> None:
    async with studio_env(tmp_path, guild_id=None) as env:  # commands synced globally
        other = env.discord.add_guild(name="Elsewhere")
        async with env.running():
            _, job_a = await delivered(env, "guild A's private prompt")
            status_b = await env.acknowledged(
                await env.discord.slash_command(
                    "imagine",
                    {"prompt": "guild B"},
                    user=other.member,
                    guild_id=other.id,
                    channel_id=other.text_channel.id,
                )
            )
            await env.wait_state(env.job_id_of(status_b), JobState.DELIVERED)
            submits = env.runcomfy.count("submit")
            for action in ("reroll", "edit"):
                text = await refusal(env, status_b, f"studio:{action}:{job_a}", user=other.member)
                assert "another server" in text
            assert env.runcomfy.count("submit") == submits
            assert all(
                "guild A's private prompt" not in m.content
                for m in env.discord.messages_in(other.text_channel)
            )


async def test_delete_only_removes_a_message_showing_the_named_job(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        guild = env.discord.guild
        _, mine = await delivered(env, "mine")
        theirs_message, _ = await delivered(env, "theirs", user=guild.admin)
        text = await refusal(env, theirs_message, f"studio:delete:{mine}", user=guild.member)
        assert "does not belong" in text
        assert theirs_message.id not in env.discord.deleted_messages


async def test_reroll_of_a_job_that_was_never_posted_is_refused(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running() as bot:
        result, job_id = await delivered(env, "posted")
        failed = await bot.storage.jobs.create_reserved(_new_job_like(await env.job(job_id)))
        await bot.storage.jobs.transition(failed.id, JobState.FAILED, error="test")
        submits = env.runcomfy.count("submit")
        text = await refusal(
            env, result, f"studio:reroll:{failed.id}", user=env.discord.guild.member
        )
        assert "no posted result" in text
        assert env.runcomfy.count("submit") == submits


def _new_job_like(job: Job) -> NewJob:
    """A job row like ``job`` that never ran (it is failed before anything is sent)."""
    return NewJob(
        kind=job.kind,
        user_id=job.user_id,
        guild_id=job.guild_id,
        channel_id=job.channel_id,
        prompt=job.prompt,
        params=job.params,
        cost=job.cost,
    )
