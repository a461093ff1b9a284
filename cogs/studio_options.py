"""The options /imagine and /edit share (choices, descriptions, the server-style autocomplete) and
the spec a command asks for, with the member's presets filling what they left out.

Every preset-able option defaults to None in the signatures, so an omitted option is visible and
the preset (then the built-in default) applies; an option the member gives always wins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from client.models import MAX_IMAGES, MAX_PROMPT_LENGTH, MAX_SEED
from cogs.inputs import requester, studio
from services.jobs import JobSpec
from services.presets import MAX_STYLE_NAME, JobDefaults
from storage.models import JobKind

F = TypeVar("F", bound=Callable[..., Any])

ASPECT_RATIO_CHOICES = [
    Choice(name="auto (the model decides)", value="auto"),
    Choice(name="21:9 (ultrawide)", value="21:9"),
    Choice(name="16:9 (widescreen)", value="16:9"),
    Choice(name="3:2 (photo)", value="3:2"),
    Choice(name="4:3", value="4:3"),
    Choice(name="5:4", value="5:4"),
    Choice(name="1:1 (square)", value="1:1"),
    Choice(name="4:5 (portrait post)", value="4:5"),
    Choice(name="3:4", value="3:4"),
    Choice(name="2:3 (portrait photo)", value="2:3"),
    Choice(name="9:16 (phone screen)", value="9:16"),
]
RESOLUTION_CHOICES = [
    Choice(name="0.5K (draft)", value="0.5K"),
    Choice(name="1K (default)", value="1K"),
    Choice(name="2K", value="2K"),
    Choice(name="4K", value="4K"),
]
FORMAT_CHOICES = [
    Choice(name="PNG (default)", value="png"),
    Choice(name="JPEG", value="jpeg"),
    Choice(name="WebP", value="webp"),
]
SAFETY_CHOICES = [
    Choice(name="1 (strictest)", value=1),
    Choice(name="2", value=2),
    Choice(name="3", value=3),
    Choice(name="4 (default)", value=4),
    Choice(name="5", value=5),
    Choice(name="6 (most permissive)", value=6),
]
OPTION_DESCRIPTIONS = {
    "aspect_ratio": "Shape of the image (default: yours from /settings, else auto)",
    "resolution": "Image size; larger sizes cost more credits (default: yours, else 1K)",
    "count": f"How many images, 1-{MAX_IMAGES} (default: yours, else 1); each costs credits",
    "seed": "Seed for repeatable results (default: random)",
    "format": "File format of the images (default: yours, else PNG)",
    "safety": "Content filter, 1 strictest to 6 most permissive (capped by the server)",
    "web_search": "Let the model look things up on the web first (default: off)",
    "style": "One of this server's styles, added to your prompt",
    "private": "Only you see the status and the result (where the server allows it)",
}

Prompt = Range[str, 1, MAX_PROMPT_LENGTH]
Count = Range[int, 1, MAX_IMAGES]
Seed = Range[int, 0, MAX_SEED]
StyleName = Range[str, 1, MAX_STYLE_NAME]


async def style_autocomplete(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    """This server's styles whose name contains what is typed (at most 25, Discord's limit)."""
    if interaction.guild_id is None:
        return []
    styles = await studio(interaction).presets.styles(interaction.guild_id)
    typed = current.strip().casefold()
    return [Choice(name=s.name, value=s.name) for s in styles if typed in s.name.casefold()][:25]


def generation_options(func: F) -> F:
    """The options /imagine and /edit share: descriptions, choices, the style autocomplete."""
    func = app_commands.describe(**OPTION_DESCRIPTIONS)(func)
    func = app_commands.autocomplete(style=style_autocomplete)(func)
    return app_commands.choices(
        aspect_ratio=ASPECT_RATIO_CHOICES,
        resolution=RESOLUTION_CHOICES,
        format=FORMAT_CHOICES,
        safety=SAFETY_CHOICES,
    )(func)


def _value(choice: Choice[Any] | None) -> Any:
    return None if choice is None else choice.value


def given_of(
    aspect_ratio: Choice[str] | None,
    resolution: Choice[str] | None,
    count: int | None,
    format: Choice[str] | None,
    safety: Choice[int] | None,
) -> JobDefaults:
    """What the member typed (None: omitted, so the preset or the default applies)."""
    return JobDefaults(
        aspect_ratio=_value(aspect_ratio),
        resolution=_value(resolution),
        count=count,
        format=_value(format),
        safety=_value(safety),
    )


async def spec_for(
    interaction: discord.Interaction,
    kind: JobKind,
    prompt: str,
    given: JobDefaults,
    *,
    seed: int | None,
    web_search: bool,
    style: str | None,
    private: bool,
    image_urls: tuple[str, ...] = (),
) -> JobSpec:
    """The spec /imagine and /edit ask for: options, then the member's preset, then defaults."""
    who = requester(interaction)
    return await studio(interaction).presets.spec(
        kind,
        prompt,
        given,
        user_id=who.user_id,
        guild_id=who.guild_id,
        age_restricted=who.age_restricted_channel,
        seed=seed,
        web_search=web_search,
        image_urls=image_urls,
        style=style,
        private=private,
    )
