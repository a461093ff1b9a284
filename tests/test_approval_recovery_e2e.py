"""End to end: a held job whose log entry was deleted is posted again, and can still be approved.

Without this, a held job whose entry is gone could never be approved or rejected: it would hold
the member's credits and count as in flight forever. The entry is checked (and posted again) at
start-up, when the log or approval setting changes, and by ``/admin pending``, which also lists
what is waiting, with links.
"""

from __future__ import annotations

import re
from pathlib import Path

from storage.models import JobState
from tests.e2e_harness import StudioEnv, labels
from tests.fakes.discord import StoredMessage
from tests.test_approval_e2e import approval_env, general_results, held, turn_on


async def delete_by_hand(env: StudioEnv, message: StoredMessage) -> None:
    """Someone deletes a message (through the REST API, as a client would)."""
    url = f"{env.discord.api_base}/channels/{message.channel_id}/messages/{message.id}"
    headers = {"Authorization": f"Bot {env.discord.token}"}
    async with env.session.delete(url, headers=headers) as response:
        assert response.status == 204
    assert message.id in env.discord.deleted_messages


async def pending(env: StudioEnv) -> str:
    """``/admin pending`` as the guild's admin: deferred (it checks the log), then answered."""
    sent = await env.discord.slash_command("admin pending", {}, user=env.discord.guild.admin)
    # the first followup after a deferral replaces the "thinking…" message, as on Discord
    answer = await sent.wait_for_original()
    assert answer.ephemeral
    assert answer.allowed_mentions == {"parse": []}
    return answer.content


def entries(env: StudioEnv, log_id: int, job_id: str) -> list[StoredMessage]:
    return [m for m in env.discord.messages_in(log_id) if job_id in str(m.embeds)]


async def approve(env: StudioEnv, entry: StoredMessage, job_id: str) -> None:
    click = await env.click(entry, "Approve", user=env.discord.guild.admin)
    await click.wait_for_callback()
    await env.wait_state(job_id, JobState.DELIVERED)
    await env.wait_message(entry.id, lambda m: "Approved by" in str(m.embeds))
    assert len(general_results(env)) == 1


async def test_a_deleted_entry_is_posted_again_at_start_up(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id):
        async with env.running():
            await turn_on(env, log_id)
            _, job_id = await held(env, log_id, "entry deleted")
            (first,) = entries(env, log_id, job_id)
            await delete_by_hand(env, first)
        async with env.running():
            again = await env.log_entry(log_id, lambda m: job_id in str(m.embeds))
            assert again.id != first.id
            assert labels(again) == ["Approve", "Reject", "Ban requester"]
            assert len(again.attachments) == 1  # the images again
            job = await env.wait_state(job_id, JobState.AWAITING_APPROVAL)
            assert env.bot is not None
            await env.bot.moderation.wait_idle()
            assert (await env.job(job_id)).log_message_id == again.id != job.id
            await approve(env, again, job_id)


async def test_an_entry_still_there_is_not_posted_twice(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id):
        async with env.running():
            await turn_on(env, log_id)
            _, job_id = await held(env, log_id, "entry kept")
        async with env.running():
            said = await pending(env)
            assert job_id in said
            assert len(entries(env, log_id, job_id)) == 1
            fetches = env.discord.requests_to(f"GET /channels/{log_id}/messages/*")
            assert fetches  # it was checked, not assumed


async def test_admin_pending_lists_held_jobs_and_posts_missing_entries(
    db_target: Path | str,
) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        assert await pending(env) == "No results are waiting for a moderator."
        await turn_on(env, log_id)
        guild = env.discord.guild
        _, kept_id = await held(env, log_id, "kept")
        _, lost_id = await held(env, log_id, "lost")
        (lost,) = entries(env, log_id, lost_id)
        await delete_by_hand(env, lost)

        said = await pending(env)
        (new,) = entries(env, log_id, lost_id)
        (kept,) = entries(env, log_id, kept_id)
        assert said.startswith("**Waiting for a moderator** (2;")
        base = f"https://discord.com/channels/{guild.id}/{log_id}"
        lines = said.splitlines()[1:]
        assert len(lines) == 2
        assert lines[0].startswith(f"`{kept_id}` by <@{guild.member.id}> in <#")
        assert lines[0].endswith(f"[log entry]({base}/{kept.id})")
        assert lines[1].startswith(f"`{lost_id}` by <@{guild.member.id}>")
        assert lines[1].endswith(f"[log entry]({base}/{new.id})")
        assert re.search(r"waiting since <t:\d+:R>", lines[0])
        await approve(env, new, lost_id)


async def test_moving_the_log_channel_posts_held_jobs_in_the_new_one(db_target: Path | str) -> None:
    async with approval_env(db_target) as (env, log_id), env.running():
        await turn_on(env, log_id)
        _, job_id = await held(env, log_id, "moving")
        new_log = env.discord.add_text_channel(env.discord.guild, "new-log")
        # the bot learns about the channel as Discord would tell it
        await env.discord.dispatch("CHANNEL_CREATE", new_log.payload())
        await env.admin("log-channel", {"channel": new_log})
        entry = await env.log_entry(new_log.id, lambda m: job_id in str(m.embeds))
        # the old entry's buttons no longer act: only the job's current entry does
        (old,) = entries(env, log_id, job_id)
        click = await env.click(old, "Approve", user=env.discord.guild.admin)
        (told,) = await click.wait_for_followups()
        assert "not on the job's log entry" in told.content
        assert (await env.job(job_id)).state == JobState.AWAITING_APPROVAL
        await approve(env, entry, job_id)
