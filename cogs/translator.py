"""Command names, descriptions, option names and choices in every catalog's language.

discord.py asks the tree's ``Translator`` for each string of each command for each Discord
locale when it syncs; the answers become ``name_localizations``/``description_localizations``.
Catalog entries carry a context saying which kind of string they are (``command_strings`` lists
them, for the catalogs' template and the tests). A localized name that breaks Discord's rules
is left out (English is shown) and logged.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Iterator

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from cogs.i18n import Speech, catalog_code, speech_for

log = logging.getLogger(__name__)

# The catalogs' context for each kind of command string.
NAME, MENU, DESCRIPTION, CHOICE = "command name", "menu name", "command description", "choice"
_CONTEXTS = {
    Where.command_name: NAME,
    Where.group_name: NAME,
    Where.parameter_name: NAME,
    Where.command_description: DESCRIPTION,
    Where.group_description: DESCRIPTION,
    Where.parameter_description: DESCRIPTION,
    Where.choice_name: CHOICE,
}
NAME_LIMIT, TEXT_LIMIT = 32, 100  # Discord: names 1-32, descriptions and choice names 1-100


def valid_name(name: str) -> bool:
    """Discord's rule for slash command and option names, localized ones included: 1-32 of
    letters, digits (any script, with their combining marks), ``-``, ``_`` and ``'``, and lower
    case wherever the letter has one."""
    if not 1 <= len(name) <= NAME_LIMIT:
        return False
    for char in name:
        kind = unicodedata.category(char)
        if not (kind[0] in "LN" or kind in ("Mn", "Mc") or char in "-_'"):
            return False
        if char.lower() != char:
            return False
    return True


def fits(context: str, text: str) -> bool:
    if context == NAME:
        return valid_name(text)
    limit = NAME_LIMIT if context == MENU else TEXT_LIMIT
    return 1 <= len(text) <= limit


def context_of(context: app_commands.TranslationContext) -> str:  # type: ignore[type-arg]
    if context.location is Where.command_name and isinstance(
        context.data, app_commands.ContextMenu
    ):
        return MENU
    return _CONTEXTS.get(context.location, "other")


class StudioTranslator(app_commands.Translator):
    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContext,  # type: ignore[type-arg]
    ) -> str | None:
        if catalog_code(locale) is None:
            return None  # English, or a language without a catalog: Discord shows the source
        where = context_of(context)
        text = speech_for(locale).pgettext(where, string.message)
        if text is None:
            return None
        if not fits(where, text):
            log.warning(
                "%s %r in %s breaks Discord's rules: %r", where, string.message, locale, text
            )
            return None
        return text


def option_name(t: Speech, name: str) -> str:
    """A command option (or group) as the reader's client shows it: ``count`` -> ``nombre``."""
    return t.pgettext(NAME, name) or name


def command_path(t: Speech, path: str) -> str:
    """``/admin log-channel`` as the reader's client shows the command (its localized names)."""
    return "/" + " ".join(option_name(t, part) for part in path.split())


def command_strings(
    commands: Iterable[app_commands.Command | app_commands.Group | app_commands.ContextMenu],  # type: ignore[type-arg]
) -> Iterator[tuple[str, str]]:
    """Every (context, English text) the commands show: names, descriptions, options, choices."""
    for command in commands:
        if isinstance(command, app_commands.ContextMenu):
            yield MENU, command.name
            continue
        yield NAME, command.name
        yield DESCRIPTION, command.description
        if isinstance(command, app_commands.Group):
            yield from command_strings(command.commands)
            continue
        for param in command.parameters:
            yield NAME, param.display_name
            yield DESCRIPTION, param.description
            for choice in param.choices:
                yield CHOICE, choice.name


__all__ = [
    "StudioTranslator",
    "command_path",
    "command_strings",
    "fits",
    "option_name",
    "valid_name",
]
