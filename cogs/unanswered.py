"""Every button or form interaction gets an answer, even one no handler of ours receives.

discord.py silently drops a click whose custom_id no registered item matches (malformed, an
unknown action, over-long, forged onto another message) and a form it no longer holds (sent
again after it was handled, opened before a restart). The member would see "This interaction
failed"; this listener answers them instead, ephemerally.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from cogs.buttons import DYNAMIC_ITEMS
from cogs.i18n import speech_for
from cogs.image_actions import IMAGE_ITEMS
from cogs.library import LIBRARY_ITEMS
from cogs.modlog_buttons import MODLOG_ITEMS
from cogs.routing import routed
from cogs.tree import say
from services.wording import N_

if TYPE_CHECKING:
    from bot import StudioBot

log = logging.getLogger(__name__)

UNKNOWN_BUTTON = N_(
    "This button isn't one the studio knows (it may be from an older message). Nothing was done"
    " or charged."
)
FORM_CLOSED = N_(
    "This form is closed: it was already sent, or it was opened before the studio restarted."
    " Nothing more was started or charged; open it again if you need to."
)
ROUTED_ITEMS = (*DYNAMIC_ITEMS, *IMAGE_ITEMS, *LIBRARY_ITEMS, *MODLOG_ITEMS)


class UnansweredCog(commands.Cog):
    def __init__(self, bot: StudioBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        kind = interaction.type
        if kind not in (discord.InteractionType.component, discord.InteractionType.modal_submit):
            return
        if routed(interaction, ROUTED_ITEMS, self.bot.open_forms):
            return
        log.debug(
            "interaction %s: %s that no handler takes (user %s); answering",
            interaction.id,
            kind.name,
            interaction.user.id,
        )
        form = kind is discord.InteractionType.modal_submit
        t = speech_for(interaction.locale)
        await say(interaction, t(FORM_CLOSED if form else UNKNOWN_BUTTON))


async def setup(bot: StudioBot) -> None:
    await bot.add_cog(UnansweredCog(bot))
