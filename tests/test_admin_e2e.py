"""End to end: /admin through the fake Discord changes what members can do, at once.

The real bot (bot.create_bot) and discord.py talk to the fake Discord and the fake RunComfy on
127.0.0.1. Each test configures the guild with /admin as an admin (the default guild's ``admin``
member, whose role has Manage Server), then acts as a plain member and asserts on what Discord and
RunComfy received.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands

from cogs.admin import AdminCog
from storage.models import JobState
from tests.e2e_harness import StudioEnv, studio_env
from tests.fakes.discord import FakeChannel, SentInteraction
from tests.fakes.runcomfy import JobScript
from tests.helpers import FOREVER

NO_MENTIONS = {"parse": []}
REFUSED = "Only members with **Manage Server** can use `/admin`."


@contextlib.asynccontextmanager
async def running_studio(tmp_path: Path, **options: Any) -> AsyncIterator[StudioEnv]:
    async with studio_env(tmp_path, **options) as env, env.running():
        yield env


async def admin(
    env: StudioEnv, command: str, options: dict[str, Any] | None = None, *, user: Any = None
) -> SentInteraction:
    """Run ``/admin <command>`` (as the guild's admin unless told) and check the answer's form."""
    sent = await env.discord.slash_command(
        f"admin {command}", options or {}, user=user or env.discord.guild.admin
    )
    await sent.wait_for_callback()
    assert sent.ephemeral, sent.callback_data
    assert sent.callback_data is not None
    assert sent.callback_data.get("allowed_mentions") == NO_MENTIONS
    return sent


async def admin_says(
    env: StudioEnv, command: str, options: dict[str, Any] | None = None, **kw: Any
) -> str:
    sent = await admin(env, command, options, **kw)
    assert sent.callback_data is not None
    return sent.callback_data["content"]


async def imagine(env: StudioEnv, prompt: str = "a lighthouse", **kw: Any) -> SentInteraction:
    """``/imagine`` as a member; ``user``/``channel_id``/``roles`` go to the fake, the rest are
    options. Returns once the bot answered."""
    where = {k: kw.pop(k) for k in ("user", "channel_id", "roles") if k in kw}
    sent = await env.discord.slash_command("imagine", {"prompt": prompt, **kw}, **where)
    await sent.wait_for_callback()
    return sent


async def refusal(env: StudioEnv, prompt: str = "a lighthouse", **kw: Any) -> str:
    """The ephemeral refusal of an /imagine that must be refused before any API call."""
    submits = len(submitted(env))
    sent = await imagine(env, prompt, **kw)
    assert sent.ephemeral, f"accepted: {sent.callback_data}"
    assert sent.callback_data is not None
    assert len(submitted(env)) == submits  # nothing reached RunComfy
    return sent.callback_data["content"]


async def accepted(env: StudioEnv, prompt: str = "a lighthouse", **kw: Any) -> str:
    """Submit an /imagine that must be accepted; returns its job id once RunComfy has it (so a
    later ``refusal`` counts only its own submits)."""
    sent = await imagine(env, prompt, **kw)
    assert not sent.ephemeral, f"refused: {sent.callback_data}"
    original = await sent.wait_for_original()
    job_id = env.job_id_of(original)
    sent_on = (JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING, JobState.COMPLETED)
    await env.wait_state(job_id, *sent_on, JobState.DELIVERED, JobState.FAILED)
    return job_id


def submitted(env: StudioEnv) -> list[Any]:
    return [r for r in env.runcomfy.requests if r.endpoint == "submit"]


# -- who may use /admin ---------------------------------------------------------------------------


async def test_admin_is_registered_for_manage_server_and_guilds_only(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        (command,) = [c for c in env.discord.commands(env.discord.guild.id) if c["name"] == "admin"]
        assert (
            int(command["default_member_permissions"])
            == discord.Permissions(manage_guild=True).value
        )
        assert command["contexts"] == [0]
        groups = {o["name"] for o in command["options"]}
        assert {"channels", "roles", "quota", "blocklist", "ban", "settings", "stats"} <= groups


async def test_non_admins_are_refused_even_if_discord_shows_them_the_command(
    tmp_path: Path,
) -> None:
    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        guild_id = guild.id
        assert env.storage is not None
        moderator = discord.Permissions(manage_messages=True, send_messages=True).value
        attempts = [
            ("cooldown", {"seconds": 600}, {"user": guild.member}),
            ("ban", {"member": guild.admin}, {"user": guild.member}),
            ("settings", {}, {"user": guild.member}),
            ("channels clear", {}, {"user": guild.member}),
            # Manage Messages makes a moderator, not an admin.
            ("max-in-flight", {"jobs": 1}, {"user": guild.member, "member_permissions": moderator}),
        ]
        for command, options, who in attempts:
            sent = await env.discord.slash_command(f"admin {command}", options, **who)
            await sent.wait_for_callback()
            assert sent.ephemeral
            assert sent.callback_data is not None
            assert sent.callback_data["content"] == REFUSED, command
        policy = await env.storage.policy.get(guild_id)
        assert (policy.cooldown_seconds, policy.max_jobs_in_flight) == (0, 3)
        assert await env.storage.policy.bans(guild_id) == []
        # The owner and a member whose role grants Administrator are admins.
        administrator = discord.Permissions(administrator=True).value
        assert "wait 30 s" in await admin_says(env, "cooldown", {"seconds": 30}, user=guild.owner)
        sent = await env.discord.slash_command(
            "admin cooldown", {"seconds": 0}, user=guild.member, member_permissions=administrator
        )
        await sent.wait_for_callback()
        assert sent.callback_data is not None
        assert sent.callback_data["content"] == "No cooldown between jobs."


def _admin_commands() -> list[tuple[str, list[app_commands.Parameter]]]:
    """Every /admin subcommand as the cog registers it: (name, its parameters)."""

    def walk(items: Any, prefix: str) -> Iterator[tuple[str, list[app_commands.Parameter]]]:
        for item in items:
            if isinstance(item, app_commands.Group):
                yield from walk(item.commands, f"{prefix}{item.name} ")
            else:
                yield f"{prefix}{item.name}", list(item.parameters)

    return list(walk(AdminCog.__cog_app_commands__, ""))


def _minimal_options(env: StudioEnv, parameters: list[app_commands.Parameter]) -> dict[str, Any]:
    """Valid values for the required options (what a member would have to fill in)."""
    guild = env.discord.guild
    kinds = discord.AppCommandOptionType
    values: dict[Any, Any] = {
        kinds.channel: guild.text_channel,
        kinds.role: guild.member_role,
        kinds.user: guild.admin,
        kinds.string: "30m",
        kinds.boolean: True,
    }
    options: dict[str, Any] = {}
    for p in parameters:
        if not p.required:
            continue
        if p.type in (kinds.integer, kinds.number):
            options[p.name] = int(p.min_value) if p.min_value is not None else 1
        else:
            options[p.name] = values[p.type]
    return options


ADMIN_COMMANDS = _admin_commands()


def test_every_admin_subcommand_is_covered_below() -> None:
    names = [name for name, _ in ADMIN_COMMANDS]
    assert len(names) >= 29 and {"channels add", "quota grant", "pending", "stats"} <= set(names)


@pytest.mark.parametrize(
    ("command", "parameters"), ADMIN_COMMANDS, ids=[name for name, _ in ADMIN_COMMANDS]
)
async def test_every_admin_subcommand_refuses_non_admins(
    tmp_path: Path, command: str, parameters: list[app_commands.Parameter]
) -> None:
    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        assert env.storage is not None
        await env.storage.policy.add_block(guild.id, "dragon", is_regex=False, added_by=None)

        async def state() -> tuple[Any, ...]:
            assert env.storage is not None
            store = env.storage.policy
            return (
                await store.get(guild.id),
                await store.blocklist(guild.id),
                await store.bans(guild.id),
                await env.storage.quota.ledger(guild.admin.id, guild.id),
                [m for m in env.discord.messages.values() if not m.ephemeral],
            )

        before = await state()
        moderator = discord.Permissions(manage_messages=True, send_messages=True).value
        for who in ({}, {"member_permissions": moderator}):
            sent = await env.discord.slash_command(
                f"admin {command}",
                _minimal_options(env, parameters),
                user=guild.member,
                **who,
            )
            await sent.wait_for_callback()
            assert sent.ephemeral and sent.callback_data is not None
            assert sent.callback_data["content"] == REFUSED
        assert await state() == before


# -- channels and roles -----------------------------------------------------------------------


async def test_channels_limit_where_the_studio_works(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        art, general = guild.nsfw_channel, guild.text_channel
        said = await admin_says(env, "channels add", {"channel": art})
        assert said == f"The studio now works in <#{art.id}>."
        assert await refusal(env, channel_id=general.id) == (
            f"Image generation is only enabled in <#{art.id}>."
        )
        await accepted(env, channel_id=art.id)
        assert await admin_says(env, "channels list") == f"The studio works in <#{art.id}>."
        said = await admin_says(env, "channels remove", {"channel": general})
        assert said == f"<#{general.id}> is not in the allowed channels."
        await admin_says(env, "channels clear")
        await accepted(env, channel_id=general.id)


async def test_forums_and_uncached_threads_can_be_allowed(db_target: Path | str) -> None:
    from tests.test_moderation_e2e import FakeThread

    async with studio_env(db_target) as env:
        guild = env.discord.guild
        forum = FakeChannel(env.discord.snowflake(), "art-forum", type=15, guild_id=guild.id)
        guild.channels[forum.id] = forum
        async with env.running():
            # Threads made after the bot connected: not in its cache.
            post = FakeThread(
                env.discord.snowflake(), "my post", type=11, guild_id=guild.id, parent_id=forum.id
            )
            thread = FakeThread(
                env.discord.snowflake(),
                "side chat",
                type=11,
                guild_id=guild.id,
                parent_id=guild.text_channel.id,
            )
            guild.channels[post.id] = post
            guild.channels[thread.id] = thread
            said = await admin_says(env, "channels add", {"channel": forum})
            assert said == f"The studio now works in <#{forum.id}>."
            said = await admin_says(env, "channels add", {"channel": thread})
            assert "could not be used" not in said
            assert said == f"The studio now works in <#{forum.id}> and <#{thread.id}>." or (
                said == f"The studio now works in <#{thread.id}> and <#{forum.id}>."
            )
            # A post in the allowed forum may generate; the forum's parent channel rule applies.
            await accepted(env, channel_id=post.id)
            assert "only enabled in" in await refusal(env, channel_id=guild.text_channel.id)
            said = await admin_says(env, "channels remove", {"channel": thread})
            assert said == f"Removed <#{thread.id}>. The studio now works in <#{forum.id}>."
            (command,) = [c for c in env.discord.commands(guild.id) if c["name"] == "admin"]
            (channels,) = [o for o in command["options"] if o["name"] == "channels"]
            (add,) = [o for o in channels["options"] if o["name"] == "add"]
            types = set(add["options"][0]["channel_types"])
            assert {0, 5, 11, 12, 15} <= types and 4 not in types  # no categories


async def test_a_thread_allowed_on_its_own_works_in_a_channel_that_is_not(tmp_path: Path) -> None:
    from tests.test_moderation_e2e import FakeThread

    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        thread = FakeThread(
            env.discord.snowflake(),
            "side chat",
            type=11,
            guild_id=guild.id,
            parent_id=guild.text_channel.id,
        )
        guild.channels[thread.id] = thread
        await admin_says(env, "channels add", {"channel": thread})
        assert "only enabled in" in await refusal(env, channel_id=guild.text_channel.id)
        await accepted(env, channel_id=thread.id)


async def test_roles_limit_who_may_use_the_studio(db_target: Path | str) -> None:
    async with studio_env(db_target) as env:
        guild = env.discord.guild
        artist = env.discord.add_role(guild, "Artist")
        async with env.running():
            said = await admin_says(env, "roles add", {"role": artist})
            assert said == f"The studio is now for <@&{artist.id}>."
            refused = await refusal(env)
            assert refused == f"The studio here is for members with the role <@&{artist.id}>."
            await accepted(env, roles=[artist])
            await admin_says(env, "roles remove", {"role": artist})
            await accepted(env, "another")


# -- quota ------------------------------------------------------------------------------------


async def test_quota_settings_change_what_members_may_spend(db_target: Path | str) -> None:
    async with studio_env(db_target, daily_credits=20) as env:
        guild = env.discord.guild
        patron = env.discord.add_role(guild, "Patron")
        async with env.running():
            member = guild.member
            said = await admin_says(env, "quota default", {"credits": 1})
            assert said.startswith("Members now get 1 credit a day")
            assert "1 of 1 left" in await refusal(env, count=2)
            await admin_says(env, "quota tier", {"role": patron, "credits": 3})
            await accepted(env, count=2, roles=[patron])  # 2 of the tier's 3
            await admin_says(env, "quota override", {"member": member, "credits": 0})
            assert "0 of 0 left" in await refusal(env, roles=[patron])
            await admin_says(env, "quota override", {"member": member})  # cleared
            await admin_says(env, "quota grant", {"member": member, "amount": 4, "reason": "prize"})
            await accepted(env, count=4, roles=[patron])  # 1 left of 3, plus 4 granted
            ledger = await admin_says(env, "quota ledger", {"member": member})
            assert f"<@{member.id}> has **" in ledger
            assert "granted 4" in ledger and "prize" in ledger and "reserved 4" in ledger
            await admin_says(env, "quota tier-remove", {"role": patron})
            said = await admin_says(env, "quota tier-remove", {"role": patron})
            assert said == f"<@&{patron.id}> has no credit tier."


async def test_the_ledger_counts_the_members_role_tier(tmp_path: Path) -> None:
    # the member option's roles, as Discord resolved them in the interaction
    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        await admin_says(env, "quota tier", {"role": guild.member_role, "credits": 7})
        ledger = await admin_says(env, "quota ledger", {"member": guild.member})
        assert ledger.startswith(
            f"<@{guild.member.id}> has **7 credits** left today (limit 7 from a role tier;"
            " 0 used). Resets <t:"
        )
        assert ledger.endswith(":R>.\nNo ledger entries yet.")


async def test_the_guild_cap_and_reset(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        job_id = await accepted(env, count=2)
        await env.wait_state(job_id, JobState.DELIVERED)
        await admin_says(env, "quota cap", {"credits": 2})
        assert "This server's daily credits are used up" in await refusal(env, user=guild.admin)
        said = await admin_says(env, "quota cap")
        assert said == "This server no longer has a daily cap."
        await accepted(env, user=guild.admin)
        said = await admin_says(env, "quota reset", {"member": guild.member})
        assert said.startswith(f"Reset <@{guild.member.id}>'s day")
        assert env.storage is not None
        assert (await env.storage.quota.balance(guild.member.id, guild.id)).remaining == 20


# -- safety and blocklist ---------------------------------------------------------------------


async def test_safety_ceilings(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        said = await admin_says(env, "safety", {"ceiling": 2, "age_restricted_ceiling": 5})
        assert said == "The safety ceiling is now 2 (5 in age-restricted channels)."
        assert "ceiling of 2" in await refusal(env, safety=3)
        assert "ceiling of 5" in await refusal(env, safety=6, channel_id=guild.nsfw_channel.id)
        job_id = await accepted(env, safety=5, channel_id=guild.nsfw_channel.id)
        assert (await env.job(job_id)).params["safety_tolerance"] == 5
        said = await admin_says(env, "safety", {"age_restricted_ceiling": 1})
        assert "can't be lower than the normal ceiling (2)" in said
        assert await admin_says(env, "safety") == (
            "The safety ceiling is 2 (5 in age-restricted channels)."
        )


async def test_blocklist_add_list_remove(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        said = await admin_says(env, "blocklist add", {"pattern": "dragon"})
        assert said.startswith("Added blocklist entry #") and "(text) dragon" in said
        refused = await refusal(env, "a red D.R.A.G.O.N at dawn")
        assert "doesn't allow" in refused and "dragon" not in refused.lower()
        said = await admin_says(env, "blocklist add", {"pattern": r"(a)\1", "regex": True})
        assert said.startswith("pattern:")
        listing = await admin_says(env, "blocklist list")
        assert listing.startswith("**Blocklist** (1 entry):")
        entry_id = int(listing.split("#")[1].split(" ")[0])
        await admin_says(env, "blocklist remove", {"entry": entry_id})
        await accepted(env, "a red dragon at dawn")
        assert await admin_says(env, "blocklist list") == "The blocklist is empty."


async def test_blocklist_list_marks_entries_that_are_not_in_use(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        assert env.storage is not None
        guild_id = env.discord.guild.id
        # An entry stored before validation tightened: the enforced list skips it.
        bad = await env.storage.policy.add_block(guild_id, r"(a)\1", is_regex=True, added_by=None)
        await admin_says(env, "blocklist add", {"pattern": "dragon"})
        listing = await admin_says(env, "blocklist list")
        header, first, second = listing.splitlines()
        assert header.startswith("**Blocklist** (2 entries): ⚠️ 1 not in use")
        assert first.startswith(f"⚠️ #{bad.id} (regex) ") and "not in use:" in first
        assert second.endswith("(text) dragon") and "⚠️" not in second


async def test_a_long_blocklist_comes_as_a_file(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        assert env.bot is not None
        for n in range(60):
            await env.bot.admin.add_block(
                env.discord.guild.id, f"forbidden phrase number {n}", is_regex=False, actor_id=1
            )
        sent = await admin(env, "blocklist list")
        assert sent.callback_data is not None
        assert len(sent.callback_data["content"]) <= 2000
        assert "more in the attached file" in sent.callback_data["content"]
        callback = sent.callback
        assert callback is not None
        (file,) = callback.files
        assert file.filename == "blocklist.txt"
        assert file.data.decode().count("forbidden phrase number") == 60


async def test_user_text_is_escaped_and_pings_nobody(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        said = await admin_says(env, "blocklist add", {"pattern": "@everyone **loud**"})
        assert "@everyone \\*\\*loud\\*\\*" in said  # shown as typed, not bold
        member = env.discord.guild.member
        said = await admin_says(
            env, "ban", {"member": member, "reason": "spamming @here __a lot__"}
        )
        assert "spamming @here \\_\\_a lot\\_\\_" in said


# -- rate rules and bans ----------------------------------------------------------------------


async def test_cooldown_between_a_members_jobs(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        assert await admin_says(env, "cooldown", {"seconds": 600}) == (
            "Members now wait 10 min between jobs."
        )
        await accepted(env)
        refused = await refusal(env)
        assert refused.startswith("You can use the studio again <t:")
        assert refused.endswith(":R> (cooldown: 10 min).")
        # Moderators skip the cooldown.
        await accepted(env, user=guild.admin)
        await accepted(env, user=guild.admin)
        await admin_says(env, "cooldown", {"seconds": 0})
        await accepted(env)


async def test_max_jobs_in_flight(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        env.runcomfy.script(JobScript(queue_seconds=FOREVER), JobScript(queue_seconds=FOREVER))
        said = await admin_says(env, "max-in-flight", {"jobs": 1})
        assert said == "Members may now have 1 job in progress at once."
        await accepted(env)
        refused = await refusal(env)
        assert "1 job in progress (limit: 1 at a time)" in refused


async def test_ban_and_unban(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        member = env.discord.guild.member
        said = await admin_says(
            env, "ban", {"member": member, "reason": "off-topic floods", "duration": "2h"}
        )
        assert said.startswith(f"Banned <@{member.id}> until <t:")
        refused = await refusal(env)
        assert refused.startswith("You're banned from the studio in this server until <t:")
        assert refused.endswith("Reason: off-topic floods")
        said = await admin_says(env, "ban", {"member": member, "duration": "soon"})
        assert said == 'duration: "soon" is not a duration; try 30m, 2h, 7d or 1h30m'
        assert await admin_says(env, "unban", {"member": member}) == (
            f"<@{member.id}> may use the studio again."
        )
        await accepted(env)
        said = await admin_says(env, "unban", {"member": member})
        assert said == f"<@{member.id}> isn't banned from the studio."


# -- settings the log and approval features read ------------------------------------------------


async def test_log_channel_approval_and_dms_are_stored_and_shown(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        assert env.bot is not None and env.storage is not None
        log_channel = guild.text_channel
        said = await admin_says(env, "approval", {"enabled": True})
        assert "Set a log channel" in said
        said = await admin_says(env, "log-channel", {"channel": log_channel})
        assert said == f"The moderators' log now goes to <#{log_channel.id}>."
        await admin_says(env, "dms", {"enabled": True})
        # What the job service and the moderators' features read, through the policy cache:
        policy = await env.bot.policy.policy(guild.id)
        assert (policy.approval_mode, policy.log_channel_id) == (True, log_channel.id)
        assert await env.bot.policy.may_dm_members(guild.id) is True
        await admin_says(env, "log-channel")
        await admin_says(env, "dms", {"enabled": False})
        policy = await env.bot.policy.policy(guild.id)
        assert policy.log_channel_id is None and policy.dms_enabled is False


# -- reports ------------------------------------------------------------------------------------


async def test_settings_show_everything_at_a_glance(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        await admin_says(env, "channels add", {"channel": guild.text_channel})
        await admin_says(env, "quota tier", {"role": guild.member_role, "credits": 7})
        await admin_says(env, "cooldown", {"seconds": 90})
        await admin_says(env, "blocklist add", {"pattern": "dragon"})
        await admin_says(env, "ban", {"member": guild.member, "reason": "spam"})
        sent = await admin(env, "settings")
        assert sent.callback_data is not None
        (embed,) = sent.callback_data["embeds"]
        text = embed["description"]
        for line in (
            f"**Channels:** <#{guild.text_channel.id}>",
            "**Roles:** everyone",
            "**Daily credits per member:** bot-wide default (20)",
            f"**Role tiers:** <@&{guild.member_role.id}>: 7",
            "**Safety ceiling:** 4 (age-restricted channels: 6)",
            "**Blocklist:** 1 entry",
            "**Log channel:** not set",
            "**Approval before posting:** off",
            "**Cooldown:** 1 min 30 sec",
            "**Jobs in flight per member:** 3",
            "**DMs to members:** off",
            "**Private results:** off",
            "**Bans:** 1 active",
            f"- <@{guild.member.id}> until lifted: spam",
        ):
            assert line in text.splitlines(), line


async def test_stats_count_todays_jobs(tmp_path: Path) -> None:
    async with running_studio(tmp_path) as env:
        guild = env.discord.guild
        env.runcomfy.script(JobScript(), JobScript(outcome="fail"))
        done = await accepted(env, count=2)
        failed = await accepted(env, "doomed", user=guild.admin)
        await env.wait_state(done, JobState.DELIVERED)
        await env.wait_state(failed, JobState.FAILED)
        sent = await admin(env, "stats")
        assert sent.callback_data is not None
        (embed,) = sent.callback_data["embeds"]
        today, week = embed["fields"]
        assert today["name"] == "Today (UTC)" and week["name"] == "Last 7 days"
        for field in (today, week):
            assert "Jobs: **2** (1 delivered, 1 failed" in field["value"]
            assert "Images: **2** · Credits spent: **2**" in field["value"]
            assert f"Top: <@{guild.member.id}> 2" in field["value"]


NOTHING_DONE = "Jobs: **0** (0 delivered, 0 failed, 0 cancelled, 0 rejected, 0 in progress)"
UNCONFIGURED = {
    "settings": [
        "Studio settings",
        "**Channels:** every channel",
        "**Roles:** everyone",
        "**Daily credits per member:** bot-wide default (20)",
        "**Server daily cap:** none",
        "**Role tiers:** none",
        "**Blocklist:** 0 entries",
        "**Log channel:** not set",
        "**Cooldown:** none",
        "**Bans:** 0 active",
    ],
    "stats": ["Studio stats", NOTHING_DONE, "Images: **0** · Credits spent: **0**"],
    "channels list": ["The studio works in every channel."],
}


def answer_lines(sent: SentInteraction) -> list[str]:
    """Every line the admin reads: the content, and each embed's title, description and fields."""
    data = sent.callback_data or {}
    texts = [data.get("content") or ""]
    for embed in data.get("embeds", []):
        texts += [embed.get("title", ""), embed.get("description", "")]
        texts += [field["value"] for field in embed.get("fields", [])]
    return [line for text in texts for line in text.splitlines()]


@pytest.mark.parametrize("command", list(UNCONFIGURED))
async def test_reports_work_for_an_unconfigured_guild(tmp_path: Path, command: str) -> None:
    # A crash answers ephemerally with no mentions too: the content is what proves it worked.
    async with running_studio(tmp_path) as env:
        lines = answer_lines(await admin(env, command))
        for line in UNCONFIGURED[command]:
            assert line in lines, (line, lines)
        assert not any("Top:" in line for line in lines)
