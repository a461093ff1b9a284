"""The catalogs' source: every text the code shows, as the gettext template (messages.pot).

``python -m cogs.catalogs`` extracts the texts (``t(...)``, ``t.n(...)``, ``N_(...)``,
``said(...)`` and the errors' text arguments in cogs/ and services/, read from the syntax tree,
and the commands' names, descriptions, options and choices), writes ``cogs/locales/messages.pot``
and adds what is new to each language's ``.po`` (empty, to be translated), as Poedit would.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from cogs.i18n import LOCALES
from cogs.translator import command_strings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = LOCALES / "messages.pot"
# Calls whose arguments are catalog keys: the called name -> the positions of the text (and of
# the plural). ``t(...)`` and ``t.n(...)`` are the cogs' Speech; the rest mark texts in services.
KEYWORDS: dict[str, tuple[int, ...]] = {
    "t": (0,),
    "n": (0, 1),
    "N_": (0,),
    "said": (0,),
    "StudioError": (0,),
    "ModerationError": (0,),
    "RepeatedRequest": (0,),
    "InvalidInput": (1,),
    "NotAllowed": (1,),
    "InvalidSetting": (1,),
}
_WORD = re.compile(r"[^\W\d_]{2,}")  # a command string with no word ("4:3", "2K") stays as is


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def code_messages() -> list[tuple[str | tuple[str, str], str]]:
    """(msgid or (singular, plural), where) for every marked text in cogs/ and services/.

    Read from the syntax tree (nested calls and f-string arguments are no trouble); a call
    whose text is not a literal (``t(CONSTANT)``) is skipped: the constant is marked itself."""
    found: list[tuple[str | tuple[str, str], str]] = []
    for path in sorted([*(ROOT / "cogs").rglob("*.py"), *(ROOT / "services").rglob("*.py")]):
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=where)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            spec = KEYWORDS.get(name or "")
            if spec is None or len(node.args) <= spec[-1]:
                continue
            texts = [_literal(node.args[i]) for i in spec]
            if any(text is None for text in texts):
                continue
            message = (texts[0], texts[1]) if len(texts) == 2 else texts[0]
            found.append((message, f"{where}:{node.lineno}"))  # type: ignore[arg-type]
    return found


def app_commands_of_cogs() -> list[Any]:
    """The bot's commands, from its cogs (built without a bot: they only read settings)."""
    from cogs.admin import AdminCog
    from cogs.library import LibraryCog
    from cogs.presets import PresetsCog
    from cogs.studio import StudioCog

    bot: Any = SimpleNamespace(settings=SimpleNamespace(allow_dms=False))
    studio = StudioCog(bot)
    admin = AdminCog(None)  # type: ignore[arg-type]
    others = [*LibraryCog(bot).get_app_commands(), *PresetsCog(bot).get_app_commands()]
    # /admin is a GroupCog: its group holds its commands
    return [*studio.get_app_commands(), studio.edit_menu, admin.app_command, *others]


def translatable_command_strings(commands: list[Any]) -> set[tuple[str, str]]:
    return {(c, text) for c, text in command_strings(commands) if _WORD.search(text)}


def template() -> Catalog:
    catalog = Catalog(
        project="discord-image-studio",
        copyright_holder="the discord-image-studio contributors",
        msgid_bugs_address="the project's issue tracker",
        fuzzy=False,
    )
    for message, where in code_messages():
        catalog.add(message, locations=[(where.split(":")[0], int(where.split(":")[1]))])
    for context, text in sorted(translatable_command_strings(app_commands_of_cogs())):
        catalog.add(text, context=context)
    return catalog


def main() -> int:
    source = template()
    with TEMPLATE.open("wb") as file:
        write_po(file, source, width=100, omit_header=False, sort_output=True)
    for path in sorted(LOCALES.glob("*.po")):
        with path.open("rb") as file:
            catalog = read_po(file, locale=path.stem.replace("-", "_"))
        catalog.update(source, no_fuzzy_matching=True)
        with path.open("wb") as file:
            write_po(file, catalog, width=100, sort_output=True, ignore_obsolete=True)
    print(f"{len(source)} texts -> {TEMPLATE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
