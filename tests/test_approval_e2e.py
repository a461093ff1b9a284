"""End to end: approval mode. Finished results wait in the moderators' log for Approve or Reject.

The real bot and discord.py against the fake Discord and the fake RunComfy on 127.0.0.1. The
guild gets a ``#mod-log`` channel before the bot connects; ``/admin log-channel`` and
``/admin approval`` turn the features on, as the guild's admin would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from storage.models import JobState
from tests.e2e_harness import StudioEnv, labels, studio_env
from tests.fakes.discord import Overwrite, StoredMessage

NO_PINGS = {"users": set(), "roles": set(), "everyone": False}
MODERATOR = discord.Permissions(view_channel=True, send_messages=True, manage_messages=True)
BANNER = discord.Permissions(view_channel=True, send_messages=True, ban_members=True)


@contextlib.asynccontextmanager
async def approval_env(tmp_path: Path | str) -> AsyncIterator[tuple[StudioEnv, int]]:
    """Both fakes and a guild with a #mod-log channel (the bot not started yet)."""
    async with studio_env(tmp_path) as env:
        log_channel = env.discord.add_text_channel(env.discord.guild, "mod-log")
        yield env, log_channel.id


async def turn_on(env: StudioEnv, log_id: int) -> None:
    await env.admin("log-channel", {"channel": env.discord.channel(log_id)})
    said = await env.admin("approval", {"enabled": True})
    assert said == "Approval mode is on: results wait for a moderator in the log channel."


async def held(env: StudioEnv, log_id: int, prompt: str, **options: Any) -> tuple[Any, str]:
    """An /imagine that finishes and waits for approval: (its interaction, the job id)."""
    sent = await env.imagine(prompt, **options)
    status = await env.acknowledged(sent)
    job_id = env.job_id_of(status)
    await env.wait_state(job_id, JobState.AWAITING_APPROVAL)
    await env.log_entry(log_id, lambda m: job_id in str(m.embeds))
    assert env.bot is not None
    await env.bot.moderation.wait_idle()  # the entry's id is stored
    return sent, job_id


def entry_of(env: StudioEnv, log_id: int, job_id: str) -> StoredMessage:
    (entry,) = [m for m in env.discord.messages_in(log_id) if job_id in str(m.embeds)]
    return entry


def general_results(env: StudioEnv) -> list[StoredMessage]:
    """Messages in #general that carry images."""
    channel = env.discord.guild.text_channel
    return [m for m in env.discord.messages_in(channel) if m.attachments]


async def used(env: StudioEnv, user_id: int) -> int:
    assert env.storage is not None
    return (await env.storage.quota.balance(user_id, env.discord.guild.id)).used


async def test_a_held_result_goes_to_the_log_not_the_channel(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        await turn_on(env, log_id)
        member = env.discord.guild.member
        sent, job_id = await held(env, log_id, "for review", count=2)
        entry = entry_of(env, log_id, job_id)
        assert entry.embeds[0]["title"] == "⏳ Awaiting approval · Imagine"
        assert len(entry.attachments) == 2  # the moderators see the images themselves
        assert entry.embeds[0]["image"]["url"].startswith("attachment://")
        assert labels(entry) == ["Approve", "Reject", "Ban requester"]
        assert entry.pinged() == NO_PINGS and entry.allowed_mentions == {"parse": []}
        assert "2 credits held" in str(entry.embeds)
        # The channel shows no image; the requester is told a moderator will look.
        status = await env.wait_message(
            sent.original.id, lambda m: "Waiting for a moderator" in m.content
        )
        assert status.attachments == [] and status.buttons() == []
        assert general_results(env) == []
        job = await env.job(job_id)
        assert job.committed is None and job.log_message_id == entry.id
        assert await used(env, member.id) == 2  # held, not yet committed


async def test_approve_posts_the_result_in_the_channel_and_commits(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        await turn_on(env, log_id)
        guild = env.discord.guild
        sent, job_id = await held(env, log_id, "approve me", count=2)
        entry = entry_of(env, log_id, job_id)

        for who in ({}, {"user": guild.owner, "member_permissions": BANNER}):
            click = await env.click(entry, "Approve", **who)
            await click.wait_for_callback()
            assert click.ephemeral
            assert "Manage Messages" in click.callback_data["content"]
        assert (await env.job(job_id)).state == JobState.AWAITING_APPROVAL

        click = await env.click(entry, "Approve", user=guild.admin, member_permissions=MODERATOR)
        await click.wait_for_callback()
        job = await env.wait_state(job_id, JobState.DELIVERED)
        assert job.committed == 2
        result = await env.wait_message(sent.original.id, lambda m: len(m.attachments) == 2)
        assert labels(result) == ["Re-roll", "Edit", "Delete", "Favourite"]
        assert result.pinged() == NO_PINGS
        updated = await env.wait_message(entry.id, lambda m: "Approved" in str(m.embeds))
        assert updated.embeds[0]["title"] == "✅ Delivered · Imagine"
        assert f"✅ Approved by <@{guild.admin.id}> <t:" in str(updated.embeds)
        assert labels(updated) == ["Remove", "Refund", "Ban requester"]
        assert len(updated.attachments) == 2  # the entry keeps its images
        assert len(general_results(env)) == 1


async def test_approve_after_the_token_expired_mentions_the_requester(
    db_target: Path | str,
) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        await turn_on(env, log_id)
        member = env.discord.guild.member
        sent, job_id = await held(env, log_id, "approved late")
        env.discord.expire_interaction(sent)
        click = await env.click(
            entry_of(env, log_id, job_id), "Approve", user=env.discord.guild.admin
        )
        await click.wait_for_callback()
        job = await env.wait_state(job_id, JobState.DELIVERED)
        result = env.discord.message(job.result_message_id)  # type: ignore[arg-type]
        assert result.origin == "channel" and result.attachments
        assert result.content.startswith(f"<@{member.id}>")
        assert result.pinged() == {"users": {member.id}, "roles": set(), "everyone": False}


async def test_reject_refunds_and_tells_the_requester_privately(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        await turn_on(env, log_id)
        await env.admin("dms", {"enabled": True})
        guild = env.discord.guild
        member = guild.member
        prompt = "not for here @everyone"
        sent, job_id = await held(env, log_id, prompt, count=3)
        entry = entry_of(env, log_id, job_id)

        click = await env.click(entry, "Reject")  # the requester can't reject (or approve)
        await click.wait_for_callback()
        assert click.ephemeral and "Manage Messages" in click.callback_data["content"]

        click = await env.click(entry, "Reject", user=guild.admin)
        await click.wait_for_callback()
        job = await env.wait_state(job_id, JobState.REJECTED)
        assert job.committed is None and await used(env, member.id) == 0
        # Everyone sees a neutral notice: no verdict, no prompt, no images.
        status = await env.wait_message(sent.original.id, lambda m: "not posted" in m.content)
        assert status.content == f"🚫 This request was not posted.\n-# job `{job_id}`"
        assert status.attachments == [] and status.embeds == [] and status.buttons() == []
        # The verdict reaches the requester alone: an ephemeral followup on their command.
        (told,) = await sent.wait_for_followups()
        assert told.ephemeral and "was not approved" in told.content and job_id in told.content
        assert "3 credits are back" in told.content and "not for here" in told.content
        assert told.pinged() == NO_PINGS
        updated = await env.wait_message(entry.id, lambda m: "Rejected by" in str(m.embeds))
        assert updated.embeds[0]["title"] == "⛔ Rejected · Imagine"
        assert labels(updated) == ["Ban requester"]
        assert general_results(env) == []  # no image ever reached the channel
        public = [m for m in env.discord.messages_in(guild.text_channel) if not m.ephemeral]
        assert not any("not for here" in m.content for m in public)
        assert env.discord.requests_to("POST /users/@me/channels") == []  # no DM needed


async def test_reject_after_the_token_expired_tells_the_requester_by_dm(
    db_target: Path | str,
) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        await turn_on(env, log_id)
        await env.admin("dms", {"enabled": True})
        member = env.discord.guild.member
        sent, job_id = await held(env, log_id, "rejected late", count=2)
        env.discord.expire_interaction(sent)
        entry = entry_of(env, log_id, job_id)
        click = await env.click(entry, "Reject", user=env.discord.guild.admin)
        await click.wait_for_callback()
        dm = await env.discord.wait_for_message(
            lambda m: m.channel_id == env.discord.dm_channel(member.user).id
        )
        assert "was not approved" in dm.content and job_id in dm.content
        assert "rejected late" in dm.content and dm.pinged() == NO_PINGS
        status = await env.wait_message(sent.original.id, lambda m: "not posted" in m.content)
        assert "rejected late" not in status.content
        await env.wait_message(entry.id, lambda m: "Rejected by" in str(m.embeds))
        channel = env.discord.messages_in(env.discord.guild.text_channel)
        assert [m for m in channel if m.origin == "channel"] == []  # nothing else public


async def test_reject_with_no_private_way_posts_a_neutral_notice(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        await turn_on(env, log_id)  # DMs stay off
        member = env.discord.guild.member
        sent, job_id = await held(env, log_id, "quietly rejected")
        env.discord.expire_interaction(sent)
        click = await env.click(
            entry_of(env, log_id, job_id), "Reject", user=env.discord.guild.admin
        )
        await click.wait_for_callback()
        await env.wait_state(job_id, JobState.REJECTED)
        notice = await env.discord.wait_for_message(
            lambda m: m.channel_id == sent.original.channel_id and m.origin == "channel"
        )
        assert notice.content == (
            f"<@{member.id}> your request (job `{job_id}`) was not posted. Your 1 credit is back."
        )
        assert notice.pinged() == {"users": {member.id}, "roles": set(), "everyone": False}
        await env.wait_message(sent.original.id, lambda m: "not posted" in m.content)
        await env.wait_message(
            entry_of(env, log_id, job_id).id, lambda m: "Rejected by" in str(m.embeds)
        )
        assert env.discord.requests_to("POST /users/@me/channels") == []


async def test_a_pending_approval_survives_a_restart(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id):
        async with env.running():
            await turn_on(env, log_id)
            sent, job_id = await held(env, log_id, "across a restart")
            entry = entry_of(env, log_id, job_id)
        mark = env.discord.mark()
        async with env.running() as bot:
            # start-up checks the held job's entry (a fetch), and finds it: wait for that check
            await env.discord.wait_for(f"GET /channels/{log_id}/messages/{entry.id}", after=mark)
            await bot.moderation.wait_idle()
            # resumed, not delivered, and no second entry
            assert (await env.job(job_id)).state == JobState.AWAITING_APPROVAL
            assert general_results(env) == [] and len(env.discord.messages_in(log_id)) == 1
            # Two moderators approve at once: the result is posted exactly once.
            clicks = await asyncio.gather(
                env.click(entry, "Approve", user=env.discord.guild.admin),
                env.click(entry, "Approve", user=env.discord.guild.owner),
            )
            for click in clicks:
                await click.wait_for_callback()
            job = await env.wait_state(job_id, JobState.DELIVERED)
            await env.wait_message(sent.original.id, lambda m: bool(m.attachments))
            await env.discord.wait_until(lambda: any(c.followups for c in clicks))
            uploads = [r for r in env.discord.requests if r.files and r.method in ("PATCH", "POST")]
            to_channel = [r for r in uploads if f"/channels/{log_id}/" not in r.path]
            assert len(to_channel) == 1 and job.committed == 1
            (told,) = [f for c in clicks for f in c.followups]
            assert "no longer waiting for approval" in told.content


async def test_approval_without_a_log_channel_delivers_directly(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        said = await env.admin("approval", {"enabled": True})
        assert "Set a log channel" in said and "posted without approval" in said
        sent = await env.imagine("no log, no approval")
        status = await env.acknowledged(sent)
        await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        # Approval off again (with a log): results are posted and merely logged.
        await env.admin("log-channel", {"channel": env.discord.channel(log_id)})
        await env.admin("approval", {"enabled": False})
        sent = await env.imagine("approval off")
        status = await env.acknowledged(sent)
        job_id = env.job_id_of(status)
        await env.wait_state(job_id, JobState.DELIVERED)
        entry = await env.log_entry(log_id, lambda m: job_id in str(m.embeds))
        assert entry.embeds[0]["title"] == "✅ Delivered · Imagine"


async def test_an_unusable_log_channel_keeps_the_job_held_until_it_works(
    db_target: Path | str,
) -> None:
    async with approval_env(db_target) as (env, log_id):
        guild = env.discord.guild
        deny = discord.Permissions(send_messages=True).value
        locked = env.discord.add_text_channel(
            guild, "locked-log", overwrites=[Overwrite(guild.bot_role.id, 0, deny=deny)]
        )
        async with env.running() as bot:
            await turn_on(env, locked.id)
            sent = await env.imagine("nowhere to review it")
            status = await env.acknowledged(sent)
            job_id = env.job_id_of(status)
            await env.wait_state(job_id, JobState.AWAITING_APPROVAL)
            await env.wait_message(status.id, lambda m: "Waiting for a moderator" in m.content)
            # The entry is tried after the member was told: wait for Discord's refusal.
            await env.discord.wait_for(f"POST /channels/{locked.id}/messages", status=403)
            await bot.moderation.wait_idle()
            job = await env.job(job_id)
            assert job.log_message_id is None and general_results(env) == []
            # An admin points the log at a channel the bot can use: the job shows up there.
            await env.admin("log-channel", {"channel": env.discord.channel(log_id)})
            entry = await env.log_entry(log_id, lambda m: job_id in str(m.embeds))
            assert labels(entry) == ["Approve", "Reject", "Ban requester"]
            click = await env.click(entry, "Approve", user=guild.admin)
            await click.wait_for_callback()
            await env.wait_state(job_id, JobState.DELIVERED)
            await env.wait_message(status.id, lambda m: bool(m.attachments))


async def test_approve_uses_the_logs_copy_when_runcomfy_no_longer_has_the_images(
    db_target: Path | str,
) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        await turn_on(env, log_id)
        sent, job_id = await held(env, log_id, "approved days later")
        entry = entry_of(env, log_id, job_id)
        env.runcomfy.inject("image", times=20, status=404)  # RunComfy's URLs have expired
        click = await env.click(entry, "Approve", user=env.discord.guild.admin)
        await click.wait_for_callback()
        await env.wait_state(job_id, JobState.DELIVERED)
        result = await env.wait_message(sent.original.id, lambda m: bool(m.attachments))
        assert [a.data for a in result.attachments] == [a.data for a in entry.attachments]


async def test_approve_when_no_image_can_be_fetched_posts_the_links(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        await turn_on(env, log_id)
        sent, job_id = await held(env, log_id, "gone everywhere")
        entry = entry_of(env, log_id, job_id)
        env.runcomfy.inject("image", times=20, status=404)
        for attachment in entry.attachments:
            env.discord.expire_attachment(attachment)
        click = await env.click(entry, "Approve", user=env.discord.guild.admin)
        await click.wait_for_callback()
        job = await env.wait_state(job_id, JobState.DELIVERED)  # a result is never dropped
        result = await env.wait_message(sent.original.id, lambda m: bool(m.embeds))
        assert result.attachments == [] and "/attachments/" in str(result.embeds)
        assert labels(result) == ["Re-roll", "Edit", "Delete", "Favourite"]
        assert job.state == JobState.DELIVERED


# Discord refuses both the webhook and the channel: the failed delivery is logged.
@pytest.mark.expect_errors(logger="services.jobs", match="the result could not be posted")
async def test_approve_that_discord_refuses_keeps_the_job_waiting(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        await turn_on(env, log_id)
        member = env.discord.guild.member
        sent, job_id = await held(env, log_id, "nowhere to post")
        entry = entry_of(env, log_id, job_id)
        general = sent.original.channel_id
        env.discord.fail(
            lambda r: r.method == "PATCH" and "/webhooks/" in r.path and bool(r.files),
            status=400,
            code=50035,
            count=9,
        )
        env.discord.fail(f"POST /channels/{general}/messages", status=403, code=50013, count=9)
        click = await env.click(entry, "Approve", user=env.discord.guild.admin)
        (told,) = await click.wait_for_followups()
        assert told.ephemeral and "not posted" in told.content and "still waiting" in told.content
        job = await env.job(job_id)
        assert job.state == JobState.AWAITING_APPROVAL and job.error is None
        assert await used(env, member.id) == 1  # still held, not refunded


async def test_a_held_job_counts_as_in_flight_until_a_moderator_decides(
    db_target: Path | str,
) -> None:
    async with approval_env(db_target) as (env, log_id):
        async with env.running():
            await turn_on(env, log_id)
            _, job_id = await held(env, log_id, "waiting")

            async def in_progress() -> str:
                sent = await env.discord.slash_command("quota")
                await sent.wait_for_callback()
                return str(sent.callback_data["content"])

            assert "Jobs in progress: **1**" in await in_progress()
        async with env.running():  # a restart still counts it
            assert "Jobs in progress: **1**" in await in_progress()
            entry = entry_of(env, log_id, job_id)
            click = await env.click(entry, "Reject", user=env.discord.guild.admin)
            await click.wait_for_callback()
            await env.wait_message(entry.id, lambda m: "Rejected" in str(m.embeds))
            assert (await env.job(job_id)).state == JobState.REJECTED
            assert "Jobs in progress: **0**" in await in_progress()
