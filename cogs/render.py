"""What a job looks like in Discord: status lines, the result embed, outcome lines.

Pure functions of the job (no I/O). Every piece of user text goes through ``escaped``; the
messages are sent with no allowed mentions anyway, so a prompt saying ``@everyone`` pings nobody.
``NO_MENTIONS`` is the cogs' one allowed-mentions setting for that; the small text helpers below
(durations, lists of tags) are shared by the other renderers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import discord
from discord.utils import format_dt

from cogs.i18n import Speech
from services.imagefit import FittedImage
from services.jobs import JobRequest, Progress
from services.wording import N_, UserText, Wording
from storage.models import Balance, Job, JobKind, JobState

NO_MENTIONS = discord.AllowedMentions.none()  # every answer and post of the cogs pings nobody
COLOUR = discord.Colour.from_rgb(250, 204, 21)  # banana
STATUS_PROMPT_CHARS = 300
EMBED_DESCRIPTION = 4096

_STATUS_LABELS = {
    JobState.RESERVED: N_("Starting"),
    JobState.SUBMITTING: N_("Sending to RunComfy"),
    JobState.SUBMITTED: N_("Sent to RunComfy"),
    JobState.QUEUED: N_("In the queue"),
    JobState.RUNNING: N_("Generating"),
    JobState.COMPLETED: N_("Finishing"),
    JobState.AWAITING_APPROVAL: N_("Waiting for a moderator's approval"),
}


def escaped(text: str) -> str:
    """User text shown as text: markdown and mentions neutralised."""
    return discord.utils.escape_markdown(discord.utils.escape_mentions(text))


def said_to(t: Speech, wording: Wording, **changes: Any) -> str:
    """A service's sentence in the reader's language; what a member typed is shown as typed."""
    args = {k: escaped(v) if isinstance(v, UserText) else v for k, v in wording.args.items()}
    return t(wording.text, **(args | changes))


def clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Storage's names for where a limit comes from and which limit stopped a job, in plain words
# (said to members and moderators alike; "guild" and "global" are the code's words, not theirs).
_LIMIT_WORDS = {
    "user override": N_("a personal override"),
    "role tier": N_("a role tier"),
    "guild default": N_("the server's default"),
    "global default": N_("the bot-wide default"),
    "daily allowance": N_("the daily allowance"),
    "guild daily cap": N_("the server's daily cap"),
    "global daily cap": N_("the bot-wide daily cap"),
}


def limit_words(t: Speech, name: str) -> str:
    """A storage limit or limit source (``"guild default"``...) as members read it."""
    words = _LIMIT_WORDS.get(name)
    return t(words) if words else name


def binding_caps(t: Speech, balance: Balance) -> list[str]:
    """The server's or the bot's daily cap, where it leaves less than the member's own credits."""
    lines = []
    server, bot = balance.guild_cap_remaining, balance.global_cap_remaining
    if server is not None and server < balance.remaining:
        lines.append(
            t.n(
                "This server has {count} credit left today.",
                "This server has {count} credits left today.",
                server,
            )
        )
    if bot is not None and bot < balance.remaining:
        lines.append(
            t.n(
                "The bot has {count} credit left today.",
                "The bot has {count} credits left today.",
                bot,
            )
        )
    return lines


def usable_credits(balance: Balance) -> int:
    """What the member can really spend today: their own credits, or less if a cap binds."""
    caps = (balance.guild_cap_remaining, balance.global_cap_remaining)
    return min([balance.remaining, *(c for c in caps if c is not None)])


def credits_back(t: Speech, n: int) -> str:
    return t.n("Your {count} credit is back.", "Your {count} credits are back.", n)


def credits(t: Speech, n: int) -> str:
    return t.n("{count} credit", "{count} credits", n)


def listed(t: Speech, tags: Sequence[str], *, limit: int) -> str:
    """``a, b, c and N more``: at most ``limit`` tags named ("" when there are none)."""
    if len(tags) <= limit:
        return t.listed(tags)
    more = t.n("{count} more", "{count} more", len(tags) - limit)
    return t.listed([*tags[:limit], more])


def quoted_prompt(prompt: str, limit: int = STATUS_PROMPT_CHARS) -> str:
    flat = " ".join(prompt.split())
    return "> " + escaped(clipped(flat, limit))


def options_line(t: Speech, job: Job) -> str:
    request = JobRequest.of(job)
    o = request.options
    parts = [
        f"{o.num_images}×",
        o.resolution,
        o.aspect_ratio,
        o.output_format,
        t("safety {level}", level=o.safety_tolerance),
    ]
    if o.enable_web_search:
        parts.append(t("web search"))
    if job.kind == JobKind.EDIT:
        n = len(request.image_urls)
        parts.append(t.n("editing {count} image", "editing {count} images", n))
    return " · ".join(parts)


def _footer(t: Speech, job: Job, *, cost: bool) -> str:
    """The last line of a status: who, what was asked, the cost, the job id."""
    parts = [f"<@{job.user_id}>", options_line(t, job)]
    if cost:
        parts.append(credits(t, job.cost))
    parts.append(t("job `{job_id}`", job_id=job.id))
    return "-# " + " · ".join(parts)


def status_text(t: Speech, job: Job, progress: Progress, notes: Sequence[Wording] = ()) -> str:
    label = _STATUS_LABELS.get(progress.state)
    head = f"⏳ **{t(label) if label else progress.state.value}**"
    if progress.state == JobState.QUEUED and progress.queue_position is not None:
        head += " · " + t("position {position}", position=progress.queue_position)
    head += " · " + t("started {when}", when=format_dt(job.created_at, "R"))
    lines = [head, quoted_prompt(job.prompt)]
    lines += ["-# " + t("Note: {note}", note=escaped(t.wording(n))) for n in notes]
    lines.append(_footer(t, job, cost=True))
    return "\n".join(lines)


def outcome_text(t: Speech, job: Job) -> str:
    """A job that ended without a result: what happened and that the credits are back."""
    refund = credits_back(t, job.cost) if job.cost else ""
    if job.state == JobState.CANCELLED:
        head = "🚫 " + t("**Cancelled.** {refund}", refund=refund)
    elif job.state == JobState.REJECTED:
        head = "🚫 " + t("**This request was not posted.** {refund}", refund=refund)
    else:
        reason = escaped(t.stored(job.error) if job.error else t("Something went wrong."))
        head = "❌ " + t("**Failed:** {reason} {refund}", reason=reason, refund=refund)
    return "\n".join([head.strip(), quoted_prompt(job.prompt), _footer(t, job, cost=False)])


def result_embed(t: Speech, job: Job, fitted: Sequence[FittedImage] = ()) -> discord.Embed:
    title = t("Edit") if job.kind == JobKind.EDIT else t("Imagine")
    embed = discord.Embed(
        title=title,
        description=clipped(escaped(job.prompt), EMBED_DESCRIPTION),
        colour=COLOUR,
    )
    seed = JobRequest.of(job).options.seed
    embed.add_field(name=t("Options"), value=options_line(t, job), inline=False)
    embed.add_field(name=t("Seed"), value=f"`{'?' if seed is None else seed}`", inline=True)
    embed.add_field(name=t("Requested by"), value=f"<@{job.user_id}>", inline=True)
    linked = [f for f in fitted if f.linked]
    if linked:
        links = "\n".join(f"[{f.filename}]({f.source_url})" for f in linked)
        embed.add_field(name=t("Too large to attach"), value=clipped(links, 1024), inline=False)
    reencoded = sum(1 for f in fitted if f.reencoded)
    footer = t("job {job_id}", job_id=job.id) + " · " + credits(t, job.cost)
    if reencoded:
        footer += " · " + t.n(
            "{count} re-encoded to fit Discord's upload limit",
            "{count} re-encoded to fit Discord's upload limit",
            reencoded,
        )
    embed.set_footer(text=footer)
    return embed


def ready_text(t: Speech, job: Job) -> str:
    """The fallback delivery's content: the only message that mentions (pings) the requester."""
    user = f"<@{job.user_id}>"
    if job.kind == JobKind.EDIT:
        return t("{user} your edit is ready.", user=user)
    return t("{user} your image is ready.", user=user)


def moved_text(t: Speech, job: Job) -> str:
    """The status message once the result went out as a separate channel message."""
    return "\n".join(
        [
            "✅ " + t("**Done** — the result is posted below."),
            quoted_prompt(job.prompt),
            f"-# <@{job.user_id}> · " + t("job `{job_id}`", job_id=job.id),
        ]
    )


def ready_mentions(job: Job) -> discord.AllowedMentions:
    return discord.AllowedMentions(
        everyone=False, roles=False, replied_user=False, users=[discord.Object(job.user_id)]
    )
