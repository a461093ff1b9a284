"""A command's raw options checked against what the command declares, before anything runs.

Discord checks option types itself; a forged or broken client payload (a prompt sent as a
number or null, an attachment id missing from ``resolved``) would otherwise reach discord.py's
converters and our handlers as the wrong type. Each problem is a clear ``InvalidInput``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import discord
from discord import AppCommandOptionType as Opt
from discord import app_commands

from services.errors import InvalidInput
from services.wording import N_

_SUBCOMMANDS = (Opt.subcommand.value, Opt.subcommand_group.value)
# What an option of each type must be, as whole sentences (the option's name fills {option}).
_MUST_BE = {
    Opt.string: N_("`{option}` must be text. Nothing was charged."),
    Opt.integer: N_("`{option}` must be a whole number. Nothing was charged."),
    Opt.boolean: N_("`{option}` must be true or false. Nothing was charged."),
    Opt.number: N_("`{option}` must be a number. Nothing was charged."),
    Opt.user: N_("`{option}` must be a member. Nothing was charged."),
    Opt.channel: N_("`{option}` must be a channel. Nothing was charged."),
    Opt.role: N_("`{option}` must be a role. Nothing was charged."),
    Opt.mentionable: N_("`{option}` must be a member or role. Nothing was charged."),
    Opt.attachment: N_("`{option}` must be a file. Nothing was charged."),
}
_MUST_BE_OTHER = N_("`{option}` must be something else. Nothing was charged.")
# Where a snowflake option's object is in ``resolved`` (any one of them will do).
_RESOLVED = {
    Opt.user: ("users",),
    Opt.channel: ("channels",),
    Opt.role: ("roles",),
    Opt.mentionable: ("users", "roles"),
    Opt.attachment: ("attachments",),
}
_TARGETS = {
    discord.AppCommandType.message: ("messages",),
    discord.AppCommandType.user: ("users",),
}


OUT_OF_DATE = N_("This command is out of date in your Discord client; try again in a minute.")


def check_payload(interaction: discord.Interaction) -> None:
    """Raise InvalidInput if the interaction's options do not fit its command."""
    data = interaction.data
    if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
        raise InvalidInput("data", OUT_OF_DATE)
    options = list(_leaf_options(data.get("options")))  # before discord.py walks them
    command = interaction.command
    resolved = data.get("resolved")
    resolved = resolved if isinstance(resolved, Mapping) else {}
    if isinstance(command, app_commands.ContextMenu):
        if not _resolves(data.get("target_id"), _TARGETS.get(command.type, ()), resolved):
            raise InvalidInput("target", "Discord didn't say which item this was used on.")
        return
    if not isinstance(command, app_commands.Command):
        return  # an unknown command: the tree says the client is out of date
    params = {p.display_name: p for p in command.parameters}
    focused = interaction.type is discord.InteractionType.autocomplete
    for option in options:
        name = option["name"]
        param = params.get(name)
        if param is None or option.get("type") != param.type.value:
            raise InvalidInput("options", OUT_OF_DATE)
        value = option.get("value")
        if focused and option.get("focused"):
            continue  # half-typed text, whatever the option's type
        if not _fits(param.type, value, resolved):
            raise InvalidInput(name, _MUST_BE.get(param.type, _MUST_BE_OTHER), option=name)


def _leaf_options(options: Any) -> Iterator[Mapping[str, Any]]:
    """The options of the (sub)command invoked, whatever groups lead to it."""
    if options is None:
        return
    if not isinstance(options, list):
        raise InvalidInput("options", OUT_OF_DATE)
    for option in options:
        if not isinstance(option, Mapping) or not isinstance(option.get("name"), str):
            raise InvalidInput("options", OUT_OF_DATE)
        if option.get("type") in _SUBCOMMANDS:
            yield from _leaf_options(option.get("options"))
        else:
            yield option


def _fits(kind: Opt, value: Any, resolved: Mapping[str, Any]) -> bool:
    if kind is Opt.string:
        return isinstance(value, str)
    if kind is Opt.integer:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is Opt.boolean:
        return isinstance(value, bool)
    if kind is Opt.number:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return _resolves(value, _RESOLVED.get(kind, ()), resolved)


def _resolves(value: Any, sections: tuple[str, ...], resolved: Mapping[str, Any]) -> bool:
    """A snowflake whose object Discord sent along in one of ``sections`` of ``resolved``."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    key = str(value)
    if not key.isdigit():
        return False
    for section in sections:
        found = resolved.get(section)
        if isinstance(found, Mapping) and isinstance(found.get(key), Mapping):
            return True
    return False
