"""End to end: what the moderators' log shows of age-restricted results, and blocked-prompt floods.

- An age-restricted channel's results never show in a log channel that is not age-restricted: no
  thumbnail or embedded image, links marked and spoilered, approval images attached as spoilers.
- One blocked-prompt entry per member per minute: further attempts raise a counter on it.
"""

from __future__ import annotations

from pathlib import Path

from storage.models import JobState
from tests.e2e_harness import StudioEnv, studio_env
from tests.test_approval_e2e import held
from tests.test_moderation_e2e import delivered, fields, logged_studio

AGE_HIDDEN = "🔞 age-restricted result, not shown in this channel"


async def test_an_age_restricted_result_is_not_shown_in_a_normal_log(tmp_path: Path) -> None:
    async with logged_studio(tmp_path) as (env, log_id):
        nsfw = env.discord.guild.nsfw_channel
        _, job_id = await delivered(env, "spicy", channel_id=nsfw.id)
        entry = await env.log_entry(log_id)
        (embed,) = entry.embeds
        assert "thumbnail" not in embed and "image" not in embed
        assert entry.attachments == []
        output = fields(entry)["Output"]
        assert output.startswith(AGE_HIDDEN)
        job = await env.job(job_id)
        (url,) = job.result_urls
        assert f"RunComfy: ||[1]({url})||" in output  # spoilered: moderators choose to look
        assert fields(entry)["Channel"] == f"<#{nsfw.id}> (age-restricted)"


async def test_an_age_restricted_log_channel_shows_the_result(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env:
        nsfw = env.discord.guild.nsfw_channel
        async with env.running():
            await env.admin("log-channel", {"channel": nsfw})
            result, _ = await delivered(env, "spicy", channel_id=nsfw.id)
            entry = await env.log_entry(nsfw.id, lambda m: "Delivered" in str(m.embeds))
            assert entry.embeds[0]["thumbnail"]["url"] == result.attachments[0].url
            assert AGE_HIDDEN not in fields(entry)["Output"]


async def test_an_age_restricted_approval_attaches_spoilers_only(tmp_path: Path) -> None:
    async with logged_studio(tmp_path) as (env, log_id):
        await env.admin("approval", {"enabled": True})
        nsfw = env.discord.guild.nsfw_channel
        sent, job_id = await held(env, log_id, "spicy, for review", count=2, channel_id=nsfw.id)
        (entry,) = [m for m in env.discord.messages_in(log_id) if job_id in str(m.embeds)]
        (embed,) = entry.embeds
        assert "image" not in embed and "thumbnail" not in embed
        assert len(entry.attachments) == 2
        assert all(a.filename.startswith("SPOILER_") for a in entry.attachments)
        assert fields(entry)["Output"].startswith(AGE_HIDDEN)
        # Approving still posts the result, in the age-restricted channel.
        click = await env.click(entry, "Approve", user=env.discord.guild.admin)
        await click.wait_for_callback()
        await env.wait_state(job_id, JobState.DELIVERED)
        result = await env.wait_message(sent.original.id, lambda m: len(m.attachments) == 2)
        assert result.channel_id == nsfw.id


async def blocked(env: StudioEnv, prompt: str, **who: object) -> None:
    sent = await env.imagine(prompt, **who)  # type: ignore[arg-type]
    await sent.wait_for_callback()
    assert sent.ephemeral
    assert env.bot is not None
    await env.bot.moderation.wait_idle()


async def test_blocked_prompts_are_logged_once_per_member_a_minute(tmp_path: Path) -> None:
    async with logged_studio(tmp_path) as (env, log_id):
        guild = env.discord.guild
        await env.admin("blocklist add", {"pattern": "dragon"})
        for attempt in range(4):
            await blocked(env, f"a dragon, take {attempt}")
        member_entries = [m for m in env.discord.messages_in(log_id) if m.embeds]
        (entry,) = member_entries
        assert "take 0" in entry.embeds[0]["description"]  # the first attempt is shown
        assert fields(entry)["Further attempts"].startswith("+3 more attempts (last <t:")
        # Another member gets their own entry.
        await blocked(env, "a dragon", user=guild.admin)
        assert len([m for m in env.discord.messages_in(log_id) if m.embeds]) == 2
        # An entry a moderator deleted is not counted on: the next attempt is posted anew.
        url = f"{env.discord.api_base}/channels/{log_id}/messages/{entry.id}"
        headers = {"Authorization": f"Bot {env.discord.token}"}
        async with env.session.delete(url, headers=headers) as response:
            assert response.status == 204
        await blocked(env, "a dragon, again")
        fresh = [m for m in env.discord.messages_in(log_id) if "again" in str(m.embeds)]
        assert len(fresh) == 1 and "Further attempts" not in fields(fresh[0])
