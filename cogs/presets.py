"""``/settings``: a member's own defaults for /imagine and /edit (aspect ratio, resolution,
count, format, safety, a prompt suffix).

With no options it shows them; with options it saves those (the others stay); ``clear`` forgets
them all. Answers are ephemeral, in the member's language. The defaults follow the member across
servers; a server's safety ceiling still caps the saved safety where the job runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from cogs.i18n import Speech, speech_for
from cogs.render import clipped, escaped
from cogs.studio_options import (
    ASPECT_RATIO_CHOICES,
    FORMAT_CHOICES,
    RESOLUTION_CHOICES,
    SAFETY_CHOICES,
    Count,
)
from cogs.tree import reply
from services.presets import MAX_SUFFIX, Preset

if TYPE_CHECKING:
    from bot import StudioBot


def preset_text(t: Speech, preset: Preset) -> str:
    """The member's defaults, one per line (unset ones say what applies instead)."""
    if preset.empty:
        return t(
            "You have no saved defaults: /imagine and /edit use the built-in ones"
            " (auto, 1K, 1 image, PNG, the server's safety). Set yours with `/settings`."
        )
    unset = t("not set")
    lines = [
        t("Your defaults for /imagine and /edit (an option you give always wins):"),
        "- " + t("Aspect ratio: {value}", value=preset.aspect_ratio or unset),
        "- " + t("Resolution: {value}", value=preset.resolution or unset),
        "- " + t("Images: {value}", value=preset.count or unset),
        "- " + t("Format: {value}", value=(preset.format or unset).upper()),
        "- " + t("Safety: {value}", value=preset.safety or unset),
    ]
    if preset.suffix:
        suffix = escaped(clipped(preset.suffix, MAX_SUFFIX))
        lines.append("- " + t("Added to every prompt: “{suffix}”", suffix=suffix))
    else:
        lines.append("- " + t("Added to every prompt: {value}", value=unset))
    return "\n".join(lines)


class PresetsCog(commands.Cog):
    def __init__(self, bot: StudioBot) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description="Your defaults for /imagine and /edit")
    @app_commands.describe(
        aspect_ratio="Your default shape",
        resolution="Your default size",
        count="Your default number of images",
        format="Your default file format",
        safety="Your default content filter (capped by each server)",
        suffix="Text added to the end of every prompt",
        clear="Forget all your defaults",
    )
    @app_commands.choices(
        aspect_ratio=ASPECT_RATIO_CHOICES,
        resolution=RESOLUTION_CHOICES,
        format=FORMAT_CHOICES,
        safety=SAFETY_CHOICES,
    )
    async def settings(
        self,
        interaction: discord.Interaction,
        aspect_ratio: Choice[str] | None = None,
        resolution: Choice[str] | None = None,
        count: Count | None = None,
        format: Choice[str] | None = None,
        safety: Choice[int] | None = None,
        suffix: Range[str, 1, MAX_SUFFIX] | None = None,
        clear: bool = False,
    ) -> None:
        presets = self.bot.presets
        user_id = interaction.user.id
        t = speech_for(interaction.locale)
        if clear:
            await presets.clear(user_id)
            await reply(interaction, t("Your defaults are cleared: the built-in ones apply."))
            return
        changes = {
            "aspect_ratio": None if aspect_ratio is None else aspect_ratio.value,
            "resolution": None if resolution is None else resolution.value,
            "count": count,
            "format": None if format is None else format.value,
            "safety": None if safety is None else safety.value,
            "suffix": suffix,
        }
        if all(v is None for v in changes.values()):
            await reply(interaction, preset_text(t, await presets.preset(user_id)))
            return
        preset = await presets.update(user_id, **changes)
        await reply(interaction, t("Saved.") + "\n" + preset_text(t, preset))


async def setup(bot: StudioBot) -> None:
    await bot.add_cog(PresetsCog(bot))
