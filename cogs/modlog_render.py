"""What the moderators' log looks like: one embed per job or blocked prompt. Pure functions.

User text is escaped (markdown and mentions) and clipped before escaping, so an escape sequence is
never cut in half (a blocked prompt stays inside its spoiler). The messages are sent with no
allowed mentions as well. The "Moderation" field records what moderators did; it is read back from
the message when the entry is updated, so the history survives restarts without extra storage.
What a moderator's click did (the service's ``ActionResult``) is worded here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import discord
from discord.utils import format_dt

from cogs.render import credits_back, escaped, options_line, plural, quoted_prompt
from services.jobs import JobRequest
from services.jobs.outage import Outage
from services.moderation import ActionResult, BlockedAttempt, Notice, Outcome
from storage.models import Job, JobKind, JobState

NOTES_FIELD = "Moderation"
MORE_FIELD = "Further attempts"
AGE_HIDDEN = "🔞 age-restricted result, not shown in this channel (links hidden behind spoilers)"
PROMPT_CHARS = 1500  # before escaping: at most ~3,000 after, within an embed's 4,096
FIELD_CHARS = 1024

_HEADS = {
    JobState.DELIVERED: ("✅ Delivered", discord.Colour.green()),
    JobState.FAILED: ("❌ Failed", discord.Colour.red()),
    JobState.CANCELLED: ("🚫 Cancelled", discord.Colour.light_grey()),
    JobState.REJECTED: ("⛔ Rejected", discord.Colour.dark_red()),
    JobState.AWAITING_APPROVAL: ("⏳ Awaiting approval", discord.Colour.orange()),
}


def user_text(text: str, limit: int = PROMPT_CHARS) -> str:
    """One line of user text, clipped, then escaped (never the other way round)."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return escaped(flat)


def links(urls: Sequence[str], *, limit: int = FIELD_CHARS) -> str:
    """``[1](url) · [2](url) …`` within ``limit`` characters, then "+N more"."""
    parts: list[str] = []
    used = 0
    for index, url in enumerate(urls):
        part = f"[{index + 1}]({url})"
        rest = len(urls) - index
        reserve = len(f" · +{rest} more")
        if used + len(part) + 3 + reserve > limit:
            parts.append(f"+{rest} more")
            break
        parts.append(part)
        used += len(part) + 3
    return " · ".join(parts) or "none"


def jump_url(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


def _cost(job: Job) -> str:
    if job.state == JobState.DELIVERED:
        committed = job.committed if job.committed is not None else job.cost
        return f"{plural(committed, 'credit')} committed" + (
            f" (of {job.cost} reserved)" if committed != job.cost else ""
        )
    if job.state == JobState.AWAITING_APPROVAL:
        return f"{plural(job.cost, 'credit')} held"
    return f"{plural(job.cost, 'credit')}, refunded"


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
    job: Job,
    *,
    notes: Sequence[str] = (),
    thumbnail: str | None = None,
    image: str | None = None,
    age_hidden: bool = False,
) -> discord.Embed:
    """A job's entry. ``age_hidden``: an age-restricted job in a log channel that is not, so no
    image is shown and its links are marked and spoilered."""
    head, colour = _HEADS.get(job.state, (job.state.value, discord.Colour.default()))
    kind = "Edit" if job.kind == JobKind.EDIT else "Imagine"
    embed = discord.Embed(
        title=f"{head} · {kind}",
        description=user_text(job.prompt),
        colour=colour,
        timestamp=job.updated_at,
    )
    embed.add_field(name="Requester", value=f"<@{job.user_id}> (`{job.user_id}`)", inline=True)
    where = f"<#{job.channel_id}>"
    if job.age_restricted_channel:
        where += " (age-restricted)"
    embed.add_field(name="Channel", value=where, inline=True)
    embed.add_field(name="Job", value=f"`{job.id}`", inline=True)
    embed.add_field(name="Options", value=options_line(job), inline=False)
    embed.add_field(name="Cost", value=_cost(job), inline=True)
    inputs = list(JobRequest.of(job).image_urls)
    if inputs:
        embed.add_field(name="Input images", value=links(inputs), inline=False)
    output = _output(job, age_hidden=age_hidden)
    if output:
        embed.add_field(name="Output", value=output, inline=False)
    if job.state == JobState.FAILED and job.error:
        embed.add_field(name="Error", value=user_text(job.error, 900), inline=False)
    if notes:
        embed.add_field(name=NOTES_FIELD, value=_notes_value(notes), inline=False)
    embed.set_footer(text=f"job {job.id}")
    if image:
        embed.set_image(url=image)
    elif thumbnail:
        embed.set_thumbnail(url=thumbnail)
    return embed


def _output(job: Job, *, age_hidden: bool = False) -> str:
    parts: list[str] = [AGE_HIDDEN] if age_hidden else []
    if job.state == JobState.DELIVERED:
        if job.result_message_id is not None:
            url = jump_url(job.guild_id, job.channel_id, job.result_message_id)
            parts.append(f"[posted message]({url})")
        else:
            parts.append("removed from the channel")
    if job.result_urls:
        if age_hidden:
            shown = links(job.result_urls, limit=FIELD_CHARS - 60 - len(AGE_HIDDEN))
            parts.append(f"RunComfy: ||{shown}||")
        else:
            parts.append("RunComfy: " + links(job.result_urls, limit=FIELD_CHARS - 60))
    return " · ".join(parts)


def blocked_entry(attempt: BlockedAttempt) -> discord.Embed:
    kind = "Edit" if attempt.kind == JobKind.EDIT else "Imagine"
    embed = discord.Embed(
        title=f"🛑 Blocked prompt · {kind}",
        # spoilered: moderators choose to read it; escaping keeps it inside the spoiler
        description=f"||{user_text(attempt.prompt)}||",
        colour=discord.Colour.dark_red(),
        timestamp=attempt.at,
    )
    embed.add_field(
        name="Requester", value=f"<@{attempt.user_id}> (`{attempt.user_id}`)", inline=True
    )
    embed.add_field(name="Channel", value=f"<#{attempt.channel_id}>", inline=True)
    matched = user_text(attempt.matched, 300) if attempt.matched else "unknown"
    embed.add_field(name="Matched entry", value=matched, inline=True)
    embed.add_field(
        name="Options", value=f"{attempt.num_images}× {attempt.resolution}", inline=False
    )
    if attempt.image_urls:
        embed.add_field(name="Input images", value=links(attempt.image_urls), inline=False)
    embed.set_footer(text="Not sent to RunComfy; nothing was charged.")
    return embed


_OUTAGE_WORDS = {
    "auth": "RunComfy refuses the bot's API key. The operator needs to check RUNCOMFY_API_TOKEN.",
    "balance": "The RunComfy account has no balance left. The operator needs to top it up.",
    "connection": "RunComfy can't be reached from the bot.",
    "server": "RunComfy keeps answering with errors.",
}


def outage_entry(outage: Outage) -> discord.Embed:
    """The notice that the image service is failing (one per incident and server)."""
    embed = discord.Embed(
        title="⚠️ The image service isn't available",
        description=_OUTAGE_WORDS.get(outage.kind.value, "RunComfy isn't working right now."),
        colour=discord.Colour.orange(),
        timestamp=outage.started_at,
    )
    embed.set_footer(
        text="Jobs fail until it works again; members get their credits back."
        " The bot tries again by itself."
    )
    return embed


def with_more(embed: discord.Embed, more: int, at: datetime) -> discord.Embed:
    """A blocked-prompt entry counting ``more`` further attempts, the last one ``at``."""
    copy = embed.copy()
    for index, f in enumerate(copy.fields):
        if f.name == MORE_FIELD:
            copy.remove_field(index)
            break
    copy.add_field(
        name=MORE_FIELD,
        value=f"+{plural(more, 'more attempt')} (last {format_dt(at, 'R')})",
        inline=False,
    )
    return copy


def read_notes(embed: discord.Embed | None) -> list[str]:
    """The moderation notes already on an entry."""
    if embed is None:
        return []
    for f in embed.fields:
        if f.name == NOTES_FIELD and f.value:
            return f.value.splitlines()
    return []


def with_notes(embed: discord.Embed, notes: Sequence[str]) -> discord.Embed:
    """A copy of ``embed`` with its moderation notes replaced."""
    copy = embed.copy()
    for index, f in enumerate(copy.fields):
        if f.name == NOTES_FIELD:
            copy.remove_field(index)
            break
    if notes:
        copy.add_field(name=NOTES_FIELD, value=_notes_value(notes), inline=False)
    return copy


def note(action: str, actor_id: int, at: datetime, *details: str) -> str:
    extra = "".join(f" · {d}" for d in details if d)
    return f"{action} by <@{actor_id}> {format_dt(at, 'R')}{extra}"


def rejected_status(job: Job) -> str:
    """What everyone sees on a rejected job's status message: neutral, no prompt."""
    return f"🚫 This request was not posted.\n-# job `{job.id}`"


def rejected_notice(job: Job) -> str:
    """The private verdict (ephemeral or DM): with the prompt, only the requester sees it."""
    what = "edit" if job.kind == JobKind.EDIT else "image"
    return "\n".join(
        [
            f"Your {what} request in <#{job.channel_id}> (job `{job.id}`) was not approved by"
            f" the server's moderators, so it wasn't posted. {credits_back(job.cost)}",
            quoted_prompt(job.prompt),
        ]
    )


def rejected_in_channel(job: Job) -> str:
    """The last resort, in the channel: mentions the requester, without the prompt."""
    return (
        f"<@{job.user_id}> your request (job `{job.id}`) was not posted. {credits_back(job.cost)}"
    )


def disabled_ids(components: Iterable[discord.Component]) -> set[str]:
    """custom_ids of the disabled buttons on a message (actions already taken)."""
    found: set[str] = set()
    for row in components:
        children = getattr(row, "children", [row])
        for child in children:
            if isinstance(child, discord.Button) and child.disabled and child.custom_id:
                found.add(child.custom_id)
    return found


_TOLD = {
    Notice.PRIVATE: "told privately (a message only they can see)",
    Notice.DM: "told by DM",
    Notice.CHANNEL: "told in the channel (without the prompt)",
    Notice.NONE: "not told (no way to reach them)",
}


def action_text(result: ActionResult) -> str:
    """What the moderator is told about their click (privately)."""
    job = result.job
    match result.outcome:
        case Outcome.NOT_WAITING:
            return f"Job `{job.id}` is no longer waiting for approval (it is {job.state.value})."
        case Outcome.STILL_HELD:
            return (
                "Approved, but Discord would not take the result, so it was not posted; it is"
                " still waiting here. Try Approve again later."
            )
        case Outcome.APPROVED_UNPOSTED:
            return (
                f"Approved, but the result was not posted: {job.error or 'it could not be posted'}"
            )
        case Outcome.APPROVED:
            return f"Approved: the result is posted in <#{job.channel_id}>."
        case Outcome.REJECTED:
            told = _TOLD[result.notice or Notice.NONE]
            return f"Rejected: <@{job.user_id}> was {told}; credits refunded."
        case Outcome.NO_RESULT:
            return f"Job `{job.id}` has no posted result."
        case Outcome.ALREADY_REMOVED:
            return "The result was already removed."
        case Outcome.GONE:
            return "The result message was already deleted."
        case Outcome.REMOVED:
            return f"Removed the result from <#{job.channel_id}>."
        case Outcome.NOT_DELIVERED:
            return f"Nothing to refund: job `{job.id}` is {job.state.value}."
        case Outcome.ALREADY_REFUNDED:
            return f"Job `{job.id}` was already refunded."
        case Outcome.RESET:
            return (
                f"Nothing to refund: job `{job.id}`'s credits were already given back by a reset"
                " of that day."
            )
        case Outcome.REFUNDED:
            return f"Refunded {plural(result.amount, 'credit')} to <@{job.user_id}>."
        case Outcome.REFUNDED_TODAY:
            return (
                f"Refunded {plural(result.amount, 'credit')} to <@{job.user_id}>: the job was on"
                f" {_day(result)} (UTC), so they were granted for today instead."
            )
    return result.outcome.value


def action_detail(result: ActionResult) -> str:
    """What the entry's note adds beyond the action ("" if nothing)."""
    if result.outcome == Outcome.REFUNDED_TODAY:
        return f"job of {_day(result)}: granted for today"
    return ""


def _day(result: ActionResult) -> str:
    return result.day.isoformat() if result.day else "an earlier day"
