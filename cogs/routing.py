"""Which interactions discord.py routes to our code, so every other one can be answered.

A discord.py modal lives in memory until it is submitted or times out: ``StudioModal`` keeps
its custom_id in the bot's ``open_forms`` for exactly that long. A button reaches a
``DynamicItem`` only when its custom_id matches the item's template and the clicked message
carries that component: ``Routed`` records each item's template for ``routed`` to check.
``StudioButton`` is the one base of those buttons (a job's, and the moderators' log's).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Self

import discord

from cogs.answers import guarded
from cogs.i18n import ENGLISH, Speech

log = logging.getLogger(__name__)

FORM_TIMEOUT = 15 * 60  # as long as the interaction token that opened it
JOB_ID = r"(?P<target>[A-Za-z0-9_-]{1,64})"  # a button's target: a job
USER_ID = r"(?P<target>[0-9]{1,20})"  # a button's target: a member


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


# The bases' templates only satisfy DynamicItem: bases are never registered or sent.
class StudioButton(Routed, discord.ui.DynamicItem[discord.ui.Button], template=r"_:_:" + JOB_ID):
    """A button whose custom_id is ``<prefix>:<action>:<target>``, so it works on any message,
    after any restart, once its class is registered. A click runs ``run`` through ``guarded``:
    any error goes to the tree's one handler. Subclasses say what they look like and do."""

    prefix: ClassVar[str] = "_"
    subject: ClassVar[str] = "button"  # what the target is, for the log line
    action: ClassVar[str] = "_"
    label: ClassVar[str] = ""  # English, marked with N_: shown in the reader's language
    style: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.secondary
    emoji: ClassVar[str | None] = None

    def __init__(self, target: str, *, disabled: bool = False, t: Speech = ENGLISH) -> None:
        super().__init__(
            discord.ui.Button(
                label=t(self.label) if self.label else self.label,
                style=self.style,
                emoji=self.emoji,
                disabled=disabled,
                custom_id=f"{self.prefix}:{self.action}:{target}",
            )
        )
        self.target = target

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match["target"])

    async def callback(self, interaction: discord.Interaction) -> None:
        log.info(
            "%s %s: %s clicked by user %s",
            self.subject,
            self.target,
            self.action,
            interaction.user.id,
        )
        await guarded(interaction, self.run, job_id=self.target)

    async def run(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError


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
