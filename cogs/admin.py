"""``/admin``: a server's studio settings, configured from inside Discord.

Discord shows the group only to members with Manage Server by default, but a server's admins can
override that in Integrations, so every call is checked again here (``interaction_check``). Answers
are ephemeral, echo user text escaped, and mention nobody. The work is done by ``AdminService``;
this module only parses options and sends replies (what they say: cogs/admin_render.py).

Channel options take text, announcement, voice and stage channels, forums and threads (forum posts
included), resolved from the interaction itself: a thread the bot has not cached still works.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.admin_render import (
    balance_text,
    ban_text,
    block_text,
    blocklist_lines,
    channels_text,
    ledger_text,
    pending_line,
    roles_text,
    settings_embed,
    split_long,
    stats_embed,
)
from cogs.inputs import studio
from services.admin import (
    MAX_COOLDOWN_SECONDS,
    MAX_CREDITS,
    MAX_DAILY_CAP,
    MAX_GRANT,
    MAX_IN_FLIGHT,
    MAX_REASON_LENGTH,
    AdminError,
    AdminService,
)
from services.blocklist import MAX_PATTERN_LENGTH
from services.policy import format_duration

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
REFUSED = "Only members with **Manage Server** can use `/admin`."
MAX_DURATION_TEXT = 20  # "1w2d3h30m" and the like


class ChannelOrThread(app_commands.Transformer):
    """A channel option for where members generate: channels, forums and threads.

    Taken as Discord resolved it in the interaction (an ``AppCommandChannel`` or
    ``AppCommandThread``), so an uncached thread works; only ``.id`` and ``.mention`` are used.
    """

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.channel

    @property
    def channel_types(self) -> list[discord.ChannelType]:
        return [
            discord.ChannelType.text,
            discord.ChannelType.news,
            discord.ChannelType.voice,
            discord.ChannelType.stage_voice,
            discord.ChannelType.forum,
            discord.ChannelType.media,
            discord.ChannelType.public_thread,
            discord.ChannelType.private_thread,
            discord.ChannelType.news_thread,
        ]

    async def transform(self, interaction: discord.Interaction, value: Any, /) -> Any:
        if not isinstance(value, app_commands.AppCommandChannel | app_commands.AppCommandThread):
            raise app_commands.TransformerError(value, self.type, self)
        return value


StudioChannel = app_commands.Transform[
    app_commands.AppCommandChannel | app_commands.AppCommandThread, ChannelOrThread
]


async def reply(
    interaction: discord.Interaction,
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    file: discord.File | None = None,
) -> None:
    """An ephemeral answer that pings nobody, whether or not the interaction was answered yet."""
    kwargs: dict[str, Any] = {"ephemeral": True, "allowed_mentions": NO_MENTIONS}
    if embed is not None:
        kwargs["embed"] = embed
    if file is not None:
        kwargs["file"] = file
    if interaction.response.is_done():
        await interaction.followup.send(content or discord.utils.MISSING, **kwargs)
    else:
        await interaction.response.send_message(content, **kwargs)


async def answer(interaction: discord.Interaction, action: Awaitable[str]) -> None:
    """Run an admin action and tell the admin what happened (or why it did not)."""
    try:
        text = await action
    except AdminError as exc:
        text = str(exc)
    await reply(interaction, text)


async def long_reply(
    interaction: discord.Interaction, header: str, lines: Iterable[str], filename: str
) -> None:
    """A list that may not fit one message: the start inline, the whole list as a text file."""
    text, whole = split_long(header, list(lines))
    if whole is None:
        await reply(interaction, text)
        return
    data = io.BytesIO(whole.encode())
    await reply(interaction, text, file=discord.File(data, filename=filename))


class NotAnAdmin(app_commands.CheckFailure):
    """Raised by the cog's check; the bot's CommandTree shows ``str()`` ephemerally."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def member_role_ids(user: discord.abc.User) -> list[int]:
    # Member._roles holds the ids from the interaction payload; Member.roles would need the
    # guild's roles in the cache, which interactions do not guarantee (as in cogs/inputs.py).
    return list(getattr(user, "_roles", ()) or ())


def has_manage_guild(interaction: discord.Interaction) -> bool:
    """Server-side check: the member's permissions as Discord resolved them for this interaction."""
    if interaction.guild_id is None:
        return False
    perms = interaction.permissions
    return perms.administrator or perms.manage_guild


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(commands.GroupCog, group_name="admin", group_description="Studio settings"):
    """The ``/admin`` group. Subgroups are class attributes, which GroupCog nests under it."""

    def __init__(self, admin: AdminService) -> None:
        self.admin = admin
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Every /admin call, whatever Discord showed the member: Manage Server or no."""
        if has_manage_guild(interaction):
            return True
        log.info(
            "refused /admin for user %s in guild %s: no Manage Server",
            interaction.user.id,
            interaction.guild_id,
        )
        raise NotAnAdmin()

    @staticmethod
    def _gid(interaction: discord.Interaction) -> int:
        assert interaction.guild_id is not None  # guild_only, and checked in interaction_check
        return interaction.guild_id

    # -- channels -----------------------------------------------------------------------------

    channels = app_commands.Group(name="channels", description="Where the studio may be used")

    @channels.command(name="add", description="Allow the studio in a channel")
    @app_commands.describe(channel="The channel to allow")
    async def channels_add(self, interaction: discord.Interaction, channel: StudioChannel) -> None:
        async def run() -> str:
            policy = await self.admin.allow_channel(self._gid(interaction), channel.id)
            return f"The studio now works in {channels_text(policy)}."

        await answer(interaction, run())

    @channels.command(name="remove", description="Stop allowing the studio in a channel")
    @app_commands.describe(channel="The channel to remove")
    async def channels_remove(
        self, interaction: discord.Interaction, channel: StudioChannel
    ) -> None:
        async def run() -> str:
            policy = await self.admin.disallow_channel(self._gid(interaction), channel.id)
            return f"Removed {channel.mention}. The studio now works in {channels_text(policy)}."

        await answer(interaction, run())

    @channels.command(name="clear", description="Allow the studio in every channel")
    async def channels_clear(self, interaction: discord.Interaction) -> None:
        async def run() -> str:
            await self.admin.clear_channels(self._gid(interaction))
            return "The studio now works in every channel."

        await answer(interaction, run())

    @channels.command(name="list", description="Show where the studio may be used")
    async def channels_list(self, interaction: discord.Interaction) -> None:
        async def run() -> str:
            policy = await self.admin.policy(self._gid(interaction))
            return f"The studio works in {channels_text(policy)}."

        await answer(interaction, run())

    # -- roles --------------------------------------------------------------------------------

    roles = app_commands.Group(name="roles", description="Who may use the studio")

    @roles.command(name="add", description="Allow members with a role to use the studio")
    @app_commands.describe(role="The role to allow")
    async def roles_add(self, interaction: discord.Interaction, role: discord.Role) -> None:
        async def run() -> str:
            policy = await self.admin.allow_role(self._gid(interaction), role.id)
            return f"The studio is now for {roles_text(policy)}."

        await answer(interaction, run())

    @roles.command(name="remove", description="Stop allowing a role")
    @app_commands.describe(role="The role to remove")
    async def roles_remove(self, interaction: discord.Interaction, role: discord.Role) -> None:
        async def run() -> str:
            policy = await self.admin.disallow_role(self._gid(interaction), role.id)
            return f"Removed {role.mention}. The studio is now for {roles_text(policy)}."

        await answer(interaction, run())

    @roles.command(name="clear", description="Let everyone use the studio")
    async def roles_clear(self, interaction: discord.Interaction) -> None:
        async def run() -> str:
            await self.admin.clear_roles(self._gid(interaction))
            return "The studio is now for everyone."

        await answer(interaction, run())

    @roles.command(name="list", description="Show who may use the studio")
    async def roles_list(self, interaction: discord.Interaction) -> None:
        async def run() -> str:
            policy = await self.admin.policy(self._gid(interaction))
            return f"The studio is for {roles_text(policy)}."

        await answer(interaction, run())

    # -- quota --------------------------------------------------------------------------------

    quota = app_commands.Group(name="quota", description="Daily credits")

    @quota.command(name="default", description="Daily credits per member in this server")
    @app_commands.describe(credits="Credits a day; leave empty to use the bot's default")
    async def quota_default(
        self,
        interaction: discord.Interaction,
        credits: app_commands.Range[int, 0, MAX_CREDITS] | None = None,
    ) -> None:
        async def run() -> str:
            await self.admin.set_default_credits(self._gid(interaction), credits)
            if credits is None:
                return "Members now get the bot's default daily credits."
            return f"Members now get {credits} credits a day (unless a tier or override says)."

        await answer(interaction, run())

    @quota.command(name="cap", description="Credits the whole server may spend a day")
    @app_commands.describe(credits="Credits a day for everyone together; leave empty for no cap")
    async def quota_cap(
        self,
        interaction: discord.Interaction,
        credits: app_commands.Range[int, 0, MAX_DAILY_CAP] | None = None,
    ) -> None:
        async def run() -> str:
            await self.admin.set_daily_cap(self._gid(interaction), credits)
            if credits is None:
                return "This server no longer has a daily cap."
            return f"This server may now spend at most {credits} credits a day."

        await answer(interaction, run())

    @quota.command(name="tier", description="Daily credits for members with a role")
    @app_commands.describe(role="The role", credits="Credits a day for its members")
    async def quota_tier(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        credits: app_commands.Range[int, 0, MAX_CREDITS],
    ) -> None:
        async def run() -> str:
            await self.admin.set_role_tier(self._gid(interaction), role.id, credits)
            return (
                f"Members with {role.mention} now get {credits} credits a day"
                " (the best tier a member has counts)."
            )

        await answer(interaction, run())

    @quota.command(name="tier-remove", description="Remove a role's credit tier")
    @app_commands.describe(role="The role")
    async def quota_tier_remove(self, interaction: discord.Interaction, role: discord.Role) -> None:
        async def run() -> str:
            await self.admin.remove_role_tier(self._gid(interaction), role.id)
            return f"{role.mention} no longer has a credit tier."

        await answer(interaction, run())

    @quota.command(name="override", description="A member's own daily credits, above any tier")
    @app_commands.describe(member="The member", credits="Credits a day; leave empty to clear")
    async def quota_override(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        credits: app_commands.Range[int, 0, MAX_CREDITS] | None = None,
    ) -> None:
        async def run() -> str:
            await self.admin.set_user_override(self._gid(interaction), member.id, credits)
            if credits is None:
                return f"{member.mention} is back to the server's usual daily credits."
            return f"{member.mention} now gets {credits} credits a day."

        await answer(interaction, run())

    @quota.command(name="grant", description="Give a member extra credits for today")
    @app_commands.describe(member="The member", amount="Extra credits", reason="Why (optional)")
    async def quota_grant(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        amount: app_commands.Range[int, 1, MAX_GRANT],
        reason: app_commands.Range[str, 1, MAX_REASON_LENGTH] | None = None,
    ) -> None:
        async def run() -> str:
            await self.admin.grant(
                self._gid(interaction),
                member.id,
                amount,
                actor_id=interaction.user.id,
                reason=reason,
            )
            return f"Gave {member.mention} {amount} extra credits for today."

        await answer(interaction, run())

    @quota.command(name="reset", description="Give a member back everything they used today")
    @app_commands.describe(member="The member")
    async def quota_reset(self, interaction: discord.Interaction, member: discord.User) -> None:
        async def run() -> str:
            await self.admin.reset_day(
                self._gid(interaction), member.id, actor_id=interaction.user.id
            )
            return f"Reset {member.mention}'s day: today's usage no longer counts."

        await answer(interaction, run())

    @quota.command(name="ledger", description="A member's credits today and recent ledger")
    @app_commands.describe(member="The member")
    async def quota_ledger(self, interaction: discord.Interaction, member: discord.User) -> None:
        guild_id = self._gid(interaction)
        role_ids = member_role_ids(member)
        try:
            balance = await self.admin.balance(guild_id, member.id, role_ids=role_ids)
            entries = await self.admin.ledger(guild_id, member.id)
        except AdminError as exc:
            await reply(interaction, str(exc))
            return
        header = balance_text(member.id, balance)
        if not entries:
            await reply(interaction, header + "\nNo ledger entries yet.")
            return
        await long_reply(
            interaction,
            header + "\n**Recent ledger:**",
            (ledger_text(e) for e in entries),
            "ledger.txt",
        )

    # -- safety and blocklist -----------------------------------------------------------------

    @app_commands.command(name="safety", description="The highest safety members may ask for")
    @app_commands.describe(
        ceiling="In normal channels (1 strictest, 6 most permissive); empty: unchanged",
        age_restricted_ceiling="In age-restricted channels; empty: unchanged",
    )
    async def safety(
        self,
        interaction: discord.Interaction,
        ceiling: app_commands.Range[int, 1, 6] | None = None,
        age_restricted_ceiling: app_commands.Range[int, 1, 6] | None = None,
    ) -> None:
        async def run() -> str:
            guild_id = self._gid(interaction)
            if ceiling is None and age_restricted_ceiling is None:
                policy = await self.admin.policy(guild_id)
                verb = "is"
            else:
                policy = await self.admin.set_safety(
                    guild_id, ceiling=ceiling, age_restricted_ceiling=age_restricted_ceiling
                )
                verb = "is now"
            return (
                f"The safety ceiling {verb} {policy.max_safety}"
                f" ({policy.max_safety_age_restricted} in age-restricted channels)."
            )

        await answer(interaction, run())

    blocklist = app_commands.Group(name="blocklist", description="Words and patterns refused")

    @blocklist.command(name="add", description="Refuse prompts containing a word, phrase or regex")
    @app_commands.describe(
        pattern=(
            "Word/phrase (also kills, killed, killing, killer);"
            ' kill* = starts with; "kill" = exact; or a regex'
        ),
        regex="Treat the pattern as a regular expression",
    )
    async def blocklist_add(
        self,
        interaction: discord.Interaction,
        pattern: app_commands.Range[str, 1, MAX_PATTERN_LENGTH],
        regex: bool = False,
    ) -> None:
        async def run() -> str:
            entry = await self.admin.add_block(
                self._gid(interaction), pattern, is_regex=regex, actor_id=interaction.user.id
            )
            return f"Added blocklist entry {block_text(entry)}."

        await answer(interaction, run())

    @blocklist.command(name="remove", description="Remove a blocklist entry by its number")
    @app_commands.describe(entry="The entry's number, as shown by /admin blocklist list")
    async def blocklist_remove(
        self, interaction: discord.Interaction, entry: app_commands.Range[int, 1]
    ) -> None:
        async def run() -> str:
            await self.admin.remove_block(self._gid(interaction), entry)
            return f"Removed blocklist entry #{entry}."

        await answer(interaction, run())

    @blocklist.command(name="list", description="Show the blocklist")
    async def blocklist_list(self, interaction: discord.Interaction) -> None:
        guild_id = self._gid(interaction)
        entries = await self.admin.blocklist(guild_id)
        if not entries:
            await reply(interaction, "The blocklist is empty.")
            return
        problems = await self.admin.blocklist_problems(guild_id)
        header = f"**Blocklist** ({len(entries)} entries):"
        if problems:
            header += f" ⚠️ {len(problems)} not in use (they match nothing; remove or fix them)."
        await long_reply(interaction, header, blocklist_lines(entries, problems), "blocklist.txt")

    # -- moderation and limits ----------------------------------------------------------------

    @app_commands.command(name="log-channel", description="Where the moderators' log goes")
    @app_commands.describe(channel="The log channel; leave empty to turn the log off")
    async def log_channel(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        async def run() -> str:
            guild_id = self._gid(interaction)
            policy = await self.admin.set_log_channel(
                guild_id, None if channel is None else channel.id
            )
            studio(interaction).moderation.settings_changed(guild_id)
            if channel is None:
                if policy.approval_mode:
                    return (
                        "The moderators' log is off. Approval mode needs it: until a log channel"
                        " is set, results are posted without approval."
                    )
                return "The moderators' log is off."
            return f"The moderators' log now goes to {channel.mention}."

        await answer(interaction, run())

    @app_commands.command(name="approval", description="Hold results for a moderator's approval")
    @app_commands.describe(enabled="On: results go to the log channel first")
    async def approval(self, interaction: discord.Interaction, enabled: bool) -> None:
        async def run() -> str:
            guild_id = self._gid(interaction)
            policy = await self.admin.set_approval(guild_id, enabled)
            studio(interaction).moderation.settings_changed(guild_id)
            if not enabled:
                return (
                    "Approval mode is off: results are posted as soon as they're ready"
                    " (results already waiting in the log still need a moderator)."
                )
            if policy.log_channel_id is None:
                return (
                    "Approval mode is on, but there is no log channel for moderators to approve"
                    " in. Set a log channel with `/admin log-channel`: until then, results are"
                    " posted without approval."
                )
            return "Approval mode is on: results wait for a moderator in the log channel."

        await answer(interaction, run())

    @app_commands.command(name="cooldown", description="Seconds between a member's jobs")
    @app_commands.describe(seconds="0 for no cooldown (moderators never wait)")
    async def cooldown(
        self,
        interaction: discord.Interaction,
        seconds: app_commands.Range[int, 0, MAX_COOLDOWN_SECONDS],
    ) -> None:
        async def run() -> str:
            await self.admin.set_cooldown(self._gid(interaction), seconds)
            if seconds == 0:
                return "No cooldown between jobs."
            return f"Members now wait {format_duration(seconds)} between jobs."

        await answer(interaction, run())

    @app_commands.command(name="max-in-flight", description="Jobs a member may have running")
    @app_commands.describe(jobs="Unfinished jobs per member at a time")
    async def max_in_flight(
        self, interaction: discord.Interaction, jobs: app_commands.Range[int, 1, MAX_IN_FLIGHT]
    ) -> None:
        async def run() -> str:
            await self.admin.set_max_in_flight(self._gid(interaction), jobs)
            return f"Members may now have {jobs} job{'s' if jobs != 1 else ''} in progress at once."

        await answer(interaction, run())

    @app_commands.command(name="dms", description="Whether the bot may DM this server's members")
    @app_commands.describe(enabled="On: members are told by DM when a result is rejected")
    async def dms(self, interaction: discord.Interaction, enabled: bool) -> None:
        async def run() -> str:
            await self.admin.set_dms(self._gid(interaction), enabled)
            if enabled:
                return "The bot may now DM members (a DM tells them when a result is rejected)."
            return "The bot won't DM members; it answers in the channel instead."

        await answer(interaction, run())

    @app_commands.command(name="ban", description="Ban a member from the studio")
    @app_commands.describe(
        member="The member",
        reason="Shown to the member when they try to use the studio",
        duration="e.g. 30m, 2h, 7d; leave empty for a ban until lifted",
    )
    async def ban(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        reason: app_commands.Range[str, 1, MAX_REASON_LENGTH] | None = None,
        duration: app_commands.Range[str, 1, MAX_DURATION_TEXT] | None = None,
    ) -> None:
        async def run() -> str:
            ban = await self.admin.ban(
                self._gid(interaction),
                member.id,
                actor_id=interaction.user.id,
                reason=reason,
                duration=duration,
            )
            return f"Banned {ban_text(ban)}."

        await answer(interaction, run())

    @app_commands.command(name="unban", description="Lift a member's studio ban")
    @app_commands.describe(member="The member")
    async def unban(self, interaction: discord.Interaction, member: discord.User) -> None:
        async def run() -> str:
            await self.admin.unban(self._gid(interaction), member.id)
            return f"{member.mention} may use the studio again."

        await answer(interaction, run())

    # -- reports ------------------------------------------------------------------------------

    @app_commands.command(name="settings", description="Every studio setting at a glance")
    async def settings(self, interaction: discord.Interaction) -> None:
        summary = await self.admin.settings(self._gid(interaction))
        await reply(interaction, embed=settings_embed(summary))

    @app_commands.command(name="pending", description="Results waiting for a moderator")
    async def pending(self, interaction: discord.Interaction) -> None:
        # checking (and re-posting) the log entries takes a moment
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = self._gid(interaction)
        jobs = await studio(interaction).moderation.pending(guild_id)
        if not jobs:
            await reply(interaction, "No results are waiting for a moderator.")
            return
        log_channel = (await self.admin.policy(guild_id)).log_channel_id
        await long_reply(
            interaction,
            f"**Waiting for a moderator** ({len(jobs)}; missing log entries were posted again):",
            [pending_line(job, log_channel) for job in jobs],
            "pending.txt",
        )

    @app_commands.command(name="stats", description="Jobs, images, failures and credits")
    async def stats(self, interaction: discord.Interaction) -> None:
        report = await self.admin.stats(self._gid(interaction))
        await reply(interaction, embed=stats_embed(report))


async def setup(bot: commands.Bot) -> None:
    admin: AdminService | None = getattr(bot, "admin", None)
    if admin is None:
        raise RuntimeError("the bot has no AdminService: set bot.admin before loading cogs.admin")
    await bot.add_cog(AdminCog(admin))


__all__ = ["AdminCog", "setup"]
