"""/quota's extra lines: the server's and the bot's daily caps, and what a default job costs.

A cap is shown whenever one is set (with what it leaves today), not only when it is below the
member's own credits: a member can see the shared pot before it runs out. The default job is
the member's /settings preset over the built-in defaults, so the price is the one they will pay
for a plain /imagine.
"""

from __future__ import annotations

from cogs.i18n import Speech
from cogs.render import binding_caps
from services.jobs import JobSpec
from services.presets import Preset
from storage.models import Balance, JobKind


def cap_lines(t: Speech, balance: Balance) -> list[str]:
    """One line per daily cap that is set: the binding ones as before (render.binding_caps),
    the others with what they leave today."""
    lines = binding_caps(t, balance)
    server, bot = balance.guild_cap_remaining, balance.global_cap_remaining
    if server is not None and server >= balance.remaining:
        lines.append(
            t.n(
                "This server's daily cap: {count} credit left today.",
                "This server's daily cap: {count} credits left today.",
                server,
            )
        )
    if bot is not None and bot >= balance.remaining:
        lines.append(
            t.n(
                "The bot's daily cap: {count} credit left today.",
                "The bot's daily cap: {count} credits left today.",
                bot,
            )
        )
    return lines


def default_spec(preset: Preset) -> JobSpec:
    """A plain /imagine by this member: their preset's size and count, else the defaults."""
    return JobSpec(
        kind=JobKind.IMAGINE,
        prompt="",
        num_images=preset.count or 1,
        resolution=preset.resolution or "1K",
    )


def default_cost_line(t: Speech, cost: int, preset: Preset) -> str:
    spec = default_spec(preset)
    return t.n(
        "A default job ({resolution} × {images}) costs **{count}** credit.",
        "A default job ({resolution} × {images}) costs **{count}** credits.",
        cost,
        resolution=spec.resolution,
        images=spec.num_images,
    )
