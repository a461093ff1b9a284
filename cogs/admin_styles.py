"""``/admin style`` (the server's named styles, offered on /imagine and /edit) and ``/admin
private`` (whether members may ask for private results). A mixin of ``AdminCog``
(cogs/admin.py), like cogs/admin_quota.py; answers speak the server's preferred language.
"""

from __future__ import annotations

import discord
from discord import app_commands

from cogs.admin_options import guild_of, speech
from cogs.inputs import studio
from cogs.render import clipped, escaped
from cogs.studio_options import StyleName, style_autocomplete
from cogs.tree import reply
from services.presets import MAX_STYLE_TEXT, MAX_STYLES

LISTED_TEXT = 120  # characters of each style's text in the list


class StyleCommands:
    """The ``/admin style`` subgroup and ``/admin private``."""

    style = app_commands.Group(name="style", description="The server's named prompt styles")

    @style.command(name="add", description="Add a style (or change the text of one)")
    @app_commands.describe(
        name="The style's name, as members pick it", text="Text added to the member's prompt"
    )
    async def style_add(
        self,
        interaction: discord.Interaction,
        name: StyleName,
        text: app_commands.Range[str, 1, MAX_STYLE_TEXT],
    ) -> None:
        added, replaced = await studio(interaction).presets.add_style(
            guild_of(interaction), name, text, added_by=interaction.user.id
        )
        t = speech(interaction)
        if replaced:
            answer = t(
                "Style “{name}” now adds: {text}",
                name=escaped(added.name),
                text=escaped(added.text),
            )
        else:
            answer = t(
                "Added style “{name}”: {text}", name=escaped(added.name), text=escaped(added.text)
            )
        await reply(interaction, answer)

    @style.command(name="remove", description="Remove a style")
    @app_commands.describe(name="The style to remove")
    @app_commands.autocomplete(name=style_autocomplete)
    async def style_remove(self, interaction: discord.Interaction, name: StyleName) -> None:
        removed = await studio(interaction).presets.remove_style(guild_of(interaction), name)
        t = speech(interaction)
        await reply(interaction, t("Removed style “{name}”.", name=escaped(removed.name)))

    @style.command(name="list", description="Show the server's styles")
    async def style_list(self, interaction: discord.Interaction) -> None:
        styles = await studio(interaction).presets.styles(guild_of(interaction))
        t = speech(interaction)
        if not styles:
            await reply(
                interaction, t("This server has no styles yet: add one with `/admin style add`.")
            )
            return
        head = t.n(
            "This server has {count} style (at most {limit}):",
            "This server has {count} styles (at most {limit}):",
            len(styles),
            limit=MAX_STYLES,
        )
        lines = [
            f"- **{escaped(s.name)}**: {escaped(clipped(s.text, LISTED_TEXT))}" for s in styles
        ]
        await reply(interaction, "\n".join([head, *lines]))

    @app_commands.command(
        name="private", description="Whether members may ask for results only they see"
    )
    @app_commands.describe(enabled="True: the private option works; False: it is refused")
    async def private(self, interaction: discord.Interaction, enabled: bool) -> None:
        await studio(interaction).presets.set_private(guild_of(interaction), enabled)
        t = speech(interaction)
        if enabled:
            text = t(
                "Members may now ask for private results: only they see the status and the"
                " result. The moderators' log, approval and the blocklist still apply."
            )
        else:
            text = t("Private results are off: every result is posted in the channel.")
        await reply(interaction, text)
