"""The moderators' log as a cog: it registers the moderators' buttons (cogs/modlog_buttons.py);
the entries themselves are posted by ``DiscordModLog`` (cogs/modlog_sink.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord.ext import commands

from cogs.modlog_buttons import MODLOG_ITEMS

if TYPE_CHECKING:
    from bot import StudioBot


class ModLogCog(commands.Cog):
    def __init__(self, bot: StudioBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*MODLOG_ITEMS)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*MODLOG_ITEMS)


async def setup(bot: StudioBot) -> None:
    await bot.add_cog(ModLogCog(bot))
