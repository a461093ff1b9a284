"""End to end: /settings presets, server styles, private results and /quota's caps and costs.

The real bot against the fake Discord and the fake RunComfy: each test reads the request RunComfy
received (prompt, aspect_ratio, resolution, num_images, output_format, safety_tolerance) and the
member's ledger.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import discord

from storage.models import JobState
from tests.e2e_harness import StudioEnv, studio_env
from tests.fakes.discord import StoredMessage
from tests.fakes.discord_interactions import SentInteraction
from tests.fakes.runcomfy import JobScript
from tests.helpers import FOREVER, finish_now

MODERATOR = discord.Permissions(view_channel=True, send_messages=True, manage_messages=True)


async def command(env: StudioEnv, name: str, options: dict[str, Any] | None = None) -> str:
    """A command whose answer is ephemeral text (admin commands as the guild's admin)."""
    user = env.discord.guild.admin if name.startswith("admin") else None
    sent = await env.discord.slash_command(name, options or {}, user=user)
    await sent.wait_for_callback()
    assert sent.ephemeral, sent.callback_data
    return str(sent.callback_data["content"])  # type: ignore[index]


def sent_payload(env: StudioEnv, job_request_id: str | None) -> dict[str, Any]:
    assert job_request_id is not None
    return env.runcomfy.jobs[job_request_id].payload


async def delivered(env: StudioEnv, sent: SentInteraction) -> tuple[StoredMessage, str]:
    """The command's status message and its job, once the job is delivered."""
    status = await env.acknowledged(sent)
    job_id = env.job_id_of(status)
    await env.wait_state(job_id, JobState.DELIVERED)
    return status, job_id


async def used(env: StudioEnv) -> int:
    assert env.storage is not None
    member = env.discord.guild.member
    return (await env.storage.quota.balance(member.id, env.discord.guild.id)).used


async def refused(env: StudioEnv, sent: SentInteraction) -> str:
    await sent.wait_for_callback()
    assert sent.ephemeral, sent.callback_data
    return str(sent.callback_data["content"])  # type: ignore[index]


# -- /settings ------------------------------------------------------------------------------------


async def test_settings_fill_omitted_options_and_explicit_ones_win(tmp_path: Path) -> None:
    async with studio_env(tmp_path, daily_credits=100) as env, env.running() as bot:
        shown = await command(env, "settings")
        assert "You have no saved defaults" in shown
        saved = await command(
            env,
            "settings",
            {
                "aspect_ratio": "16:9",
                "resolution": "2K",
                "count": 2,
                "format": "webp",
                "safety": 2,
                "suffix": "oil painting, warm light",
            },
        )
        assert saved.startswith("Saved.")
        shown = await command(env, "settings")
        for line in ("Aspect ratio: 16:9", "Resolution: 2K", "Images: 2", "Format: WEBP"):
            assert line in shown
        assert "Safety: 2" in shown and "“oil painting, warm light”" in shown

        _, job_id = await delivered(env, await env.imagine("a quiet harbour"))
        job = await env.job(job_id)
        payload = sent_payload(env, job.request_id)
        assert payload["prompt"] == "a quiet harbour, oil painting, warm light"
        assert payload["aspect_ratio"] == "16:9" and payload["resolution"] == "2K"
        assert payload["num_images"] == 2 and payload["output_format"] == "webp"
        assert payload["safety_tolerance"] == 2
        cost = bot.settings.quota.cost(2, "2K")
        assert job.cost == cost and await used(env) == cost

        # Every option given explicitly wins over the preset (the suffix still applies).
        explicit = {
            "aspect_ratio": "1:1",
            "resolution": "1K",
            "count": 1,
            "format": "png",
            "safety": 3,
        }
        _, job_id = await delivered(env, await env.imagine("a lighthouse", **explicit))
        job = await env.job(job_id)
        payload = sent_payload(env, job.request_id)
        assert payload["aspect_ratio"] == "1:1" and payload["resolution"] == "1K"
        assert payload["num_images"] == 1 and payload["output_format"] == "png"
        assert payload["safety_tolerance"] == 3
        assert payload["prompt"] == "a lighthouse, oil painting, warm light"
        assert job.cost == 1 and await used(env) == cost + 1

        # One option changed: the others stay.
        await command(env, "settings", {"count": 1})
        shown = await command(env, "settings")
        assert "Images: 1" in shown and "Resolution: 2K" in shown

        cleared = await command(env, "settings", {"clear": True})
        assert "cleared" in cleared
        _, job_id = await delivered(env, await env.imagine("a plain one"))
        payload = sent_payload(env, (await env.job(job_id)).request_id)
        assert payload["prompt"] == "a plain one"
        assert payload["aspect_ratio"] == "auto" and payload["resolution"] == "1K"
        assert payload["num_images"] == 1 and payload["output_format"] == "png"
        assert payload["safety_tolerance"] == 4  # the bot's default, under the server's ceiling


async def test_a_preset_safety_above_the_ceiling_is_lowered_not_refused(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        await command(env, "settings", {"safety": 6})
        _, job_id = await delivered(env, await env.imagine("a storm"))
        payload = sent_payload(env, (await env.job(job_id)).request_id)
        assert payload["safety_tolerance"] == 4  # the server's ceiling
        # Asked for explicitly, the same value is refused as before, nothing charged.
        text = await refused(env, await env.imagine("a storm", safety=6))
        assert "safety" in text.lower() and await used(env) == 1


async def test_presets_apply_to_edit(tmp_path: Path) -> None:
    async with studio_env(tmp_path, daily_credits=50) as env, env.running():
        await command(env, "settings", {"resolution": "2K", "suffix": "in watercolour"})
        image = env.discord.make_attachment()
        sent = await env.discord.slash_command("edit", {"prompt": "add a boat", "image": image})
        _, job_id = await delivered(env, sent)
        job = await env.job(job_id)
        payload = sent_payload(env, job.request_id)
        assert payload["prompt"] == "add a boat, in watercolour"
        assert payload["resolution"] == "2K" and len(payload["image_urls"]) == 1
        assert job.cost == env.settings.quota.cost(1, "2K")


# -- server styles --------------------------------------------------------------------------------


async def test_styles_add_list_autocomplete_use_and_remove(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        assert "no styles yet" in await command(env, "admin style list")
        added = await command(
            env, "admin style add", {"name": "Anime", "text": "anime style, cel shading"}
        )
        assert added == "Added style “Anime”: anime style, cel shading"
        await command(env, "admin style add", {"name": "noir", "text": "film noir"})
        listing = await command(env, "admin style list")
        assert "**Anime**: anime style, cel shading" in listing and "**noir**" in listing
        changed = await command(env, "admin style add", {"name": "noir", "text": "1940s noir"})
        assert changed == "Style “noir” now adds: 1940s noir"

        typing = await env.discord.autocomplete("imagine", {"prompt": "x", "style": "an"}, "style")
        await typing.wait_for_callback()
        assert typing.choices == [{"name": "Anime", "value": "Anime"}]

        await command(env, "settings", {"suffix": "4k detail"})
        _, job_id = await delivered(env, await env.imagine("a fox", style="anime"))
        payload = sent_payload(env, (await env.job(job_id)).request_id)
        assert payload["prompt"] == "a fox, anime style, cel shading, 4k detail"

        text = await refused(env, await env.imagine("a fox", style="vaporwave"))
        assert "no style named “vaporwave”" in text and await used(env) == 1
        # the member's text is shown as typed: no code span, formatting or mention of its own
        text = await refused(env, await env.imagine("a fox", style="`x` **b** <@1>"))
        assert "no style named “\\`x\\` \\*\\*b\\*\\* <@1>”" in text  # sent pinging nobody

        typing = await env.discord.autocomplete(
            "admin style remove", {"name": "no"}, "name", user=env.discord.guild.admin
        )
        await typing.wait_for_callback()
        assert typing.choices == [{"name": "noir", "value": "noir"}]
        assert await command(env, "admin style remove", {"name": "NOIR"}) == "Removed style “noir”."
        assert "noir" not in await command(env, "admin style list")
        text = await command(env, "admin style remove", {"name": "noir"})
        assert "no style named" in text
        text = await command(env, "admin style remove", {"name": "**noir**"})
        assert "no style named “\\*\\*noir\\*\\*”" in text


async def test_the_blocklist_sees_the_style_text(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        await command(env, "admin blocklist add", {"pattern": "forbidden"})
        await command(env, "admin style add", {"name": "edgy", "text": "forbidden look"})
        submits = env.runcomfy.count("submit")
        text = await refused(env, await env.imagine("a cat", style="edgy"))
        assert "contains something this server doesn't allow" in text
        assert await used(env) == 0 and env.runcomfy.count("submit") == submits
        await delivered(env, await env.imagine("a cat"))  # the member's own words pass


async def test_a_server_has_at_most_25_styles(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        for i in range(25):
            await command(env, "admin style add", {"name": f"s{i}", "text": "t"})
        text = await command(env, "admin style add", {"name": "one-more", "text": "t"})
        assert "already has 25 styles" in text
        # Changing an existing one still works at the limit.
        assert "now adds" in await command(env, "admin style add", {"name": "s3", "text": "u"})


# -- private results ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def private_env(tmp_path: Path, **options: Any) -> AsyncIterator[tuple[StudioEnv, int]]:
    async with studio_env(tmp_path, **options) as env:
        log_channel = env.discord.add_text_channel(env.discord.guild, "mod-log")
        yield env, log_channel.id


def public_in_channel(env: StudioEnv) -> list[StoredMessage]:
    return [m for m in env.discord.messages_in(env.discord.guild.text_channel) if not m.ephemeral]


async def test_private_is_refused_unless_the_server_allows_it(tmp_path: Path) -> None:
    async with private_env(tmp_path) as (env, _), env.running():
        text = await refused(env, await env.imagine("just for me", private=True))
        assert "doesn't allow private results" in text and "nothing was charged" in text
        assert await used(env) == 0 and env.runcomfy.count("submit") == 0
        said = await command(env, "admin private", {"enabled": True})
        assert "Members may now ask for private results" in said
        said = await command(env, "admin private", {"enabled": False})
        assert "Private results are off" in said
        text = await refused(env, await env.imagine("just for me", private=True))
        assert "doesn't allow private results" in text


async def test_a_private_result_is_ephemeral_and_still_logged(tmp_path: Path) -> None:
    async with private_env(tmp_path) as (env, log_id), env.running():
        await command(env, "admin log-channel", {"channel": env.discord.channel(log_id)})
        await command(env, "admin private", {"enabled": True})
        sent = await env.imagine("a secret garden", private=True, count=2)
        await sent.wait_for_callback()
        assert sent.ephemeral  # the status: only the member sees it
        status = await sent.wait_for_original()
        job_id = env.job_id_of(status)
        await env.wait_state(job_id, JobState.DELIVERED)
        result = await env.wait_message(status.id, lambda m: len(m.attachments) == 2)
        assert result.ephemeral
        assert await used(env) == 2
        entry = await env.log_entry(log_id, lambda m: job_id in str(m.embeds))
        assert "a secret garden" in str(entry.embeds)  # the moderators still see it
        assert not any(
            "secret garden" in (m.content + str(m.embeds)) for m in public_in_channel(env)
        )
        # /show of a private result shows it again privately.
        sent = await env.discord.slash_command("show", {"job_id": job_id})
        shown = await sent.wait_for_original(lambda m: bool(m.attachments))
        assert shown.ephemeral
        # A re-roll from the private result stays private.
        click = await env.click(result, "Re-roll")
        await click.wait_for_callback()
        assert click.ephemeral


async def test_a_held_private_result_is_delivered_privately_after_approval(tmp_path: Path) -> None:
    async with private_env(tmp_path) as (env, log_id), env.running():
        await command(env, "admin log-channel", {"channel": env.discord.channel(log_id)})
        await command(env, "admin approval", {"enabled": True})
        await command(env, "admin private", {"enabled": True})
        sent = await env.imagine("for approval", private=True)
        status = await env.acknowledged(sent)
        assert status.ephemeral
        job_id = env.job_id_of(status)
        await env.wait_state(job_id, JobState.AWAITING_APPROVAL)
        entry = await env.log_entry(log_id, lambda m: job_id in str(m.embeds) and m.buttons())
        click = await env.click(entry, "Approve", user=env.discord.guild.admin)
        await click.wait_for_callback()
        await env.wait_state(job_id, JobState.DELIVERED)
        result = await env.wait_message(status.id, lambda m: bool(m.attachments))
        assert result.ephemeral
        assert [m for m in public_in_channel(env) if m.attachments] == []


async def approved_after_expiry(env: StudioEnv, log_id: int, prompt: str) -> str:
    await command(env, "admin log-channel", {"channel": env.discord.channel(log_id)})
    await command(env, "admin approval", {"enabled": True})
    await command(env, "admin private", {"enabled": True})
    sent = await env.imagine(prompt, private=True)
    status = await env.acknowledged(sent)
    job_id = env.job_id_of(status)
    await env.wait_state(job_id, JobState.AWAITING_APPROVAL)
    entry = await env.log_entry(log_id, lambda m: job_id in str(m.embeds) and m.buttons())
    env.discord.expire_interaction(sent)  # 15 minutes passed
    click = await env.click(entry, "Approve", user=env.discord.guild.admin)
    await click.wait_for_callback()
    await env.wait_state(job_id, JobState.DELIVERED)
    return job_id


async def test_a_private_result_whose_token_expired_goes_by_dm(tmp_path: Path) -> None:
    async with private_env(tmp_path) as (env, log_id), env.running():
        await command(env, "admin dms", {"enabled": True})
        member = env.discord.guild.member
        job_id = await approved_after_expiry(env, log_id, "late and private")
        dm = await env.discord.wait_for_message(
            lambda m: m.channel_id == env.discord.dm_channel(member.user).id
        )
        assert dm.attachments and job_id in dm.content
        public = public_in_channel(env)
        assert not any(m.attachments or "late and private" in m.content for m in public)


async def test_a_private_result_with_no_private_way_is_kept_not_posted(tmp_path: Path) -> None:
    async with private_env(tmp_path) as (env, log_id), env.running():
        await command(env, "admin dms", {"enabled": True})
        member = env.discord.guild.member
        env.discord.block_dms(member)
        job_id = await approved_after_expiry(env, log_id, "never public")
        note = await env.discord.wait_for_message(
            lambda m: (
                m.channel_id == env.discord.guild.text_channel.id
                and m.origin == "channel"
                and job_id in m.content
            )
        )
        assert note.attachments == [] and note.embeds == []
        assert "never public" not in note.content and "Nothing was lost" in note.content
        assert note.pinged() == {"users": {member.id}, "roles": set(), "everyone": False}
        job = await env.job(job_id)
        assert job.state == JobState.DELIVERED and job.committed == 1
        # Still there, privately.
        sent = await env.discord.slash_command("show", {"job_id": job_id})
        shown = await sent.wait_for_original(lambda m: bool(m.attachments))
        assert shown.ephemeral


# -- /quota ---------------------------------------------------------------------------------------


async def test_quota_shows_every_cap_set_and_the_default_cost(tmp_path: Path) -> None:
    async with studio_env(tmp_path, daily_credits=10) as env:
        env.settings = replace(
            env.settings, quota=replace(env.settings.quota, global_daily_cap=500)
        )
        async with env.running():
            quota = await command(env, "quota")
            assert "A default job (1K × 1) costs **1** credit." in quota
            assert "The bot's daily cap: 500 credits left today." in quota
            assert "This server" not in quota
            await command(env, "admin quota cap", {"credits": 40})
            await command(env, "settings", {"resolution": "2K", "count": 2})
            quota = await command(env, "quota")
            assert "This server's daily cap: 40 credits left today." in quota
            cost = env.settings.quota.cost(2, "2K")
            assert f"A default job (2K × 2) costs **{cost}** credits." in quota
            await command(env, "admin quota cap", {"credits": 3})  # now it binds
            quota = await command(env, "quota")
            assert "This server has 3 credits left today." in quota
            assert "This server's daily cap" not in quota


async def test_a_private_job_failing_after_expiry_posts_no_prompt(tmp_path: Path) -> None:
    async with private_env(tmp_path) as (env, _), env.running():
        await command(env, "admin private", {"enabled": True})  # DMs stay off
        member = env.discord.guild.member
        env.runcomfy.script(JobScript(queue_seconds=1.0, outcome="fail"))
        sent = await env.imagine("failing quietly", private=True)
        status = await env.acknowledged(sent)
        job_id = env.job_id_of(status)
        env.discord.expire_interaction(sent)
        await env.wait_state(job_id, JobState.FAILED)
        note = await env.discord.wait_for_message(
            lambda m: (
                m.channel_id == env.discord.guild.text_channel.id
                and m.origin == "channel"
                and job_id in m.content
            )
        )
        assert "failing quietly" not in note.content and "ended without a result" in note.content
        assert note.pinged() == {"users": {member.id}, "roles": set(), "everyone": False}
        assert await used(env) == 0  # refunded
        assert not any("failing quietly" in m.content for m in public_in_channel(env))


async def test_a_private_job_stays_private_across_a_restart(tmp_path: Path) -> None:
    async with private_env(tmp_path) as (env, _):
        member = env.discord.guild.member
        async with env.running():
            await command(env, "admin private", {"enabled": True})
            await command(env, "admin dms", {"enabled": True})
            env.runcomfy.script(JobScript(queue_seconds=FOREVER))
            sent = await env.imagine("private over a restart", private=True)
            status = await env.acknowledged(sent)
            assert status.ephemeral
            job_id = env.job_id_of(status)
            queued = await env.wait_state(job_id, JobState.QUEUED, JobState.SUBMITTED)
        env.discord.expire_interaction(sent)  # the bot was down for long
        async with env.running():
            finish_now(env.runcomfy, queued.request_id)
            await env.wait_state(job_id, JobState.DELIVERED)
            dm = await env.discord.wait_for_message(
                lambda m: m.channel_id == env.discord.dm_channel(member.user).id
            )
            assert dm.attachments and job_id in dm.content
            public = public_in_channel(env)
            assert not any(m.attachments or "over a restart" in m.content for m in public)
