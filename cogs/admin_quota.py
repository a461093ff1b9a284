"""``/admin quota``: daily credits (the server's default and cap, role tiers, a member's own
credits, grants, resets and ledger). A mixin of ``AdminCog`` (cogs/admin.py): discord.py takes
a cog's commands from every class it is made of, so the group nests under ``/admin`` as before.
"""

from __future__ import annotations

import discord
from discord import app_commands

from cogs.admin_listings import ledger_listing, long_reply
from cogs.admin_options import guild_of, option_role_ids, speech
from cogs.admin_render import daily_cap_text, default_credits_text
from cogs.tree import reply
from services.admin import MAX_CREDITS, MAX_DAILY_CAP, MAX_GRANT, MAX_REASON_LENGTH, AdminService


class QuotaCommands:
    """The ``/admin quota`` subgroup; ``admin`` is the cog's ``AdminService``."""

    admin: AdminService

    quota = app_commands.Group(name="quota", description="Daily credits")

    @quota.command(name="default", description="Daily credits per member in this server")
    @app_commands.describe(credits="Credits a day; leave empty to use the bot's default")
    async def quota_default(
        self,
        interaction: discord.Interaction,
        credits: app_commands.Range[int, 0, MAX_CREDITS] | None = None,
    ) -> None:
        policy = await self.admin.set_default_credits(guild_of(interaction), credits)
        await reply(interaction, default_credits_text(speech(interaction), policy))

    @quota.command(name="cap", description="Credits the whole server may spend a day")
    @app_commands.describe(credits="Credits a day for everyone together; leave empty for no cap")
    async def quota_cap(
        self,
        interaction: discord.Interaction,
        credits: app_commands.Range[int, 0, MAX_DAILY_CAP] | None = None,
    ) -> None:
        policy = await self.admin.set_daily_cap(guild_of(interaction), credits)
        await reply(interaction, daily_cap_text(speech(interaction), policy))

    @quota.command(name="tier", description="Daily credits for members with a role")
    @app_commands.describe(role="The role", credits="Credits a day for its members")
    async def quota_tier(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        credits: app_commands.Range[int, 0, MAX_CREDITS],
    ) -> None:
        await self.admin.set_role_tier(guild_of(interaction), role.id, credits)
        t = speech(interaction)
        text = t.n(
            "Members with {role} now get {count} credit a day (the best tier a member has counts).",
            "Members with {role} now get {count} credits a day"
            " (the best tier a member has counts).",
            credits,
            role=role.mention,
        )
        await reply(interaction, text)

    @quota.command(name="tier-remove", description="Remove a role's credit tier")
    @app_commands.describe(role="The role")
    async def quota_tier_remove(self, interaction: discord.Interaction, role: discord.Role) -> None:
        await self.admin.remove_role_tier(guild_of(interaction), role.id)
        t = speech(interaction)
        await reply(interaction, t("{role} no longer has a credit tier.", role=role.mention))

    @quota.command(name="override", description="A member's own daily credits, above any tier")
    @app_commands.describe(member="The member", credits="Credits a day; leave empty to clear")
    async def quota_override(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        credits: app_commands.Range[int, 0, MAX_CREDITS] | None = None,
    ) -> None:
        await self.admin.set_user_override(guild_of(interaction), member.id, credits)
        t = speech(interaction)
        if credits is None:
            text = t("{user} is back to the server's usual daily credits.", user=member.mention)
        else:
            text = t.n(
                "{user} now gets {count} credit a day.",
                "{user} now gets {count} credits a day.",
                credits,
                user=member.mention,
            )
        await reply(interaction, text)

    @quota.command(name="grant", description="Give a member extra credits for today")
    @app_commands.describe(member="The member", amount="Extra credits", reason="Why (optional)")
    async def quota_grant(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        amount: app_commands.Range[int, 1, MAX_GRANT],
        reason: app_commands.Range[str, 1, MAX_REASON_LENGTH] | None = None,
    ) -> None:
        await self.admin.grant(
            guild_of(interaction), member.id, amount, actor_id=interaction.user.id, reason=reason
        )
        t = speech(interaction)
        text = t.n(
            "Gave {user} {count} extra credit for today.",
            "Gave {user} {count} extra credits for today.",
            amount,
            user=member.mention,
        )
        await reply(interaction, text)

    @quota.command(name="reset", description="Give a member back everything they used today")
    @app_commands.describe(member="The member")
    async def quota_reset(self, interaction: discord.Interaction, member: discord.User) -> None:
        await self.admin.reset_day(guild_of(interaction), member.id, actor_id=interaction.user.id)
        t = speech(interaction)
        text = t("Reset {user}'s day: today's usage no longer counts.", user=member.mention)
        await reply(interaction, text)

    @quota.command(name="ledger", description="A member's credits today and recent ledger")
    @app_commands.describe(member="The member")
    async def quota_ledger(self, interaction: discord.Interaction, member: discord.User) -> None:
        report = await self.admin.ledger_report(
            guild_of(interaction), member.id, role_ids=option_role_ids(interaction, member.id)
        )
        t = speech(interaction)
        await long_reply(t, interaction, ledger_listing(t, report), "ledger.txt")
