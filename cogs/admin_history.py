"""``/admin history [member]``: the server's recent delivered results (everyone's, or one
member's), removed ones included, paged like /history (cogs/library_pages.py), in the server's
language. A mixin of ``AdminCog`` (cogs/admin.py), like cogs/admin_quota.py.
"""

from __future__ import annotations

import discord
from discord import app_commands

from cogs.library_pages import send_page


class HistoryCommands:
    """The ``/admin history`` command (the cog's check already refused non-admins)."""

    @app_commands.command(name="history", description="Recent results in this server")
    @app_commands.describe(member="Only this member's results (optional)")
    async def history(
        self, interaction: discord.Interaction, member: discord.User | None = None
    ) -> None:
        await send_page(interaction, "a", member.id if member is not None else 0)
