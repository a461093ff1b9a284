"""Which interactions discord.py routes to our code, so every other one can be answered.

A discord.py modal lives in memory until it is submitted or times out: ``StudioModal`` keeps
its custom_id in the bot's ``open_forms`` for exactly that long. A button reaches a
``DynamicItem`` only when its custom_id matches the item's template and the clicked message
carries that component: ``Routed`` records each item's template for ``routed`` to check.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import discord

FORM_TIMEOUT = 15 * 60  # as long as the interaction token that opened it


class StudioModal(discord.ui.Modal):
    def __init__(self, *, title: str, prefix: str, open_forms: set[str]) -> None:
        custom_id = f"{prefix}{secrets.token_hex(8)}"
        super().__init__(title=title, timeout=FORM_TIMEOUT, custom_id=custom_id)
        self._open_forms = open_forms
        open_forms.add(custom_id)

    def stop(self) -> None:
        # discord.py forgets the form here (after a handled submit): so do we
        self._open_forms.discard(self.custom_id)
        super().stop()

    async def on_timeout(self) -> None:
        self._open_forms.discard(self.custom_id)


class Routed:
    """Mixin for our ``DynamicItem`` bases: remembers the template each button class has."""

    pattern: ClassVar[re.Pattern[str]]

    def __init_subclass__(cls, *, template: str, **kwargs: Any) -> None:
        super().__init_subclass__(template=template, **kwargs)  # type: ignore[call-arg]
        cls.pattern = re.compile(template)


def routed(
    interaction: discord.Interaction, items: Iterable[type[Routed]], open_forms: set[str]
) -> bool:
    """Whether discord.py hands this component or form interaction to one of ours."""
    data: dict[str, Any] = dict(interaction.data or {})
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str):
        return False
    if interaction.type is discord.InteractionType.modal_submit:
        return custom_id in open_forms
    message = interaction.message
    if message is None or not any(item.pattern.fullmatch(custom_id) for item in items):
        return False
    kind = data.get("component_type")
    return any(
        getattr(c, "custom_id", None) == custom_id and c.type.value == kind
        for c in _walk(message.components)
    )


def _walk(components: Iterable[Any]) -> Iterator[Any]:
    for component in components:
        yield component
        yield from _walk(getattr(component, "children", ()))
