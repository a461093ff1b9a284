"""End to end: the moderators' log and its buttons (Remove, Refund, Ban), through the fake Discord.

The real bot and discord.py talk to the fake Discord and the fake RunComfy on 127.0.0.1. Each test
gives the default guild a ``#mod-log`` channel (created before the bot connects), turns the log on
with ``/admin log-channel`` as the guild's admin, acts as a plain member, then as moderators, and
asserts on what Discord received.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from storage.models import JobState, LedgerKind
from tests.e2e_harness import StudioEnv, button_id, labels, studio_env
from tests.fakes.discord import FakeChannel, Overwrite, StoredMessage
from tests.fakes.runcomfy import JobScript
from tests.helpers import FOREVER

NO_PINGS = {"users": set(), "roles": set(), "everyone": False}
NO_MENTIONS = {"parse": []}
MODERATOR = discord.Permissions(view_channel=True, send_messages=True, manage_messages=True)
BANNER = discord.Permissions(view_channel=True, send_messages=True, ban_members=True)


@contextlib.asynccontextmanager
async def logged_studio(
    tmp_path: Path | str, **options: Any
) -> AsyncIterator[tuple[StudioEnv, int]]:
    """A running studio whose guild logs to a fresh #mod-log; yields (env, log channel id)."""
    async with studio_env(tmp_path, **options) as env:
        log_channel = env.discord.add_text_channel(env.discord.guild, "mod-log")
        async with env.running():
            said = await env.admin("log-channel", {"channel": log_channel})
            assert said == f"The moderators' log now goes to <#{log_channel.id}>."
            yield env, log_channel.id


async def imagine(env: StudioEnv, prompt: str, **options: Any) -> tuple[StoredMessage, str]:
    sent = await env.imagine(prompt, **options)
    status = await env.acknowledged(sent)
    return status, env.job_id_of(status)


async def delivered(env: StudioEnv, prompt: str, **options: Any) -> tuple[StoredMessage, str]:
    _, job_id = await imagine(env, prompt, **options)
    job = await env.wait_state(job_id, JobState.DELIVERED)
    assert job.result_message_id is not None
    return env.discord.message(job.result_message_id), job_id


def fields(entry: StoredMessage) -> dict[str, str]:
    (embed,) = entry.embeds
    return {f["name"]: f["value"] for f in embed.get("fields", [])}


def disabled(entry: StoredMessage) -> set[str]:
    return {b["label"] for b in entry.buttons() if b.get("disabled")}


async def used(env: StudioEnv, user_id: int) -> int:
    assert env.storage is not None
    return (await env.storage.quota.balance(user_id, env.discord.guild.id)).used


async def refused_click(env: StudioEnv, message: StoredMessage, label: str, **who: Any) -> str:
    """A click that must be refused ephemerally; returns the refusal."""
    before = (message.content, list(message.embeds), message.components)
    mark = env.discord.mark()
    click = await env.click(message, label, **who)
    await click.wait_for_callback()
    assert click.ephemeral, click.callback_data
    assert click.callback_data is not None
    # The refusal is the handler's last step (the permission check comes before any work), so
    # once it is answered the click has done all it will: its answer was the only request.
    about = [
        r for r in env.discord.requests[mark:] if click.token in r.path or str(message.id) in r.path
    ]
    assert [r.method for r in about] == ["POST"] and "/callback" in about[0].path
    assert (message.content, message.embeds, message.components) == before
    return str(click.callback_data["content"])


# -- the log entries ----------------------------------------------------------------------------


async def test_a_delivered_job_is_logged_with_its_details_and_pings_nobody(
    db_target: Path | str,
) -> None:
    async with logged_studio(db_target) as (env, log_id):
        guild = env.discord.guild
        member = guild.member
        prompt = f"@everyone a **cat** <@&{guild.admin_role.id}>"
        result, job_id = await delivered(env, prompt, count=2)
        entry = await env.log_entry(log_id)
        job = await env.wait_state(job_id, JobState.DELIVERED)
        assert env.bot is not None
        await env.bot.moderation.wait_idle()
        assert (await env.job(job_id)).log_message_id == entry.id

        (embed,) = entry.embeds
        assert embed["title"] == "✅ Delivered · Imagine"
        assert "@\u200beveryone" in embed["description"]
        assert "\\*\\*cat\\*\\*" in embed["description"]
        found = fields(entry)
        assert found["Requester"] == f"<@{member.id}> (`{member.id}`)"
        assert found["Channel"] == f"<#{guild.text_channel.id}>"
        assert found["Job"] == f"`{job_id}`"
        assert found["Options"].startswith("2× · 1K · auto · png · safety 4")
        assert found["Cost"] == "2 credits committed"
        jump = f"https://discord.com/channels/{guild.id}/{result.channel_id}/{result.id}"
        assert f"[posted message]({jump})" in found["Output"]
        for url in job.result_urls:
            assert url in found["Output"]
        assert embed["thumbnail"]["url"] == result.attachments[0].url
        assert embed["footer"]["text"] == f"job {job_id}"
        # no pings: neither the content nor the mentions setting
        assert entry.allowed_mentions == NO_MENTIONS and entry.pinged() == NO_PINGS
        assert labels(entry) == ["Remove", "Refund", "Ban requester"]
        assert button_id(entry, "Remove") == f"modlog:remove:{job_id}"
        assert button_id(entry, "Refund") == f"modlog:refund:{job_id}"
        assert button_id(entry, "Ban requester") == f"modlog:ban:{job_id}"


async def test_failed_and_cancelled_jobs_are_logged(db_target: Path | str) -> None:
    async with logged_studio(db_target) as (env, log_id):
        env.runcomfy.script(
            JobScript(outcome="fail", error="nope"), JobScript(queue_seconds=FOREVER)
        )
        _, failed_id = await imagine(env, "doomed")
        await env.wait_state(failed_id, JobState.FAILED)
        entry = await env.log_entry(log_id, lambda m: "Failed" in m.embeds[0]["title"])
        found = fields(entry)
        assert "nope" in found["Error"] and found["Cost"] == "1 credit, refunded"
        assert found["Job"] == f"`{failed_id}`"
        assert labels(entry) == ["Ban requester"]  # credits already back; nothing posted

        status, cancelled_id = await imagine(env, "changed my mind", user=env.discord.guild.admin)
        await env.wait_state(cancelled_id, JobState.QUEUED, JobState.SUBMITTED)
        click = await env.click(status, "Cancel", user=env.discord.guild.admin)
        await click.wait_for_callback()  # the status message says "Cancelled": no followup
        entry = await env.log_entry(log_id, lambda m: "Cancelled" in m.embeds[0]["title"])
        assert fields(entry)["Job"] == f"`{cancelled_id}`"
        assert fields(entry)["Requester"].startswith(f"<@{env.discord.guild.admin.id}>")


async def test_an_edit_logs_its_input_images(db_target: Path | str) -> None:
    async with logged_studio(db_target) as (env, log_id):
        upload = env.discord.make_attachment(filename="in.png")
        sent = await env.discord.slash_command("edit", {"prompt": "add a hat", "image": upload})
        status = await env.acknowledged(sent)
        await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        entry = await env.log_entry(log_id)
        assert entry.embeds[0]["title"] == "✅ Delivered · Edit"
        assert fields(entry)["Input images"] == f"[1]({upload.url})"


async def test_a_blocked_prompt_is_logged_for_moderators_only(db_target: Path | str) -> None:
    async with logged_studio(db_target) as (env, log_id):
        guild = env.discord.guild
        await env.admin("blocklist add", {"pattern": "dragon"})
        prompt = "a D.R.A.G.O.N ||spoiler escape|| @everyone"
        sent = await env.imagine(prompt)
        await sent.wait_for_callback()
        assert sent.ephemeral and sent.callback_data is not None
        assert "dragon" not in sent.callback_data["content"].lower()
        entry = await env.log_entry(log_id)
        (embed,) = entry.embeds
        assert embed["title"] == "🛑 Blocked prompt · Imagine"
        description = embed["description"]
        assert description.startswith("||a D.R.A.G.O.N") and description.endswith("||")
        assert "\\|\\|spoiler escape\\|\\|" in description  # cannot close the spoiler early
        assert "@\u200beveryone" in description
        found = fields(entry)
        assert found["Matched entry"] == "dragon"
        assert found["Requester"] == f"<@{guild.member.id}> (`{guild.member.id}`)"
        assert found["Channel"] == f"<#{guild.text_channel.id}>"
        assert entry.allowed_mentions == NO_MENTIONS and entry.pinged() == NO_PINGS
        assert labels(entry) == ["Ban member"]
        assert button_id(entry, "Ban member") == f"modlog:banuser:{guild.member.id}"
        # The prompt was echoed nowhere else and nothing reached RunComfy.
        elsewhere = [
            m for m in env.discord.messages.values() if m.channel_id != log_id and "D.R.A" in str(m)
        ]
        assert elsewhere == [] and env.runcomfy.requests == []


async def test_the_log_channel_setting_turns_the_log_on_and_off(db_target: Path | str) -> None:
    async with logged_studio(db_target) as (env, log_id):
        assert env.bot is not None
        await env.admin("log-channel")  # off
        _, quiet_id = await delivered(env, "unlogged")
        await env.admin("blocklist add", {"pattern": "dragon"})
        refused = await env.imagine("a dragon")
        await refused.wait_for_callback()
        await env.bot.moderation.wait_idle()
        assert env.discord.messages_in(log_id) == []
        assert (await env.job(quiet_id)).log_message_id is None

        await env.admin("log-channel", {"channel": env.discord.channel(log_id)})
        _, logged_id = await delivered(env, "logged")
        entry = await env.log_entry(log_id)
        assert fields(entry)["Job"] == f"`{logged_id}`"


async def test_an_unusable_log_channel_never_breaks_delivery(
    db_target: Path | str, caplog: pytest.LogCaptureFixture
) -> None:
    async with studio_env(db_target) as env:
        guild = env.discord.guild
        hidden = env.discord.add_text_channel(
            guild,
            "locked-log",
            overwrites=[
                Overwrite(guild.bot_role.id, 0, deny=discord.Permissions(send_messages=True).value)
            ],
        )
        async with env.running() as bot:
            await env.admin("log-channel", {"channel": hidden})
            result, job_id = await delivered(env, "still delivered")
            # The entry is attempted once the job ended (after DELIVERED is stored): wait for
            # Discord's refusal; the entry's task then runs until it logged the problem.
            await env.discord.wait_for(f"POST /channels/{hidden.id}/messages", status=403)
            await bot.moderation.wait_idle()
            assert result.attachments
            job = await env.job(job_id)
            assert job.state == JobState.DELIVERED and job.log_message_id is None
            assert env.discord.messages_in(hidden) == []
            warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
            assert any(job_id in w and "moderators' log" in w for w in warnings), warnings


# -- the moderators' buttons --------------------------------------------------------------------


async def test_remove_deletes_the_public_result_for_moderators_only(db_target: Path | str) -> None:
    async with logged_studio(db_target) as (env, log_id):
        guild = env.discord.guild
        result, job_id = await delivered(env, "questionable")
        entry = await env.log_entry(log_id)

        refusal = await refused_click(env, entry, "Remove")  # the requester is no moderator
        assert refusal == "Only moderators (**Manage Messages**) can use this button."
        refusal = await refused_click(
            env, entry, "Remove", user=guild.admin, member_permissions=BANNER
        )
        assert "Manage Messages" in refusal
        assert result.id in env.discord.messages

        click = await env.click(entry, "Remove", user=guild.admin, member_permissions=MODERATOR)
        await click.wait_for_callback()
        updated = await env.wait_message(entry.id, lambda m: "Remove" in disabled(m))
        assert result.id in env.discord.deleted_messages
        notes = fields(updated)["Moderation"]
        assert notes.startswith(f"🗑️ Removed by <@{guild.admin.id}> <t:")
        assert "removed from the channel" in fields(updated)["Output"]
        assert disabled(updated) == {"Remove"}
        assert updated.pinged() == NO_PINGS
        assert (await env.job(job_id)).result_message_id is None

        # The requester can't bring it back with /show.
        show = await env.discord.slash_command("show", {"job_id": job_id})
        await show.wait_for_callback()
        assert show.ephemeral and "removed by a moderator" in show.callback_data["content"]


async def test_refund_gives_the_credits_back_once(db_target: Path | str) -> None:
    async with logged_studio(db_target) as (env, log_id):
        guild = env.discord.guild
        member = guild.member
        _, job_id = await delivered(env, "refund me", count=3)
        entry = await env.log_entry(log_id)
        assert await used(env, member.id) == 3

        assert "Manage Messages" in await refused_click(env, entry, "Refund")
        assert await used(env, member.id) == 3

        # Two moderators click at the same moment: one refund.
        clicks = await asyncio.gather(
            env.click(entry, "Refund", user=guild.admin),
            env.click(entry, "Refund", user=guild.owner),
        )
        for click in clicks:
            await click.wait_for_callback()
        updated = await env.wait_message(entry.id, lambda m: "Refund" in disabled(m))
        await env.discord.wait_until(lambda: any(c.followups for c in clicks))
        assert await used(env, member.id) == 0
        assert env.storage is not None
        ledger = await env.storage.quota.ledger(member.id, guild.id)
        refunds = [e for e in ledger if e.kind == LedgerKind.REFUND and e.job_id == job_id]
        assert len(refunds) == 1 and refunds[0].amount == 3
        (told,) = [f for c in clicks for f in c.followups]
        assert told.ephemeral and "already refunded" in told.content
        assert "💸 Refunded by <@" in fields(updated)["Moderation"]
        assert "3 credits" in fields(updated)["Moderation"]
        assert disabled(updated) == {"Refund"}


async def test_ban_requester_opens_a_modal_and_bans(db_target: Path | str) -> None:
    async with logged_studio(db_target) as (env, log_id):
        guild = env.discord.guild
        member = guild.member
        _, job_id = await delivered(env, "rule breaker")
        entry = await env.log_entry(log_id)

        # Manage Messages alone is not enough to ban.
        refusal = await refused_click(
            env, entry, "Ban requester", user=guild.owner, member_permissions=MODERATOR
        )
        assert (
            refusal
            == "Only members with **Ban Members** or **Manage Server** can ban from the studio."
        )
        assert "Ban Members" in await refused_click(env, entry, "Ban requester")

        click = await env.click(entry, "Ban requester", user=guild.admin, member_permissions=BANNER)
        await click.wait_for_callback()
        modal = click.modal
        assert modal is not None and click.callback_type == 9
        inputs = {c["label"]: c["custom_id"] for c in _text_inputs(modal)}
        submit = await env.discord.submit_modal(
            modal["custom_id"],
            {
                inputs["Reason (shown to the member)"]: "posting gore",
                inputs["Duration (empty: until lifted)"]: "2h",
            },
        )
        await submit.wait_for_callback()
        updated = await env.wait_message(entry.id, lambda m: "Ban requester" in disabled(m))
        assert env.storage is not None
        ban = await env.storage.policy.get_ban(guild.id, member.id)
        assert ban is not None and ban.reason == "posting gore" and ban.until is not None
        assert ban.banned_by == guild.admin.id
        note = fields(updated)["Moderation"]
        assert note.startswith(f"🔨 <@{member.id}> banned by <@{guild.admin.id}> <t:")
        assert "until <t:" in note
        assert updated.pinged() == NO_PINGS
        # The ban applies at once.
        refused = await env.imagine("again")
        await refused.wait_for_callback()
        assert refused.ephemeral
        assert "banned from the studio" in refused.callback_data["content"]
        assert "posting gore" in refused.callback_data["content"]
        assert job_id in fields(updated)["Job"]


async def test_ban_from_a_blocked_prompt_with_a_default_reason(db_target: Path | str) -> None:
    async with logged_studio(db_target) as (env, log_id):
        guild = env.discord.guild
        await env.admin("blocklist add", {"pattern": "dragon"})
        refused = await env.imagine("dragon")
        await refused.wait_for_callback()
        entry = await env.log_entry(log_id)
        refusal = await refused_click(env, entry, "Ban member", member_permissions=MODERATOR)
        assert "Ban Members" in refusal
        click = await env.click(entry, "Ban member", user=guild.admin)
        await click.wait_for_callback()
        assert click.modal is not None
        # The permission is checked again on submit (the admin lost Ban Members meanwhile).
        late = await env.discord.submit_modal(
            click.modal["custom_id"], {}, member_permissions=MODERATOR
        )
        await late.wait_for_callback()
        assert late.ephemeral and "Ban Members" in late.callback_data["content"]
        assert env.storage is not None
        assert await env.storage.policy.get_ban(guild.id, guild.member.id) is None

        click = await env.click(entry, "Ban member", user=guild.admin)
        await click.wait_for_callback()
        assert click.modal is not None
        submit = await env.discord.submit_modal(click.modal["custom_id"], {})
        await submit.wait_for_callback()
        updated = await env.wait_message(entry.id, lambda m: "Ban member" in disabled(m))
        ban = await env.storage.policy.get_ban(guild.id, guild.member.id)
        assert ban is not None and ban.until is None and ban.reason == "blocked prompt"
        assert "until lifted" in fields(updated)["Moderation"]
        assert updated.embeds[0]["description"] == entry.embeds[0]["description"]


def _text_inputs(modal: dict[str, Any]) -> list[dict[str, Any]]:
    from tests.fakes.discord_models import iter_components

    return [c for c in iter_components(modal["components"]) if c.get("type") == 4]


# -- edit inputs and age-restricted channels ----------------------------------------------------


async def bot_sees_nsfw(env: StudioEnv, channel_id: int, nsfw: bool) -> None:
    """Wait until the bot's cache has processed a CHANNEL_UPDATE (its state, so polled)."""
    assert env.bot is not None
    bot = env.bot

    def seen() -> bool:
        channel = bot.get_channel(channel_id)
        return channel is not None and getattr(channel, "nsfw", None) is nsfw

    await env.discord.wait_until(seen, poll=0.01, describe=f"channel {channel_id} nsfw={nsfw}")


async def test_age_restricted_results_stay_in_age_restricted_channels(
    db_target: Path | str,
) -> None:
    async with studio_env(db_target) as env, env.running():
        guild = env.discord.guild
        nsfw, general = guild.nsfw_channel, guild.text_channel
        result, job_id = await delivered(env, "spicy", channel_id=nsfw.id)
        assert (await env.job(job_id)).age_restricted_channel is True

        show = await env.discord.slash_command("show", {"job_id": job_id}, channel_id=general.id)
        await show.wait_for_callback()
        assert show.ephemeral and "age-restricted" in show.callback_data["content"]
        again = await env.discord.slash_command("show", {"job_id": job_id}, channel_id=nsfw.id)
        await again.wait_for_original(lambda m: bool(m.attachments))

        # The channel stops being age-restricted: its old results can't be reused there.
        nsfw.nsfw = False
        await env.discord.dispatch("CHANNEL_UPDATE", nsfw.payload())
        await bot_sees_nsfw(env, nsfw.id, False)
        submits = env.runcomfy.count("submit")
        for label in ("Re-roll", "Edit"):
            click = await env.click(result, label)
            await click.wait_for_callback()
            assert click.ephemeral and "age-restricted" in click.callback_data["content"], label
        menu = await env.discord.message_context_menu("Edit image", result)
        await menu.wait_for_callback()
        assert menu.ephemeral and "age-restricted" in menu.callback_data["content"]
        assert env.runcomfy.count("submit") == submits

        nsfw.nsfw = True
        await env.discord.dispatch("CHANNEL_UPDATE", nsfw.payload())
        await bot_sees_nsfw(env, nsfw.id, True)
        click = await env.click(result, "Re-roll")
        rerolled = await env.acknowledged(click)
        assert not click.ephemeral and env.job_id_of(rerolled) != job_id


class FakeThread(FakeChannel):
    """A public thread (type 11), with the fields discord.py needs to build one."""

    def payload(self) -> dict[str, Any]:
        data = super().payload()
        data.update(
            owner_id=str(self.id),
            message_count=0,
            member_count=1,
            thread_metadata={
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": "2024-01-01T00:00:00+00:00",
                "locked": False,
            },
        )
        return data


async def test_a_thread_follows_its_parents_channel_rules_and_age_restriction(
    db_target: Path | str,
) -> None:
    async with studio_env(db_target) as env:
        guild = env.discord.guild
        parent = guild.nsfw_channel
        thread = FakeThread(
            env.discord.snowflake(), "spicy-thread", type=11, guild_id=guild.id, parent_id=parent.id
        )
        guild.channels[thread.id] = thread
        async with env.running():
            await env.admin("channels add", {"channel": parent})
            status, job_id = await imagine(env, "in a thread", channel_id=thread.id)
            job = await env.wait_state(job_id, JobState.DELIVERED)
            assert job.channel_id == thread.id and job.age_restricted_channel is True
            assert status.channel_id == thread.id
            refused = await env.imagine("not here", channel_id=guild.text_channel.id)
            await refused.wait_for_callback()
            assert refused.ephemeral and "only enabled in" in refused.callback_data["content"]
