"""What a job looks like in Discord: status lines, the result embed, outcome lines.

Pure functions of the job (no I/O). Every piece of user text goes through ``escaped``; the
messages are sent with no allowed mentions anyway, so a prompt saying ``@everyone`` pings nobody.
``NO_MENTIONS`` is the cogs' one allowed-mentions setting for that; the small text helpers below
(durations, lists of tags) are shared by the other renderers.
"""

from __future__ import annotations

from collections.abc import Sequence

import discord
from discord.utils import format_dt

from services.imagefit import FittedImage
from services.jobs import JobRequest, Progress
from storage.models import Balance, Job, JobKind, JobState

NO_MENTIONS = discord.AllowedMentions.none()  # every answer and post of the cogs pings nobody
COLOUR = discord.Colour.from_rgb(250, 204, 21)  # banana
STATUS_PROMPT_CHARS = 300
EMBED_DESCRIPTION = 4096

_STATUS_LABELS = {
    JobState.RESERVED: "Starting",
    JobState.SUBMITTING: "Sending to RunComfy",
    JobState.SUBMITTED: "Sent to RunComfy",
    JobState.QUEUED: "In the queue",
    JobState.RUNNING: "Generating",
    JobState.COMPLETED: "Finishing",
    JobState.AWAITING_APPROVAL: "Waiting for a moderator's approval",
}


def escaped(text: str) -> str:
    """User text shown as text: markdown and mentions neutralised."""
    return discord.utils.escape_markdown(discord.utils.escape_mentions(text))


def clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PLURALS = {"entry": "entries"}  # nouns that don't just take an "s"


def plural(n: int, noun: str) -> str:
    """``1 credit``, ``2 credits``, ``1 entry``, ``0 entries``: the cogs' one way to count."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {_PLURALS.get(noun, noun + 's')}"


# Storage's names for where a limit comes from and which limit stopped a job, in plain words
# (said to members and moderators alike; "guild" and "global" are the code's words, not theirs).
_LIMIT_WORDS = {
    "user override": "a personal override",
    "role tier": "a role tier",
    "guild default": "the server's default",
    "global default": "the bot-wide default",
    "daily allowance": "the daily allowance",
    "guild daily cap": "the server's daily cap",
    "global daily cap": "the bot-wide daily cap",
}


def limit_words(name: str) -> str:
    """A storage limit or limit source (``"guild default"``...) as members read it."""
    return _LIMIT_WORDS.get(name, name)


def binding_caps(balance: Balance) -> list[str]:
    """The server's or the bot's daily cap, where it leaves less than the member's own credits."""
    caps = (
        ("This server", balance.guild_cap_remaining),
        ("The bot", balance.global_cap_remaining),
    )
    return [
        f"{who} has {plural(left, 'credit')} left today."
        for who, left in caps
        if left is not None and left < balance.remaining
    ]


def usable_credits(balance: Balance) -> int:
    """What the member can really spend today: their own credits, or less if a cap binds."""
    caps = (balance.guild_cap_remaining, balance.global_cap_remaining)
    return min([balance.remaining, *(c for c in caps if c is not None)])


def credits_back(n: int) -> str:
    return f"Your {plural(n, 'credit')} {'is' if n == 1 else 'are'} back."


def format_duration(seconds: int) -> str:
    """A short human duration, at most two units: 45 s, 1 min 30 s, 2 h, 3 d 4 h."""
    seconds = max(0, int(seconds))
    if seconds == 0:
        return "0 s"
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts[:2])


def listed(tags: Sequence[str], *, limit: int) -> str:
    """``a, b, c and N more``: at most ``limit`` tags named ("" when there are none)."""
    shown = ", ".join(tags[:limit])
    if len(tags) > limit:
        shown += f" and {len(tags) - limit} more"
    return shown


def quoted_prompt(prompt: str, limit: int = STATUS_PROMPT_CHARS) -> str:
    flat = " ".join(prompt.split())
    return "> " + escaped(clipped(flat, limit))


def options_line(job: Job) -> str:
    request = JobRequest.of(job)
    o = request.options
    parts = [
        f"{o.num_images}×",
        o.resolution,
        o.aspect_ratio,
        o.output_format,
        f"safety {o.safety_tolerance}",
    ]
    if o.enable_web_search:
        parts.append("web search")
    if job.kind == JobKind.EDIT:
        n = len(request.image_urls)
        parts.append(f"editing {plural(n, 'image')}")
    return " · ".join(parts)


def status_text(job: Job, progress: Progress, notes: Sequence[str] = ()) -> str:
    label = _STATUS_LABELS.get(progress.state, progress.state.value)
    head = f"⏳ **{label}**"
    if progress.state == JobState.QUEUED and progress.queue_position is not None:
        head += f" · position {progress.queue_position}"
    head += f" · started {format_dt(job.created_at, 'R')}"
    lines = [head, quoted_prompt(job.prompt)]
    lines += [f"-# Note: {escaped(n)}" for n in notes]
    lines.append(
        f"-# <@{job.user_id}> · {options_line(job)} · {plural(job.cost, 'credit')} · job `{job.id}`"
    )
    return "\n".join(lines)


def outcome_text(job: Job) -> str:
    """A job that ended without a result: what happened and that the credits are back."""
    refund = credits_back(job.cost) if job.cost else ""
    if job.state == JobState.CANCELLED:
        head = f"🚫 **Cancelled.** {refund}"
    elif job.state == JobState.REJECTED:
        head = f"🚫 **This request was not posted.** {refund}"
    else:
        reason = escaped(job.error or "Something went wrong.")
        head = f"❌ **Failed:** {reason} {refund}"
    return "\n".join(
        [
            head.strip(),
            quoted_prompt(job.prompt),
            f"-# <@{job.user_id}> · {options_line(job)} · job `{job.id}`",
        ]
    )


def result_embed(job: Job, fitted: Sequence[FittedImage] = ()) -> discord.Embed:
    title = "Edit" if job.kind == JobKind.EDIT else "Imagine"
    embed = discord.Embed(
        title=title,
        description=clipped(escaped(job.prompt), EMBED_DESCRIPTION),
        colour=COLOUR,
    )
    seed = JobRequest.of(job).options.seed
    embed.add_field(name="Options", value=options_line(job), inline=False)
    embed.add_field(name="Seed", value=f"`{'?' if seed is None else seed}`", inline=True)
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>", inline=True)
    linked = [f for f in fitted if f.linked]
    if linked:
        links = "\n".join(f"[{f.filename}]({f.source_url})" for f in linked)
        embed.add_field(name="Too large to attach", value=clipped(links, 1024), inline=False)
    reencoded = sum(1 for f in fitted if f.reencoded)
    footer = f"job {job.id} · {plural(job.cost, 'credit')}"
    if reencoded:
        footer += f" · {reencoded} re-encoded to fit Discord's upload limit"
    embed.set_footer(text=footer)
    return embed


def ready_text(job: Job) -> str:
    """The fallback delivery's content: the only message that mentions (pings) the requester."""
    return f"<@{job.user_id}> your {'edit' if job.kind == JobKind.EDIT else 'image'} is ready."


def moved_text(job: Job) -> str:
    """The status message once the result went out as a separate channel message."""
    return "\n".join(
        [
            "✅ **Done** — the result is posted below.",
            quoted_prompt(job.prompt),
            f"-# <@{job.user_id}> · job `{job.id}`",
        ]
    )


def ready_mentions(job: Job) -> discord.AllowedMentions:
    return discord.AllowedMentions(
        everyone=False, roles=False, replied_user=False, users=[discord.Object(job.user_id)]
    )
