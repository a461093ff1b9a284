"""End to end: the moderators' buttons act only on the job's own log entry, in its own guild.

A button's ``custom_id`` names a job (``modlog:<action>:<job>``), and anyone can get a message
carrying any custom_id in front of the bot (a client bug, another bot, a copied component). So
the bot checks, on the server side, that the clicked message is the job's log entry and that the
job belongs to the clicker's guild. To forge a button, these tests append a component to a
message the fake Discord holds, then click it as a moderator with every permission.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from storage.models import JobState
from tests.e2e_harness import StudioEnv, studio_env
from tests.fakes.discord import FakeGuild, StoredMessage

ACTIONS = {
    "approve": "Approve",
    "reject": "Reject",
    "remove": "Remove",
    "refund": "Refund",
    "ban": "Ban requester",
}


def forge(message: StoredMessage, action: str, job_id: str) -> str:
    """Add a moderators' button for ``job_id`` to ``message`` (replacing one added before);
    returns its custom_id."""
    custom_id = f"modlog:{action}:{job_id}"
    button = {"type": 2, "style": 2, "label": ACTIONS[action], "custom_id": custom_id}
    message.components[:] = [row for row in message.components if not row.get("forged")]
    message.components.append({"type": 1, "components": [button], "forged": True})
    return custom_id


@contextlib.asynccontextmanager
async def two_guilds(tmp_path: Path) -> AsyncIterator[tuple[StudioEnv, int, FakeGuild]]:
    """A studio in guild A (log in #mod-log) and a second guild B the bot is also in."""
    async with studio_env(tmp_path) as env:
        log_channel = env.discord.add_text_channel(env.discord.guild, "mod-log")
        other = env.discord.add_guild(name="Guild B")
        async with env.running():
            await env.admin("log-channel", {"channel": log_channel})
            yield env, log_channel.id, other


async def job_of(env: StudioEnv, prompt: str, state: JobState) -> str:
    sent = await env.imagine(prompt)
    status = await env.acknowledged(sent)
    job_id = env.job_id_of(status)
    await env.wait_state(job_id, state)
    assert env.bot is not None and env.storage is not None
    # The entry is posted after the state is stored: wait for it, then for its id to be stored.
    log_id = (await env.storage.policy.get(env.discord.guild.id)).log_channel_id
    assert log_id is not None
    await env.log_entry(log_id, lambda m: job_id in str(m.embeds))
    await env.bot.moderation.wait_idle()
    return job_id


async def snapshot(env: StudioEnv, job_id: str) -> tuple[Any, ...]:
    """What a moderator's action would change: the job, the member's credits, bans."""
    assert env.storage is not None
    guild = env.discord.guild
    job = await env.job(job_id)
    balance = await env.storage.quota.balance(guild.member.id, guild.id)
    ban = await env.storage.policy.get_ban(guild.id, guild.member.id)
    return job.state, job.result_message_id, job.committed, balance.used, ban


async def refused(env: StudioEnv, message: StoredMessage, custom_id: str, user: Any) -> str:
    """The ephemeral refusal of a click: the answer itself, or the followup of a deferred one."""
    click = await env.discord.click_button(message, custom_id, user=user)
    await click.wait_for_callback()
    assert click.modal is None
    if click.callback_type == 6:  # deferred while the job was looked up
        (told,) = await click.wait_for_followups()
        assert told.ephemeral
        return told.content
    assert click.ephemeral and click.callback_data is not None, click.callback_data
    return str(click.callback_data["content"])


async def test_a_moderator_of_another_guild_cannot_act_on_a_job(tmp_path: Path) -> None:
    async with two_guilds(tmp_path) as (env, _, other):
        await env.admin("approval", {"enabled": False})
        delivered = await job_of(env, "delivered in A", JobState.DELIVERED)
        await env.admin("approval", {"enabled": True})
        held = await job_of(env, "held in A", JobState.AWAITING_APPROVAL)
        # Guild B's admin (Manage Server, Manage Messages, Ban Members there) forges buttons
        # on a message in guild B.
        target = await env.discord.post_user_message(other.text_channel, other.admin, "hi")
        cases = [
            (held, "approve"),
            (held, "reject"),
            (held, "ban"),
            (delivered, "remove"),
            (delivered, "refund"),
            (delivered, "ban"),
        ]
        for job_id, action in cases:
            before = await snapshot(env, job_id)
            custom_id = forge(target, action, job_id)
            said = await refused(env, target, custom_id, other.admin)
            assert said == f"There is no job `{job_id}`.", action
            assert await snapshot(env, job_id) == before, action
        public = [m for m in env.discord.messages_in(other.text_channel) if not m.ephemeral]
        assert public == [target]
        result = await env.job(delivered)
        assert result.result_message_id in env.discord.messages  # still posted


async def test_a_button_copied_onto_another_message_does_nothing(tmp_path: Path) -> None:
    async with two_guilds(tmp_path) as (env, log_id, _):
        guild = env.discord.guild
        await env.admin("approval", {"enabled": False})
        delivered = await job_of(env, "delivered", JobState.DELIVERED)
        await env.admin("approval", {"enabled": True})
        held = await job_of(env, "held", JobState.AWAITING_APPROVAL)
        # A message in the log channel itself, and the requester's own status message.
        note = await env.discord.post_user_message(log_id, guild.admin, "see above")
        status = env.discord.message((await env.job(held)).status_message_id or 0)
        for message in (note, status):
            for job_id, action in (
                (held, "approve"),
                (held, "reject"),
                (held, "ban"),
                (delivered, "remove"),
                (delivered, "refund"),
            ):
                before = await snapshot(env, job_id)
                contents = (message.content, list(message.embeds))
                custom_id = forge(message, action, job_id)
                said = await refused(env, message, custom_id, guild.admin)
                assert said == "This button is not on the job's log entry, so it does nothing."
                assert await snapshot(env, job_id) == before, action
                assert (message.content, message.embeds) == contents  # not rewritten
        # The real entry still works.
        entry = env.discord.message((await env.job(held)).log_message_id or 0)
        click = await env.click(entry, "Approve", user=guild.admin)
        await click.wait_for_callback()
        await env.wait_state(held, JobState.DELIVERED)


async def test_a_removed_result_cannot_be_rerolled_or_edited(tmp_path: Path) -> None:
    async with two_guilds(tmp_path) as (env, _log, _):
        guild = env.discord.guild
        job_id = await job_of(env, "removed later", JobState.DELIVERED)
        entry = env.discord.message((await env.job(job_id)).log_message_id or 0)
        click = await env.click(entry, "Remove", user=guild.admin)
        await click.wait_for_callback()
        await env.discord.wait_until(
            lambda: "Remove" in {b["label"] for b in entry.buttons() if b.get("disabled")}
        )
        # The result message is gone; its buttons, copied elsewhere, must not bring it back.
        note = await env.discord.post_user_message(guild.text_channel, guild.member, "again?")
        submits = env.runcomfy.count("submit")
        for action, label in (("reroll", "Re-roll"), ("edit", "Edit")):
            custom_id = f"studio:{action}:{job_id}"
            button = {"type": 2, "style": 2, "label": label, "custom_id": custom_id}
            note.components[:] = [{"type": 1, "components": [button]}]
            said = await refused(env, note, custom_id, guild.member)
            assert said == "A moderator removed this result, so it can't be used again.", action
        assert env.runcomfy.count("submit") == submits
