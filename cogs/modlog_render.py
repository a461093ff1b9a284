"""What the moderators' log looks like: one embed per job or blocked prompt. Pure functions.

Entries speak the server's preferred language (``t``: cogs/i18n.py). User text is escaped
(markdown and mentions) and clipped before escaping, so an escape sequence is never cut in half
(a blocked prompt stays inside its spoiler). The messages are sent with no allowed mentions as
well. The "Moderation" field records what moderators did; it is read back from the message when
the entry is updated, so the history survives restarts without extra storage (found by its name
in any language, so a server that changes its language keeps it). What a moderator's click did:
cogs/modlog_outcomes.py.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime

import discord
from discord.utils import format_dt

from cogs.i18n import Speech, languages, speech_for
from cogs.render import escaped, options_line
from services.jobs import JobRequest
from services.jobs.outage import Outage
from services.moderation import BlockedAttempt
from services.wording import N_
from storage.models import Job, JobKind, JobState

NOTES_FIELD = N_("Moderation")
MORE_FIELD = N_("Further attempts")
AGE_HIDDEN = N_("age-restricted result, not shown in this channel (links hidden behind spoilers)")
PROMPT_CHARS = 1500  # before escaping: at most ~3,000 after, within an embed's 4,096
FIELD_CHARS = 1024

_HEADS = {
    JobState.DELIVERED: ("✅", N_("Delivered"), discord.Colour.green()),
    JobState.FAILED: ("❌", N_("Failed"), discord.Colour.red()),
    JobState.CANCELLED: ("🚫", N_("Cancelled"), discord.Colour.light_grey()),
    JobState.REJECTED: ("⛔", N_("Rejected"), discord.Colour.dark_red()),
    JobState.AWAITING_APPROVAL: ("⏳", N_("Awaiting approval"), discord.Colour.orange()),
}

# A job's state as the moderator reads it ("it is {state}").
_STATES = {
    JobState.RESERVED: N_("reserved"),
    JobState.SUBMITTING: N_("submitting"),
    JobState.SUBMITTED: N_("submitted"),
    JobState.QUEUED: N_("queued"),
    JobState.RUNNING: N_("running"),
    JobState.COMPLETED: N_("completed"),
    JobState.AWAITING_APPROVAL: N_("awaiting approval"),
    JobState.DELIVERED: N_("delivered"),
    JobState.CANCELLED: N_("cancelled"),
    JobState.FAILED: N_("failed"),
    JobState.REJECTED: N_("rejected"),
}


def state_text(t: Speech, state: JobState) -> str:
    words = _STATES.get(state)
    return t(words) if words else state.value


@functools.cache
def _names(text: str) -> frozenset[str]:
    """A field's name in every language: entries posted in another one are still read."""
    return frozenset({text, *(speech_for(code)(text) for code in languages())})


def _kind(t: Speech, kind: JobKind) -> str:
    return t("Edit") if kind == JobKind.EDIT else t("Imagine")


def user_text(text: str, limit: int = PROMPT_CHARS) -> str:
    """One line of user text, clipped, then escaped (never the other way round)."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return escaped(flat)


def links(t: Speech, urls: Sequence[str], *, limit: int = FIELD_CHARS) -> str:
    """``[1](url) · [2](url) …`` within ``limit`` characters, then "+N more"."""
    parts: list[str] = []
    used = 0
    for index, url in enumerate(urls):
        part = f"[{index + 1}]({url})"
        rest = len(urls) - index
        more = t.n("+{count} more", "+{count} more", rest)
        if used + len(part) + 3 + len(more) + 3 > limit:
            parts.append(more)
            break
        parts.append(part)
        used += len(part) + 3
    return " · ".join(parts) or t("none")


def jump_url(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


def _cost(t: Speech, job: Job) -> str:
    if job.state == JobState.DELIVERED:
        committed = job.committed if job.committed is not None else job.cost
        if committed != job.cost:
            return t.n(
                "{count} credit committed (of {reserved} reserved)",
                "{count} credits committed (of {reserved} reserved)",
                committed,
                reserved=job.cost,
            )
        return t.n("{count} credit committed", "{count} credits committed", committed)
    if job.state == JobState.AWAITING_APPROVAL:
        return t.n("{count} credit held", "{count} credits held", job.cost)
    return t.n("{count} credit, refunded", "{count} credits, refunded", job.cost)


def _notes_value(notes: Sequence[str]) -> str:
    """The newest notes that fit in a field (older ones are dropped first)."""
    kept: list[str] = []
    used = 0
    for note in reversed(notes):
        if used + len(note) + 1 > FIELD_CHARS:
            break
        kept.append(note)
        used += len(note) + 1
    return "\n".join(reversed(kept))


def job_entry(
    t: Speech,
    job: Job,
    *,
    notes: Sequence[str] = (),
    thumbnail: str | None = None,
    image: str | None = None,
    age_hidden: bool = False,
) -> discord.Embed:
    """A job's entry. ``age_hidden``: an age-restricted job in a log channel that is not, so no
    image is shown and its links are marked and spoilered."""
    head = _HEADS.get(job.state)
    title = f"{head[0]} {t(head[1])}" if head else state_text(t, job.state)
    embed = discord.Embed(
        title=f"{title} · {_kind(t, job.kind)}",
        description=user_text(job.prompt),
        colour=head[2] if head else discord.Colour.default(),
        timestamp=job.updated_at,
    )
    requester = f"<@{job.user_id}> (`{job.user_id}`)"
    embed.add_field(name=t("Requester"), value=requester, inline=True)
    where = f"<#{job.channel_id}>"
    if job.age_restricted_channel:
        where = t("{channel} (age-restricted)", channel=where)
    embed.add_field(name=t("Channel"), value=where, inline=True)
    embed.add_field(name=t("Job"), value=f"`{job.id}`", inline=True)
    embed.add_field(name=t("Options"), value=options_line(t, job), inline=False)
    embed.add_field(name=t("Cost"), value=_cost(t, job), inline=True)
    inputs = list(JobRequest.of(job).image_urls)
    if inputs:
        embed.add_field(name=t("Input images"), value=links(t, inputs), inline=False)
    output = _output(t, job, age_hidden=age_hidden)
    if output:
        embed.add_field(name=t("Output"), value=output, inline=False)
    if job.state == JobState.FAILED and job.error:
        embed.add_field(name=t("Error"), value=user_text(t.stored(job.error), 900), inline=False)
    if notes:
        embed.add_field(name=t(NOTES_FIELD), value=_notes_value(notes), inline=False)
    embed.set_footer(text=t("job {job_id}", job_id=job.id))
    if image:
        embed.set_image(url=image)
    elif thumbnail:
        embed.set_thumbnail(url=thumbnail)
    return embed


def _output(t: Speech, job: Job, *, age_hidden: bool = False) -> str:
    hidden = "🔞 " + t(AGE_HIDDEN)
    parts: list[str] = [hidden] if age_hidden else []
    if job.state == JobState.DELIVERED:
        if job.result_message_id is not None:
            url = jump_url(job.guild_id, job.channel_id, job.result_message_id)
            parts.append(t("[posted message]({url})", url=url))
        else:
            parts.append(t("removed from the channel"))
    if job.result_urls:
        if age_hidden:
            shown = links(t, job.result_urls, limit=FIELD_CHARS - 60 - len(hidden))
            parts.append(f"RunComfy: ||{shown}||")
        else:
            parts.append("RunComfy: " + links(t, job.result_urls, limit=FIELD_CHARS - 60))
    return " · ".join(parts)


def blocked_entry(t: Speech, attempt: BlockedAttempt) -> discord.Embed:
    embed = discord.Embed(
        title="🛑 " + t("Blocked prompt") + " · " + _kind(t, attempt.kind),
        # spoilered: moderators choose to read it; escaping keeps it inside the spoiler
        description=f"||{user_text(attempt.prompt)}||",
        colour=discord.Colour.dark_red(),
        timestamp=attempt.at,
    )
    requester = f"<@{attempt.user_id}> (`{attempt.user_id}`)"
    embed.add_field(name=t("Requester"), value=requester, inline=True)
    embed.add_field(name=t("Channel"), value=f"<#{attempt.channel_id}>", inline=True)
    matched = user_text(attempt.matched, 300) if attempt.matched else t("unknown")
    embed.add_field(name=t("Matched entry"), value=matched, inline=True)
    options = f"{attempt.num_images}× {attempt.resolution}"
    embed.add_field(name=t("Options"), value=options, inline=False)
    if attempt.image_urls:
        embed.add_field(name=t("Input images"), value=links(t, attempt.image_urls), inline=False)
    embed.set_footer(text=t("Not sent to RunComfy; nothing was charged."))
    return embed


_OUTAGE_WORDS = {
    "auth": N_(
        "RunComfy refuses the bot's API key. The operator needs to check RUNCOMFY_API_TOKEN."
    ),
    "balance": N_("The RunComfy account has no balance left. The operator needs to top it up."),
    "connection": N_("RunComfy can't be reached from the bot."),
    "server": N_("RunComfy keeps answering with errors."),
}


def outage_entry(t: Speech, outage: Outage) -> discord.Embed:
    """The notice that the image service is failing (one per incident and server)."""
    words = _OUTAGE_WORDS.get(outage.kind.value)
    embed = discord.Embed(
        title="⚠️ " + t("The image service isn't available"),
        description=t(words) if words else t("RunComfy isn't working right now."),
        colour=discord.Colour.orange(),
        timestamp=outage.started_at,
    )
    embed.set_footer(
        text=t(
            "Jobs fail until it works again; members get their credits back."
            " The bot tries again by itself."
        )
    )
    return embed


def _without(embed: discord.Embed, name: str) -> discord.Embed:
    """A copy of ``embed`` without the field called ``name`` (in any language)."""
    copy = embed.copy()
    names = _names(name)
    for index, f in enumerate(copy.fields):
        if f.name in names:
            copy.remove_field(index)
            break
    return copy


def with_more(t: Speech, embed: discord.Embed, more: int, at: datetime) -> discord.Embed:
    """A blocked-prompt entry counting ``more`` further attempts, the last one ``at``."""
    copy = _without(embed, MORE_FIELD)
    value = t.n(
        "+{count} more attempt (last {when})",
        "+{count} more attempts (last {when})",
        more,
        when=format_dt(at, "R"),
    )
    copy.add_field(name=t(MORE_FIELD), value=value, inline=False)
    return copy


def read_notes(embed: discord.Embed | None) -> list[str]:
    """The moderation notes already on an entry."""
    if embed is None:
        return []
    names = _names(NOTES_FIELD)
    for f in embed.fields:
        if f.name in names and f.value:
            return f.value.splitlines()
    return []


def with_notes(t: Speech, embed: discord.Embed, notes: Sequence[str]) -> discord.Embed:
    """A copy of ``embed`` with its moderation notes replaced."""
    copy = _without(embed, NOTES_FIELD)
    if notes:
        copy.add_field(name=t(NOTES_FIELD), value=_notes_value(notes), inline=False)
    return copy


def note(said: str, *details: str) -> str:
    """A line of the "Moderation" field: what was done, by whom, when; then any details."""
    return " · ".join([said, *(d for d in details if d)])


def disabled_ids(components: Iterable[discord.Component]) -> set[str]:
    """custom_ids of the disabled buttons on a message (actions already taken)."""
    found: set[str] = set()
    for row in components:
        children = getattr(row, "children", [row])
        for child in children:
            if isinstance(child, discord.Button) and child.disabled and child.custom_id:
                found.add(child.custom_id)
    return found
