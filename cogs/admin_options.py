"""What ``/admin`` takes and who may use it: the channel option, a member option's roles, the
Manage Server check, and the language its answers speak. The commands: cogs/admin.py.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from cogs.i18n import Speech, speech_for
from services.wording import N_

REFUSED = N_("Only members with **Manage Server** can use `/admin`.")
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


class NotAnAdmin(app_commands.CheckFailure):
    """Raised by the cog's check; the bot's CommandTree shows ``str()`` (an ``N_`` text,
    translated there) ephemerally."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def option_role_ids(interaction: discord.Interaction, user_id: int) -> list[int]:
    """A member option's role ids, as Discord resolved them in the interaction (``Member.roles``
    would need the guild's roles cached, which interactions do not guarantee)."""
    data: dict[str, Any] = dict(interaction.data or {})
    member = data.get("resolved", {}).get("members", {}).get(str(user_id), {})
    return [int(role) for role in member.get("roles", ())]


def has_manage_guild(interaction: discord.Interaction) -> bool:
    """Server-side check: the member's permissions as Discord resolved them for this interaction."""
    if interaction.guild_id is None:
        return False
    perms = interaction.permissions
    return perms.administrator or perms.manage_guild


def guild_of(interaction: discord.Interaction) -> int:
    assert interaction.guild_id is not None  # guild_only, and checked in interaction_check
    return interaction.guild_id


def speech(interaction: discord.Interaction) -> Speech:
    """/admin speaks the server's preferred language: its answers are for the moderators."""
    return speech_for(interaction.guild_locale)
