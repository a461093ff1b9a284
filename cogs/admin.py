"""``/admin``: a server's studio settings, configured from inside Discord.

Discord shows the group only to members with Manage Server by default, but a server's admins can
override that in Integrations, so every call is checked again here (``interaction_check``). Each
subcommand calls ``AdminService``, words what it returns in the server's preferred language
(cogs/admin_render.py) and sends it with ``reply``: ephemeral, user text escaped, mentioning
nobody. A refused change raises a typed error, which the tree's one handler answers
(cogs/tree.py), the same way. The ``quota`` subgroup lives in cogs/admin_quota.py, ``history``
in cogs/admin_history.py, ``style`` and ``private`` in cogs/admin_styles.py.

Channel options take text, announcement, voice and stage channels, forums and threads (forum posts
included), resolved from the interaction itself: a thread the bot has not cached still works.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from cogs.admin_history import HistoryCommands
from cogs.admin_listings import blocklist_listing, long_reply, pending_listing
from cogs.admin_options import (
    MAX_DURATION_TEXT,
    NotAnAdmin,
    StudioChannel,
    guild_of,
    has_manage_guild,
    speech,
)
from cogs.admin_quota import QuotaCommands
from cogs.admin_render import (
    approval_text,
    banned_text,
    block_text,
    cooldown_text,
    dms_text,
    in_flight_text,
    log_channel_text,
    safety_text,
    settings_embed,
    stats_embed,
    where_text,
    who_text,
)
from cogs.admin_styles import StyleCommands
from cogs.inputs import studio
from cogs.tree import reply
from services.admin import (
    MAX_COOLDOWN_SECONDS,
    MAX_IN_FLIGHT,
    MAX_REASON_LENGTH,
    AdminService,
)
from services.blocklist import MAX_PATTERN_LENGTH

log = logging.getLogger(__name__)


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(
    QuotaCommands,
    HistoryCommands,
    StyleCommands,
    commands.GroupCog,
    group_name="admin",
    group_description="Studio settings",
):
    """The ``/admin`` group. Subgroups are class attributes (here and in the mixins), which
    GroupCog nests under it."""

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

    # -- channels -----------------------------------------------------------------------------

    channels = app_commands.Group(name="channels", description="Where the studio may be used")

    @channels.command(name="add", description="Allow the studio in a channel")
    @app_commands.describe(channel="The channel to allow")
    async def channels_add(self, interaction: discord.Interaction, channel: StudioChannel) -> None:
        policy = await self.admin.allow_channel(guild_of(interaction), channel.id)
        await reply(interaction, where_text(speech(interaction), policy, changed=True))

    @channels.command(name="remove", description="Stop allowing the studio in a channel")
    @app_commands.describe(channel="The channel to remove")
    async def channels_remove(
        self, interaction: discord.Interaction, channel: StudioChannel
    ) -> None:
        policy = await self.admin.disallow_channel(guild_of(interaction), channel.id)
        t = speech(interaction)
        removed = t("Removed {channel}.", channel=channel.mention)
        await reply(interaction, f"{removed} {where_text(t, policy, changed=True)}")

    @channels.command(name="clear", description="Allow the studio in every channel")
    async def channels_clear(self, interaction: discord.Interaction) -> None:
        await self.admin.clear_channels(guild_of(interaction))
        t = speech(interaction)
        await reply(interaction, t("The studio now works in every channel."))

    @channels.command(name="list", description="Show where the studio may be used")
    async def channels_list(self, interaction: discord.Interaction) -> None:
        policy = await self.admin.policy(guild_of(interaction))
        await reply(interaction, where_text(speech(interaction), policy, changed=False))

    # -- roles --------------------------------------------------------------------------------

    roles = app_commands.Group(name="roles", description="Who may use the studio")

    @roles.command(name="add", description="Allow members with a role to use the studio")
    @app_commands.describe(role="The role to allow")
    async def roles_add(self, interaction: discord.Interaction, role: discord.Role) -> None:
        policy = await self.admin.allow_role(guild_of(interaction), role.id)
        await reply(interaction, who_text(speech(interaction), policy, changed=True))

    @roles.command(name="remove", description="Stop allowing a role")
    @app_commands.describe(role="The role to remove")
    async def roles_remove(self, interaction: discord.Interaction, role: discord.Role) -> None:
        policy = await self.admin.disallow_role(guild_of(interaction), role.id)
        t = speech(interaction)
        removed = t("Removed {role}.", role=role.mention)
        await reply(interaction, f"{removed} {who_text(t, policy, changed=True)}")

    @roles.command(name="clear", description="Let everyone use the studio")
    async def roles_clear(self, interaction: discord.Interaction) -> None:
        await self.admin.clear_roles(guild_of(interaction))
        t = speech(interaction)
        await reply(interaction, t("The studio is now for everyone."))

    @roles.command(name="list", description="Show who may use the studio")
    async def roles_list(self, interaction: discord.Interaction) -> None:
        policy = await self.admin.policy(guild_of(interaction))
        await reply(interaction, who_text(speech(interaction), policy, changed=False))

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
        guild_id = guild_of(interaction)
        changed = ceiling is not None or age_restricted_ceiling is not None
        if changed:
            policy = await self.admin.set_safety(
                guild_id, ceiling=ceiling, age_restricted_ceiling=age_restricted_ceiling
            )
        else:
            policy = await self.admin.policy(guild_id)
        await reply(interaction, safety_text(speech(interaction), policy, changed=changed))

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
        entry = await self.admin.add_block(
            guild_of(interaction), pattern, is_regex=regex, actor_id=interaction.user.id
        )
        t = speech(interaction)
        await reply(interaction, t("Added blocklist entry {entry}.", entry=block_text(t, entry)))

    @blocklist.command(name="remove", description="Remove a blocklist entry by its number")
    @app_commands.describe(entry="The entry's number, as shown by /admin blocklist list")
    async def blocklist_remove(
        self, interaction: discord.Interaction, entry: app_commands.Range[int, 1]
    ) -> None:
        await self.admin.remove_block(guild_of(interaction), entry)
        t = speech(interaction)
        # str: an entry's number is a name, never written "1,234"
        await reply(interaction, t("Removed blocklist entry #{number}.", number=str(entry)))

    @blocklist.command(name="list", description="Show the blocklist")
    async def blocklist_list(self, interaction: discord.Interaction) -> None:
        report = await self.admin.blocklist_report(guild_of(interaction))
        t = speech(interaction)
        await long_reply(t, interaction, blocklist_listing(t, report), "blocklist.txt")

    # -- moderation and limits ----------------------------------------------------------------

    @app_commands.command(name="log-channel", description="Where the moderators' log goes")
    @app_commands.describe(channel="The log channel; leave empty to turn the log off")
    async def log_channel(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        guild_id = guild_of(interaction)
        policy = await self.admin.set_log_channel(guild_id, channel.id if channel else None)
        studio(interaction).moderation.settings_changed(guild_id)
        await reply(interaction, log_channel_text(speech(interaction), policy))

    @app_commands.command(name="approval", description="Hold results for a moderator's approval")
    @app_commands.describe(enabled="On: results go to the log channel first")
    async def approval(self, interaction: discord.Interaction, enabled: bool) -> None:
        guild_id = guild_of(interaction)
        policy = await self.admin.set_approval(guild_id, enabled)
        studio(interaction).moderation.settings_changed(guild_id)
        await reply(interaction, approval_text(speech(interaction), policy))

    @app_commands.command(name="cooldown", description="Seconds between a member's jobs")
    @app_commands.describe(seconds="0 for no cooldown (moderators never wait)")
    async def cooldown(
        self,
        interaction: discord.Interaction,
        seconds: app_commands.Range[int, 0, MAX_COOLDOWN_SECONDS],
    ) -> None:
        policy = await self.admin.set_cooldown(guild_of(interaction), seconds)
        await reply(interaction, cooldown_text(speech(interaction), policy))

    @app_commands.command(name="max-in-flight", description="Jobs a member may have running")
    @app_commands.describe(jobs="Unfinished jobs per member at a time")
    async def max_in_flight(
        self, interaction: discord.Interaction, jobs: app_commands.Range[int, 1, MAX_IN_FLIGHT]
    ) -> None:
        policy = await self.admin.set_max_in_flight(guild_of(interaction), jobs)
        await reply(interaction, in_flight_text(speech(interaction), policy))

    @app_commands.command(name="dms", description="Whether the bot may DM this server's members")
    @app_commands.describe(enabled="On: members are told by DM when a result is rejected")
    async def dms(self, interaction: discord.Interaction, enabled: bool) -> None:
        policy = await self.admin.set_dms(guild_of(interaction), enabled)
        await reply(interaction, dms_text(speech(interaction), policy))

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
        ban = await self.admin.ban(
            guild_of(interaction),
            member.id,
            actor_id=interaction.user.id,
            reason=reason,
            duration=duration,
        )
        await reply(interaction, banned_text(speech(interaction), ban))

    @app_commands.command(name="unban", description="Lift a member's studio ban")
    @app_commands.describe(member="The member")
    async def unban(self, interaction: discord.Interaction, member: discord.User) -> None:
        await self.admin.unban(guild_of(interaction), member.id)
        t = speech(interaction)
        await reply(interaction, t("{user} may use the studio again.", user=member.mention))

    # -- reports ------------------------------------------------------------------------------

    @app_commands.command(name="settings", description="Every studio setting at a glance")
    async def settings(self, interaction: discord.Interaction) -> None:
        summary = await self.admin.settings(guild_of(interaction))
        await reply(interaction, embed=settings_embed(speech(interaction), summary))

    @app_commands.command(name="pending", description="Results waiting for a moderator")
    async def pending(self, interaction: discord.Interaction) -> None:
        # checking (and re-posting) the log entries takes a moment
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = guild_of(interaction)
        jobs = await studio(interaction).moderation.pending(guild_id)
        log_channel = (await self.admin.policy(guild_id)).log_channel_id
        t = speech(interaction)
        await long_reply(t, interaction, pending_listing(t, jobs, log_channel), "pending.txt")

    @app_commands.command(name="stats", description="Jobs, images, failures and credits")
    async def stats(self, interaction: discord.Interaction) -> None:
        report = await self.admin.stats(guild_of(interaction))
        await reply(interaction, embed=stats_embed(speech(interaction), report))


async def setup(bot: commands.Bot) -> None:
    admin: AdminService | None = getattr(bot, "admin", None)
    if admin is None:
        raise RuntimeError("the bot has no AdminService: set bot.admin before loading cogs.admin")
    await bot.add_cog(AdminCog(admin))


__all__ = ["AdminCog", "setup"]
