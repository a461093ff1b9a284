"""Discord's documented payload limits, as pure checks for the fake Discord.

Each public check takes a JSON payload the bot sent and returns the first :class:`Problem` Discord
would report (the field's path, an error code and message, as in the ``errors`` object of a
``400 50035 Invalid Form Body``), or None when Discord would accept the payload.
:mod:`tests.fakes.discord_rest` turns a problem into the HTTP answer.

Covered: messages (content, embeds, components; used for channel messages, DMs, interaction
responses and webhooks), modals (callback type 9), autocomplete choices (callback type 8) and
application commands (bulk overwrite, create, edit).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Path = tuple[str | int, ...]

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_EMBED_FIELD_NAME = 256
MAX_EMBED_FIELD_VALUE = 1024
MAX_EMBED_FOOTER = 2048
MAX_EMBED_AUTHOR = 256
MAX_EMBED_TOTAL = 6000
MAX_ACTION_ROWS = 5
MAX_ROW_ITEMS = 5
MAX_BUTTON_LABEL = 80
MAX_URL = 512
MAX_CUSTOM_ID = 100
MAX_SELECT_OPTIONS = 25
MAX_OPTION_TEXT = 100  # select option label, value and description
MAX_SELECT_PLACEHOLDER = 150
MAX_SELECT_VALUES = 25
MAX_MODAL_TITLE = 45
MAX_MODAL_COMPONENTS = 5
MAX_INPUT_LABEL = 45  # text input label, and Label component label
MAX_LABEL_DESCRIPTION = 100
MAX_INPUT_PLACEHOLDER = 100
MAX_INPUT_LENGTH = 4000  # text input value, min_length and max_length
MAX_CHOICES = 25
MAX_CHOICE_NAME = 100
MAX_CHOICE_VALUE = 100
MAX_COMMAND_NAME = 32
MAX_COMMAND_DESCRIPTION = 100
MAX_COMMAND_OPTIONS = 25

BUTTON = 2
STRING_SELECT = 3
TEXT_INPUT = 4
SELECT_TYPES = frozenset({3, 5, 6, 7, 8})
ACTION_ROW = 1
LABEL = 18
LINK_STYLE = 5
PREMIUM_STYLE = 6
CHAT_INPUT = 1
SUB_COMMAND_TYPES = frozenset({1, 2})

#: Approximates ``^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$`` (``\w`` is Unicode-aware).
_NAME = re.compile(r"[-_'\w]{1,32}")


@dataclass(frozen=True)
class Problem:
    """One refused field: where it is, Discord's error code and message."""

    path: Path
    code: str
    message: str

    def under(self, *prefix: str | int) -> Problem:
        """The same problem inside an enclosing object (e.g. ``"data"`` of a callback)."""
        return Problem((*prefix, *self.path), self.code, self.message)

    def errors(self) -> dict[str, Any]:
        """Discord's nested ``errors`` object: ``{"data": {"title": {"_errors": [...]}}}``."""
        node: dict[str, Any] = {"_errors": [{"code": self.code, "message": self.message}]}
        for key in reversed(self.path):
            node = {str(key): node}
        return node


Problems = Iterator[Problem]


# -- generic checks --------------------------------------------------------------------------


def _length(value: Any, path: Path, most: int, least: int = 0) -> Problems:
    """A string's (or list's) length within [least, most]; None is not checked here."""
    if value is None:
        return
    size = len(value) if isinstance(value, list | tuple) else len(str(value))
    if least <= size <= most:
        return
    if least:
        message = f"Must be between {least} and {most} in length."
        yield Problem(path, "BASE_TYPE_BAD_LENGTH", message)
    else:
        yield Problem(path, "BASE_TYPE_MAX_LENGTH", f"Must be {most} or fewer in length.")


def _required(obj: Mapping[str, Any], key: str, path: Path) -> Problems:
    if obj.get(key) is None:
        yield Problem((*path, key), "BASE_TYPE_REQUIRED", "This field is required")


def _text(
    obj: Mapping[str, Any], key: str, path: Path, most: int, least: int = 0, required: bool = False
) -> Problems:
    """``obj[key]``: present if ``required``, and its length within bounds when present."""
    if required:
        yield from _required(obj, key, path)
    yield from _length(obj.get(key), (*path, key), most, least)


def _number(obj: Mapping[str, Any], key: str, path: Path, least: int, most: int) -> Problems:
    value = obj.get(key)
    if value is None:
        return
    if value < least:
        message = f"int value should be greater than or equal to {least}."
        yield Problem((*path, key), "NUMBER_TYPE_MIN", message)
    elif value > most:
        message = f"int value should be less than or equal to {most}."
        yield Problem((*path, key), "NUMBER_TYPE_MAX", message)


def _first(problems: Problems) -> Problem | None:
    return next(problems, None)


# -- messages ------------------------------------------------------------------------------


def message_problem(body: Mapping[str, Any], *, components_v2: bool = False) -> Problem | None:
    """Content, embeds and components of a create/edit message body (files are not checked)."""
    return _first(_message_problems(body, components_v2))


def _message_problems(body: Mapping[str, Any], v2: bool) -> Problems:
    yield from _text(body, "content", (), MAX_CONTENT)
    embeds = body.get("embeds") or []
    yield from _length(embeds, ("embeds",), MAX_EMBEDS)
    total = 0
    for n, embed in enumerate(embeds):
        yield from _embed_problems(embed, ("embeds", n))
        total += _embed_size(embed)
    if total > MAX_EMBED_TOTAL:
        message = f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}"
        yield Problem(("embeds",), "MAX_EMBED_SIZE_EXCEEDED", message)
    yield from _components_problems(body.get("components") or [], ("components",), v2)


def _embed_problems(embed: Mapping[str, Any], path: Path) -> Problems:
    yield from _text(embed, "title", path, MAX_EMBED_TITLE)
    yield from _text(embed, "description", path, MAX_EMBED_DESCRIPTION)
    fields = embed.get("fields") or []
    yield from _length(fields, (*path, "fields"), MAX_EMBED_FIELDS)
    for n, item in enumerate(fields):
        where = (*path, "fields", n)
        yield from _text(item, "name", where, MAX_EMBED_FIELD_NAME, 1, required=True)
        yield from _text(item, "value", where, MAX_EMBED_FIELD_VALUE, 1, required=True)
    if embed.get("footer"):
        yield from _text(embed["footer"], "text", (*path, "footer"), MAX_EMBED_FOOTER)
    if embed.get("author"):
        yield from _text(embed["author"], "name", (*path, "author"), MAX_EMBED_AUTHOR)


def _embed_size(embed: Mapping[str, Any]) -> int:
    """Characters Discord counts towards the 6,000 of a message's embeds."""
    texts = [embed.get("title"), embed.get("description")]
    for item in embed.get("fields") or []:
        texts += [item.get("name"), item.get("value")]
    texts.append((embed.get("footer") or {}).get("text"))
    texts.append((embed.get("author") or {}).get("name"))
    return sum(len(str(t)) for t in texts if t is not None)


# -- components ----------------------------------------------------------------------------


def _walk(components: Sequence[Mapping[str, Any]], path: Path) -> Iterator[tuple[Any, Path]]:
    """Every component with its path, depth first (rows, containers, labels, accessories)."""
    for n, comp in enumerate(components):
        where = (*path, n)
        yield comp, where
        yield from _walk(comp.get("components") or [], (*where, "components"))
        for key in ("component", "accessory"):
            child = comp.get(key)
            if isinstance(child, Mapping):
                yield child, (*where, key)
                yield from _walk(child.get("components") or [], (*where, key, "components"))


def _components_problems(components: Sequence[Any], path: Path, v2: bool) -> Problems:
    if not components:
        return
    if not v2:
        yield from _length(list(components), path, MAX_ACTION_ROWS)
    seen: set[str] = set()
    for comp, where in _walk(components, path):
        if comp.get("type") == ACTION_ROW:
            yield from _row_problems(comp, where)
        yield from _item_problems(comp, where)
        custom_id = comp.get("custom_id")
        if custom_id is not None:
            if custom_id in seen:
                message = "Component custom id cannot be duplicated"
                yield Problem((*where, "custom_id"), "COMPONENT_CUSTOM_ID_DUPLICATED", message)
            seen.add(custom_id)


def _row_problems(row: Mapping[str, Any], path: Path) -> Problems:
    children = row.get("components") or []
    yield from _length(list(children), (*path, "components"), MAX_ROW_ITEMS, 1)
    if len(children) > 1 and any(c.get("type") in SELECT_TYPES for c in children):
        message = "The specified component exceeds the maximum width"
        yield Problem((*path, "components"), "COMPONENT_LAYOUT_WIDTH_EXCEEDED", message)


def _item_problems(comp: Mapping[str, Any], path: Path) -> Problems:
    ctype = comp.get("type")
    yield from _text(comp, "custom_id", path, MAX_CUSTOM_ID, 1)
    if ctype == BUTTON:
        yield from _text(comp, "label", path, MAX_BUTTON_LABEL)
        style = comp.get("style")
        if style == LINK_STYLE:
            yield from _text(comp, "url", path, MAX_URL, 1, required=True)
        elif style != PREMIUM_STYLE:
            yield from _required(comp, "custom_id", path)
    elif ctype in SELECT_TYPES:
        yield from _select_problems(comp, path)
    elif ctype == TEXT_INPUT:
        yield from _required(comp, "custom_id", path)
        yield from _text(comp, "label", path, MAX_INPUT_LABEL, 1)
        yield from _text(comp, "placeholder", path, MAX_INPUT_PLACEHOLDER)
        yield from _text(comp, "value", path, MAX_INPUT_LENGTH)
        yield from _number(comp, "min_length", path, 0, MAX_INPUT_LENGTH)
        yield from _number(comp, "max_length", path, 1, MAX_INPUT_LENGTH)
        low, high = comp.get("min_length"), comp.get("max_length")
        if low is not None and high is not None and low > high:
            message = "min_length must be less than or equal to max_length"
            yield Problem((*path, "min_length"), "TEXT_INPUT_MIN_LENGTH_EXCEEDS_MAX", message)
    elif ctype == LABEL:
        yield from _text(comp, "label", path, MAX_INPUT_LABEL, 1, required=True)
        yield from _text(comp, "description", path, MAX_LABEL_DESCRIPTION)


def _select_problems(comp: Mapping[str, Any], path: Path) -> Problems:
    yield from _required(comp, "custom_id", path)
    yield from _text(comp, "placeholder", path, MAX_SELECT_PLACEHOLDER)
    yield from _number(comp, "min_values", path, 0, MAX_SELECT_VALUES)
    yield from _number(comp, "max_values", path, 1, MAX_SELECT_VALUES)
    low, high = comp.get("min_values", 1), comp.get("max_values", 1)
    if low > high:
        message = "min_values must be less than or equal to max_values"
        yield Problem((*path, "min_values"), "SELECT_COMPONENT_MIN_VALUES_EXCEEDS_MAX", message)
    if comp.get("type") != STRING_SELECT:
        return
    options = comp.get("options") or []
    yield from _length(list(options), (*path, "options"), MAX_SELECT_OPTIONS, 1)
    for n, option in enumerate(options):
        where = (*path, "options", n)
        yield from _text(option, "label", where, MAX_OPTION_TEXT, 1, required=True)
        yield from _text(option, "value", where, MAX_OPTION_TEXT, 1, required=True)
        yield from _text(option, "description", where, MAX_OPTION_TEXT)
    if high > len(options):
        message = "max_values must be less than or equal to the number of options"
        yield Problem((*path, "max_values"), "SELECT_COMPONENT_MAX_VALUES_EXCEEDS_OPTIONS", message)


# -- interaction callbacks -----------------------------------------------------------------


def modal_problem(data: Mapping[str, Any]) -> Problem | None:
    """The ``data`` of a modal callback (type 9); paths are relative to ``data``."""
    return _first(_modal_problems(data))


def _modal_problems(data: Mapping[str, Any]) -> Problems:
    yield from _text(data, "title", (), MAX_MODAL_TITLE, 1, required=True)
    yield from _text(data, "custom_id", (), MAX_CUSTOM_ID, 1, required=True)
    yield from _required(data, "components", ())
    components = data.get("components") or []
    yield from _length(list(components), ("components",), MAX_MODAL_COMPONENTS, 1)
    for n, top in enumerate(components):
        if top.get("type") != ACTION_ROW:
            continue
        for m, child in enumerate(top.get("components") or []):
            if child.get("type") == TEXT_INPUT:  # outside a Label, the input carries the label
                yield from _required(child, "label", ("components", n, "components", m))
    yield from _components_problems(components, ("components",), v2=True)


def autocomplete_problem(data: Mapping[str, Any]) -> Problem | None:
    """The ``data`` of an autocomplete callback (type 8); paths are relative to ``data``."""
    return _first(_choices_problems(data.get("choices") or [], ("choices",)))


def _choices_problems(choices: Sequence[Any], path: Path) -> Problems:
    yield from _length(list(choices), path, MAX_CHOICES)
    for n, choice in enumerate(choices):
        where = (*path, n)
        yield from _text(choice, "name", where, MAX_CHOICE_NAME, 1, required=True)
        yield from _localizations(choice, "name_localizations", where, MAX_CHOICE_NAME)
        if isinstance(choice.get("value"), str):
            yield from _text(choice, "value", where, MAX_CHOICE_VALUE)


# -- application commands ------------------------------------------------------------------


def commands_problem(specs: Sequence[Any]) -> Problem | None:
    """A bulk overwrite (PUT) body: every command's problems, paths start at its index."""
    for n, spec in enumerate(specs):
        problem = command_problem(spec)
        if problem is not None:
            return problem.under(n)
    return None


def command_problem(
    spec: Mapping[str, Any], *, partial: bool = False, command_type: int | None = None
) -> Problem | None:
    """A command definition (create), or a partial one (``partial=True``: PATCH, where absent
    fields are kept and ``command_type`` is the stored command's type)."""
    ctype = int(spec.get("type") or command_type or CHAT_INPUT)
    return _first(_command_problems(spec, ctype, partial))


def _command_problems(spec: Mapping[str, Any], ctype: int, partial: bool) -> Problems:
    chat = ctype == CHAT_INPUT
    if not partial or "name" in spec:
        yield from _name_problems(spec.get("name"), ("name",), chat)
    for locale, name in (spec.get("name_localizations") or {}).items():
        yield from _name_problems(name, ("name_localizations", locale), chat)
    if chat:
        required = not partial or "description" in spec
        yield from _text(spec, "description", (), MAX_COMMAND_DESCRIPTION, 1, required=required)
        yield from _localizations(spec, "description_localizations", (), MAX_COMMAND_DESCRIPTION)
        yield from _options_problems(spec.get("options") or [], ("options",))


def _name_problems(name: Any, path: Path, chat_input: bool) -> Problems:
    if name is None:
        yield Problem(path, "BASE_TYPE_REQUIRED", "This field is required")
        return
    yield from _length(str(name), path, MAX_COMMAND_NAME, 1)
    if chat_input and not _NAME.fullmatch(str(name)):
        yield Problem(path, "STRING_TYPE_REGEX", "String value did not match validation regex.")
    if chat_input and str(name) != str(name).lower():
        yield Problem(path, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _localizations(obj: Mapping[str, Any], key: str, path: Path, most: int) -> Problems:
    for locale, text in (obj.get(key) or {}).items():
        yield from _length(text, (*path, key, locale), most, 1)


def _options_problems(options: Sequence[Any], path: Path) -> Problems:
    yield from _length(list(options), path, MAX_COMMAND_OPTIONS)
    for n, option in enumerate(options):
        where = (*path, n)
        yield from _name_problems(option.get("name"), (*where, "name"), chat_input=True)
        for locale, name in (option.get("name_localizations") or {}).items():
            yield from _name_problems(name, (*where, "name_localizations", locale), True)
        yield from _text(option, "description", where, MAX_COMMAND_DESCRIPTION, 1, required=True)
        yield from _localizations(option, "description_localizations", where, 100)
        yield from _choices_problems(option.get("choices") or [], (*where, "choices"))
        if option.get("type") in SUB_COMMAND_TYPES:
            yield from _options_problems(option.get("options") or [], (*where, "options"))
