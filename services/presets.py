"""Members' saved defaults, servers' named styles and the private-results switch.

``JobDefaults`` is what a member chose for one /imagine or /edit (None: omitted); ``spec`` fills
each omitted option from the member's preset, then the built-in default, and adds the style's
text and the preset's suffix to the prompt ("prompt, style, suffix"). An option the member gives
always wins. The blocklist is checked later on the final prompt, with everything in it.

Decisions: a preset's safety above the server's ceiling is lowered to the ceiling (a default is
not an insistence; an explicit safety above it is refused as before). Presets follow the member
across servers; styles belong to one server.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from client.models import MAX_IMAGES
from services.errors import InvalidInput, NotAllowed
from services.jobs import JobSpec
from services.policy import PolicyService
from services.wording import UserText
from storage import Storage
from storage.models import JobKind
from storage.presets import GuildStyle, StyleLimitError

MAX_STYLES = 25
MAX_STYLE_NAME = 32
MAX_STYLE_TEXT = 500
MAX_SUFFIX = 200
ASPECT_RATIOS = frozenset(
    {"auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"}
)
RESOLUTIONS = frozenset({"0.5K", "1K", "2K", "4K"})
FORMATS = frozenset({"png", "jpeg", "webp"})
# Markdown and mention characters, backslash-escaped where a member's text is echoed.


@dataclass(frozen=True, slots=True)
class Preset:
    """A member's defaults; None: not set (the built-in default applies)."""

    aspect_ratio: str | None = None
    resolution: str | None = None
    count: int | None = None
    format: str | None = None
    safety: int | None = None
    suffix: str | None = None

    @property
    def empty(self) -> bool:
        return self == Preset()

    @classmethod
    def of(cls, stored: dict[str, Any]) -> Preset:
        """From the stored JSON; a value that is no longer valid is dropped, not fatal."""
        known = {f.name for f in dataclasses.fields(cls)}
        preset = cls()
        for name, value in stored.items():
            if name in known and value is not None:
                try:
                    preset = _checked(preset, name, value)
                except InvalidInput:
                    continue
        return preset

    def stored(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class JobDefaults:
    """What the member gave for one job (None: omitted)."""

    aspect_ratio: str | None = None
    resolution: str | None = None
    count: int | None = None
    format: str | None = None
    safety: int | None = None


def _checked(preset: Preset, name: str, value: Any) -> Preset:
    """``preset`` with ``name`` set to ``value``, checked (InvalidInput)."""
    ok = {
        "aspect_ratio": lambda v: v in ASPECT_RATIOS,
        "resolution": lambda v: v in RESOLUTIONS,
        "format": lambda v: v in FORMATS,
        "count": lambda v: type(v) is int and 1 <= v <= MAX_IMAGES,
        "safety": lambda v: type(v) is int and 1 <= v <= 6,
        "suffix": lambda v: isinstance(v, str) and 0 < len(v.strip()) <= MAX_SUFFIX,
    }[name]
    if not ok(value):
        raise InvalidInput(name, "That value can't be saved as a default.")
    if name == "suffix":
        value = value.strip()
    return dataclasses.replace(preset, **{name: value})


def joined_prompt(prompt: str, *extras: str | None) -> str:
    """``prompt, extra, ...``: the style and the suffix after the member's own words."""
    parts = [prompt.strip(), *(e.strip() for e in extras if e and e.strip())]
    return ", ".join(p for p in parts if p)


class PresetService:
    def __init__(self, storage: Storage, policy: PolicyService) -> None:
        self._storage = storage
        self._policy = policy

    # -- member presets ---------------------------------------------------------------------

    async def preset(self, user_id: int) -> Preset:
        return Preset.of(await self._storage.presets.get(user_id))

    async def update(self, user_id: int, **changes: Any) -> Preset:
        """Set the given defaults (None values: left as they are); returns the whole preset."""
        preset = await self.preset(user_id)
        for name, value in changes.items():
            if value is not None:
                preset = _checked(preset, name, value)
        await self._storage.presets.put(user_id, preset.stored())
        return preset

    async def clear(self, user_id: int) -> None:
        await self._storage.presets.put(user_id, {})

    async def spec(
        self,
        kind: JobKind,
        prompt: str,
        given: JobDefaults,
        *,
        user_id: int,
        guild_id: int | None,
        age_restricted: bool,
        seed: int | None = None,
        web_search: bool = False,
        image_urls: tuple[str, ...] = (),
        style: str | None = None,
        private: bool = False,
    ) -> JobSpec:
        """The spec for one /imagine or /edit: options, then the preset, then the defaults."""
        preset = await self.preset(user_id)
        style_text = None
        if style is not None and style.strip():
            if guild_id is None:
                raise NotAllowed("style", "Server styles can only be used in a server.")
            style_text = (await self.style(guild_id, style)).text
        safety = given.safety
        if safety is None and preset.safety is not None:
            safety = min(preset.safety, await self._ceiling(guild_id, age_restricted))
        return JobSpec(
            kind=kind,
            prompt=joined_prompt(prompt, style_text, preset.suffix),
            image_urls=image_urls,
            num_images=_first(given.count, preset.count, 1),
            seed=seed,
            aspect_ratio=_first(given.aspect_ratio, preset.aspect_ratio, "auto"),
            resolution=_first(given.resolution, preset.resolution, "1K"),
            output_format=_first(given.format, preset.format, "png"),
            safety=safety,  # None: not chosen, so the server's ceiling may clamp it
            web_search=web_search,
            private=private,
        )

    async def _ceiling(self, guild_id: int | None, age_restricted: bool) -> int:
        if guild_id is None:
            return 6  # DMs: the operator's DM policy decides (a higher value is refused there)
        policy = await self._policy.policy(guild_id)
        return policy.max_safety_age_restricted if age_restricted else policy.max_safety

    # -- server styles ----------------------------------------------------------------------

    async def styles(self, guild_id: int) -> list[GuildStyle]:
        return await self._storage.styles.list(guild_id)

    async def style(self, guild_id: int, name: str) -> GuildStyle:
        found = await self._storage.styles.get(guild_id, name.strip())
        if found is None:
            raise InvalidInput(
                "style", "This server has no style named “{name}”.", name=_typed(name)
            )
        return found

    async def add_style(
        self, guild_id: int, name: str, text: str, *, added_by: int
    ) -> tuple[GuildStyle, bool]:
        """Add (or replace the text of) a style; (the style, whether it replaced one)."""
        name, text = name.strip(), text.strip()
        if not 1 <= len(name) <= MAX_STYLE_NAME:
            raise InvalidInput(
                "name", "A style name is 1 to {limit} characters.", limit=MAX_STYLE_NAME
            )
        if not 1 <= len(text) <= MAX_STYLE_TEXT:
            raise InvalidInput(
                "text", "A style's text is 1 to {limit} characters.", limit=MAX_STYLE_TEXT
            )
        try:
            return await self._storage.styles.put(
                guild_id, name, text, added_by=added_by, limit=MAX_STYLES
            )
        except StyleLimitError:
            raise NotAllowed(
                "style",
                "This server already has {limit} styles; remove one first.",
                limit=MAX_STYLES,
            ) from None

    async def remove_style(self, guild_id: int, name: str) -> GuildStyle:
        removed = await self._storage.styles.remove(guild_id, name.strip())
        if removed is None:
            raise InvalidInput(
                "style", "This server has no style named “{name}”.", name=_typed(name)
            )
        return removed

    # -- private results --------------------------------------------------------------------

    async def check_private(self, guild_id: int | None) -> None:
        """A private result is allowed here (DMs are private already); else NotAllowed."""
        if guild_id is None:
            return
        if not (await self._policy.policy(guild_id)).private_results:
            raise NotAllowed(
                "private",
                "This server doesn't allow private results; nothing was charged."
                " Ask without the private option.",
            )

    async def set_private(self, guild_id: int, enabled: bool) -> None:
        await self._storage.policy.update(guild_id, private_results=enabled)
        self._policy.invalidate(guild_id)


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _typed(name: str) -> UserText:
    """A name the member typed, echoed in a refusal: clipped; the cogs show it as typed."""
    return UserText(name.strip()[:64])
