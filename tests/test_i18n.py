"""The catalogs: complete, with the source's placeholders, command names Discord accepts.

Every text the code marks (``t``, ``t.n``, ``N_``, ``said``, the errors' texts) and every
command string must be in every language's catalog, translated, with exactly the source's
``{placeholders}``; localized command and option names must follow Discord's naming rules and
stay unique where Discord needs them unique.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from discord import AppCommandOptionType, app_commands

from cogs.catalogs import (
    TEMPLATE,
    app_commands_of_cogs,
    code_messages,
    template,
    translatable_command_strings,
)
from cogs.i18n import ENGLISH, Speech, catalog_code, catalogs, languages, speech_for
from cogs.translator import DESCRIPTION, MENU, NAME, fits, valid_name
from services.errors import InvalidInput
from services.jobs.notes import timeout_reason
from services.wording import Wording
from storage.models import Job, JobKind, JobState

LANGUAGES = ("ko", "fr", "zh-CN", "ja", "es-ES", "de", "pt-BR")


def fields(text: str) -> set[str]:
    """The placeholders' names; a placeholder the bot cannot fill (``{}``, ``{0}``, a format spec
    or a conversion) is named as itself, so it never matches the source's."""
    found = set()
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        plain = name.isidentifier() and not spec and not conversion
        found.add(name if plain else f"{{{name}!{conversion}:{spec}}}")
    return found


def source() -> dict[tuple[str | None, str], Any]:
    """(context, msgid) -> the source message (a str, or (singular, plural))."""
    found: dict[tuple[str | None, str], Any] = {}
    for message, _where in code_messages():
        key = message[0] if isinstance(message, tuple) else message
        found[(None, key)] = message
    for context, text in translatable_command_strings(app_commands_of_cogs()):
        found[(context, text)] = text
    return found


SOURCE = source()


def test_every_language_of_the_issue_has_a_catalog() -> None:
    assert set(LANGUAGES) <= set(languages()), sorted(languages())


@pytest.mark.parametrize("code", languages())  # every catalog: a new one is checked too
def test_a_catalog_has_every_source_text_translated_with_the_same_placeholders(code: str) -> None:
    catalog = catalogs()[code]
    missing, wrong = [], []
    for (context, msgid), message in SOURCE.items():
        entry = catalog.get(msgid, context=context)
        if entry is None or entry.fuzzy or not entry.string or not all(entry.string):
            missing.append(msgid)
            continue
        expected = fields(message[0] if isinstance(message, tuple) else message)
        if isinstance(message, tuple):
            expected |= fields(message[1])
            forms = entry.string if isinstance(entry.string, tuple) else (entry.string,)
            # like the source's singular, a form may leave the number itself out ("this image")
            named = expected - {"count"}
            if any(fields(form) - {"count"} != named for form in forms):
                wrong.append((msgid, forms))
        elif fields(entry.string) != expected:
            wrong.append((msgid, entry.string))
    assert not missing, f"{code}: {len(missing)} texts untranslated, e.g. {missing[:5]}"
    assert not wrong, f"{code}: placeholders differ from the source: {wrong[:5]}"


@pytest.mark.parametrize("code", languages())  # every catalog: a new one is checked too
def test_localized_command_strings_follow_discords_rules(code: str) -> None:
    catalog = catalogs()[code]
    broken = []
    for message in catalog:
        kind = message.context
        if kind in (NAME, MENU, DESCRIPTION) and message.string and not fits(kind, message.string):
            broken.append((kind, message.id, message.string))
    assert not broken, broken


@pytest.mark.parametrize("code", languages())  # every catalog: a new one is checked too
def test_localized_names_stay_unique_among_siblings(code: str) -> None:
    """Two commands, two subcommands of a group, or two options of a command may not share a
    localized name (Discord refuses the sync)."""
    speech = speech_for(code)

    def names(items: list[Any]) -> list[str]:
        return [speech.pgettext(NAME, i) or i for i in items]

    commands = app_commands_of_cogs()
    slash = [c.name for c in commands if not isinstance(c, app_commands.ContextMenu)]
    groups: list[tuple[str, list[str]]] = [("/", names(slash))]
    pending = list(commands)
    while pending:
        command = pending.pop()
        children = list(getattr(command, "commands", []))
        pending += children
        groups.append((command.name, names([c.name for c in children])))
        params = getattr(command, "parameters", [])
        groups.append((command.name, names([p.display_name for p in params])))
    clashes = [(where, n) for where, n in groups if len(n) != len(set(n))]
    assert not clashes, clashes


def test_the_template_is_up_to_date() -> None:
    """``python -m cogs.catalogs`` was run after the last change to a text."""
    with TEMPLATE.open("rb") as file:
        committed: Catalog = read_po(file)
    fresh = template()
    assert {(m.context, m.id) for m in committed if m.id} == {
        (m.context, m.id) for m in fresh if m.id
    }


def test_discords_naming_rule() -> None:
    assert valid_name("imagine") and valid_name("이미지") and valid_name("生成")
    assert valid_name("générer") and valid_name("max-in-flight")
    assert not valid_name("Imagine") and not valid_name("two words") and not valid_name("")
    assert not valid_name("x" * 33) and not valid_name("a.b")


def test_numbers_plurals_and_durations_follow_the_language() -> None:
    fr, ko = speech_for("fr"), speech_for("ko")
    assert ENGLISH.n("{count} credit", "{count} credits", 1234) == "1,234 credits"
    assert fr.number(1234) == "1\u202f234"
    assert ENGLISH.number(123456789012345678) == "123456789012345678"  # a Discord id
    assert ENGLISH.duration(5400) == "1 hr 30 min"
    assert ko.duration(5400) == "1시간 30분"
    assert fr.listed(["a", "b", "c"]) == "a, b et c"


def test_an_unknown_locale_or_entry_falls_back_to_english(caplog: pytest.LogCaptureFixture) -> None:
    assert speech_for("xx-YY") is ENGLISH and speech_for(None) is ENGLISH
    assert speech_for("zh-TW") is ENGLISH  # another script: not Simplified Chinese
    assert catalog_code("es-419") == "es-ES" and catalog_code("en-GB") is None
    caplog.set_level("DEBUG", logger="cogs.i18n")
    fr = speech_for("fr")
    assert fr("A text no catalog has {x}", x=1) == "A text no catalog has 1"
    fr("A text no catalog has {x}", x=2)
    logged = [r for r in caplog.records if "A text no catalog has" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelname == "DEBUG"


def test_a_stored_sentence_is_read_back_in_the_readers_language() -> None:
    wording = Wording("RunComfy could not make this image ({message}).", {"message": "nsfw"})
    assert Wording.parse(wording.stored()) == wording
    assert Wording.parse("plain old text") == Wording("plain old text")
    french = speech_for("fr").stored(wording.stored())
    assert "nsfw" in french and french != str(wording)


@pytest.mark.parametrize("code", languages())  # every catalog: a new one is checked too
def test_form_texts_fit_discords_limits_in_every_language(code: str) -> None:
    """Form titles and field labels: at most 45 characters; placeholders and menu options 100;
    buttons 80."""
    from cogs import buttons, modlog_buttons

    t = speech_for(code)
    short = [t(modlog_buttons.BAN_TITLE), t(modlog_buttons.BAN_REASON)]
    short += [t(modlog_buttons.BAN_DURATION), t(buttons._PROMPT_LABEL), t("Edit this result")]
    short += [t.n("Edit this image", "Edit these {count} images", n) for n in (1, 20)]
    assert all(len(text) <= 45 for text in short), short
    placeholders = [t(modlog_buttons.BAN_EXAMPLE), t(buttons._PROMPT_PLACEHOLDER)]
    assert all(len(text) <= 100 for text in placeholders), placeholders
    labels = [t(item.label) for item in (*buttons.DYNAMIC_ITEMS, *modlog_buttons.MODLOG_ITEMS)]
    assert all(0 < len(text) <= 80 for text in labels), labels
    # The result actions: the library's forms, a 4-image result's menus (option label and
    # description: 100) and the library's buttons (Favourite, Previous, Next).
    from cogs import image_actions, library, library_pages

    ref = library.ReferenceForm(t, "abc", 0, "ref-1", open_forms=set())
    short = [ref.title, t(library._NAME_LABEL), *(t("Edit image {n}", n=n) for n in range(1, 5))]
    assert all(0 < len(text) <= 45 for text in short), short
    assert len(ref.name.placeholder or "") <= 100
    when = datetime.now(UTC)
    job = Job(
        id="abcdefghij", kind=JobKind.IMAGINE, state=JobState.DELIVERED, user_id=1,
        guild_id=2, channel_id=3, prompt="a cat", params={"num_images": 4}, cost=4,
        created_at=when, updated_at=when, result_urls=tuple(f"https://x/{n}.png" for n in range(4)),
    )  # fmt: skip
    extras = image_actions.result_extras(t, job, lambda _: 9999)
    menus = [i for i in extras if isinstance(i, image_actions.ImageActions)]
    assert len(menus) == 4
    for menu in menus:
        options = menu.item.options  # type: ignore[attr-defined]
        texts = [o.label for o in options] + [o.description or "" for o in options]
        assert all(len(text) <= 100 for text in texts), texts
        assert len(menu.item.placeholder or "") <= 150  # type: ignore[attr-defined]
    buttons = [t(library.FavouriteButton.label)]
    buttons += [
        library_pages.PageButton(w, "h", 0, 1, 0, t=t).item.label or "" for w in ("prev", "next")
    ]
    assert all(0 < len(text) <= 80 for text in buttons), buttons


def test_a_placeholder_the_bot_cannot_fill_is_caught() -> None:
    assert fields("{count} credits") == {"count"}
    assert fields("{count:d} crédits") != {"count"} and fields("{} x") != set()
    assert fields("{count!r}") != {"count"}


def test_a_translation_that_does_not_fit_falls_back_to_english(
    caplog: pytest.LogCaptureFixture,
) -> None:
    catalog = Catalog(locale="fr")
    catalog.add("{n} left", string="il en reste {n:d}")  # a slip: the bot passes "1,234"
    speech = Speech("fr", catalog)
    assert speech("{n} left", n=1234) == "1\u202f234 left"
    assert "does not fit its values" in caplog.text


def test_durations_in_stored_reasons_are_written_in_the_readers_words() -> None:
    reason = timeout_reason(600, cancelled=False)
    english, french = speech_for(None).wording(reason), speech_for("fr").wording(reason)
    assert "within 10 min," in english
    assert "10\xa0min" in french and "600" not in french  # CLDR's French: a no-break space
    assert "10분" in speech_for("ko").wording(reason)


def test_refusals_name_options_as_the_members_client_shows_them() -> None:
    from cogs.payload import _MUST_BE
    from cogs.tree import message_for

    error = InvalidInput("count", _MUST_BE[AppCommandOptionType.integer], option="count")
    assert "`count`" in message_for(ENGLISH, error)
    french = message_for(speech_for("fr"), error)
    assert f"`{speech_for('fr').pgettext(NAME, 'count')}`" in french and "`count`" not in french
