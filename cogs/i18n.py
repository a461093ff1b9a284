"""The reader's language: gettext catalogs (cogs/locales/<discord locale>.po), loaded with Babel.

``speech_for(locale)`` gives a ``Speech``: the texts, plurals, numbers, lists and durations of
one language. English is the source (the catalogs' msgids); a language is one ``.po`` file named
by Discord's locale code. An unknown locale or a missing entry falls back to English, logged once
at DEBUG. Prompts are never translated: only texts written in this code are.
"""

from __future__ import annotations

import functools
import gettext
import hashlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from babel import Locale
from babel.lists import format_list
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from babel.units import format_unit

from services.wording import Wording

log = logging.getLogger(__name__)

LOCALES = Path(__file__).with_name("locales")
SOURCE_LOCALE = "en-US"
_IDS_FROM = 10**12  # ints this large are Discord ids (snowflakes): never grouped like numbers
_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))
_logged: set[tuple[str, str]] = set()  # (locale, msgid) fallbacks already logged


def _once(locale: str, what: str) -> None:
    if (locale, what) not in _logged:
        _logged.add((locale, what))
        log.debug("no %s text for %r: English is used", locale, what)


class Speech:
    """One language. ``t("Hello {name}", name=...)``; ``t.n(one, many, count)``; numbers."""

    def __init__(self, code: str, catalog: Catalog | None) -> None:
        self.code = code  # Discord's locale code ("ko", "pt-BR"); SOURCE_LOCALE for English
        self.locale = Locale.parse(code, sep="-")
        self._catalog = catalog
        self._translations: gettext.NullTranslations = gettext.NullTranslations()
        if catalog is not None:
            buffer = io.BytesIO()
            write_mo(buffer, catalog)  # fuzzy entries are left out, as gettext does
            buffer.seek(0)
            self._translations = Translations(fp=buffer)

    def has(self, text: str, context: str | None = None) -> bool:
        if self._catalog is None:
            return False
        message = self._catalog.get(text, context=context)
        return message is not None and bool(message.string) and not message.fuzzy

    def _check(self, text: str, context: str | None = None) -> None:
        if self._catalog is not None and not self.has(text, context):
            _once(self.code, text)

    def __call__(self, text: str, /, **args: Any) -> str:
        self._check(text)
        return self.fill(self._translations.gettext(text), args, text)

    def n(self, singular: str, plural: str, count: int, /, **args: Any) -> str:
        """A counted text; ``{count}`` is the number, written the language's way."""
        self._check(singular)
        chosen = self._translations.ngettext(singular, plural, count)
        return self.fill(chosen, {"count": count, **args}, singular if count == 1 else plural)

    def pgettext(self, context: str, text: str) -> str | None:
        """A text with a context (command names and descriptions); None when not translated."""
        if not self.has(text, context):
            return None
        return self._translations.pgettext(context, text)

    def wording(self, wording: Wording) -> str:
        """A sentence the services wrote (an error, a job's failure reason) in this language."""
        return self(wording.text, **wording.args)

    def stored(self, stored: str) -> str:
        """A sentence kept in the database (``Wording.stored``) in this language."""
        return self.wording(Wording.parse(stored))

    def number(self, value: int | float) -> str:
        """Grouped the language's way; a float with one decimal (60.0 MiB, 60,0 Mio)."""
        if isinstance(value, int) and abs(value) >= _IDS_FROM:
            return str(value)
        if isinstance(value, float):
            return format_decimal(value, format="#,##0.0", locale=self.locale)
        return format_decimal(value, locale=self.locale)

    def fill(self, text: str, args: dict[str, Any], source: str | None = None) -> str:
        """``text`` with its placeholders filled: numbers the language's way, a number named
        ``duration`` (seconds) as a duration. A translation that does not fit its values (a
        catalog slip) falls back to the English ``source`` rather than failing the answer."""
        if not args:
            return text
        shown = {k: self._shown(k, v) for k, v in args.items()}
        try:
            return text.format(**shown)
        except (KeyError, IndexError, ValueError):
            if source is None or source == text:
                raise
            log.warning(
                "the %s text for %r does not fit its values; English is used", self.code, source
            )
            return source.format(**shown)

    def _shown(self, name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        return self.duration(value) if name == "duration" else self.number(value)

    def listed(self, items: Sequence[str]) -> str:
        """``a, b and c`` in this language."""
        return format_list(list(items), locale=self.locale) if items else ""

    def duration(self, seconds: float) -> str:
        """A short duration, at most two units: 45 s, 1 min 30 s, 2 h, 3 d 4 h."""
        left = max(0, int(seconds))
        parts: list[str] = []
        for unit, size in _UNITS:
            count, left = divmod(left, size)
            if count:
                parts.append(self._unit(count, unit))
        return " ".join(parts[:2]) or self._unit(0, "second")

    def _unit(self, count: int, unit: str) -> str:
        return format_unit(count, f"duration-{unit}", length="short", locale=self.locale)


@functools.cache
def catalogs() -> dict[str, Catalog]:
    """Every catalog beside this module, by Discord locale code (read once)."""
    found: dict[str, Catalog] = {}
    for path in sorted(LOCALES.glob("*.po")):
        with path.open("rb") as file:
            found[path.stem] = read_po(file, locale=path.stem.replace("-", "_"))
    return found


def languages() -> list[str]:
    """The Discord locale codes with a catalog."""
    return sorted(catalogs())


def fingerprint() -> str:
    """A digest of every catalog: a changed translation re-syncs the commands."""
    digest = hashlib.sha256()
    for path in sorted(LOCALES.glob("*.po")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _speech(code: str) -> Speech:
    return Speech(code, catalogs().get(code))


def catalog_code(locale: object) -> str | None:
    """The catalog for a Discord locale: the same code, or the same language (es-419 takes
    es-ES), never another script (zh-TW does not take zh-CN). None: English."""
    code = str(getattr(locale, "value", locale) or "")
    codes = catalogs()
    if code in codes:
        return code
    language = code.split("-")[0]
    if language and language != "zh":
        for known in codes:
            if known.split("-")[0] == language:
                return known
    return None


def speech_for(locale: object) -> Speech:
    """The ``Speech`` for a Discord locale (``discord.Locale``, its code, or None: English)."""
    code = catalog_code(locale)
    if code is None:
        if locale is not None and not str(getattr(locale, "value", locale)).startswith("en"):
            _once(str(getattr(locale, "value", locale)), "*")
        return _speech(SOURCE_LOCALE)
    return _speech(code)


ENGLISH = speech_for(None)

__all__ = ["ENGLISH", "SOURCE_LOCALE", "Speech", "catalog_code", "languages", "speech_for"]
